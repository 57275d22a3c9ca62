"""Gradual magnitude pruning (Zhu & Gupta 2017).

Sparsity follows the cubic schedule ``s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n dt))^3``
for ``t = t0, t0 + dt, ..., t0 + n dt`` (``t0 = t_start``, ``n dt = t_end - t_start``,
``dt = delta_t``); each layer's final sparsity ``s_f`` is ``1 - density`` of that layer and
``s_i`` (option ``initial_sparsity``, default 0) the same for every layer. As in Zhu & Gupta,
the model is dense before ``t0``; pruning starts at ``t0`` with ``s_i``, and from ``t_end`` on
the sparsity is ``s_f`` (so ``t_end == t_start`` prunes once, to ``s_f``, at ``t_start``). At
each update the smallest-magnitude active weights are removed; pruned weights never return
(an update only ever chooses among the active positions). The final count of every layer is
``nnz_target``, the count the other algorithms use; intermediate counts are the schedule's
``round((1 - s_t) * numel)``, never below the final one.
"""

from __future__ import annotations

import torch
from acf.algorithms.base import SparsityAlgorithm
from acf.algorithms.structure import topk_mask


class GradualMagnitude(SparsityAlgorithm):
    name = "gmp"

    def __init__(self, *args, initial_sparsity: float = 0.0, **kwargs):
        if not 0.0 <= initial_sparsity < 1.0:
            raise ValueError(f"initial_sparsity must be in [0, 1), got {initial_sparsity}")
        self.initial_sparsity = float(initial_sparsity)
        super().__init__(*args, **kwargs)

    def _validate(self) -> None:
        if self.t_end is None and "t_end" in self.schedule_options:
            raise ValueError(f"{self.name} needs t_end (the step at which pruning ends)")
        for n, d in self.densities.items():
            if 1.0 - d < self.initial_sparsity:
                raise ValueError(
                    f"{n}: final sparsity {1 - d:.3f} is below initial_sparsity "
                    f"{self.initial_sparsity}"
                )

    def sparsity_at(self, name: str, step: int) -> float:
        """The schedule's sparsity for ``name`` at the last update step <= ``step``."""
        s_i, s_f = self.initial_sparsity, 1.0 - self.densities[name]
        if step >= self.t_end:  # checked first: t_end == t_start is one-shot pruning to s_f
            return s_f
        if step < self.t_start:
            return 0.0
        span = self.t_end - self.t_start
        last = self.t_start + (step - self.t_start) // self.delta_t * self.delta_t
        return s_f + (s_i - s_f) * (1.0 - (last - self.t_start) / span) ** 3

    def is_update_step(self, step: int) -> bool:
        return super().is_update_step(step) or (step == self.t_end and step > self.t_start)

    def nnz_at(self, name: str, step: int) -> int:
        """Active weights of ``name`` the schedule asks for at ``step``."""
        final = self.nnz_target(name)
        if step >= self.t_end:  # computed from 1 - s_f, the count could miss nnz_target by one
            return final
        count = round((1.0 - self.sparsity_at(name, step)) * self.params[name].numel())
        return max(count, final)

    def _prune(self, step: int) -> dict[str, torch.Tensor]:
        masks = {}
        for n, p in self.params.items():
            score = p.detach().abs()
            k = self.nnz_at(n, step)
            if n in self._masks:
                mask = self.mask(n)
                score = score.masked_fill(~mask, -1.0)
                k = min(k, int(mask.sum()))  # monotone, even when step_count is off
            masks[n] = topk_mask(score, k)
        return masks

    def init_masks(self) -> dict[str, torch.Tensor]:
        return self._prune(0)

    def update(self, step: int) -> dict[str, torch.Tensor]:
        return self._prune(step)
