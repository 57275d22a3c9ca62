"""Forms the frontend takes (label smoothing, integer powers, ceil-mode pooling that adds no
window), compared with eager PyTorch; and the ones it refuses, each with an
``UnsupportedOpError`` that names the user's line instead of an internal error."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
import torch.nn.functional as F
from acf.frontends.aten_to_ir import UnsupportedOpError
from acf.frontends.training_step import capture_training_step
from torch import nn

from .models import MLP
from .test_training_step import check_step


def _line_of(marker: str, obj: object) -> int:
    lines, start = inspect.getsourcelines(obj)
    return start + next(i for i, text in enumerate(lines) if marker in text)


# --- label smoothing ------------------------------------------------------------------------
def _smoothed(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, labels, label_smoothing=0.1)


def test_cross_entropy_with_label_smoothing_matches_eager() -> None:
    """Its decomposition masks ``labels == ignore_index``, refused as a comparison of an
    integer tensor: labels are classes (the runtime refuses any other), so the mask is a
    constant."""
    torch.manual_seed(0)
    check_step(MLP(), (torch.randn(4, 8),), torch.tensor([0, 3, 1, 1]), loss_fn=_smoothed)


class SmoothedLoss(nn.Module):
    """A model returning its loss (labels a graph input, as HF-style models take them)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.fc(x), labels, label_smoothing=0.2)


def test_label_smoothing_under_torch_compile_matches_eager() -> None:
    """The backward divides by the count of labels, an int64 the forward saved."""
    import acf.frontends.backend  # noqa: F401  (registers backend="acf")

    torch.manual_seed(1)
    model = SmoothedLoss()
    fabric = copy.deepcopy(model)
    x, labels = torch.randn(4, 8), torch.tensor([1, 0, 2, 3])
    torch._dynamo.reset()
    got = torch.compile(fabric, backend="acf", dynamic=False)(x, labels)
    got.backward()
    ref = model(x, labels)
    ref.backward()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fabric.fc.weight.grad, model.fc.weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(fabric.fc.bias.grad, model.fc.bias.grad, rtol=1e-4, atol=1e-6)


def test_cross_entropy_of_one_unbatched_sample_is_refused_at_the_users_line() -> None:
    """An unbatched (C,) input has its class count as its only dimension (reading shape[1]
    was an IndexError traceback); one label that is not a row of labels is then refused,
    naming the user's line."""
    import acf.frontends.backend  # noqa: F401  (registers backend="acf")

    class OneSample(SmoothedLoss):
        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(self.fc(x), labels, label_smoothing=0.2)  # one sample

    torch._dynamo.reset()
    compiled = torch.compile(OneSample(), backend="acf", dynamic=False)
    with pytest.raises(Exception) as info:
        compiled(torch.randn(8), torch.tensor(2))
    line = _line_of("# one sample", OneSample.forward)
    assert f"{__file__}:{line}:" in str(info.value)
    assert "targets that are not one label per row" in str(info.value)


# --- integer powers, rsqrt --------------------------------------------------------------
class Powers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return torch.rsqrt(h ** 2 + 1) + h ** 3 + (h + 2) ** -2 + h ** 4 + h ** 5 * 0.1


def test_rsqrt_and_integer_powers_match_eager() -> None:
    """rsqrt's backward takes its result to the power 3: refused ('exponent 3.0')."""
    torch.manual_seed(2)
    check_step(Powers(), (torch.randn(4, 8) * 0.5,), torch.tensor([0, 1, 2, 3]))


# --- pooling --------------------------------------------------------------------------------
class CeilPool(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * ((size + 1) // 2) ** 2, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.max_pool2d(self.conv(x), 2, ceil_mode=True).flatten(1))  # pool-here


def test_ceil_mode_max_pooling_that_adds_no_window_trains() -> None:
    """On 8x8 ceil mode adds no window: the forward was taken, its backward refused."""
    torch.manual_seed(3)
    check_step(CeilPool(8), (torch.randn(2, 3, 8, 8),), torch.tensor([1, 3]))


def test_ceil_mode_max_pooling_that_adds_a_window_is_refused() -> None:
    with pytest.raises(UnsupportedOpError, match="ceil-mode max pooling that adds a window") as err:
        capture_training_step(CeilPool(7), (torch.randn(2, 3, 7, 7),), labels=torch.tensor([1, 3]))
    assert err.value.loc.line == _line_of("pool-here", CeilPool.forward)


# --- integer tensors (token ids) ---------------------------------------------------------------
class Ids(nn.Module):
    def __init__(self, form: str) -> None:
        super().__init__()
        self.e, self.fc, self.form = nn.Embedding(11, 8), nn.Linear(8, 4), form

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        if self.form == "clamp":
            h = self.e(t.clamp(max=5))  # ids-clamp
        elif self.form == "index":
            h = self.e(t[:, [4, 3, 2, 1, 0]])  # ids-index
        else:  # "maximum": float activations against integer ids
            h = torch.maximum(self.e(t), t[..., None])  # ids-maximum
        return self.fc(h.mean(1))


@pytest.mark.parametrize("form, op, reason", [
    ("clamp", "aten.clamp.default", "clamp of an integer tensor"),
    ("index", "aten.index.Tensor", "index of an integer tensor"),
    ("maximum", "aten.maximum.default", "element types differ"),
])
def test_integer_ids_in_arithmetic_are_refused_at_the_users_line(form, op, reason) -> None:
    """clamp and maximum ended in a ShapeError traceback, the index in an internal
    verifier error: the fabric reads integer step inputs only one-hot."""
    with pytest.raises(UnsupportedOpError, match=reason) as err:
        capture_training_step(Ids(form), (torch.randint(0, 11, (3, 5)),),
                              labels=torch.tensor([0, 1, 2]))
    assert err.value.op == op
    assert err.value.loc.line == _line_of(f"ids-{form}", Ids.forward)
    assert f"ids-{form}" in str(err.value)  # the source line is quoted


class ReversedPositions(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pos, self.fc = nn.Embedding(5, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x + self.pos(torch.arange(5)[[4, 3, 2, 1, 0]])).mean(1))


def test_constant_positions_indexed_with_a_list_are_folded() -> None:
    """An integer constant indexed with constants is evaluated on the host (the one-hot
    GEMM of the index converter takes floats: an internal verifier error)."""
    torch.manual_seed(4)
    check_step(ReversedPositions(), (torch.randn(3, 5, 8),), torch.tensor([0, 1, 2]))


def test_a_float64_model_under_torch_compile_is_told_to_be_fp32() -> None:
    import acf.frontends.backend  # noqa: F401

    torch._dynamo.reset()
    model = nn.Linear(8, 4).double()
    with pytest.raises(Exception) as err:
        torch.compile(model, backend="acf", dynamic=False)(torch.randn(2, 8).double())  # f64
    text = str(err.value)
    assert "unsupported dtype 'torch.float64'" in text and "model.float()" in text
    line = _line_of("# f64", test_a_float64_model_under_torch_compile_is_told_to_be_fp32)
    assert f"{__file__}:{line}:" in text
