"""Converters of core-ATen comparisons, boolean logic, ``where``, ``masked_fill`` and
``clamp``.

A bool tensor is a 0/1 f32 tensor on the fabric (as a dropout keep-mask already is): a
comparison is a select by the sign of a difference (``relu_backward(1, a - b)`` is 1
exactly where ``a > b``: a float difference has the sign of the comparison), ``where`` is
``relu_backward(a, c) + relu_backward(b, 1 - c)`` (a where c is 1, b where it is 0,
exactly: the side not taken adds an exact 0, even where it is -inf, a mask's fill), and
the logic ops are arithmetic on 0/1. A bool constant (a mask built from literals, folded
on the host) is turned into its 0/1 f32 form where it meets one of these ops. Comparisons
with NaN differ from torch's: ``ge``/``le``/``eq`` are complements of strict comparisons,
so a NaN operand makes ``ge`` true. Cross entropy's labels compared with a number outside
their classes (``labels == ignore_index`` under label smoothing) are a constant.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import fx

from ..compiler.ir import Value
from .aten_ops_core import _broadcast
from .aten_to_ir import ConvertContext, converter

aten = torch.ops.aten


def _f32(ctx: ConvertContext, arg: Any) -> Value:
    """An FX argument as an f32 value: a number as a constant, a bool tensor as 0/1."""
    if not isinstance(arg, fx.Node):
        return ctx.const(float(arg))
    v = ctx.value(arg)
    if v.type.element == "f32":  # type: ignore[union-attr]
        return v
    op = v.defining_op
    if op is None or op.name != "graph.constant":
        raise ctx.unsupported(f"a {v.type.element} tensor that is not a constant")  # type: ignore[union-attr]
    return ctx.const(np.asarray(op.attributes["value"].array, np.float32))  # type: ignore[union-attr]


def _full(ctx: ConvertContext, v: Value) -> Value:
    return _broadcast(ctx, v, ctx.shape())


def _ones(ctx: ConvertContext) -> Value:
    return _full(ctx, ctx.const(1.0))


def _where_pos(ctx: ConvertContext, g: Value, z: Value) -> Value:
    return ctx.emit("graph.relu_backward", [_full(ctx, g), _full(ctx, z)])


def _greater(ctx: ConvertContext, a: Value, b: Value) -> Value:
    """1 where a > b, else 0."""
    return _where_pos(ctx, _ones(ctx), ctx.emit("graph.sub", [a, b]))


def _not(ctx: ConvertContext, m: Value) -> Value:
    return ctx.emit("graph.sub", [_ones(ctx), m])


_COMPARE = {"gt": np.greater, "lt": np.less, "ge": np.greater_equal, "le": np.less_equal,
            "eq": np.equal, "ne": np.not_equal}


def _label_classes(node: fx.Node) -> int | None:
    """C where ``node`` is the labels of an ``nll_loss`` of C classes in its graph: the
    runtime takes such labels one-hot and refuses one outside [0, C), so that is their range."""
    for user in node.users:
        target_at = {aten.nll_loss_forward.default: 1, aten.nll_loss_backward.default: 2}.get(
            user.target)  # type: ignore[arg-type]
        if target_at is not None and len(user.args) > target_at and user.args[target_at] is node:
            shape = user.args[target_at - 1].meta["val"].shape  # type: ignore[union-attr]
            return int(shape[1] if len(shape) > 1 else shape[0])  # (N, C) or one sample's (C,)
    return None


def _labels_against_outside(ctx: ConvertContext, node: fx.Node, kind: str) -> Value | None:
    """``labels <op> s`` for a number s outside the labels' range [0, C): the same for every
    label as for label 0, a bool constant (cross entropy's ``labels == ignore_index`` mask
    under label smoothing: all False, since no label may be ignored). None otherwise."""
    labels, s = node.args[:2]
    if not (isinstance(labels, fx.Node) and isinstance(s, (int, float))
            and ctx.meta(labels).dtype in (torch.int64, torch.int32)):
        return None
    classes = _label_classes(labels)
    if classes is None or 0 <= s < classes:
        return None
    outcome = bool(_COMPARE[kind](0, s))
    return ctx.const(np.full(ctx.shape(), outcome, np.bool_), "i1")


def _compare(kind: str):
    def convert(ctx: ConvertContext, node: fx.Node) -> Value:
        folded = _labels_against_outside(ctx, node, kind)
        if folded is not None:
            return folded
        a, b = _f32(ctx, node.args[0]), _f32(ctx, node.args[1])
        if kind == "gt":
            return _greater(ctx, a, b)
        if kind == "lt":
            return _greater(ctx, b, a)
        if kind == "ge":
            return _not(ctx, _greater(ctx, b, a))
        if kind == "le":
            return _not(ctx, _greater(ctx, a, b))
        either = ctx.emit("graph.add", [_greater(ctx, a, b), _greater(ctx, b, a)])
        return either if kind == "ne" else _not(ctx, either)
    return convert


for _kind in ("gt", "lt", "ge", "le", "eq", "ne"):
    _overloads = getattr(aten, _kind)
    converter(_overloads.Tensor, _overloads.Scalar)(_compare(_kind))


def _select(ctx: ConvertContext, cond: Value, a: Value, b: Value) -> Value:
    """a where cond (0/1) is 1, b where it is 0 (exact for infinite a or b: a -inf fill)."""
    return ctx.b.select(_full(ctx, cond), _full(ctx, a), _full(ctx, b))


@converter(aten.where.self, aten.where.ScalarSelf, aten.where.ScalarOther, aten.where.Scalar)
def _where(ctx: ConvertContext, node: fx.Node) -> Value:
    cond, a, b = (_f32(ctx, arg) for arg in node.args[:3])
    return _select(ctx, cond, a, b)


@converter(aten.masked_fill.Scalar, aten.masked_fill.Tensor)
def _masked_fill(ctx: ConvertContext, node: fx.Node) -> Value:
    x, mask, value = (_f32(ctx, arg) for arg in node.args[:3])
    return _select(ctx, mask, value, x)


def _bools(ctx: ConvertContext, node: fx.Node) -> list[Value]:
    """The operands of a logic op, which (for the bitwise forms) must be bool tensors."""
    args = [a for a in node.args[:2]]
    if any(isinstance(a, fx.Node) and ctx.meta(a).dtype != torch.bool for a in args):
        raise ctx.unsupported("logic on a non-bool tensor")
    return [_f32(ctx, a) for a in args]


@converter(aten.logical_and.default, aten.bitwise_and.Tensor)
def _and(ctx: ConvertContext, node: fx.Node) -> Value:
    return _full(ctx, ctx.emit("graph.mul", _bools(ctx, node)))


@converter(aten.logical_or.default, aten.bitwise_or.Tensor)
def _or(ctx: ConvertContext, node: fx.Node) -> Value:
    return _full(ctx, ctx.emit("graph.maximum", _bools(ctx, node)))


@converter(aten.logical_not.default, aten.bitwise_not.default)
def _logical_not(ctx: ConvertContext, node: fx.Node) -> Value:
    if ctx.meta(node.args[0]).dtype != torch.bool:
        raise ctx.unsupported("logic on a non-bool tensor")
    return _not(ctx, _f32(ctx, node.args[0]))


@converter(aten.logical_xor.default, aten.bitwise_xor.Tensor)
def _xor(ctx: ConvertContext, node: fx.Node) -> Value:
    a, b = _bools(ctx, node)
    return _full(ctx, ctx.emit("graph.abs", [ctx.emit("graph.sub", [a, b])]))


@converter(aten.clamp.default, aten.clamp.Tensor, aten.clamp_min.default, aten.clamp_max.default,
           aten.clamp_min.Tensor, aten.clamp_max.Tensor)
def _clamp(ctx: ConvertContext, node: fx.Node) -> Value:
    """``min(max(x, lo), hi)`` with a missing bound left out (torch's order)."""
    name = str(node.target.overloadpacket.__name__)  # type: ignore[union-attr]
    x = ctx.value(node.args[0])
    if x.type.element != "f32":  # type: ignore[union-attr]
        raise ctx.integer_arithmetic("clamp")  # a constant one was folded on the host
    lo = node.args[1] if name != "clamp_max" else None
    hi = (node.args[2] if len(node.args) > 2 else node.kwargs.get("max")) if name == "clamp" else \
        (node.args[1] if name == "clamp_max" else None)
    if name == "clamp" and len(node.args) < 2:
        lo = node.kwargs.get("min")
    if lo is not None:
        x = ctx.emit("graph.maximum", [x, _f32(ctx, lo)])
    if hi is not None:
        x = ctx.emit("graph.minimum", [x, _f32(ctx, hi)])
    return _full(ctx, x)


@converter(aten.linalg_vector_norm.default)
def _vector_norm(ctx: ConvertContext, node: fx.Node) -> Value:
    """The 2-norm ``sqrt(sum(x * x))``, the 1-norm ``sum(|x|)`` or the inf-norm
    ``max(|x|)`` over ``dim`` (all dims when None)."""
    x = ctx.value(node.args[0])
    order = float(node.args[1]) if len(node.args) > 1 else float(node.kwargs.get("ord", 2))
    dims = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim")
    keep = bool(node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False))
    rank = len(x.type.shape)  # type: ignore[union-attr]
    axes = list(range(rank)) if dims is None else sorted(int(d) % rank for d in dims)
    if order == 2:
        return ctx.emit("graph.sqrt", [ctx.emit("graph.reduce_sum", [ctx.emit("graph.mul", [x, x])],
                                                 axes=axes, keepdim=keep)])
    if order in (1, float("inf")):
        kind = "sum" if order == 1 else "max"
        return ctx.emit(f"graph.reduce_{kind}", [ctx.emit("graph.abs", [x])], axes=axes, keepdim=keep)
    raise ctx.unsupported(f"the {order:g}-norm (2, 1 and inf are supported)")
