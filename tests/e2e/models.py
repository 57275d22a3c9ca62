"""Models of the end-to-end tests besides those of ``tests/frontends/models.py``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CNN(nn.Module):
    """The structure of ``SmallCNN`` (conv -> BN -> ReLU -> max pool -> conv+bias -> ReLU ->
    avg pool -> BN -> linear) with a configurable width and image size, so that the GEMMs,
    not the per-op overheads, dominate a step."""

    def __init__(self, width: int = 32, size: int = 16, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.fc = nn.Linear(width * (size // 4) ** 2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = self.bn2(F.avg_pool2d(F.relu(self.conv2(x)), 2))
        return self.fc(torch.flatten(x, 1))
