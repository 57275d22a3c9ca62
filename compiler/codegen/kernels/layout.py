"""Data-movement kernels built on ``ldg``: ``graph.transpose`` (any permutation, batched),
``graph.broadcast_to`` (a zero gather stride per broadcast dim), ``graph.slice`` and
``graph.slice_backward`` (a strided box read, or written into zeros), ``graph.concat``,
and the helpers other
kernels compose: :func:`gather_copy` (a strided view of one DRAM buffer copied into
another) and :func:`fill` (a DRAM range set to a constant, e.g. the zero border of a
padded conv input).

:func:`gather_copy` first merges dims that are contiguous in both source and destination,
then cuts the view into blocks over its last three dims (at most ``T*T`` elements each)::

    ldg  sp[X] <- src + offset, d0, d1, d2, s0, s1, s2     # the strided block, dense in sp
    st   sp[X] -> dst + offset, rows=d0*d1, cols=d2, stride=row pitch of dst

A destination whose block rows are not uniformly strided takes one ``st`` per d0 slice.
"""

from __future__ import annotations

import itertools
import math

from ..context import KernelContext
from ..memory import Buffer
from . import kernel

MAX16 = 0xFFFF


def contiguous_strides(shape: tuple[int, ...] | list[int]) -> list[int]:
    out, acc = [], 1
    for d in reversed(list(shape)):
        out.append(acc)
        acc *= d
    return out[::-1]


def _collapse(dims: list[int], ss: list[int], ds: list[int]) -> tuple[list[int], list[int], list[int]]:
    keep = [(d, a, b) for d, a, b in zip(dims, ss, ds) if d != 1]
    out: list[list[int]] = []
    for d, a, b in keep:
        if out and out[-1][1] == a * d and out[-1][2] == b * d:
            out[-1] = [out[-1][0] * d, a, b]
        else:
            out.append([d, a, b])
    if not out:
        out = [[1, 0, 1]]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]


def _chunks(n: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(step, n - i)) for i in range(0, n, step)]


