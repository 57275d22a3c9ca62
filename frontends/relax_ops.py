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

from ..compiler.dialect import VerifyError
from ..compiler.ir import Value
from ..compiler.shape_rules import ShapeError
from .gathers import along
from .ir_builder import constant_array
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
    try:
        return fn(ctx)
    except (ShapeError, VerifyError) as err:
        # an op the converter emits that the graph dialect rejects (an int64 matmul, a
        # shape it has no rule for) is a form of the Relax op with no lowering
        raise ctx.unsupported(f"no graph-dialect lowering of this form ({err})") from None


def _element(ctx: RelaxContext) -> str:
    return ctx.result_type().element


# --- elementwise ------------------------------------------------------------------------
def _binary(name: str) -> RelaxConverter:
    def convert(ctx: RelaxContext) -> Value:
        a, b = ctx.arg(0), ctx.arg(1)
        folded = _fold_scalars(ctx, name, a, b)
        if folded is not None:
            return folded
        if name == "add":
            fused = _linear_of(ctx, a, b) or _linear_of(ctx, b, a)
            if fused is not None:
                return fused
        return ctx.emit(f"graph.{name}", [a, b])
    return convert


for _relax, _graph in {"add": "add", "subtract": "sub", "multiply": "mul",
                       "divide": "div", "maximum": "maximum", "minimum": "minimum"}.items():
    converter(f"relax.{_relax}")(_binary(_graph))


#: arithmetic folded on the host when both operands are one-number constants: numpy's
#: float32 (int64) operations round (wrap) as the compiled Relax op does
_FOLDABLE = {"f32": {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide},
             "i64": {"add": np.add, "sub": np.subtract, "mul": np.multiply}}


def _fold_scalars(ctx: RelaxContext, name: str, a: Value, b: Value) -> Value | None:
    """``a <name> b`` as a constant when both are constants of one number (Relax's Gradient
    writes power's new exponent as ``subtract(3.0, 1.0)``: folded, ``power`` sees the
    constant 2.0 it needs); None otherwise."""
    el = _element(ctx)
    fn = _FOLDABLE.get(el, {}).get(name)
    x, y = constant_array(a), constant_array(b)
    if fn is None or x is None or y is None or x.size != 1 or y.size != 1:
        return None
    dtype = np.float32 if el == "f32" else np.int64
    with np.errstate(all="ignore"):
        value = fn(dtype(x.reshape(-1)[0]), dtype(y.reshape(-1)[0]))
    return _broadcast(ctx, ctx.const(dtype(value), el), ctx.shape())


def _linear_of(ctx: RelaxContext, prod: Value, bias: Value) -> Value | None:
    """``bias + x·wᵀ`` -> ``graph.linear x, w, bias`` when the matmul has no other reader.

    Readers are counted over every Relax var that holds the product (an identity reshape
    or cast binds another var to the same IR value): a second reader keeps the matmul."""
    op = prod.defining_op
    if (op is None or op.name != "graph.matmul" or not op.attributes.get("transpose_b")
            or op.attributes.get("transpose_a") or bias.type.rank != 1):  # type: ignore[union-attr]
        return None
    x, w = op.operands
    if w.type.rank != 2 or x.type.rank != 2 or bias.type.shape != (w.type.shape[0],):  # type: ignore[union-attr]
        return None
    if prod.has_uses() or ctx.reads(prod) != 1:
        return None
    # the matmul is left to the dead-op sweep at the end of the conversion
    return ctx.emit("graph.linear", [x, w, bias])


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


@converter("relax.nn.silu")
def _silu(ctx: RelaxContext) -> Value:
    """``x * sigmoid(x)``, TVM's own lowering."""
    x = ctx.arg(0)
    return ctx.emit("graph.mul", [x, ctx.emit("graph.sigmoid", [x])])


