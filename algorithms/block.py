"""Block sparsity: whole ``br x bc`` tiles of the ``(out, in*kh*kw)`` weight matrix are kept
or pruned, ranked by their mean absolute weight (the L1 norm per element, so that smaller
edge tiles compete fairly with full ones).

``schedule="gmp"`` (default) prunes tiles gradually on Zhu & Gupta's cubic schedule, ranking
tiles by the trained weights; ``schedule="static"`` prunes once, at construction.
"""

from __future__ import annotations

import torch
from acf.algorithms.gmp import GradualMagnitude
from acf.algorithms.structure import expand_groups, group_scores, topk_mask

SCHEDULES = ("gmp", "static")


class GroupMagnitude(GradualMagnitude):
    """Magnitude pruning of rectangular ``rows x cols`` groups (block and vector)."""

    def __init__(self, *args, group: tuple[int, int], schedule: str = "gmp", **kwargs):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        if len(group) != 2 or min(group) < 1:
            raise ValueError(f"group shape must be two positive integers, got {group}")
        self.group = (int(group[0]), int(group[1]))
        self.schedule = schedule
        if schedule == "static":
            kwargs.setdefault("t_end", 0)
        super().__init__(*args, **kwargs)

    def sparsity_at(self, name: str, step: int) -> float:
        if self.schedule == "static":
            return 1.0 - self.densities[name]
        return super().sparsity_at(name, step)

    def is_update_step(self, step: int) -> bool:
        return self.schedule == "gmp" and super().is_update_step(step)

    def _prune(self, step: int) -> dict[str, torch.Tensor]:
        br, bc = self.group
        masks = {}
        for n, p in self.params.items():
            scores = group_scores(p.detach().abs(), br, bc)
            if n in self.masks:  # pruned groups stay pruned
                alive = group_scores(self.masks[n].float(), br, bc) > 0
                scores = scores.masked_fill(~alive, -1.0)
            density = 1.0 - self.sparsity_at(n, step)
            # at least one group while any density is asked for: a layer smaller than a few
            # groups would otherwise round to none and be pruned whole
            keep = max(1 if density > 0 else 0, round(density * scores.numel()))
            masks[n] = expand_groups(topk_mask(scores, keep), br, bc, p.shape)
        return masks


class Block(GroupMagnitude):
    name = "block"

    def __init__(self, *args, block: tuple[int, int] = (4, 4), **kwargs):
        super().__init__(*args, group=tuple(block), **kwargs)
