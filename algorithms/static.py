"""Static sparsity: a mask fixed at construction, random or by weight magnitude. The schedule
options (``delta_t``, ``t_start``, ``t_end``) are accepted and ignored (``ignored_options``)."""

from __future__ import annotations

import torch
from acf.algorithms.base import SparsityAlgorithm
from acf.algorithms.structure import random_scores, topk_mask


class StaticRandom(SparsityAlgorithm):
    """Uniformly random mask with exactly ``round(density * numel)`` active weights per layer."""

    name = "static-random"
    updates_masks = False
    schedule_options = ()

    def init_masks(self) -> dict[str, torch.Tensor]:
        return {
            n: topk_mask(random_scores(p, self.generator), self.nnz_target(n))
            for n, p in self.params.items()
        }


class StaticMagnitude(SparsityAlgorithm):
    """One-shot magnitude pruning of the initial weights (largest ``|w|`` kept)."""

    name = "static-magnitude"
    updates_masks = False
    schedule_options = ()

    def init_masks(self) -> dict[str, torch.Tensor]:
        return {n: topk_mask(p.detach().abs(), self.nnz_target(n)) for n, p in self.params.items()}
