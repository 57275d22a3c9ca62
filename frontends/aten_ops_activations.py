"""Converters of core-ATen activations (forward and backward).

Sigmoid, tanh, exp, log and abs are vector-unit functions; everything else is a composition
of graph-dialect ops, each documented with how exactly it reproduces torch's CPU formula.
Two building blocks recur:

* a select by sign: ``relu_backward(g, z)`` is ``g`` where ``z > 0`` and 0 elsewhere, and
  ``z = a - b`` is > 0 exactly when ``a > b`` (a float difference has the sign of the
  comparison), so ``relu_backward(g, a - b)`` is "g where a > b"; its complement selects
  with the 0/1 mask ``1 - relu_backward(1, z)``, and ``FuncBuilder.select_positive`` is the
  two-way select (exact for infinite branches: the side not taken adds an exact 0);
* ``log1p`` (softplus, mish): ``log(u) * (x / (u - 1))`` with ``u = 1 + x``, ``x`` where
  ``u == 1`` (Goldberg's formula: accurate to a few ulps where ``log(1 + x)`` would lose
  every digit of a tiny x) and ``log(u)`` for x above 2^24 (inf included).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import fx

from ..compiler.ir import Value
from .aten_ops_core import _broadcast
from .aten_to_ir import ConvertContext, converter

aten = torch.ops.aten


def _arg(node: fx.Node, i: int, name: str, default: float) -> float:
    return float(node.args[i] if len(node.args) > i else node.kwargs.get(name, default))


def _op(ctx: ConvertContext, name: str, *xs: Value) -> Value:
    return ctx.emit(f"graph.{name}", list(xs))


@converter(aten.sigmoid.default)
def _sigmoid(ctx: ConvertContext, node: fx.Node) -> Value:
    return _op(ctx, "sigmoid", ctx.value(node.args[0]))


@converter(aten.tanh.default)
def _tanh(ctx: ConvertContext, node: fx.Node) -> Value:
    return _op(ctx, "tanh", ctx.value(node.args[0]))


@converter(aten.sigmoid_backward.default)
def _sigmoid_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * y * (1 - y)`` from the saved output y (torch's formula)."""
    g, y = ctx.values(node.args[:2])
    return _op(ctx, "mul", g, _op(ctx, "mul", y, _op(ctx, "sub", ctx.const(1.0), y)))


@converter(aten.tanh_backward.default)
def _tanh_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * (1 - y^2)`` from the saved output y."""
    g, y = ctx.values(node.args[:2])
    return _op(ctx, "mul", g, _op(ctx, "sub", ctx.const(1.0), _op(ctx, "mul", y, y)))


@converter(aten.silu.default)
def _silu(ctx: ConvertContext, node: fx.Node) -> Value:
    x = ctx.value(node.args[0])
    return _op(ctx, "mul", x, _op(ctx, "sigmoid", x))


@converter(aten.silu_backward.default)
def _silu_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * s * (1 + x * (1 - s))``, s = sigmoid(x) (torch's formula)."""
    g, x = ctx.values(node.args[:2])
    s = _op(ctx, "sigmoid", x)
    inner = _op(ctx, "add", ctx.const(1.0), _op(ctx, "mul", x, _op(ctx, "sub", ctx.const(1.0), s)))
    return _op(ctx, "mul", g, _op(ctx, "mul", s, inner))


@converter(aten.leaky_relu.default)
def _leaky_relu(ctx: ConvertContext, node: fx.Node) -> Value:
    """``max(x, a x)`` for a slope a in [0, 1] (``min`` above 1); else ``relu(x) + a (x -
    relu(x))``. Exact: each picks x or the rounded a x as torch's ``x > 0 ? x : a x`` does."""
    x = ctx.value(node.args[0])
    a = float(_arg(node, 1, "negative_slope", 0.01))
    ax = _op(ctx, "mul", x, ctx.const(a))
    if 0.0 <= a <= 1.0:
        return _op(ctx, "maximum", x, ax)
    if a > 1.0:
        return _op(ctx, "minimum", x, ax)
    r = _op(ctx, "relu", x)
    return _op(ctx, "add", r, _op(ctx, "mul", _op(ctx, "sub", x, r), ctx.const(a)))


