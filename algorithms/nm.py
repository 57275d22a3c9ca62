"""N:M fine-grained structured sparsity: in every group of M consecutive weights along the
input dimension exactly N are non-zero. For a Linear the groups run along each row; for a
Conv2d along the input channels at each kernel tap (Zhou et al. 2021, as NVIDIA's ASP), the
reduction dimension of the per-tap GEMMs the hardware runs (``structure.as_taps``).

``nm``: one-shot magnitude N:M at construction, fixed afterwards.
``nm-srste``: Zhou et al. 2021. The forward pass uses the N:M-masked weights, the gradient
reaches the dense weights straight through (STE), refined by ``lambda_w * (1 - M) * W``:
``W <- W - lr * (g(W * M) + lambda_w * (1 - M) * W)``. The mask is recomputed from the dense
weights after every step, so every step needs the dense weight gradient. The dense weights
are taken from the parameter only after an optimizer step: when AMP's ``GradScaler`` skips
one, ``step()`` keeps the dense weights and the mask as they were.

Neither follows a schedule: ``delta_t``, ``t_start`` and ``t_end`` are accepted (callers pass
them to every algorithm) and ignored, as ``ignored_options`` lists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from acf.algorithms.base import SparsityAlgorithm, is_count
from acf.algorithms.structure import as_taps, nm_mask


class NM(SparsityAlgorithm):
    name = "nm"
    updates_masks = False
    schedule_options = ()

    def __init__(self, model, optimizer, density=None, *, n: int = 2, m: int = 4, **kwargs):
        if not (is_count(n, 0) and is_count(m, 1)) or n > m:
            raise ValueError(f"N:M needs integers 0 <= N <= M and M >= 1, got N={n!r}, M={m!r}")
        n, m = int(n), int(m)
        if isinstance(density, dict):  # the algorithms' option errors are all ValueError
            raise ValueError(  # noqa: TRY004
                f"{self.name}: every layer's density is N/M = {n}/{m}; a per-layer density "
                "does not apply")
        if density is not None and abs(float(density) - n / m) > 1e-9:
            raise ValueError(f"{self.name}: density is fixed at N/M = {n}/{m}; got {density}")
        if kwargs.get("distribution", "uniform") != "uniform":
            raise ValueError(f"{self.name}: every layer's density is N/M; distribution="
                             f"{kwargs['distribution']!r} does not apply")
        self.n, self.m = n, m
        kwargs.pop("distribution", None)
        super().__init__(model, optimizer, n / m, **kwargs)

    def _validate(self) -> None:
        """Every layer must hold whole groups of M along its input dimension: a partial
        group could not have exactly N of M (a first conv of 3 input channels, say)."""
        super()._validate()
        for name, p in self.params.items():
            if p.dim() < 2:
                raise ValueError(f"{self.name}: '{name}' is {p.dim()}-D; N:M groups run along "
                                 "a weight matrix's input dimension")
            k = as_taps(p).shape[-1]
            what = "input channels per kernel tap" if p.dim() == 4 else "inputs per output"
            if k % self.m:
                raise ValueError(f"{self.name}: '{name}' has {k} {what}, not a multiple "
                                 f"of M={self.m}, so a group would be partial; leave it out "
                                 "(params=[...], or exclude_first_conv) or pick M dividing it")

    def init_masks(self) -> dict[str, torch.Tensor]:
        return {n: nm_mask(p.detach().abs(), self.n, self.m) for n, p in self.params.items()}


class NMSRSTE(NM):
    name = "nm-srste"
    updates_masks = True
    masks_weights = False  # the dense weights live on; only the forward sees W * M
    zero_grown = False
    update_needs_optimizer_step = True  # the dense weights come out of the optimizer step

    def __init__(self, *args, lambda_w: float = 2e-4, **kwargs):
        if lambda_w < 0:
            raise ValueError(f"lambda_w must be >= 0, got {lambda_w}")
        self.lambda_w = float(lambda_w)
        self.dense: dict[str, torch.Tensor] = {}
        super().__init__(*args, **kwargs)

    def _remask(self) -> dict[str, torch.Tensor]:
        masks = {}
        for name, p in self.params.items():
            self.dense[name] = p.detach().clone()
            masks[name] = nm_mask(self.dense[name].abs(), self.n, self.m)
            p.mul_(masks[name])  # the next forward sees W * M
        return masks

    def init_masks(self) -> dict[str, torch.Tensor]:
        return self._remask()

    def is_update_step(self, step: int) -> bool:
        return step > 0

    def needs_dense_grad(self, step: int) -> bool:
        return True

    def masks_grads(self, step: int) -> bool:
        return False

    @torch.no_grad()
    def before_optimizer_step(self) -> None:
        for name, p in self.params.items():
            dense = self.dense[name]
            if dense.device != p.device or dense.dtype != p.dtype:  # the model was moved
                dense = self.dense[name] = dense.to(device=p.device, dtype=p.dtype)
            if p.grad is not None:
                p.grad.add_(dense * ~self.mask(name), alpha=self.lambda_w)
            p.copy_(dense)  # the optimizer updates the dense weights

    def update(self, step: int) -> dict[str, torch.Tensor]:
        return self._remask()

    def _extra_state(self) -> dict[str, Any]:
        return {"dense": {n: d.clone() for n, d in self.dense.items()}}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.dense = {n: state["dense"][n].to(device=p.device, dtype=p.dtype)
                      for n, p in self.params.items()}