@converter("relax.power")
def _power(ctx: RelaxContext) -> Value:
    """``x ** p`` for a constant p (one value, any shape; constant arithmetic such as the
    ``subtract(3.0, 1.0)`` of Relax's power gradient is folded first): the graph dialect
    has no pow, so only the exponents it writes exactly or to within rounding: 0, integers
    up to 4 in magnitude (products, a reciprocal for negative ones), 0.5 and -0.5
    (``abs(sqrt(x))``, ``abs(rsqrt(x))``: IEEE pow(-0, ±0.5) is +0 and +inf where sqrt and
    rsqrt keep the zero's sign; abs leaves every other result, NaN included, as it is)."""
    x, y = ctx.arg(0), ctx.arg(1)
    array = constant_array(y)
    if array is None:
        raise ctx.unsupported("an exponent that is not a constant")
    values = np.unique(np.asarray(array, np.float64))
    if values.size != 1:
        raise ctx.unsupported("an exponent tensor of different values")
    p = float(values[0])
    if x.type.element != "f32" or _element(ctx) != "f32":  # type: ignore[union-attr]
        raise ctx.unsupported(f"power of {x.type} to {ctx.result_type()}")
    shape = ctx.shape()
    if p == 0.0:
        return _filled(ctx, 1.0)
    if p == 0.5:
        out = ctx.emit("graph.abs", [ctx.emit("graph.sqrt", [x])])
    elif p == -0.5:
        out = ctx.emit("graph.abs", [ctx.emit("graph.rsqrt", [x])])
    elif p.is_integer() and 1 <= abs(p) <= 4:
        k = int(abs(p))
        sq = ctx.emit("graph.mul", [x, x]) if k >= 2 else x
        out = sq if k <= 2 else ctx.emit("graph.mul", [sq, x if k == 3 else sq])
        if p < 0:
            out = ctx.emit("graph.div", [ctx.const(np.float32(1.0)), out])
    else:
        raise ctx.unsupported(f"exponent {p:g} (the graph dialect has no pow)")
    return _broadcast(ctx, out, shape)


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
    """``where(p <op> q, a, b)`` selects by the sign of a difference, exactly as TVM does:
    with ``z = p - q`` (or ``q - p``) > 0 exactly where a strict comparison holds (a
    non-strict one holds where the opposite strict one does not: a and b swap),
    ``FuncBuilder.select_positive(a, b, z)`` is a where z > 0 and b elsewhere (exactly,
    infinite branches included). A zero branch drops its half: ``where(x > 0, g, 0)`` and
    ``where(x <= 0, 0, g)`` are ``relu_backward(g, x)``; Relax's ReLU gradient
    ``where(x < 0, 0, g)`` is ``relu_backward(g, 1 - [-x > 0])``, which keeps g where
    x == 0 (``g - relu_backward(g, -x)`` would be inf - inf = NaN where g is infinite and
    x < 0: ``where(x < 0, 0, log(x))``)."""
    cond = ctx.lookup(ctx.call.args[0])
    a, b = ctx.arg(1), ctx.arg(2)
    if not isinstance(cond, Compare):
        raise ctx.unsupported("a condition that is not a comparison")
    p, q = cond.a, cond.b
    if {v.type.element for v in (p, q, a, b)} != {"f32"}:  # type: ignore[union-attr]
        raise ctx.unsupported("a select of or by non-f32 tensors")
    if cond.kind in ("greater_equal", "less_equal"):  # not the strict comparison the other way
        a, b = b, a
    hi, lo = (p, q) if cond.kind in ("greater", "less_equal") else (q, p)
    if _is_zero(lo):
        z = hi
    elif _is_zero(hi):
        z = ctx.emit("graph.neg", [lo])
    else:
        z = ctx.emit("graph.sub", [hi, lo])
    shape = ctx.shape()
    z = _broadcast(ctx, z, shape)
    if _is_zero(b):
        return ctx.emit("graph.relu_backward", [_broadcast(ctx, a, shape), z])
    b = _broadcast(ctx, b, shape)
    if _is_zero(a):
        # b's half of the select alone: b where z > 0 does not hold (NaN included)
        keep = ctx.b.complement(ctx.b.positive_mask(z))
        return ctx.emit("graph.relu_backward", [b, keep])
    # maybe a -inf fill (a mask): a select adding an exact 0 for the side not taken
    # (b - relu_backward(b, z) would be -inf - -inf = NaN where a is taken)
    return ctx.b.select_positive(_broadcast(ctx, a, shape), b, z)


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
    """Each sliced axis reads Python's ``x[begin:end:stride]`` (TVM clamps the bounds the
    same way; the count is checked against Relax's result shape): a positive stride is a
    ``graph.slice`` box, a negative one the box of the same elements in increasing order
    read backwards (:func:`_reverse`). The crop of an oversized weight-gradient convolution
    (Relax's conv2d gradient with a stride that does not divide the input) re-emits the
    convolution at the cropped size instead, where that convolution is one (the same output
    gradient); any other crop of it is a plain slice."""
    x = ctx.arg(0)
    src = tuple(x.type.shape)  # type: ignore[union-attr]
    rank = len(src)
    args = ctx.call.args
    try:
        axes, begin, end = (_static_ints(a) for a in args[1:4])
        strides = _static_ints(args[4]) if len(args) > 4 else [1] * len(axes)
    except (TypeError, ValueError):
        raise ctx.unsupported("axes, begin, end or strides that are not constants") from None
    if not len(axes) == len(begin) == len(end) == len(strides):
        raise ctx.unsupported("axes, begin, end and strides of different lengths")
    shape = ctx.shape()
    offsets, sizes, steps = [0] * rank, list(src), [1] * rank
    backwards: list[int] = []
    seen: set[int] = set()
    for axis, b, e, st in zip(axes, begin, end, strides):
        if not -rank <= axis < rank or axis % rank in seen:
            raise ctx.unsupported(f"axes {axes} for a rank-{rank} tensor")
        axis %= rank
        seen.add(axis)
        if st == 0:
            raise ctx.unsupported("a zero stride")
        idx = range(*slice(b, e, st).indices(src[axis]))
        if len(idx) == 0 or len(idx) != shape[axis]:
            raise ctx.unsupported(f"axis {axis}: [{b}:{e}:{st}] of {src[axis]} elements reads "
                                  f"{len(idx)}, the result has {shape[axis]}")
        sizes[axis] = len(idx)
        if len(idx) > 1:
            steps[axis] = abs(st)
        offsets[axis] = min(idx[0], idx[-1])
        if st < 0 and len(idx) > 1:
            backwards.append(axis)
    if sizes == list(src) and not any(offsets) and not backwards:
        return x
    op = x.defining_op
    if (op is not None and op.name == "graph.conv2d_backward_weight" and not any(offsets)
            and all(s == 1 for s in steps) and not backwards):
        attrs = {k: v for k, v in op.attributes.items() if k != "weight_shape"}
        try:
            return ctx.emit("graph.conv2d_backward_weight", list(op.operands),
                            weight_shape=list(shape), **attrs)  # the oversized one: dead code
        except ShapeError:
            pass  # a kernel of this size convolves to another output shape: not Relax's crop
    out = x
    if sizes != list(src) or any(offsets):
        out = ctx.emit("graph.slice", [x], offsets=offsets, sizes=sizes, strides=steps)
    for axis in backwards:
        out = _reverse(ctx, out, axis)
    return out