def gather_copy(ctx: KernelContext, src: int, dst: int, dims: list[int], sstr: list[int],
                dstr: list[int], place: bool = True) -> None:
    """dst[i] = src[i] over the index space ``dims`` (byte base addresses, element strides)."""
    if math.prod(dims) == 0:
        return
    dims, sstr, dstr = _collapse(list(dims), list(sstr), list(dstr))
    while len(dims) < 3:
        dims, sstr, dstr = [1] + dims, [0] + sstr, [0] + dstr
    budget = min(ctx.tiling.elems, MAX16)  # a block's rows x cols is one 16-bit-field st
    L = dims[-3:]
    b2 = min(L[2], budget, MAX16)
    b1 = 1 if b2 < L[2] else min(L[1], max(1, budget // b2), MAX16)
    b0 = 1 if b1 < L[1] or b2 < L[2] else min(L[0], max(1, budget // (b1 * b2)), MAX16)
    outer = dims[:-3]
    blocks = []
    for idx in itertools.product(*(range(d) for d in outer)):
        base_s = sum(i * s for i, s in zip(idx, sstr))
        base_d = sum(i * s for i, s in zip(idx, dstr))
        for (i0, e0), (i1, e1), (i2, e2) in itertools.product(
                _chunks(L[0], b0), _chunks(L[1], b1), _chunks(L[2], b2)):
            blocks.append((base_s + i0 * sstr[-3] + i1 * sstr[-2] + i2 * sstr[-1],
                           base_d + i0 * dstr[-3] + i1 * dstr[-2] + i2 * dstr[-1], e0, e1, e2))
    slots = [ctx.alloc("sp", 4 * b0 * b1 * b2) for _ in range(2)]
    count = [0] * len(ctx.streams)
    placed = ctx.place(blocks) if place else ((0, b) for b in blocks)
    S0, S1, S2 = sstr[-3:]
    D0, D1, D2 = dstr[-3:]
    for cl, (so, do, e0, e1, e2) in placed:
        slot = slots[count[cl] % 2]
        count[cl] += 1
        ctx.ldg(cl, slot, src + 4 * so, (e0, e1, e2), (S0, S1, S2))
        store_block(ctx, cl, slot, dst + 4 * do, (e0, e1, e2), (D0, D1, D2))


def store_block(ctx: KernelContext, cl: int, slot, addr: int, e: tuple[int, int, int],
                 d: tuple[int, int, int]) -> None:
    """Store the e0 x e1 x e2 block in ``slot`` to DRAM byte ``addr`` with element strides
    ``d``: as few ``st`` as the strides allow."""
    e0, e1, e2 = e
    D0, D1, D2 = d
    if D2 != 1 and e2 > 1:  # strided destination columns: one element per row
        for i0, i1 in itertools.product(range(e0), range(e1)):
            ctx.st_at(cl, slot, addr + 4 * (i0 * D0 + i1 * D1), e2, 1, D2,
                      offset=4 * (i0 * e1 + i1) * e2)
        return
    if e1 == 1:
        ctx.st_at(cl, slot, addr, e0, e2, D0)
    elif D1 == e2:  # block rows are contiguous in dst: one row of e1*e2 per d0 index
        ctx.st_at(cl, slot, addr, e0, e1 * e2, D0)
    elif e0 == 1 or D0 == e1 * D1:
        ctx.st_at(cl, slot, addr, e0 * e1, e2, D1)
    else:
        for i0 in range(e0):
            ctx.st_at(cl, slot, addr + 4 * i0 * D0, e1, e2, D1, offset=4 * i0 * e1 * e2)


def fill(ctx: KernelContext, addr: int, n: int, value: float = 0.0) -> None:
    """DRAM floats ``[addr, addr + 4n)`` <- value, from a constant tile on each cluster."""
    if n == 0:
        return
    c = min(n, ctx.tiling.elems, MAX16)
    slot = ctx.alloc("sp", 4 * c)
    made: set[int] = set()
    for cl, (i, w) in ctx.place(_chunks(n, c)):
        if cl not in made:
            made.add(cl)
            const_tile(ctx, cl, slot, 1, c, value)
        ctx.st_at(cl, slot, addr + 4 * i, 1, w)


def const_tile(ctx: KernelContext, cl: int, slot, rows: int, cols: int, value: float) -> None:
    """slot <- value (whatever it held: x > +inf is false even for NaN)."""
    ctx.vop(cl, "gt", slot, slot, rows, cols, bmode="imm", imm=float("inf"))
    if value != 0.0:
        ctx.vop(cl, "add", slot, slot, rows, cols, bmode="imm", imm=float(value))


@kernel("graph.transpose")
def transpose(ctx: KernelContext) -> None:
    x, out = ctx.ins[0], ctx.outs[0]
    if x.sparse or out.sparse:
        raise ctx.error("transpose of a sparse tensor is not supported")
    perm = [int(p) for p in ctx.attrs["perm"]]  # type: ignore[union-attr]
    xs = contiguous_strides(x.shape)
    gather_copy(ctx, x.addr, out.addr, list(out.shape), [xs[p] for p in perm],
                contiguous_strides(out.shape))


@kernel("graph.broadcast_to")
def broadcast_to(ctx: KernelContext) -> None:
    x, out = ctx.ins[0], ctx.outs[0]
    if x.sparse or out.sparse:
        raise ctx.error("broadcast_to of a sparse tensor is not supported")
    shape = (1,) * (len(out.shape) - len(x.shape)) + tuple(x.shape)
    xs = contiguous_strides(shape)
    src = [0 if d == 1 else s for d, s in zip(shape, xs)]
    gather_copy(ctx, x.addr, out.addr, list(out.shape), src, contiguous_strides(out.shape))


@kernel("graph.slice")
def slice_(ctx: KernelContext) -> None:
    """A strided box of x: one gather from x's offset, its strides scaled by the slice's."""
    x, out = ctx.ins[0], ctx.outs[0]
    if x.sparse or out.sparse:
        raise ctx.error("slice of a sparse tensor is not supported")
    base, strides = _box(ctx, x.shape)
    gather_copy(ctx, x.addr + 4 * base, out.addr, list(out.shape), strides,
                contiguous_strides(out.shape))


@kernel("graph.slice_backward")
def slice_backward(ctx: KernelContext) -> None:
    """Zeros, then g scattered into the box (a barrier between: the box's stores overwrite
    zeros). Where g covers the whole output only the copy runs."""
    g, out = ctx.ins[0], ctx.outs[0]
    if g.sparse or out.sparse:
        raise ctx.error("slice_backward of a sparse tensor is not supported")
    if tuple(g.shape) != tuple(out.shape):
        fill(ctx, out.addr, math.prod(out.shape))
        ctx.barrier()
    base, strides = _box(ctx, out.shape)
    gather_copy(ctx, g.addr, out.addr + 4 * base, list(g.shape), contiguous_strides(g.shape),
                strides)


@kernel("graph.concat")
def concat(ctx: KernelContext) -> None:
    """Each operand copied into its place along the axis (one gather_copy each)."""
    out = ctx.outs[0]
    if out.sparse or any(x.sparse for x in ctx.ins):
        raise ctx.error("concat of sparse tensors is not supported")
    axis = int(ctx.attrs["axis"]) % len(out.shape)  # type: ignore[arg-type]
    os_ = contiguous_strides(out.shape)
    at = 0
    for x in ctx.ins:
        gather_copy(ctx, x.addr, out.addr + 4 * at * os_[axis], list(x.shape),
                    contiguous_strides(x.shape), os_)
        at += x.shape[axis]


def _box(ctx: KernelContext, shape: tuple[int, ...]) -> tuple[int, list[int]]:
    """(first element, element strides) of the op's ``offsets``/``strides`` box in a
    contiguous tensor of ``shape``."""
    dense = contiguous_strides(shape)
    offsets = [int(v) for v in ctx.attrs["offsets"]]  # type: ignore[union-attr]
    steps = [int(v) for v in ctx.attrs["strides"]]  # type: ignore[union-attr]
    return sum(o * s for o, s in zip(offsets, dense)), [s * k for s, k in zip(dense, steps)]


def view(buf: Buffer, shape: tuple[int, ...]) -> Buffer:
    return Buffer(buf.addr, tuple(shape))
