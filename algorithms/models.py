"""Models for the bundled datasets: an MLP and a small CNN (conv-bn-relu-pool x2 + linear)
shaped for a sample of ``(channels, height, width)``."""

from __future__ import annotations

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


def make_model(kind: str, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if kind == "mlp":
        return MLP(input_shape, num_classes)
    if kind == "cnn":
        return SmallCNN(input_shape, num_classes)  # type: ignore[arg-type]
    raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}")