@converter("relax.flip")
def _flip(ctx: RelaxContext) -> Value:
    x = ctx.arg(0)
    rank = x.type.rank  # type: ignore[union-attr]
    axis = int(ctx.attr("axis"))
    if not -rank <= axis < rank:
        raise ctx.unsupported(f"axis {axis} of a rank-{rank} tensor")
    return _reverse(ctx, x, axis % rank)


def _reverse(ctx: RelaxContext, x: Value, axis: int) -> Value:
    """``x`` read backwards along ``axis``: a GEMM with the reversing permutation matrix,
    the way the frontends gather along a dim (one effectual MAC per output element; like
    those gathers, a non-finite element turns its whole row into NaN)."""
    n = x.type.shape[axis]  # type: ignore[union-attr]
    if n == 1:
        return x
    return _gather_along(ctx, x, axis, ctx.const(np.eye(n, dtype=np.float32)[::-1].copy()))


def _gather_along(ctx: RelaxContext, x: Value, dim: int, select: Value) -> Value:
    """``x`` with dim ``dim`` (size n) replaced by ``select`` (m x n), as a GEMM
    (:func:`acf.frontends.gathers.along`)."""
    if x.type.element != "f32":  # type: ignore[union-attr]
        raise ctx.unsupported(f"a gather of a {x.type.element} tensor (done as a GEMM)")  # type: ignore[union-attr]
    return along(ctx.emit, x, dim, select)


@converter("relax.concat")
def _concat(ctx: RelaxContext) -> Value:
    """``graph.concat`` (no axis: of the flattened pieces); empty pieces are left out."""
    pieces = ctx.lookup(ctx.call.args[0])
    if not isinstance(pieces, tuple) or not all(isinstance(v, Value) for v in pieces):
        raise ctx.unsupported("pieces that are not a tuple of tensors")
    axis = ctx.attr("axis")
    if axis is None:
        pieces = tuple(_reshape(ctx, v, (int(np.prod(v.type.shape, dtype=np.int64)),))  # type: ignore[union-attr]
                       for v in pieces)
        axis = 0
    xs = [v for v in pieces if 0 not in v.type.shape]  # type: ignore[union-attr]
    if not xs:
        raise ctx.unsupported("an empty result")
    if len(xs) == 1:
        return _reshape(ctx, xs[0], ctx.shape())
    return ctx.emit("graph.concat", xs, axis=int(axis) % len(ctx.shape()))


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
def _reduce_axes(ctx: RelaxContext) -> list[int] | None:
    """The axes a Relax reduction reduces (``[]``: all of them, as ``graph.reduce_*`` reads
    an empty list), or None for Relax's empty axis list, which reduces nothing (the
    identity; no axis at all is every axis)."""
    axis = ctx.attr("axis")
    if axis is None:
        return []
    axes = [int(a) for a in axis]
    return axes or None