@converter(aten.leaky_relu_backward.default)
def _leaky_relu_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g`` where x > 0, else ``a g``: ``relu_backward(g, x) + a (g - relu_backward(g, x))``
    (exact: the difference is g or 0)."""
    g, x = ctx.values(node.args[:2])
    a = float(node.args[2])
    kept = ctx.emit("graph.relu_backward", [g, x])
    return _op(ctx, "add", kept, _op(ctx, "mul", _op(ctx, "sub", g, kept), ctx.const(a)))


@converter(aten.hardtanh.default)
def _hardtanh(ctx: ConvertContext, node: fx.Node) -> Value:
    """``min(max(x, lo), hi)`` (ReLU6 is hardtanh(0, 6))."""
    x = ctx.value(node.args[0])
    lo, hi = float(_arg(node, 1, "min_val", -1.0)), float(_arg(node, 2, "max_val", 1.0))
    return _op(ctx, "minimum", _op(ctx, "maximum", x, ctx.const(lo)), ctx.const(hi))


@converter(aten.hardtanh_backward.default)
def _hardtanh_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g`` where lo < x < hi, else 0: two relu_backwards on ``x - lo`` and ``hi - x``
    (a difference of two floats is > 0 exactly when the first is larger)."""
    g, x = ctx.values(node.args[:2])
    lo, hi = float(node.args[2]), float(node.args[3])
    above = ctx.emit("graph.relu_backward", [g, _op(ctx, "sub", x, ctx.const(lo))])
    return ctx.emit("graph.relu_backward", [above, _op(ctx, "sub", ctx.const(hi), x)])


# --- selects by sign, log1p -------------------------------------------------------------
def _where_pos(ctx: ConvertContext, g: Value, z: Value) -> Value:
    """``g`` where ``z > 0``, else 0."""
    return ctx.emit("graph.relu_backward", [g, z])


def _where_not_pos(ctx: ConvertContext, g: Value, z: Value) -> Value:
    """``g`` where ``z <= 0`` (or z is NaN), else 0: a select on the complement of z > 0
    (``g - relu_backward(g, z)`` would be inf - inf = NaN where g is infinite)."""
    return _where_pos(ctx, g, ctx.b.complement(ctx.b.positive_mask(z)))


#: from here on ``1 + x`` is x to within 2^-24 relative and log1p(x) = log(x) + 1/x, so
#: ``log(1 + x)`` is log1p(x) to an ulp (and Goldberg's ratio x / (u - 1) is inf / inf at inf)
_LOG1P_LARGE = float(2 ** 24)


def _log1p(ctx: ConvertContext, x: Value) -> Value:
    """``log(1 + x)`` to a few ulps for tiny x too (Goldberg): ``log(u) * (x / (u - 1))``,
    ``u = 1 + x``; x itself where u rounds to 1 (the ratio is 0/0 there); ``log(u)`` above
    2^24, where the ratio overflows or is inf/inf (softplus of a large x, ``exp`` = inf).
    The selects are exact, so the NaN of a branch not taken does not leak."""
    u = _op(ctx, "add", x, ctx.const(1.0))
    w = _op(ctx, "sub", u, ctx.const(1.0))
    log_u = _op(ctx, "log", u)
    goldberg = _op(ctx, "mul", log_u, _op(ctx, "div", x, w))  # NaN where w == 0
    moderate = ctx.b.select_positive(goldberg, x, _op(ctx, "abs", w))
    large = _op(ctx, "sub", x, ctx.const(_LOG1P_LARGE))
    return ctx.b.select_positive(log_u, moderate, large)


for _name, _target in {"log": aten.log.default, "abs": aten.abs.default}.items():
    converter(_target)(lambda ctx, node, _n=_name: _op(ctx, _n, ctx.value(node.args[0])))
for _name, _target in {"maximum": aten.maximum.default, "minimum": aten.minimum.default}.items():
    converter(_target)(lambda ctx, node, _n=_name: _op(ctx, _n, *ctx.values(node.args[:2])))


@converter(aten.log1p.default)
def _log1p_op(ctx: ConvertContext, node: fx.Node) -> Value:
    return _log1p(ctx, ctx.value(node.args[0]))


@converter(aten.sgn.default, aten.sign.default)
def _sgn(ctx: ConvertContext, node: fx.Node) -> Value:
    """1 where x > 0, -1 where x < 0, 0 at zero (and NaN -> 0, where torch keeps NaN)."""
    x = ctx.value(node.args[0])
    one = _broadcast(ctx, ctx.const(1.0), x.type.shape)  # type: ignore[union-attr]
    return _op(ctx, "sub", _where_pos(ctx, one, x), _where_pos(ctx, one, _op(ctx, "neg", x)))


# --- hard sigmoid / swish (MobileNetV3) -------------------------------------------------
@converter(aten.hardsigmoid.default)
def _hardsigmoid(ctx: ConvertContext, node: fx.Node) -> Value:
    """``min(max(x + 3, 0), 6) / 6``: torch's formula, op for op."""
    x = ctx.value(node.args[0])
    return _op(ctx, "div", _relu6_of_shifted(ctx, x), ctx.const(6.0))


