"""Bad input: clear errors from the capture, the runtime and the torch.compile backend,
raised from the API call (not from deep inside the compiler)."""

from __future__ import annotations

import inspect
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
    with pytest.raises(BindError, match=r"input0.*expected shape \[4, 8\], got \[2, 8\]; .*"
                                        r"capture the step again"):
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


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 4), nn.Linear(8, 4)  # b is never used

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_a_parameter_without_gradient_keeps_its_value(optimizer: str) -> None:
    """torch's optimizers skip a parameter whose .grad stays None (weight decay included);
    the captured step used to decay it."""
    torch.manual_seed(3)
    model = _Unused()
    step = capture_training_step(model, (X,), labels=Y, optimizer=optimizer,
                                 optimizer_options={"lr": 0.1, "weight_decay": 0.1})
    from acf.frontends.training_step import Binding

    assert "b.weight" not in step.settings and "a.weight" in step.settings
    # not a result of the step: the runtime keeps its value, as torch does
    assert Binding("param", "b.weight") not in step.results
    assert Binding("param", "a.weight") in step.results


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: torch.optim.SGD(p, lr=0.1, maximize=True), r"SGD\(maximize=...\) is not supported"),
    (lambda p: torch.optim.Adam(p, lr=0.1, amsgrad=True), r"Adam\(amsgrad=...\) is not supported"),
])
def test_optimizer_settings_the_step_would_ignore_are_refused(make, message) -> None:
    model = MLP()
    with pytest.raises(ValueError, match=message):
        capture_training_step(model, (X,), labels=Y, optimizer=make(model.parameters()))


def test_adam_with_decoupled_weight_decay_is_adamw() -> None:
    model = MLP()
    opt = torch.optim.Adam(model.parameters(), lr=0.1, weight_decay=0.1, decoupled_weight_decay=True)
    assert capture_training_step(model, (X,), labels=Y, optimizer=opt).optimizer.kind == "adamw"


def test_named_optimizers_default_to_torchs_learning_rate() -> None:
    from acf.frontends.training_step import OptimizerConfig

    for name, cls in (("sgd", torch.optim.SGD), ("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        assert OptimizerConfig.make(name, None).lr == cls([torch.zeros(1, requires_grad=True)]).defaults["lr"]


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * _SCALE  # a tensor made outside the model


_SCALE = torch.tensor([1.0, 2.0, 3.0, 4.0])


@pytest.mark.parametrize(("capture", "message"), [
    (lambda: capture_training_step(MLP().double(), (X,), labels=Y),
     "parameter 'fc1.weight' is torch.float64; the capture takes fp32"),
    (lambda: capture_training_step(MLP(), (torch.randn(0, 8),), labels=Y[:0]),
     r"example_inputs\[0\] is empty"),
    (lambda: capture_training_step(nn.LSTM(8, 4, num_layers=2, dropout=0.5),
                                   (torch.randn(3, 2, 8),), loss_fn=lambda out: out[0].sum()),
     r"LSTM\(dropout=0.5\) drops out between its layers"),
    (lambda: capture_training_step(_Scaled(), (X,), labels=Y),
     "neither a parameter, a buffer nor an input"),
    (lambda: capture_training_step(nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4, momentum=None)),
                                   (X,), labels=Y),
     r"BatchNorm1d\(momentum=None\) keeps a cumulative average"),
], ids=["float64", "empty", "lstm-dropout", "global-tensor", "bn-cumulative"])
def test_models_the_capture_cannot_follow_are_clear_errors(capture, message) -> None:
    """float64 models and empty batches used to fail inside (KeyError, ZeroDivisionError),
    an LSTM's inter-layer dropout was silently left out, and a global tensor was an
    'internal error'."""
    with pytest.raises(ValueError, match=message):
        capture()


def test_a_layer_the_kernels_refuse_names_the_users_line_not_the_ir() -> None:
    """A softmax row wider than acf-small's scratchpad has no kernel: the session's compile
    error names the capture's source line (it named a line of the session's own IR text,
    '<step>:15:39')."""
    from acf.runtime import Session

    x = torch.randn(2, 4)
    model = nn.Sequential(nn.Linear(4, 20000), nn.Softmax(dim=1), nn.Linear(20000, 2))
    step = capture_training_step(model, (x,), labels=torch.tensor([1, 0]))
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    with pytest.raises(Exception) as info:
        Session("acf-small").load(step.module)
    text = str(info.value)
    assert text.startswith(f"{__file__}:{line}:") and "a row of 20000 f32" in text
    assert "<step>" not in text


def test_unsupported_op_in_a_sequential_under_torch_compile_names_the_call() -> None:
    """An nn.Sequential's nodes carry no user frame: the error names the user's call that set
    off the compile (it said '<unknown>')."""
    import acf.frontends.backend  # noqa: F401 - registers "acf"

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveMaxPool2d(3), nn.Flatten())
    compiled = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)
    with pytest.raises(Exception) as info:
        compiled(torch.randn(2, 3, 4, 4))
    line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    assert f"{__file__}:{line}:1: error: unsupported ATen op 'aten.adaptive_max_pool2d" in str(info.value)
