"""Converters of Relax ops to the ``graph`` dialect, one small function per Relax op name
(``relax.add``, ``relax.nn.conv2d``, ``relax.grad.max_pool2d_backward``...)::

    @converter("relax.nn.relu")
    def _(ctx: RelaxContext) -> Value:
        return ctx.emit("graph.relu", [ctx.arg(0)])

A converter reads the current call (``ctx.call``, its attributes through ``ctx.attr``)
and the binding's static result type (``ctx.shape()``); it returns a Value, a tuple of them,
or a marker a later op understands (comparisons, read by ``where``). See
:mod:`acf.frontends.relax` for the conversions that fuse several Relax ops.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..compiler.ir import Value
from .relax import RELAX_ELEMENT, Compare, RelaxContext

RelaxConverter = Callable[[RelaxContext], Any]
CONVERTERS: dict[str, RelaxConverter] = {}


def converter(*names: str) -> Callable[[RelaxConverter], RelaxConverter]:
    """Register a converter for one or more Relax op names."""
    def wrap(fn: RelaxConverter) -> RelaxConverter:
        for name in names:
            CONVERTERS[name] = fn
        return fn
    return wrap


def convert_call(ctx: RelaxContext, call: Any) -> Any:
    """Convert the binding's call (``ctx.call``) through its op's converter."""
    import tvm
    from tvm import relax

    if call is not ctx.call:
        ctx.call = call
        raise ctx.unsupported("nested call (normalize the module first)")
    if not isinstance(call.op, tvm.ir.Op):
        if isinstance(call.op, (relax.GlobalVar, relax.ExternFunc)):
            raise ctx.unsupported("calls of other functions (inline them first)")
        raise ctx.unsupported("call of a non-op")
    fn = CONVERTERS.get(ctx.op_name())
    if fn is None:
        raise ctx.unsupported("no graph-dialect lowering")
    return fn(ctx)


def _element(ctx: RelaxContext) -> str:
    return ctx.result_type().element


# --- elementwise ------------------------------------------------------------------------
def _binary(name: str) -> RelaxConverter:
    def convert(ctx: RelaxContext) -> Value:
        a, b = ctx.arg(0), ctx.arg(1)
        if name == "add":
            fused = _linear_of(ctx, a, b) or _linear_of(ctx, b, a)
            if fused is not None:
                return fused
        return ctx.emit(f"graph.{name}", [a, b])
    return convert


for _relax, _graph in {"add": "add", "subtract": "sub", "multiply": "mul",
                       "divide": "div", "maximum": "maximum", "minimum": "minimum"}.items():
    converter(f"relax.{_relax}")(_binary(_graph))


def _linear_of(ctx: RelaxContext, prod: Value, bias: Value) -> Value | None:
    """``bias + x·wᵀ`` -> ``graph.linear x, w, bias`` when the matmul has no other reader."""
    op = prod.defining_op
    if (op is None or op.name != "graph.matmul" or not op.attributes.get("transpose_b")
            or op.attributes.get("transpose_a") or bias.type.rank != 1):  # type: ignore[union-attr]
        return None
    x, w = op.operands
    if w.type.rank != 2 or x.type.rank != 2 or bias.type.shape != (w.type.shape[0],):  # type: ignore[union-attr]
        return None
    prod_var = next((v for v, val in ctx.env.items() if val is prod), None)
    if prod_var is None or not ctx.single_use(prod_var):
        return None
    out = ctx.emit("graph.linear", [x, w, bias])
    op.erase()
    return out


@converter("relax.negative")
def _neg(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.neg", [ctx.arg(0)])


def _unary(name: str) -> RelaxConverter:
    return lambda ctx: ctx.emit(f"graph.{name}", [ctx.arg(0)])


for _name in ("exp", "log", "abs", "sqrt", "rsqrt", "sigmoid", "tanh"):
    converter(f"relax.{_name}")(_unary(_name))


@converter("relax.nn.relu")
def _relu(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.relu", [ctx.arg(0)])


@converter("relax.nn.gelu", "relax.nn.gelu_tanh")
def _gelu(ctx: RelaxContext) -> Value:
    approx = "tanh" if ctx.op_name().endswith("tanh") else "none"
    return ctx.emit("graph.gelu", [ctx.arg(0)], approximate=approx)


@converter("relax.astype")
def _astype(ctx: RelaxContext) -> Value:
    x = ctx.arg(0)
    if x.type.element != _element(ctx):  # type: ignore[union-attr]
        raise ctx.unsupported(f"cast {x.type} to {ctx.result_type()}")
    return x


# --- comparisons and where (Relax's ReLU gradient) --------------------------------------
def _compare(kind: str) -> RelaxConverter:
    return lambda ctx: Compare(kind, ctx.arg(0), ctx.arg(1))


for _name in ("less", "greater", "less_equal", "greater_equal"):
    converter(f"relax.{_name}")(_compare(_name))


def _is_zero(v: Value) -> bool:
    op = v.defining_op
    if op is None or op.name != "graph.constant":
        return False
    return not np.any(op.attributes["value"].array)  # type: ignore[union-attr]


@converter("relax.where")
def _where(ctx: RelaxContext) -> Value:
    """``where(x < 0, 0, g)`` / ``where(x > 0, g, 0)`` -> ``graph.relu_backward g, x``; any
    other ``where(p <op> q, a, b)`` (the gradients of maximum, minimum and abs) selects by
    the sign of a difference: with ``z = p - q`` (or ``q - p``) > 0 exactly where the
    strict comparison holds, ``relu_backward(a, z) + (b - relu_backward(b, z))`` is a
    where z > 0 and b elsewhere, exactly (one of each pair is 0)."""
    cond = ctx.lookup(ctx.call.args[0])
    a, b = ctx.arg(1), ctx.arg(2)
    if not isinstance(cond, Compare):
        raise ctx.unsupported("a condition that is not a comparison")
    if _is_zero(cond.b):
        if cond.kind in ("less", "less_equal") and _is_zero(a):
            return _relu_backward(ctx, b, cond.a)
        if cond.kind in ("greater", "greater_equal") and _is_zero(b):
            return _relu_backward(ctx, a, cond.a)
    p, q = cond.a, cond.b
    if cond.kind in ("greater_equal", "less_equal"):  # not the strict comparison the other way
        a, b = b, a
    z = ctx.emit("graph.sub", [p, q] if cond.kind in ("greater", "less_equal") else [q, p])
    shape = ctx.shape()
    z, a, b = (_broadcast(ctx, v, shape) for v in (z, a, b))
    return ctx.b.select_positive(a, b, z)


def _relu_backward(ctx: RelaxContext, g: Value, x: Value) -> Value:
    shape = ctx.shape()
    g = _broadcast(ctx, g, shape)
    x = _broadcast(ctx, x, shape)
    return ctx.emit("graph.relu_backward", [g, x])


# --- shapes -----------------------------------------------------------------------------
def _reshape(ctx: RelaxContext, x: Value, shape: tuple[int, ...]) -> Value:
    if x.type.shape == shape:  # type: ignore[union-attr]
        return x
    return ctx.emit("graph.reshape", [x], shape=list(shape))


def _broadcast(ctx: RelaxContext, x: Value, shape: tuple[int, ...]) -> Value:
    if x.type.shape == tuple(shape):  # type: ignore[union-attr]
        return x
    return ctx.emit("graph.broadcast_to", [x], shape=list(shape))


@converter("relax.reshape", "relax.flatten", "relax.expand_dims", "relax.squeeze")
def _view(ctx: RelaxContext) -> Value:
    return _reshape(ctx, ctx.arg(0), ctx.shape())


@converter("relax.broadcast_to")
def _broadcast_to(ctx: RelaxContext) -> Value:
    return _broadcast(ctx, ctx.arg(0), ctx.shape())


@converter("relax.permute_dims")
def _permute(ctx: RelaxContext) -> Value:
    x = ctx.arg(0)
    rank = x.type.rank  # type: ignore[union-attr]
    axes = ctx.attr("axes")
    perm = [int(a) % rank for a in axes] if axes is not None else list(range(rank))[::-1]
    if perm == sorted(perm):
        return x
    swaps_last_two = rank in (2, 3) and perm == list(range(rank - 2)) + [rank - 1, rank - 2]
    if swaps_last_two and x in ctx.b.transposed_from:
        return ctx.b.transposed_from[x]
    out = ctx.emit("graph.transpose", [x], perm=perm)
    if swaps_last_two:
        ctx.b.transposed_from[out] = x
    return out


@converter("relax.collapse_sum_to", "relax.collapse_sum_like")
def _collapse_sum(ctx: RelaxContext) -> Value:
    """Sum ``x`` down to the broadcast-source shape (Relax's gradient of broadcasting)."""
    x = ctx.arg(0)
    src, shape = x.type.shape, ctx.shape()  # type: ignore[union-attr]
    lead = len(src) - len(shape)
    axes = list(range(lead)) + [lead + i for i, d in enumerate(shape)
                                if d == 1 and src[lead + i] != 1]
    if not axes:
        return _reshape(ctx, x, shape)
    out = ctx.emit("graph.reduce_sum", [x], axes=axes, keepdim=lead == 0)
    return _reshape(ctx, out, shape)


@converter("relax.strided_slice")
def _strided_slice(ctx: RelaxContext) -> Value:
    """Only the crop of an oversized weight-gradient convolution (Relax's conv2d gradient
    with a stride that does not divide the input)."""
    x = ctx.arg(0)
    op = x.defining_op
    shape = ctx.shape()
    if x.type.shape == shape:  # type: ignore[union-attr]
        return x
    if op is not None and op.name == "graph.conv2d_backward_weight" and not any(
            _static_ints(ctx.call.args[2])):
        attrs = {k: v for k, v in op.attributes.items() if k != "weight_shape"}
        return ctx.emit("graph.conv2d_backward_weight", list(op.operands),
                        weight_shape=list(shape), **attrs)  # the oversized one: dead code
    raise ctx.unsupported("only the crop of a weight-gradient convolution")


def _static_ints(expr: Any) -> list[int]:
    """The integers of a Relax tuple of ``IntImm`` / ``PrimValue`` (or a ``ShapeExpr``)."""
    items = getattr(expr, "fields", None)
    if items is None:
        items = getattr(expr, "values", expr)
    out = []
    for e in items:
        v = getattr(e, "value", e)
        out.append(int(getattr(v, "value", v)))
    return out


# --- matmul -----------------------------------------------------------------------------
def _operand(ctx: RelaxContext, v: Value) -> tuple[Value, bool]:
    src = ctx.b.transposed_from.get(v)
    return (src, True) if src is not None else (v, False)


@converter("relax.matmul")
def _matmul(ctx: RelaxContext) -> Value:
    a0, b0 = ctx.arg(0), ctx.arg(1)
    if a0.type.rank < 2 or b0.type.rank < 2:  # type: ignore[union-attr]
        raise ctx.unsupported("rank-1 matmul operands")
    a, ta = _operand(ctx, a0)
    b, tb = _operand(ctx, b0)
    shape = ctx.shape()
    if a.type.rank > 2 and b.type.rank == 2 and not ta:  # type: ignore[union-attr]
        k = a.type.shape[-1]  # type: ignore[union-attr]
        flat = _reshape(ctx, a, (int(np.prod(a.type.shape[:-1])), k))  # type: ignore[union-attr]
        out = ctx.emit("graph.matmul", [flat, b], transpose_b=tb)
        return _reshape(ctx, out, shape)
    batch = shape[:-2]
    if a.type.shape[:-2] != batch:  # type: ignore[union-attr]
        a, ta = _broadcast(ctx, a0, batch + a0.type.shape[-2:]), False  # type: ignore[union-attr]
    if b.type.shape[:-2] != batch:  # type: ignore[union-attr]
        b, tb = _broadcast(ctx, b0, batch + b0.type.shape[-2:]), False  # type: ignore[union-attr]
    return ctx.emit("graph.matmul", [a, b], transpose_a=ta, transpose_b=tb)


# --- reductions -------------------------------------------------------------------------
def _reduce(kind: str) -> RelaxConverter:
    def convert(ctx: RelaxContext) -> Value:
        x = ctx.arg(0)
        axis = ctx.attr("axis")
        axes = [] if axis is None else [int(a) for a in axis]
        return ctx.emit(f"graph.reduce_{kind}", [x], axes=axes,
                        keepdim=bool(ctx.attr("keepdims", False)))
    return convert


converter("relax.sum")(_reduce("sum"))
converter("relax.mean")(_reduce("mean"))
converter("relax.max")(_reduce("max"))


# --- constants --------------------------------------------------------------------------
def _filled(ctx: RelaxContext, value: Any) -> Value:
    el = ctx.result_type().element
    dtype = {"f32": np.float32, "i64": np.int64, "i1": np.bool_}[el]
    return ctx.const(np.full(ctx.shape(), value, dtype), el)


@converter("relax.zeros", "relax.zeros_like")
def _zeros(ctx: RelaxContext) -> Value:
    return _filled(ctx, 0)


@converter("relax.ones", "relax.ones_like")
def _ones(ctx: RelaxContext) -> Value:
    return _filled(ctx, 1)


@converter("relax.full", "relax.full_like")
def _full(ctx: RelaxContext) -> Value:
    import tvm

    fill = ctx.call.args[1]
    if not isinstance(fill, tvm.ir.expr.Constant):
        raise ctx.unsupported("a fill value that is not a constant")
    return _filled(ctx, fill.value.numpy().item())


# --- convolution and pooling ------------------------------------------------------------
def _pad2(ctx: RelaxContext, padding: Any) -> list[int]:
    p = _ints_of(padding)
    if len(p) == 2:
        return p
    if len(p) == 1:
        return p * 2
    top, left, bottom, right = p
    if top != bottom or left != right:
        raise ctx.unsupported(f"asymmetric padding {p}")
    return [top, left]


def _ints_of(seq: Any) -> list[int]:
    return [int(d) for d in seq]


def _layouts(ctx: RelaxContext) -> tuple[str, str, str]:
    return (str(ctx.attr("data_layout", "NCHW")), str(ctx.attr("kernel_layout", "OIHW")),
            str(ctx.attr("out_layout", "NCHW") or ctx.attr("data_layout", "NCHW")))


def _conv_attrs(ctx: RelaxContext) -> dict[str, Any]:
    return {"stride": _ints_of(ctx.attr("strides")), "padding": _pad2(ctx, ctx.attr("padding")),
                "dilation": _ints_of(ctx.attr("dilation")), "groups": int(ctx.attr("groups", 1))}


@converter("relax.nn.conv2d")
def _conv2d(ctx: RelaxContext) -> Value:
    layouts = _layouts(ctx)
    x, w = ctx.arg(0), ctx.arg(1)
    attrs = _conv_attrs(ctx)
    if layouts == ("NCHW", "OIHW", "NCHW"):
        return ctx.emit("graph.conv2d", [x, w], **attrs)
    if layouts == ("CNHW", "IOHW", "CNHW"):
        # Relax's conv2d weight gradient: conv(x as CNHW, grad_out as IOHW), strides and
        # dilation swapped; the result is the OIHW weight gradient
        if attrs["groups"] != 1:
            raise ctx.unsupported("grouped weight-gradient convolution")
        fwd = {"stride": attrs["dilation"], "padding": attrs["padding"],
                   "dilation": attrs["stride"]}
        return ctx.emit("graph.conv2d_backward_weight", [w, x],
                        weight_shape=list(ctx.shape()), **fwd)
    raise ctx.unsupported(f"layouts data={layouts[0]} kernel={layouts[1]} out={layouts[2]}")


@converter("relax.nn.conv2d_transpose")
def _conv2d_transpose(ctx: RelaxContext) -> Value:
    """Relax's conv2d input gradient: ``conv2d_transpose(grad_out, w)`` (OIHW weight read
    as IOHW) -> ``graph.conv2d_backward_input``."""
    layouts = _layouts(ctx)
    if layouts != ("NCHW", "IOHW", "NCHW"):
        raise ctx.unsupported(f"layouts data={layouts[0]} kernel={layouts[1]} out={layouts[2]}")
    return ctx.emit("graph.conv2d_backward_input", [ctx.arg(0), ctx.arg(1)],
                    input_shape=list(ctx.shape()), **_conv_attrs(ctx))


def _pool_attrs(ctx: RelaxContext) -> dict[str, Any]:
    if bool(ctx.attr("ceil_mode", False)):
        raise ctx.unsupported("ceil_mode=True")
    if any(d != 1 for d in _ints_of(ctx.attr("dilation", [1, 1]))):
        raise ctx.unsupported("dilated pooling")
    if str(ctx.attr("layout", "NCHW")) != "NCHW":
        raise ctx.unsupported(f"layout {ctx.attr('layout')}")
    return {"kernel_size": _ints_of(ctx.attr("pool_size")),
                "stride": _ints_of(ctx.attr("strides")), "padding": _pad2(ctx, ctx.attr("padding"))}


def _avg_attrs(ctx: RelaxContext) -> dict[str, Any]:
    return dict(_pool_attrs(ctx), count_include_pad=bool(ctx.attr("count_include_pad", True)))


@converter("relax.nn.max_pool2d")
def _max_pool(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.max_pool2d", [ctx.arg(0)], **_pool_attrs(ctx))


@converter("relax.nn.avg_pool2d")
def _avg_pool(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.avg_pool2d", [ctx.arg(0)], **_avg_attrs(ctx))


@converter("relax.grad.max_pool2d_backward")
def _max_pool_backward(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.max_pool2d_backward", [ctx.arg(0), ctx.arg(1)], **_pool_attrs(ctx))


@converter("relax.grad.avg_pool2d_backward")
def _avg_pool_backward(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.avg_pool2d_backward", [ctx.arg(0), ctx.arg(1)], **_avg_attrs(ctx))


# --- softmax and losses -----------------------------------------------------------------
@converter("relax.nn.softmax")
def _softmax(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.softmax", [ctx.arg(0)], axis=int(ctx.attr("axis", -1)))


@converter("relax.nn.log_softmax")
def _log_softmax(ctx: RelaxContext) -> Value:
    return ctx.emit("graph.log_softmax", [ctx.arg(0)], axis=int(ctx.attr("axis", -1)))


def _nll_checks(ctx: RelaxContext, logp: Value, labels: Value) -> str:
    if len(ctx.call.args) > 2 + (ctx.op_name() == "relax.grad.nll_loss_backward"):
        raise ctx.unsupported("class weights")
    if logp.type.rank != 2 or labels.type.element != "i64":  # type: ignore[union-attr]
        raise ctx.unsupported(f"predictions {logp.type} and labels {labels.type} "
                              "(need [N, C] and [N] : i64)")
    reduction = str(ctx.attr("reduction", "mean"))
    if reduction not in ("mean", "sum"):
        raise ctx.unsupported(f"reduction={reduction!r}")
    return reduction


@converter("relax.nn.nll_loss")
def _nll_loss(ctx: RelaxContext) -> Value:
    """``nll_loss(log_softmax(x), t)`` -> ``graph.cross_entropy x, t`` (times N for a sum).
    Labels equal to ``ignore_index`` are not modeled."""
    logp, labels = ctx.arg(0), ctx.arg(1)
    reduction = _nll_checks(ctx, logp, labels)
    op = logp.defining_op
    if op is None or op.name != "graph.log_softmax" or op.attributes.get("axis", -1) not in (
            -1, 1):
        raise ctx.unsupported("nll_loss of anything but log_softmax(x, axis=-1)")
    loss = ctx.emit("graph.cross_entropy", [op.operands[0], labels])
    if reduction == "sum":
        loss = ctx.emit("graph.mul", [loss, ctx.const(np.float32(logp.type.shape[0]))])  # type: ignore[union-attr]
    return loss


@converter("relax.grad.nll_loss_backward")
def _nll_loss_backward(ctx: RelaxContext) -> Value:
    """d nll / d logp = -onehot(t)·g/N, written as ``cross_entropy_backward(g, y, t) -
    softmax(y)·g/N`` (true for any ``y``; ``cross_entropy_backward`` is (softmax - onehot)·g/N).
    """
    g, logp, labels = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    reduction = _nll_checks(ctx, logp, labels)
    if g.type.rank != 0:  # type: ignore[union-attr]
        raise ctx.unsupported("a non-scalar output gradient")
    n = logp.type.shape[0]  # type: ignore[union-attr]
    if reduction == "sum":
        g = ctx.emit("graph.mul", [g, ctx.const(np.float32(n))])
    ce = ctx.emit("graph.cross_entropy_backward", [g, logp, labels])
    scale = ctx.emit("graph.div", [g, ctx.const(np.float32(n))])
    soft = ctx.emit("graph.softmax", [logp], axis=-1)
    return ctx.emit("graph.sub", [ce, ctx.emit("graph.mul", [soft, scale])])


@converter("relax.nn.cross_entropy_with_logits")
def _cross_entropy_with_logits(ctx: RelaxContext) -> Value:
    """``-sum(x * y) / N`` (N: the batch dim when x has rank > 1)."""
    x, y = ctx.arg(0), ctx.arg(1)
    total = ctx.emit("graph.reduce_sum", [ctx.emit("graph.mul", [x, y])])
    loss = ctx.emit("graph.neg", [total])
    if x.type.rank > 1:  # type: ignore[union-attr]
        loss = ctx.emit("graph.div", [loss, ctx.const(np.float32(x.type.shape[0]))])  # type: ignore[union-attr]
    return loss


__all__ = ["CONVERTERS", "RELAX_ELEMENT", "convert_call", "converter"]
