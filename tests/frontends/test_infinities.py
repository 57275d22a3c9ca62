"""Infinities the frontend must carry as torch does: ``where``/``masked_fill`` with -inf,
attention rows whose every key is masked (``_safe_softmax``), softplus-like activations of
large inputs; and the masks built from literals (``triu``/``tril``, ``is_causal``).

Each model's training step is captured, interpreted with the graph dialect's interpreter
(whose ``relu_backward`` is the select the fabric's ``relu_bwd`` is) and compared with eager
PyTorch; one runs on the emulator through ``torch.compile``."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from acf.compiler.interp import run_func
from acf.frontends.training_step import Binding, capture_training_step
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .test_training_step import check_step

B, T, D = 2, 4, 8
NEG_INF = float("-inf")


class MaskedScores(nn.Module):
    """Attention scores masked to -inf from a causal mask built from ``arange``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.q, self.fc, self.mode = nn.Linear(D, D), nn.Linear(D, 3), mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        i = torch.arange(T)
        keep = i[None, :] <= i[:, None]
        scores = self.q(x) @ x.transpose(1, 2)
        if self.mode == "where":
            scores = torch.where(keep, scores, NEG_INF)
        elif self.mode == "fill-twice":  # the second fill meets positions already at -inf
            scores = scores.masked_fill(~keep, NEG_INF).masked_fill(~keep, NEG_INF)
        else:  # "triu": the mask from triu of a literal, folded on the host
            scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), NEG_INF)
        return self.fc((scores.softmax(-1) @ x).mean(1))


@pytest.mark.parametrize("mode", ["where", "fill-twice", "triu"])
def test_scores_masked_to_minus_infinity_match_eager(mode) -> None:
    """where(mask, x, -inf) gave NaN everywhere: the select computed b - relu_backward(b, c),
    -inf - -inf; triu of a literal was not folded (no lowering)."""
    torch.manual_seed(0)
    check_step(MaskedScores(mode), (torch.randn(B, T, D),), torch.tensor([0, 2]))


class Attention(nn.Module):
    def __init__(self, mask: str) -> None:
        super().__init__()
        self.qkv, self.fc, self.mask = nn.Linear(D, 3 * D), nn.Linear(D, 3), mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).view(B, T, 3, 2, D // 2).permute(2, 0, 3, 1, 4)
        if self.mask == "causal":
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            keep = torch.ones(T, T, dtype=torch.bool)
            keep[0, :] = False  # query 0 may attend to nothing
            keep[2, 1] = False
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        return self.fc(y.transpose(1, 2).reshape(B, T, D).mean(1))


def test_attention_with_a_fully_masked_query_row_is_zero_there() -> None:
    """torch's math attention uses _safe_softmax (0 for an all -inf row): it was a plain
    softmax, NaN in that row and then everywhere."""
    torch.manual_seed(1)
    step = check_step(Attention("row"), (torch.randn(B, T, D),), torch.tensor([1, 2]))
    assert any(op.name == "graph.reduce_max" for op in step.func.body.ops)


def test_causal_attention_matches_eager_and_keeps_the_plain_softmax() -> None:
    """No row of a causal mask is all -inf, and none of an unmasked attention's: neither
    pays for the safe softmax's row test."""
    torch.manual_seed(2)
    step = check_step(Attention("causal"), (torch.randn(B, T, D),), torch.tensor([0, 1]))
    assert not any(op.name == "graph.reduce_max" for op in step.func.body.ops)


def test_a_fully_masked_query_row_on_the_emulator() -> None:
    import acf.frontends.backend  # noqa: F401  (registers backend="acf")

    torch.manual_seed(3)
    x, y = torch.randn(B, T, D), torch.tensor([2, 0])
    model = Attention("row")
    fabric = copy.deepcopy(model)
    with sdpa_kernel(SDPBackend.MATH):
        ref = F.cross_entropy(model(x), y)
        ref.backward()
    torch._dynamo.reset()
    got = F.cross_entropy(torch.compile(fabric, backend="acf", dynamic=False)(x), y)
    got.backward()
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(model.named_parameters(), fabric.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)


# --- activations over their whole range ---------------------------------------------------
class Elementwise(nn.Module):
    """``fn`` of a parameter holding the grid: its gradient is fn' at each grid point."""

    def __init__(self, fn, grid: torch.Tensor) -> None:
        super().__init__()
        self.p, self.fn = nn.Parameter(grid.clone()), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.p * x)


def _weighted_sum(out: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (out * w).sum()


def assert_elementwise_matches_eager(fn, grid: torch.Tensor) -> None:
    """fn and its derivative on every grid point, infinities and NaNs where torch has them
    (to 1e-5 relative; absolutely only below the smallest normal float, where torch's exp
    and numpy's round denormals differently)."""
    model, x = Elementwise(fn, grid), torch.ones_like(grid)
    w = torch.linspace(0.5, 1.5, grid.numel())
    step = capture_training_step(model, (x,), labels=w, loss_fn=_weighted_sum)
    got = step.unpack(run_func(step.func, step.bind(model, (x,), w)))
    out = model(x)
    _weighted_sum(out, w).backward()
    for what, value, ref in (("forward", got[Binding("output")], out.detach()),
                             ("gradient", got[Binding("grad", "p")], model.p.grad)):
        torch.testing.assert_close(torch.from_numpy(np.asarray(value)), ref, rtol=1e-5,
                                   atol=1e-37, equal_nan=True, msg=lambda m, w=what: f"{w}: {m}")


INF = float("inf")
GRID = torch.cat([torch.tensor([-INF, INF, -1e-8, 0.0, 1e-8, 1e-3, 88.0, 89.0, 1e3, 1e4]),
                  torch.linspace(-100.0, 100.0, 201)])


@pytest.mark.parametrize("fn", [
    F.mish,
    lambda h: torch.log1p(torch.exp(h)),  # a hand-written softplus: inf from x ~ 88.7 on
    F.softplus,
    lambda h: F.softplus(h, beta=2.0, threshold=5.0),
    F.logsigmoid,
    F.hardswish,  # its gradient's ties at -3 and 3 take the outer branches, as torch's
    lambda h: torch.where(h > 0, h, NEG_INF),
], ids=["mish", "log1p-exp", "softplus", "softplus-beta", "logsigmoid", "hardswish", "where"])
def test_activation_matches_eager_over_its_range(fn) -> None:
    """mish and log1p(exp(x)) were NaN above x ~ 88.7 (exp = inf: log1p's ratio was
    inf/inf, its select inf - inf); hardswish's gradient took the middle branch at +-3."""
    assert_elementwise_matches_eager(fn, GRID)


def test_log1p_matches_eager_from_tiny_to_huge() -> None:
    grid = torch.tensor([0.0, 1e-30, 1e-8, 6e-8, 1e-3, 0.5, 1.0, 7.0, 1e6, 2.0 ** 24 - 1,
                         2.0 ** 24, 2.0 ** 24 + 2, 1e20, 1e36, 3e38, INF, -0.5, -1.0])
    assert_elementwise_matches_eager(torch.log1p, grid)
