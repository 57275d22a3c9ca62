"""Block sparsity: whole ``br x bc`` tiles of a weight's GEMM operand are kept or pruned,
ranked by their mean absolute weight (the L1 norm per element, so that smaller edge tiles
compete fairly with full ones). A tile spans ``br`` output rows and ``bc`` inputs of one
GEMM: for a Conv2d, ``bc`` input channels of one kernel tap (``structure.as_taps``).
Tiles are kept until the layer's *weight* count is nearest ``density * numel``, so smaller
edge tiles do not push the density off target.

``schedule="gmp"`` (default) prunes tiles gradually on Zhu & Gupta's cubic schedule, ranking
tiles by the trained weights; ``schedule="static"`` prunes once, at construction.
"""

from __future__ import annotations

import torch
from acf.algorithms.base import is_count
from acf.algorithms.gmp import GradualMagnitude
from acf.algorithms.structure import expand_groups, group_scores, group_sizes, keep_by_size

SCHEDULES = ("gmp", "static")


class GroupMagnitude(GradualMagnitude):
    """Magnitude pruning of rectangular ``rows x cols`` groups (block and vector)."""

    def __init__(self, *args, group: tuple[int, int], schedule: str = "gmp", **kwargs):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        self.group = group_shape(group, "group")
        self.schedule = schedule
        if schedule == "static":
            self.schedule_options = ()  # pruned once, at construction
        super().__init__(*args, **kwargs)

    def sparsity_at(self, name: str, step: int) -> float:
        if self.schedule == "static":
            return 1.0 - self.densities[name]
        return super().sparsity_at(name, step)

    def nnz_at(self, name: str, step: int) -> int:
        if self.schedule == "static":
            return self.nnz_target(name)
        return super().nnz_at(name, step)

    def is_update_step(self, step: int) -> bool:
        return self.schedule == "gmp" and super().is_update_step(step)

    def _prune(self, step: int) -> dict[str, torch.Tensor]:
        br, bc = self.group
        masks = {}
        for n, p in self.params.items():
            scores = group_scores(p.detach().abs(), br, bc)
            alive = scores.numel()
            if n in self._masks:  # pruned groups stay pruned
                live = group_scores(self.mask(n).float(), br, bc) > 0
                scores = scores.masked_fill(~live, -1.0)
                alive = int(live.sum())
            density = 1.0 - self.sparsity_at(n, step)
            # at least one group while any density is asked for: a layer smaller than a few
            # groups would otherwise round to none and be pruned whole
            keep = keep_by_size(scores, group_sizes(p.shape, br, bc),
                                self.nnz_at(n, step), alive, density > 0)
            masks[n] = expand_groups(keep, br, bc, p.shape)
        return masks


def group_shape(block, option: str = "block") -> tuple[int, int]:
    """``(rows, cols)`` of a group from one integer (a square) or two positive integers."""
    pair = tuple(block) if isinstance(block, (tuple, list)) else (block, block)
    if len(pair) != 2 or not all(is_count(v, 1) for v in pair):
        raise ValueError(f"{option} must be a positive integer or two of them, got {block!r}")
    return int(pair[0]), int(pair[1])


class Block(GroupMagnitude):
    """Block sparsity; ``block`` is ``(rows, cols)`` or one integer for a square block."""

    name = "block"

    def __init__(self, *args, block: int | tuple[int, int] = (4, 4), **kwargs):
        super().__init__(*args, group=group_shape(block), **kwargs)