def _reduce(kind: str) -> RelaxConverter:
    def convert(ctx: RelaxContext) -> Value:
        x = ctx.arg(0)
        axes = _reduce_axes(ctx)
        if axes is None:
            return x
        return ctx.emit(f"graph.reduce_{kind}", [x], axes=axes,
                        keepdim=bool(ctx.attr("keepdims", False)))
    return convert


converter("relax.sum")(_reduce("sum"))
converter("relax.mean")(_reduce("mean"))
converter("relax.max")(_reduce("max"))


@converter("relax.min")
def _min(ctx: RelaxContext) -> Value:
    """``-max(-x)`` (exact: negation only flips the sign bit)."""
    axes = _reduce_axes(ctx)
    if axes is None:
        return ctx.arg(0)
    neg = ctx.emit("graph.neg", [ctx.arg(0)])
    top = ctx.emit("graph.reduce_max", [neg], axes=axes, keepdim=bool(ctx.attr("keepdims", False)))
    return ctx.emit("graph.neg", [top])


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


def _ignored_class(ctx: RelaxContext, logp: Value) -> int | None:
    """The class ``ignore_index`` names, or None where it names none (TVM's -100: no label
    is ignored, and the runtime refuses a label outside the classes)."""
    ignored = int(ctx.attr("ignore_index", -100))
    return ignored if 0 <= ignored < logp.type.shape[1] else None  # type: ignore[union-attr]


def _kept_one_hot(ctx: RelaxContext, labels: Value, classes: int, ignored: int) -> Value:
    """``one_hot(t)`` with the ignored class's column zeroed: row i is 1 at t_i, or all 0
    where t_i is ignored (TVM's per-row weight ``t_i != ignore_index``, at t_i)."""
    rows = ctx.emit("graph.one_hot", [labels], classes=classes)
    kept = np.ones(classes, np.float32)
    kept[ignored] = 0.0
    return ctx.emit("graph.mul", [rows, ctx.const(kept)])


@converter("relax.nn.nll_loss")
def _nll_loss(ctx: RelaxContext) -> Value:
    """``nll_loss(log_softmax(x), t)`` -> ``graph.cross_entropy x, t`` (times N for a sum).

    An ``ignore_index`` naming a class c leaves the rows labelled c out: with ``w`` the
    one-hot labels less column c, the loss is ``-sum(logp where w)`` divided, for the mean,
    by ``sum(w)``, the number of rows kept (TVM's: NaN when every row is ignored)."""
    logp, labels = ctx.arg(0), ctx.arg(1)
    reduction = _nll_checks(ctx, logp, labels)
    ignored = _ignored_class(ctx, logp)
    if ignored is not None:
        w = _kept_one_hot(ctx, labels, logp.type.shape[1], ignored)  # type: ignore[union-attr]
        # relu_backward selects: a -inf log-probability of a class not picked adds 0
        picked = ctx.emit("graph.reduce_sum", [ctx.emit("graph.relu_backward", [logp, w])])
        loss = ctx.emit("graph.neg", [picked])
        if reduction == "mean":
            loss = ctx.emit("graph.div", [loss, ctx.emit("graph.reduce_sum", [w])])
        return loss
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
    With an ``ignore_index`` naming a class, ``-w·g / sum(w)`` (``-w·g`` for a sum), ``w``
    the one-hot labels less that class's column: ignored rows get no gradient.
    """
    g, logp, labels = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    reduction = _nll_checks(ctx, logp, labels)
    if g.type.rank != 0:  # type: ignore[union-attr]
        raise ctx.unsupported("a non-scalar output gradient")
    ignored = _ignored_class(ctx, logp)
    if ignored is not None:
        w = _kept_one_hot(ctx, labels, logp.type.shape[1], ignored)  # type: ignore[union-attr]
        if reduction == "mean":
            g = ctx.emit("graph.div", [g, ctx.emit("graph.reduce_sum", [w])])
        return ctx.emit("graph.neg", [ctx.emit("graph.mul", [w, g])])
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


# normalization and adaptive pooling register their converters in their own module
from . import relax_ops_nn  # noqa: F401

__all__ = ["CONVERTERS", "RELAX_ELEMENT", "convert_call", "converter"]
