"""Bad input: clear errors from the capture, the runtime and the torch.compile backend,
raised from the API call (not from deep inside the compiler)."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from acf.frontends.aten_to_ir import UnsupportedOpError
from acf.frontends.training_step import capture_training_step
from acf.runtime import BindError, RuntimeOptionError, SessionOptions
from torch import nn

from ..frontends.models import MLP
from .harness import FabricTrainer

X, Y = torch.randn(4, 8), torch.tensor([0, 3, 1, 1])


class Cumsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumsum(self.fc(x), dim=1)  # no graph-dialect lowering


def test_unsupported_op_names_aten_op_and_user_line() -> None:
    with pytest.raises(UnsupportedOpError) as info:
        capture_training_step(Cumsum(), (X,), labels=Y)
    msg = str(info.value)
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1)
                if "torch.cumsum(self.fc(x)" in text)
    assert "aten.cumsum" in msg
    assert f"{Path(__file__).name}:{line}:" in msg and "torch.cumsum(self.fc(x), dim=1)" in msg


def test_new_batch_size_is_a_clear_error() -> None:
    fabric = FabricTrainer(MLP(), (X,), Y)
    with pytest.raises(BindError, match=r"input0.*expected shape \[4, 8\], got \[2, 8\]"):
        fabric.step((torch.randn(2, 8),), Y[:2])
    with pytest.raises(ValueError, match="captured for shape .*capture the step again"):
        fabric.step_ir.bind(MLP(), (torch.randn(2, 8),), Y[:2])


def test_new_batch_size_with_torch_compile() -> None:
    """Default torch.compile: the second shape is symbolic -> a clear error naming the fix;
    dynamic=False: one documented recompile per shape, results right."""
    import acf.frontends.backend  # noqa: F401 - registers "acf"

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    auto = torch.compile(model, backend="acf", options={"target": "acf-small"})
    auto(torch.randn(4, 8))
    with pytest.raises(Exception, match=r"dynamic shapes are not supported.*dynamic=False"):
        auto(torch.randn(2, 8))
    torch._dynamo.reset()
    static = torch.compile(model, backend="acf", options={"target": "acf-small"},
                           dynamic=False)
    for b in (4, 2, 3):
        x = torch.randn(b, 8)
        out = static(x)
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
        F.cross_entropy(out, torch.zeros(b, dtype=torch.long)).backward()
    torch._dynamo.reset()


@pytest.mark.parametrize("where", ["input", "mask"])
def test_sparse_layout_tensors_rejected(where: str) -> None:
    model = MLP()
    sparse = X.to_sparse() if where == "input" else torch.ones(16, 8).to_sparse()
    with pytest.raises(ValueError, match=r"sparse_coo tensor is not supported.*to_dense"):
        if where == "input":
            capture_training_step(model, (sparse,), labels=Y)
        else:
            capture_training_step(model, (X,), labels=Y, masks={"fc1.weight": sparse})


def test_sparse_layout_tensors_rejected_by_runtime() -> None:
    fabric = FabricTrainer(MLP(), (X,), Y, masks={"fc1.weight": torch.ones(16, 8)})
    with pytest.raises(BindError, match="layout torch.sparse_csr is not supported"):
        fabric.bind_mask("fc1.weight", torch.ones(16, 8).to_sparse_csr())
    with pytest.raises(BindError, match="layout torch.sparse_coo is not supported"):
        fabric.step((X.to_sparse(),), Y)


@pytest.mark.parametrize("call, pattern", [
    (lambda: capture_training_step(MLP(), (X,), labels=Y, optimizer_options={"lrr": 0.1}),
     r"unknown option\(s\) 'lrr' for 'sgd'; valid: lr, momentum, weight_decay"),
    (lambda: capture_training_step(MLP(), (X,), labels=Y, optimizer="lamb"),
     r"optimizer must be 'sgd', 'adam' or 'adamw'"),
    (lambda: capture_training_step(MLP(), (X,), labels=Y, masks={"fc1.wieght": torch.ones(1)}),
     r"'fc1.wieght' is not a parameter of the model \(parameters: fc1.weight"),
    (lambda: capture_training_step(MLP(), (X,), labels=Y, masks={"fc1.weight": torch.ones(3)}),
     r"mask of 'fc1.weight' has shape \[3\], the parameter \[16, 8\]"),
    (lambda: SessionOptions(grad_variants=("sparse",)), r"grad_variants: unknown 'sparse'"),
    (lambda: SessionOptions(mode="fast"), r"mode must be 'batched' or 'stepped'"),
], ids=["optimizer-option", "optimizer", "mask-name", "mask-shape", "grad-variant", "mode"])
def test_wrong_option_names(call, pattern) -> None:
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    # raised from argument checking, not from deep inside tracing or codegen
    frames = traceback.extract_tb(info.value.__traceback__)
    assert len(frames) <= 4, [f.name for f in frames]
    assert isinstance(info.value, (ValueError, RuntimeOptionError))


def test_unknown_backend_option() -> None:
    import acf.frontends.backend  # noqa: F401

    with pytest.raises(Exception, match=r"unknown option\(s\) 'targett'; valid options: "):
        torch.compile(nn.Linear(8, 4), backend="acf", options={"targett": "acf-small"})(X)
    torch._dynamo.reset()


def test_unknown_mask_parameter_in_runtime() -> None:
    fabric = FabricTrainer(MLP(), (X,), Y, masks={"fc1.weight": torch.ones(16, 8)})
    with pytest.raises(BindError, match=r"'fc2.weight' is not a masked parameter"):
        fabric.bind_mask("fc2.weight", torch.ones(4, 16))
