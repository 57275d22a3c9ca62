"""Density hints: the frontend records each example mask's density on its mask argument,
the runtime puts it (or the density it measured) on the masked parameter it compiles, and
the kernels' cost models read it (``KernelContext.operand_density``)."""

from __future__ import annotations

import torch
from acf.frontends.training_step import capture_training_step
from acf.runtime.variants import mark_densities
from torch import nn


def _step(density: float):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4))
    masks = {n: torch.rand(p.shape) < density for n, p in model.named_parameters() if p.dim() >= 2}
    x, y = torch.randn(2, 3, 6, 6), torch.randint(0, 4, (2,))
    return capture_training_step(model, (x,), labels=y, masks=masks), masks


def _attrs(func) -> dict[str, dict]:
    return {v.name_hint: a for v, a in zip(func.arguments, func.body.arg_attributes)}


def test_capture_records_each_mask_density() -> None:
    step, masks = _step(0.25)
    attrs = _attrs(step.func)
    for name, m in masks.items():
        assert attrs[f"mask.{name}"]["density"] == round(float(m.float().mean()), 4)
        assert "density" not in attrs[name]  # the parameter itself: set when compiled


def test_compile_hint_is_the_measured_density_else_the_masks() -> None:
    step, _ = _step(0.25)
    func = step.func
    mark_densities(func, {"0.weight": 0.5})  # measured for one parameter only
    attrs = _attrs(func)
    assert attrs["0.weight"]["density"] == 0.5
    assert attrs["3.weight"]["density"] == attrs["mask.3.weight"]["density"]
