"""Converters of core-ATen views, elementwise math, matmuls, reductions and constants.

Views are value semantics in the graph dialect: ``view``/``reshape``/``squeeze``... become
``graph.reshape`` to the node's static shape, ``t``/``transpose``/``permute`` become
``graph.transpose``, ``expand`` becomes ``graph.broadcast_to``; ``clone``/``detach``/
``contiguous`` are the identity; ``slice``/``select``/``split``/``unbind`` become
``graph.slice`` (with a reshape dropping a selected dim) and their backwards
``graph.slice_backward``; ``cat``/``stack`` become ``graph.concat``. A matmul operand that is a 2-D transpose is folded into
the matmul's ``transpose_a``/``transpose_b`` flags, and ``addmm(b, x, t(w))`` becomes
``graph.linear %x, %w, %b``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import fx

from ..compiler.ir import Value
from .aten_to_ir import ConvertContext, converter

aten = torch.ops.aten


# --- identities and views ---------------------------------------------------------------
@converter(aten.clone.default, aten.detach.default, aten.alias.default,
           aten.contiguous.default, aten.lift_fresh_copy.default)
def _identity(ctx: ConvertContext, node: fx.Node) -> Value:
    return ctx.value(node.args[0])


@converter(aten._to_copy.default)
def _to_copy(ctx: ConvertContext, node: fx.Node) -> Value:
    src = node.args[0]
    value = ctx.value(src)
    # a dropout keep-mask is a bool in torch and 0/1 f32 on the fabric: type_as is free
    if ctx.element(src) != ctx.element() and value.type.element != ctx.element():  # type: ignore[union-attr]
        raise ctx.unsupported(f"conversion to {ctx.meta().dtype}")
    return value


@converter(aten.copy.default)
def _copy(ctx: ConvertContext, node: fx.Node) -> Value:
    return _broadcast(ctx, ctx.value(node.args[1]), ctx.shape())


def _reshape(ctx: ConvertContext, x: Value, shape: tuple[int, ...]) -> Value:
    if x.type.shape == shape:  # type: ignore[union-attr]
        return x
    return ctx.emit("graph.reshape", [x], shape=list(shape))


def _broadcast(ctx: ConvertContext, x: Value, shape: tuple[int, ...]) -> Value:
    if x.type.shape == shape:  # type: ignore[union-attr]
        return x
    return ctx.emit("graph.broadcast_to", [x], shape=list(shape))


@converter(aten.view.default, aten._unsafe_view.default, aten.reshape.default,
           aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default,
           aten.flatten.using_ints, aten.view_as.default)
def _view(ctx: ConvertContext, node: fx.Node) -> Value:
    return _reshape(ctx, ctx.value(node.args[0]), ctx.shape())


@converter(aten.as_strided.default)
def _as_strided(ctx: ConvertContext, node: fx.Node) -> Value:
    """Only the reshape case (group norm's decomposition makes one): a contiguous input,
    read from offset 0 with the contiguous strides of the new size, all of it."""
    src = ctx.meta(node.args[0])
    size, stride = [int(d) for d in node.args[1]], [int(d) for d in node.args[2]]
    offset = int(node.args[3]) if len(node.args) > 3 and node.args[3] is not None else 0
    contiguous = [math.prod(size[i + 1:]) for i in range(len(size))]
    if (offset or not src.is_contiguous() or math.prod(size) != src.numel()
            or any(n > 1 and s != c for n, s, c in zip(size, stride, contiguous))):
        raise ctx.unsupported(f"as_strided to size {size}, stride {stride}, offset {offset} "
                              "(only a reshape of a contiguous tensor is supported)")
    return _reshape(ctx, ctx.value(node.args[0]), tuple(size))


@converter(aten.expand.default, aten.expand_as.default)
def _expand(ctx: ConvertContext, node: fx.Node) -> Value:
    return _broadcast(ctx, ctx.value(node.args[0]), ctx.shape())


def _perm(ctx: ConvertContext, node: fx.Node, perm: list[int]) -> Value:
    x = ctx.value(node.args[0])
    rank = len(perm)
    if perm == sorted(perm):
        return x
    swaps_last_two = rank in (2, 3) and perm == list(range(rank - 2)) + [rank - 1, rank - 2]
    if swaps_last_two and x in ctx.b.transposed_from:
        return ctx.b.transposed_from[x]  # t(t(x)) = x
    out = ctx.emit("graph.transpose", [x], perm=perm)
    if swaps_last_two:
        ctx.b.transposed_from[out] = x
    return out


@converter(aten.t.default)
def _t(ctx: ConvertContext, node: fx.Node) -> Value:
    rank = len(ctx.shape())
    return _perm(ctx, node, [1, 0] if rank == 2 else list(range(rank)))


@converter(aten.transpose.int)
def _transpose(ctx: ConvertContext, node: fx.Node) -> Value:
    rank = len(ctx.shape())
    perm = list(range(rank))
    a, b = (d % rank for d in node.args[1:3])
    perm[a], perm[b] = perm[b], perm[a]
    return _perm(ctx, node, perm)


@converter(aten.permute.default)
def _permute(ctx: ConvertContext, node: fx.Node) -> Value:
    rank = len(ctx.shape())
    return _perm(ctx, node, [d % rank for d in node.args[1]])


# --- slices: graph.slice reads a strided box, graph.slice_backward writes one into zeros ----
def _dim(node: fx.Node, index: int, default: int = 0) -> int:
    args = node.args
    return int(args[index]) if len(args) > index else int(node.kwargs.get("dim", default))


def _box(shape: tuple[int, ...], dim: int, start: int, size: int, step: int = 1
         ) -> dict[str, list[int]]:
    """graph.slice attributes of ``size`` elements from ``start`` in steps of ``step`` along
    ``dim`` (whole extent on the other dims)."""
    offsets, sizes, strides = [0] * len(shape), list(shape), [1] * len(shape)
    offsets[dim], sizes[dim], strides[dim] = start, size, step
    return {"offsets": offsets, "sizes": sizes, "strides": strides}


def _slice_range(n: int, start: Any, end: Any, step: Any) -> tuple[int, int, int]:
    """(start, size, step) of Python's ``[start:end:step]`` on ``n`` elements."""
    lo, hi, st = slice(start, end, 1 if step is None else int(step)).indices(n)
    return lo, len(range(lo, hi, st)), st


def _emit_slice(ctx: ConvertContext, x: Value, dim: int, start: int, size: int, step: int = 1
                ) -> Value:
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    if size == shape[dim] and start == 0:
        return x
    return ctx.emit("graph.slice", [x], **_box(shape, dim, start, size, step))


@converter(aten.slice.Tensor)
def _slice(ctx: ConvertContext, node: fx.Node) -> Value:
    x = ctx.value(node.args[0])
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    dim = _dim(node, 1) % len(shape)
    a = list(node.args) + [None] * 5
    start, size, step = _slice_range(shape[dim], a[2], a[3], node.kwargs.get("step", a[4]))
    return _emit_slice(ctx, x, dim, start, size, step)


@converter(aten.select.int)
def _select(ctx: ConvertContext, node: fx.Node) -> Value:
    x = ctx.value(node.args[0])
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    dim = int(node.args[1]) % len(shape)
    index = int(node.args[2]) % shape[dim]
    return _reshape(ctx, _emit_slice(ctx, x, dim, index, 1), ctx.shape())


@converter(aten.split.Tensor, aten.split_with_sizes.default)
def _split(ctx: ConvertContext, node: fx.Node) -> tuple[Value, ...]:
    x = ctx.value(node.args[0])
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    dim = _dim(node, 2) % len(shape)
    sizes = node.args[1]
    if isinstance(sizes, int):  # split.Tensor: equal pieces, the last one shorter
        sizes = [min(sizes, shape[dim] - i) for i in range(0, shape[dim], sizes)]
    starts = np.cumsum([0, *sizes[:-1]])
    return tuple(_emit_slice(ctx, x, dim, int(s), int(k)) for s, k in zip(starts, sizes))


@converter(aten.unbind.int)
def _unbind(ctx: ConvertContext, node: fx.Node) -> tuple[Value, ...]:
    x = ctx.value(node.args[0])
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    dim = _dim(node, 1) % len(shape)
    rest = shape[:dim] + shape[dim + 1:]
    return tuple(_reshape(ctx, _emit_slice(ctx, x, dim, i, 1), rest) for i in range(shape[dim]))


def _emit_slice_backward(ctx: ConvertContext, g: Value, shape: tuple[int, ...], dim: int,
                         start: int, step: int = 1) -> Value:
    box = _box(shape, dim, start, g.type.shape[dim], step)  # type: ignore[union-attr]
    if tuple(g.type.shape) == shape:  # type: ignore[union-attr]
        return g
    return ctx.emit("graph.slice_backward", [g], shape=list(shape), offsets=box["offsets"],
                    strides=box["strides"])


@converter(aten.slice_backward.default)
def _slice_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    g = ctx.value(node.args[0])
    shape = tuple(int(d) for d in node.args[1])
    dim = int(node.args[2]) % len(shape)
    start, _, step = _slice_range(shape[dim], node.args[3], node.args[4], node.args[5])
    return _emit_slice_backward(ctx, g, shape, dim, start, step)


@converter(aten.select_backward.default)
def _select_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    shape = tuple(int(d) for d in node.args[1])
    dim = int(node.args[2]) % len(shape)
    g = _reshape(ctx, ctx.value(node.args[0]), shape[:dim] + (1,) + shape[dim + 1:])
    return _emit_slice_backward(ctx, g, shape, dim, int(node.args[3]) % shape[dim])


@converter(aten.cat.default)
def _cat(ctx: ConvertContext, node: fx.Node) -> Value:
    xs = [v for v in ctx.values(node.args[0]) if 0 not in v.type.shape]  # type: ignore[union-attr]
    if len(xs) == 1:
        return xs[0]
    return ctx.emit("graph.concat", xs, axis=_dim(node, 1) % len(ctx.shape()))


@converter(aten.stack.default)
def _stack(ctx: ConvertContext, node: fx.Node) -> Value:
    shape = ctx.shape()
    dim = _dim(node, 1) % len(shape)
    piece = shape[:dim] + (1,) + shape[dim + 1:]
    xs = [_reshape(ctx, v, piece) for v in ctx.values(node.args[0])]
    return xs[0] if len(xs) == 1 else ctx.emit("graph.concat", xs, axis=dim)


@converter(aten.arange.default, aten.arange.start, aten.arange.start_step)
def _arange(ctx: ConvertContext, node: fx.Node) -> Value:
    """A constant (static shapes: positions, e.g. for a positional embedding)."""
    bounds = [a for a in node.args if isinstance(a, (int, float))]
    values = np.arange(*bounds)
    if values.shape != ctx.shape():
        raise ctx.unsupported(f"arange{tuple(bounds)} with symbolic bounds")
    return ctx.const(values, ctx.element())


# --- matmul -------------------------------------------------------------------------------
def _operand(ctx: ConvertContext, arg: Any) -> tuple[Value, bool]:
    """(value, transposed): fold a transposing view into the matmul's flag."""
    v = ctx.value(arg)
    src = ctx.b.transposed_from.get(v)
    return (src, True) if src is not None else (v, False)


def _matmul(ctx: ConvertContext, a_arg: Any, b_arg: Any) -> Value:
    a, ta = _operand(ctx, a_arg)
    b, tb = _operand(ctx, b_arg)
    return ctx.emit("graph.matmul", [a, b], transpose_a=ta, transpose_b=tb)


@converter(aten.mm.default, aten.bmm.default)
def _mm(ctx: ConvertContext, node: fx.Node) -> Value:
    return _matmul(ctx, node.args[0], node.args[1])


@converter(aten.addmm.default)
def _addmm(ctx: ConvertContext, node: fx.Node) -> Value:
    bias, x, w = node.args[:3]
    beta, alpha = node.kwargs.get("beta", 1), node.kwargs.get("alpha", 1)
    wsrc = ctx.b.transposed_from.get(ctx.value(w))
    bias_v = ctx.value(bias)
    if (wsrc is not None and wsrc.type.rank == 2 and beta == 1 and alpha == 1  # type: ignore[union-attr]
            and bias_v.type.rank == 1):  # type: ignore[union-attr]
        return ctx.emit("graph.linear", [ctx.value(x), wsrc, bias_v])
    prod = _matmul(ctx, x, w)
    if alpha != 1:
        prod = ctx.emit("graph.mul", [prod, ctx.const(alpha)])
    if beta != 1:
        bias_v = ctx.emit("graph.mul", [bias_v, ctx.const(beta)])
    return ctx.emit("graph.add", [prod, bias_v])


# --- elementwise ----------------------------------------------------------------------------
def _scaled(ctx: ConvertContext, node: fx.Node, b: Value) -> Value:
    alpha = node.kwargs.get("alpha", 1)
    return b if alpha == 1 else ctx.emit("graph.mul", [b, ctx.const(alpha, ctx.element())])


def _binary(name: str, with_alpha: bool = False):
    def convert(ctx: ConvertContext, node: fx.Node) -> Value:
        if node.kwargs.get("rounding_mode") is not None:
            raise ctx.unsupported(f"rounding_mode={node.kwargs['rounding_mode']!r}")
        el = ctx.element()
        a, b = (_promoted(ctx, ctx.value(x, el), el) for x in node.args[:2])
        for v in (a, b):
            if v.type.element != el:  # type: ignore[union-attr]
                raise ctx.unsupported(f"mixed element types ({v.type} in a {el} op)")
        if with_alpha:
            b = _scaled(ctx, node, b)
        return ctx.emit(f"graph.{name}", [a, b])
    return convert


def _promoted(ctx: ConvertContext, v: Value, element: str) -> Value:
    """An integer or bool constant in float arithmetic as an f32 constant (torch's type
    promotion: a count folded on the host, divided into a float sum)."""
    op = v.defining_op
    if (element != "f32" or v.type.element == "f32"  # type: ignore[union-attr]
            or op is None or op.name != "graph.constant"):
        return v
    return ctx.const(np.asarray(op.attributes["value"].array, np.float32))  # type: ignore[union-attr]


for _name, _ops in {
    "add": (aten.add.Tensor, aten.add.Scalar),
    "sub": (aten.sub.Tensor, aten.sub.Scalar),
}.items():
    converter(*_ops)(_binary(_name, with_alpha=True))
converter(aten.mul.Tensor, aten.mul.Scalar)(_binary("mul"))
converter(aten.div.Tensor, aten.div.Scalar, aten.div.Tensor_mode)(_binary("div"))
# the prims a decomposition (group norm's) leaves: true division of floats
converter(torch.ops.prims.div.default)(_binary("div"))


@converter(aten.rsub.Scalar, aten.rsub.Tensor)
def _rsub(ctx: ConvertContext, node: fx.Node) -> Value:
    a, b = ctx.value(node.args[0]), ctx.value(node.args[1])
    return ctx.emit("graph.sub", [b, _scaled(ctx, node, a)])


for _name, _op in {"neg": aten.neg.default, "exp": aten.exp.default,
                   "sqrt": aten.sqrt.default, "rsqrt": aten.rsqrt.default,
                   "relu": aten.relu.default}.items():
    converter(_op)(lambda ctx, node, _n=_name: ctx.emit(f"graph.{_n}", [ctx.value(node.args[0])]))


@converter(aten.reciprocal.default)
def _reciprocal(ctx: ConvertContext, node: fx.Node) -> Value:
    return ctx.emit("graph.div", [ctx.const(1.0), ctx.value(node.args[0])])


#: the largest |integer exponent| taken, as products (each rounds: a few ulps off torch's pow)
POW_MAX_INT = 16


@converter(aten.pow.Tensor_Scalar)
def _pow(ctx: ConvertContext, node: fx.Node) -> Value:
    """torch's special cases (sqrt, rsqrt, 1/x, x*x, x*x*x, 1/(x*x): the same ops in the
    same order) and other small integer exponents as products by squaring (``rsqrt``'s
    backward takes its result to the power 3)."""
    x, p = ctx.value(node.args[0]), float(node.args[1])
    if p == 0.5:
        return ctx.emit("graph.sqrt", [x])
    if p == -0.5:
        return ctx.emit("graph.rsqrt", [x])
    if p.is_integer() and 0 < abs(p) <= POW_MAX_INT:
        power = _integer_power(ctx, x, int(abs(p)))
        return power if p > 0 else ctx.emit("graph.div", [ctx.const(1.0), power])
    raise ctx.unsupported(f"exponent {p:g} (the graph dialect has no pow: exponents 0.5, "
                          f"-0.5 and non-zero integers up to {POW_MAX_INT} in magnitude are "
                          "supported)")


def _integer_power(ctx: ConvertContext, x: Value, n: int) -> Value:
    """x^n, n >= 1: (x*x)*x for 3 as torch computes it, else by squaring."""
    if n == 1:
        return x
    if n == 3:
        return ctx.emit("graph.mul", [ctx.emit("graph.mul", [x, x]), x])
    half = _integer_power(ctx, x, n // 2)
    square = ctx.emit("graph.mul", [half, half])
    return square if n % 2 == 0 else ctx.emit("graph.mul", [square, x])


# --- reductions ---------------------------------------------------------------------------
def _reduce(kind: str):
    def convert(ctx: ConvertContext, node: fx.Node) -> Value:
        x = ctx.value(node.args[0])
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        if node.kwargs.get("dtype") not in (None, ctx.meta(node.args[0]).dtype):
            raise ctx.unsupported(f"dtype={node.kwargs['dtype']}")
        axes = [dims] if isinstance(dims, int) else list(dims or [])
        return ctx.emit(f"graph.reduce_{kind}", [x], axes=axes, keepdim=bool(keep))
    return convert


converter(aten.sum.dim_IntList, aten.sum.default)(_reduce("sum"))
converter(aten.mean.dim, aten.mean.default)(_reduce("mean"))
converter(aten.amax.default)(_reduce("max"))


@converter(torch.ops.prims.sum.default)
def _prims_sum(ctx: ConvertContext, node: fx.Node) -> Value:
    """``prims.sum(x, dims)``: over ``dims`` (all when None), not kept."""
    x = ctx.value(node.args[0])
    rank = len(x.type.shape)  # type: ignore[union-attr]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
    axes = list(range(rank)) if dims is None else sorted(d % rank for d in dims)
    return ctx.emit("graph.reduce_sum", [x], axes=axes, keepdim=False)


@converter(torch.ops.prims.broadcast_in_dim.default)
def _broadcast_in_dim(ctx: ConvertContext, node: fx.Node) -> Value:
    """x's dim i becomes dim ``broadcast_dimensions[i]`` of ``shape``; the others broadcast."""
    x = ctx.value(node.args[0])
    shape, dims = tuple(node.args[1]), list(node.args[2])
    kept = [1] * len(shape)
    for i, d in enumerate(dims):
        kept[d] = x.type.shape[i]  # type: ignore[union-attr]
    return _broadcast(ctx, _reshape(ctx, x, tuple(kept)), shape)


@converter(torch.ops.prims.var.default)
def _var(ctx: ConvertContext, node: fx.Node) -> Value:
    """``prims.var(x, dims, correction)`` (what decomposed ``var_mean`` and group norm
    reach): ``sum((x - mean)^2) / (n - correction)`` over ``dims``. torch's CPU kernel
    accumulates with Welford's update: the same value, rounded differently."""
    x = ctx.value(node.args[0])
    shape = x.type.shape  # type: ignore[union-attr]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dims")
    correction = float(node.args[2] if len(node.args) > 2 else node.kwargs.get("correction", 1))
    axes = list(range(len(shape))) if dims is None else sorted(d % len(shape) for d in dims)
    n = math.prod(shape[a] for a in axes)
    d = ctx.emit("graph.sub", [x, ctx.emit("graph.reduce_mean", [x], axes=axes, keepdim=True)])
    total = ctx.emit("graph.reduce_sum", [ctx.emit("graph.mul", [d, d])], axes=axes, keepdim=False)
    return ctx.emit("graph.div", [total, ctx.const(n - correction)])


# --- constants ---------------------------------------------------------------------------------
def _filled(ctx: ConvertContext, value: float) -> Value:
    el = ctx.element()
    dtype = {"f32": np.float32, "i64": np.int64, "i1": np.bool_}[el]
    return ctx.const(np.full(ctx.shape(), value, dtype), el)


@converter(aten.zeros.default, aten.zeros_like.default, aten.new_zeros.default,
           aten.empty_like.default, aten.empty.memory_format)
def _zeros(ctx: ConvertContext, node: fx.Node) -> Value:
    return _filled(ctx, 0)


@converter(aten.ones.default, aten.ones_like.default, aten.new_ones.default)
def _ones(ctx: ConvertContext, node: fx.Node) -> Value:
    return _filled(ctx, 1)


@converter(aten.full.default, aten.full_like.default, aten.new_full.default)
def _full(ctx: ConvertContext, node: fx.Node) -> Value:
    return _filled(ctx, node.args[-1] if node.target != aten.new_full.default else node.args[2])


@converter(aten.scalar_tensor.default)
def _scalar_tensor(ctx: ConvertContext, node: fx.Node) -> Value:
    return _filled(ctx, node.args[0])
