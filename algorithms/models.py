"""The project's model zoo: an MLP and a small CNN (conv-bn-relu-pool x2 + linear) shaped
for a sample of ``(channels, height, width)`` of the bundled datasets, and the CIFAR
ResNet-18 used by tests, benchmarks and sweeps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MODELS = ("mlp", "cnn")


class MLP(nn.Sequential):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden=(128, 128)):
        in_features = 1
        for d in input_shape:
            in_features *= d
        layers: list[nn.Module] = [nn.Flatten()]
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        layers.append(nn.Linear(in_features, num_classes))
        super().__init__(*layers)


class SmallCNN(nn.Sequential):
    """Two conv-bn-relu-maxpool stages and a linear classifier. Images with height 1
    (MNIST-1D) use ``1 x 5`` kernels and ``1 x 2`` pooling, others ``3 x 3`` and ``2 x 2``."""

    def __init__(self, input_shape: tuple[int, int, int], num_classes: int, channels=(16, 32)):
        c, h, w = input_shape
        kernel, pad, pool = ((1, 5), (0, 2), (1, 2)) if h == 1 else ((3, 3), (1, 1), (2, 2))
        layers: list[nn.Module] = []
        for out in channels:
            layers += [
                nn.Conv2d(c, out, kernel, padding=pad, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
                nn.MaxPool2d(pool),
            ]
            c, h, w = out, h // pool[0], w // pool[1]
        layers += [nn.Flatten(), nn.Linear(c * h * w, num_classes)]
        super().__init__(*layers)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18; ``width`` scales every stage. ``stem="cifar"``: the CIFAR variant (3x3
    stem, no stem pooling); ``stem="imagenet"``: torchvision's (7x7 stride-2 stem, then a
    3x3 stride-2 max pool with padding 1)."""

    def __init__(self, classes: int = 10, width: int = 64, stem: str = "cifar") -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"unknown ResNet-18 stem {stem!r}; choose 'cifar' or 'imagenet'")
        self.conv1 = (nn.Conv2d(3, width, 3, 1, 1, bias=False) if stem == "cifar"
                      else nn.Conv2d(3, width, 7, 2, 3, bias=False))
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, 2, 1)
        layers, c_in = [], width
        for i, stride in enumerate((1, 2, 2, 2)):
            c_out = width * 2**i
            layers.append(nn.Sequential(BasicBlock(c_in, c_out, stride),
                                        BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.fc(torch.flatten(out, 1))


def make_model(kind: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if kind == "mlp":
        return MLP(input_shape, num_classes)
    if kind == "cnn":
        return SmallCNN(input_shape, num_classes)  # type: ignore[arg-type]
    raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