def _relu6_of_shifted(ctx: ConvertContext, x: Value) -> Value:
    shifted = _op(ctx, "add", x, ctx.const(3.0))
    return _op(ctx, "minimum", _op(ctx, "maximum", shifted, ctx.const(0.0)), ctx.const(6.0))


@converter(aten.hardsigmoid_backward.default)
def _hardsigmoid_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * (1/6)`` where -3 < x < 3, else 0 (torch multiplies by the rounded 1/6)."""
    g, x = ctx.values(node.args[:2])
    scaled = _op(ctx, "mul", g, ctx.const(np.float32(1.0) / np.float32(6.0)))
    above = _where_pos(ctx, scaled, _op(ctx, "sub", x, ctx.const(-3.0)))
    return _where_pos(ctx, above, _op(ctx, "sub", ctx.const(3.0), x))


@converter(aten.hardswish.default)
def _hardswish(ctx: ConvertContext, node: fx.Node) -> Value:
    """``x * min(max(x + 3, 0), 6) / 6``, in torch's order."""
    x = ctx.value(node.args[0])
    return _op(ctx, "div", _op(ctx, "mul", x, _relu6_of_shifted(ctx, x)), ctx.const(6.0))


@converter(aten.hardswish_backward.default)
def _hardswish_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """0 where x <= -3, ``g * (x / 3 + 0.5)`` where -3 < x < 3, g where x >= 3 (torch's CPU
    kernel: the ties at -3 and 3 take the outer branches)."""
    g, x = ctx.values(node.args[:2])
    mid = _op(ctx, "mul", g, _op(ctx, "add", _op(ctx, "div", x, ctx.const(3.0)), ctx.const(0.5)))
    mid = _where_pos(ctx, mid, _op(ctx, "sub", x, ctx.const(-3.0)))   # x > -3
    below_three = _op(ctx, "sub", ctx.const(3.0), x)                   # x < 3
    return ctx.b.select_positive(mid, g, below_three)


# --- ELU, softplus, mish, PReLU ---------------------------------------------------------
@converter(aten.elu.default)
def _elu(ctx: ConvertContext, node: fx.Node) -> Value:
    """``x * scale`` where x > 0, else ``(exp(x * input_scale) - 1) * alpha * scale``, as
    ``relu(x) * scale + (exp(min(x, 0) * input_scale) - 1) * (alpha * scale)`` (one term is
    0 everywhere). torch uses expm1: ``exp - 1`` differs from it by at most 6e-8 absolute."""
    x = ctx.value(node.args[0])
    alpha, scale, in_scale = _arg(node, 1, "alpha", 1.0), _arg(node, 2, "scale", 1.0), \
        _arg(node, 3, "input_scale", 1.0)
    pos = _op(ctx, "mul", _op(ctx, "relu", x), ctx.const(scale))
    e = _op(ctx, "exp", _op(ctx, "mul", _op(ctx, "minimum", x, ctx.const(0.0)), ctx.const(in_scale)))
    neg = _op(ctx, "mul", _op(ctx, "sub", e, ctx.const(1.0)), ctx.const(alpha * scale))
    return _op(ctx, "add", pos, neg)


@converter(aten.elu_backward.default)
def _elu_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * scale`` where x > 0; else ``g * input_scale * alpha * scale * exp(x *
    input_scale)`` (from the input) or ``g * input_scale * (y + alpha * scale)`` (from the
    result, for in-place ELU), in torch's order."""
    g = ctx.value(node.args[0])
    alpha, scale, in_scale = (float(a) for a in node.args[1:4])
    is_result, xy = bool(node.args[4]), ctx.value(node.args[5])
    pos = _op(ctx, "mul", _where_pos(ctx, g, xy), ctx.const(scale))
    gn = _op(ctx, "mul", _where_not_pos(ctx, g, xy), ctx.const(in_scale))
    if is_result:
        neg = _op(ctx, "mul", gn, _op(ctx, "add", xy, ctx.const(alpha * scale)))
    else:
        e = _op(ctx, "exp", _op(ctx, "mul", _op(ctx, "minimum", xy, ctx.const(0.0)), ctx.const(in_scale)))
        neg = _op(ctx, "mul", _op(ctx, "mul", gn, ctx.const(alpha * scale)), e)
    return _op(ctx, "add", pos, neg)


def _softplus_parts(ctx: ConvertContext, x: Value, beta: float, threshold: float
                    ) -> tuple[Value, Value]:
    """(``x * beta - threshold``: > 0 where softplus is x itself, ``exp(min(x * beta,
    threshold))``: exp of x * beta where it is used, never overflowing where it is not)."""
    xb = _op(ctx, "mul", x, ctx.const(beta))
    over = _op(ctx, "sub", xb, ctx.const(threshold))
    return over, _op(ctx, "exp", _op(ctx, "minimum", xb, ctx.const(threshold)))


