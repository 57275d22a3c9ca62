"""Reductions over ``vred``: ``graph.reduce_sum``/``reduce_max``/``reduce_mean``.

A suffix of reduced axes is the view ``outer x inner`` (reduce columns: ``axis=1``), a
prefix the view ``reduced x kept`` (reduce rows: ``axis=0``); all axes is the suffix case
with one row. Other axis sets (e.g. the middle axes of attention-shaped tensors) are first
gathered (``ldg``) into a DRAM scratch copy with the reduced axes last, then reduced as a
suffix. Chunks along the reduced axis accumulate into one slot
(``accum=1``); the mean multiplies the sum by ``1/count`` (``vop mul ... bmode=imm``)::

    ld   sp[X] <- tile        vred sum, sp[R], sp[X], rows=.., cols=.., axis=1, accum=1
    vop  mul, sp[R], sp[R], bmode=imm, imm=0.125      st sp[R] -> out
"""

from __future__ import annotations

import math

from ..context import KernelContext
from ..memory import Buffer
from ..shape_rules_view import normalize
from ..tiling import vector_tile
from ...dialect import attrs_of
from . import kernel, scratch
from .layout import contiguous_strides, gather_copy

FN = {"graph.reduce_sum": "sum", "graph.reduce_max": "max", "graph.reduce_mean": "sum"}


@kernel(*FN)
def reduce(ctx: KernelContext) -> None:
    x, out = ctx.ins[0], ctx.outs[0]
    if x.sparse or out.sparse:
        raise ctx.error("reductions of sparse tensors are not supported")
    shape = x.shape
    axes = normalize(list(ctx.attrs["axes"]), len(shape))  # type: ignore[arg-type]
    r = len(shape)
    fn = FN[ctx.op.name]
    if axes == list(range(r - len(axes), r)):
        outer, inner = math.prod(shape[:r - len(axes)]), math.prod(shape[r - len(axes):])
        reduce_2d(ctx, fn, Buffer(x.addr, (outer, inner)), Buffer(out.addr, (outer, 1)), 1)
    elif axes == list(range(len(axes))):
        red, kept = math.prod(shape[:len(axes)]), math.prod(shape[len(axes):])
        reduce_2d(ctx, fn, Buffer(x.addr, (red, kept)), Buffer(out.addr, (1, kept)), 0)
    else:  # middle axes: gather the reduced axes last into scratch, then a suffix reduce
        kept = [i for i in range(r) if i not in axes]
        perm = kept + axes
        xs = contiguous_strides(shape)
        tshape = [shape[p] for p in perm]
        tmp = ctx.scratch[0]
        gather_copy(ctx, x.addr, tmp.addr, tshape, [xs[p] for p in perm],
                    contiguous_strides(tshape))
        ctx.barrier()
        outer = math.prod(shape[i] for i in kept)
        inner = math.prod(shape[i] for i in axes)
        reduce_2d(ctx, fn, Buffer(tmp.addr, (outer, inner)), Buffer(out.addr, (outer, 1)), 1)


def _middle(op) -> bool:
    shape = op.operands[0].type.shape
    r = len(shape)
    axes = normalize(list(attrs_of(op)["axes"]), r)
    return not (axes == list(range(r - len(axes), r)) or axes == list(range(len(axes))))


@scratch(*FN)
def _reduce_scratch(op) -> list[tuple[int, ...]]:
    return [tuple(op.operands[0].type.shape)] if _middle(op) else []


def reduce_2d(ctx: KernelContext, fn: str, x: Buffer, out: Buffer, axis: int) -> None:
    rows, cols = x.rows_cols
    tr, tc = vector_tile(rows, cols, ctx.tiling)
    if axis == 1 and cols > tc:
        tr = max(1, min(rows, ctx.tiling.elems // tc))
    x_slots = [ctx.alloc("sp", 4 * tr * tc) for _ in range(2)]
    r_slots = [ctx.alloc("sp", 4 * max(tr, tc)) for _ in range(2)]
    count = [0] * len(ctx.streams)
    blocks = ([(r0, min(tr, rows - r0)) for r0 in range(0, rows, tr)] if axis == 1
              else [(c0, min(tc, cols - c0)) for c0 in range(0, cols, tc)])
    n = cols if axis == 1 else rows
    mean = ctx.op.name == "graph.reduce_mean"
    xi = [0] * len(ctx.streams)
    for cl, (start, size) in ctx.place(blocks):
        res = r_slots[count[cl] % 2]
        count[cl] += 1
        chunks = (range(0, cols, tc) if axis == 1 else range(0, rows, tr))
        for i, c in enumerate(chunks):
            xs = x_slots[xi[cl] % 2]
            xi[cl] += 1
            if axis == 1:
                h, w = size, min(tc, cols - c)
                ctx.load(cl, x, start, c, h, w, xs)
            else:
                h, w = min(tr, rows - c), size
                ctx.load(cl, x, c, start, h, w, xs)
            ctx.vred(cl, fn, res, xs, h, w, axis, accum=i > 0)
        rh, rw = (size, 1) if axis == 1 else (1, size)
        if mean:
            ctx.vop(cl, "mul", res, res, rh, rw, bmode="imm", imm=1.0 / n)
        if axis == 1:
            ctx.store(cl, out, start, 0, rh, 1, res)
        else:
            ctx.store(cl, out, 0, start, 1, rw, res)
