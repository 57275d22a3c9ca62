"""Prune-and-regrow machinery shared by SET and RigL.

Both start from a random mask with each layer's exact non-zero count. Every ``delta_t``
steps until ``t_end`` each layer drops the ``k`` active weights of smallest magnitude and
grows ``k`` positions among those inactive after the drop (just-dropped ones included, as
in Evci et al. 2020, Algorithm 1, which grows over ``i not in theta \\ I_drop``), so each
layer's density is preserved exactly. As in the RigL reference code
(``sparse_optimizers._get_update_op`` with its default ``reinit_when_same=False``), only new
connections, active now and inactive before the update, start at zero and have their
optimizer state (momentum, Adam moments) reset; a just-dropped weight grown again keeps its
value and state, and a dense layer (density 1, such as ERK's small layers) is left untouched.

Frozen weights (``requires_grad=False``) are never selected by default and refused when named:
they have no gradient for RigL to grow from, and a weight SET regrows at zero would stay zero.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

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
            mask = self.mask(n)
            active = int(mask.sum())
            k = round(fraction * active)
            if k == 0:
                continue
            keep = topk_mask(p.detach().abs().masked_fill(~mask, -1.0), active - k)
            grow = self.grow_scores(n, step).masked_fill(keep, float("-inf"))
            new[n] = keep | topk_mask(grow, k)
        return new


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
    magnitude is largest. The dense gradient is needed only on update steps.

    Unlike the paper's Algorithm 1, where a mask-update iteration updates the masks *instead*
    of taking an SGD step, the optimizer steps on every iteration, and the mask update follows
    the step of its iteration (as the reference code's ``apply_gradients`` does). The
    difference is one extra optimizer step in every ``delta_t`` (typically 100), on the
    gradient the growth then ranks; it shifts the dropped weights' magnitudes by one step's
    update, a minor effect next to the ``delta_t`` steps between updates.

    Mixed precision: when AMP's ``GradScaler`` skips the optimizer step of an update
    iteration (inf/NaN gradients), its gradient cannot rank growth: the update is skipped
    (recorded in ``skipped_updates``, with a ``RuntimeWarning``) and the next one runs as
    scheduled.
    """

    name = "rigl"
    update_needs_optimizer_step = True

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

    def _skip_update(self, step: int) -> None:
        super()._skip_update(step)
        self._dense_grads.clear()
        warnings.warn(
            f"rigl: the mask update due at step {step} is skipped: no optimizer step ran in "
            "its iteration (AMP's GradScaler skips it on inf/NaN gradients), so there is no "
            "dense gradient to grow from. If the optimizer does step, call alg.step() after "
            "optimizer.step().", RuntimeWarning, stacklevel=3)

    def grow_scores(self, name: str, step: int) -> torch.Tensor:
        grad = self._dense_grads.pop(name, None)
        if grad is None:
            raise RuntimeError(
                f"rigl: the mask update at step {step} needs the dense gradient of {name}, "
                "but it had no gradient when the optimizer stepped (it took no part in the "
                "forward pass, or its gradient was cleared before optimizer.step()); run "
                "backward, optimizer.step(), then alg.step(), or leave it out with "
                "params=[...]"
            )
        return grad

    def _extra_state(self) -> dict[str, Any]:
        # empty at a step boundary; kept for a state saved between optimizer.step() and step()
        return {"dense_grads": {n: g.clone() for n, g in self._dense_grads.items()}}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self._dense_grads = {n: g.to(self.params[n].device)
                             for n, g in state.get("dense_grads", {}).items()}