@converter(aten.softplus.default)
def _softplus(ctx: ConvertContext, node: fx.Node) -> Value:
    """x where ``x * beta > threshold``, else ``log1p(exp(x * beta)) / beta``."""
    x = ctx.value(node.args[0])
    beta, threshold = _arg(node, 1, "beta", 1.0), _arg(node, 2, "threshold", 20.0)
    over, e = _softplus_parts(ctx, x, beta, threshold)
    soft = _op(ctx, "div", _log1p(ctx, e), ctx.const(beta))
    return ctx.b.select_positive(x, soft, over)


@converter(aten.softplus_backward.default)
def _softplus_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """g where ``x * beta > threshold``, else ``g * z / (z + 1)``, z = exp(x * beta)."""
    g, x = ctx.values(node.args[:2])
    beta, threshold = float(node.args[2]), float(node.args[3])
    over, z = _softplus_parts(ctx, x, beta, threshold)
    soft = _op(ctx, "div", _op(ctx, "mul", g, z), _op(ctx, "add", z, ctx.const(1.0)))
    return ctx.b.select_positive(g, soft, over)


def _tanh_softplus(ctx: ConvertContext, x: Value) -> Value:
    return _op(ctx, "tanh", _log1p(ctx, _op(ctx, "exp", x)))


@converter(aten.mish.default)
def _mish(ctx: ConvertContext, node: fx.Node) -> Value:
    """``x * tanh(log1p(exp(x)))`` (torch's formula)."""
    x = ctx.value(node.args[0])
    return _op(ctx, "mul", x, _tanh_softplus(ctx, x))


@converter(aten.mish_backward.default)
def _mish_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * (t + x * s * (1 - t * t))``, s = sigmoid(x), t = tanh(log1p(exp(x)))."""
    g, x = ctx.values(node.args[:2])
    t = _tanh_softplus(ctx, x)
    s = _op(ctx, "sigmoid", x)
    inner = _op(ctx, "mul", _op(ctx, "mul", x, s), _op(ctx, "sub", ctx.const(1.0), _op(ctx, "mul", t, t)))
    return _op(ctx, "mul", g, _op(ctx, "add", t, inner))


@converter(aten.log_sigmoid_forward.default)
def _log_sigmoid(ctx: ConvertContext, node: fx.Node) -> tuple[Value, Value]:
    """``min(x, 0) - log1p(exp(-|x|))`` (torch's formula), and the buffer returned beside
    it, which its backward does not read on the CPU: zeros shaped as the graph's metadata
    says (a backend's backward is compiled for that shape)."""
    x = ctx.value(node.args[0])
    z = _op(ctx, "exp", _op(ctx, "neg", _op(ctx, "abs", x)))
    out = _op(ctx, "sub", _op(ctx, "minimum", x, ctx.const(0.0)), _log1p(ctx, z))
    buffer = node.meta["val"][1]
    return out, ctx.const(np.zeros(tuple(int(d) for d in buffer.shape), np.float32))


@converter(aten.log_sigmoid_backward.default)
def _log_sigmoid_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``g * (1 - s)`` where x < 0, else ``g * s``, s = z / (1 + z), z = exp(-|x|)."""
    g, x = ctx.values(node.args[:2])
    z = _op(ctx, "exp", _op(ctx, "neg", _op(ctx, "abs", x)))
    s = _op(ctx, "div", z, _op(ctx, "add", ctx.const(1.0), z))
    negative = _op(ctx, "neg", x)  # > 0 exactly where x < 0
    d = ctx.b.select_positive(_op(ctx, "sub", ctx.const(1.0), s), s, negative)
    return _op(ctx, "mul", g, d)


@converter(aten._prelu_kernel.default)
def _prelu(ctx: ConvertContext, node: fx.Node) -> Value:
    """x where x > 0, else ``w * x`` (w broadcast as given): ``relu(x) + w * (x -
    relu(x))``, exact (the difference is x or 0)."""
    x, w = ctx.values(node.args[:2])
    r = _op(ctx, "relu", x)
    return _op(ctx, "add", r, _op(ctx, "mul", w, _op(ctx, "sub", x, r)))


@converter(aten._prelu_kernel_backward.default)
def _prelu_backward(ctx: ConvertContext, node: fx.Node) -> tuple[Value, Value]:
    """(g where x > 0 else ``w * g``, 0 where x > 0 else ``x * g``): the input's gradient
    and the per-element weight gradient torch then sums."""
    g, x, w = ctx.values(node.args[:3])
    kept = _where_pos(ctx, g, x)
    cut = _op(ctx, "sub", g, kept)
    return _op(ctx, "add", kept, _op(ctx, "mul", w, cut)), _op(ctx, "mul", x, cut)
