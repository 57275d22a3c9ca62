"""Small models and a fake training step for the algorithm tests."""

from __future__ import annotations

import itertools

import torch
from torch import nn


def mlp(*widths: int, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(widths):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def sgd(model: nn.Module, lr: float = 0.0, **kw) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=lr, **kw)


def fake_step(alg, grads: dict[str, torch.Tensor] | None = None, seed: int = 0) -> None:
    """One iteration with given (or random) gradients: optimizer step then algorithm step."""
    g = torch.Generator().manual_seed(seed)
    for name, p in alg.model.named_parameters():
        p.grad = (
            grads[name].clone() if grads and name in grads else torch.randn(p.shape, generator=g)
        )
    alg.optimizer.step()
    alg.step()
    alg.optimizer.zero_grad()
