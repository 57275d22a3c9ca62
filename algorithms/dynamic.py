"""Prune-and-regrow machinery shared by SET and RigL.

Both start from a random mask with each layer's exact non-zero count. Every ``delta_t``
steps until ``t_end`` each layer drops the ``k`` active weights of smallest magnitude and
grows ``k`` positions among those inactive after the drop (just-dropped ones included, as
in Evci et al. 2020, Algorithm 1), so each layer's density is preserved exactly. Grown
weights and their optimizer state start at zero, a just-dropped position that is grown again
included (Algorithm 1 zero-initialises every grown connection).

Frozen weights (``requires_grad=False``) are never selected by default and refused when named:
they have no gradient for RigL to grow from, and a weight SET regrows at zero would stay zero.
"""

from __future__ import annotations

import math

import torch
from acf.algorithms.base import SparsityAlgorithm
from acf.algorithms.structure import random_scores, topk_mask


class PruneRegrow(SparsityAlgorithm):
    """Subclasses give ``drop_fraction(step)`` and ``grow_scores(name, candidates)``."""

    needs_trainable = True

    def __init__(self, *args, fraction: float = 0.3, **kwargs):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"prune fraction must be in [0, 1], got {fraction}")
        self.fraction = float(fraction)
        self._grown: dict[str, torch.Tensor] = {}
        super().__init__(*args, **kwargs)

    def init_masks(self) -> dict[str, torch.Tensor]:
        return {
            n: topk_mask(random_scores(p, self.generator), self.nnz_target(n))
            for n, p in self.params.items()
        }

    def drop_fraction(self, step: int) -> float:
        return self.fraction

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        raise NotImplementedError

    def update(self, step: int) -> dict[str, torch.Tensor]:
        new = {}
        fraction = self.drop_fraction(step)
        for n, p in self.params.items():
            mask = self.masks[n]
            active = int(mask.sum())
            k = round(fraction * active)
            if k == 0:
                continue
            keep = topk_mask(p.detach().abs().masked_fill(~mask, -1.0), active - k)
            grow = self.grow_scores(n, step).masked_fill(keep, float("-inf"))
            self._grown[n] = topk_mask(grow, k)
            new[n] = keep | self._grown[n]
        return new

    def grown_positions(self, name: str, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """The whole grow selection, re-grown just-dropped positions included."""
        return self._grown.pop(name)


class SET(PruneRegrow):
    """Sparse Evolutionary Training (Mocanu et al. 2018): drop the fraction ``zeta`` of
    smallest-magnitude weights, regrow as many at random (seeded by ``seed``)."""

    name = "set"

    def __init__(self, *args, zeta: float = 0.3, **kwargs):
        super().__init__(*args, fraction=zeta, **kwargs)

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        return random_scores(self.params[name], self.generator)


class RigL(PruneRegrow):
    """Rigging the Lottery (Evci et al. 2020): drop ``alpha/2 * (1 + cos(pi t / t_end))`` of
    each layer's active weights by magnitude; grow as many where the *dense* gradient
    magnitude is largest. The dense gradient is needed only on update steps."""

    name = "rigl"

    def __init__(self, *args, alpha: float = 0.3, **kwargs):
        self._dense_grads: dict[str, torch.Tensor] = {}
        super().__init__(*args, fraction=alpha, **kwargs)

    def _validate(self) -> None:
        if self.t_end is None:
            raise ValueError("rigl needs t_end (the step after which masks stay fixed)")

    def drop_fraction(self, step: int) -> float:
        return self.fraction / 2 * (1 + math.cos(math.pi * step / self.t_end))

    def needs_dense_grad(self, step: int) -> bool:
        return self.is_update_step(step + 1)

    def before_optimizer_step(self) -> None:
        if self.needs_dense_grad(self.step_count):
            for n, p in self.params.items():
                if p.grad is not None:
                    self._dense_grads[n] = p.grad.detach().abs().clone()

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        grad = self._dense_grads.pop(name, None)
        if grad is None:
            raise RuntimeError(
                f"rigl: no dense gradient for {name} at step {step}; call step() after "
                "optimizer.step() following a backward pass"
            )
        return grad
