"""Row-wise kernels along the last axis: softmax, log_softmax (and backward), cross entropy
(and backward). A block of whole rows must fit the scratchpad; a row that does not is a
located error.

Cross entropy takes its labels as a **one-hot f32 tensor** ``[N, C]`` under the label
argument's name: the runtime prepares it from the integer labels (the compiled program's
``onehot`` lists those inputs). softmax of one row block::

    ld   sp[X] <- rows              vred max, sp[M], sp[X], axis=1
    vop  sub, sp[X], sp[X], sp[M], bmode=col      vop exp, sp[X], sp[X]
    vred sum, sp[S], sp[X], axis=1                vop div, sp[X], sp[X], sp[S], bmode=col
    st   sp[X] -> out
"""

from __future__ import annotations

from ..context import SCALAR_FREG, KernelContext
from ..memory import Buffer
from ..schedule import Slot
from ..shape_rules_view import last_axis
from ..tiling import row_block
from . import kernel


def _rows(ctx: KernelContext, buf: Buffer, buffers: int) -> tuple[int, int, int]:
    rows, cols = buf.rows_cols
    tr = row_block(cols, ctx.tiling, buffers)
    if tr == 0:
        raise ctx.error(f"a row of {cols} f32 ({4 * cols} bytes, {buffers} buffers) does not "
                        f"fit the {ctx.tiling.spad_bytes}-byte scratchpad of {ctx.target.name}")
    return rows, cols, tr


def _check_axis(ctx: KernelContext) -> None:
    if "axis" in ctx.attrs and not last_axis(int(ctx.attrs["axis"]), len(ctx.ins[0].shape)):  # type: ignore[arg-type]
        raise ctx.error("only the last axis is supported")
    if any(b.sparse for b in ctx.ins + ctx.outs):
        raise ctx.error("row-wise ops on sparse tensors are not supported")


class _Blocks:
    """Row blocks placed over clusters with double-buffered slots of ``widths`` columns."""

    def __init__(self, ctx: KernelContext, rows: int, tr: int, widths: list[int],
                 place_single: bool = False) -> None:
        free = ctx.tiling.spad_bytes - ctx.alloc.top["sp"] - 2 * 64 * len(widths) - 64
        tr = max(1, min(tr, free // (8 * sum(widths))))
        self.slots = [[ctx.alloc("sp", 4 * tr * w) for _ in range(2)] for w in widths]
        blocks = [(r0, min(tr, rows - r0)) for r0 in range(0, rows, tr)]
        self.placed = ([(0, b) for b in blocks] if place_single else list(ctx.place(blocks)))
        self.count = [0] * len(ctx.streams)

    def __iter__(self):
        for cl, (r0, h) in self.placed:
            k = self.count[cl] % 2
            self.count[cl] += 1
            yield cl, r0, h, [pair[k] for pair in self.slots]


@kernel("graph.softmax", "graph.log_softmax")
def softmax(ctx: KernelContext) -> None:
    _check_axis(ctx)
    x, out = ctx.ins[0], ctx.outs[0]
    rows, cols, tr = _rows(ctx, x, 4)
    log = ctx.op.name == "graph.log_softmax"
    for cl, r0, h, (sx, se, sm, ss) in _Blocks(ctx, rows, tr, [cols, cols if log else 1, 1, 1]):
        ctx.load(cl, x, r0, 0, h, cols, sx)
        _softmax_block(ctx, cl, sx, se, sm, ss, h, cols, log)
        ctx.store(cl, out, r0, 0, h, cols, sx)


def _softmax_block(ctx: KernelContext, cl: int, x: Slot, e: Slot, m: Slot, s: Slot, h: int,
                   w: int, log: bool) -> None:
    """x <- softmax(x) (or log_softmax(x), using e as an h x w scratch tile)."""
    ctx.vred(cl, "max", m, x, h, w, 1)
    ctx.vop(cl, "sub", x, x, h, w, m, bmode="col")
    if log:
        ctx.vop(cl, "exp", e, x, h, w)
        ctx.vred(cl, "sum", s, e, h, w, 1)
        ctx.vop(cl, "log", s, s, h, 1)
        ctx.vop(cl, "sub", x, x, h, w, s, bmode="col")
    else:
        ctx.vop(cl, "exp", x, x, h, w)
        ctx.vred(cl, "sum", s, x, h, w, 1)
        ctx.vop(cl, "div", x, x, h, w, s, bmode="col")


@kernel("graph.softmax_backward")
def softmax_backward(ctx: KernelContext) -> None:
    """grad_x = out * (g - sum(g * out))."""
    _check_axis(ctx)
    g, y = ctx.ins
    rows, cols, tr = _rows(ctx, g, 6)
    for cl, r0, h, (sg, sy, st, ss) in _Blocks(ctx, rows, tr, [cols, cols, cols, 1]):
        ctx.load(cl, g, r0, 0, h, cols, sg)
        ctx.load(cl, y, r0, 0, h, cols, sy)
        ctx.vop(cl, "mul", st, sg, h, cols, sy)
        ctx.vred(cl, "sum", ss, st, h, cols, 1)
        ctx.vop(cl, "sub", sg, sg, h, cols, ss, bmode="col")
        ctx.vop(cl, "mul", sg, sg, h, cols, sy)
        ctx.store(cl, ctx.outs[0], r0, 0, h, cols, sg)


@kernel("graph.log_softmax_backward")
def log_softmax_backward(ctx: KernelContext) -> None:
    """grad_x = g - exp(out) * sum(g)."""
    _check_axis(ctx)
    g, y = ctx.ins
    rows, cols, tr = _rows(ctx, g, 4)
    for cl, r0, h, (sg, sy, ss) in _Blocks(ctx, rows, tr, [cols, cols, 1]):
        ctx.load(cl, g, r0, 0, h, cols, sg)
        ctx.load(cl, y, r0, 0, h, cols, sy)
        ctx.vred(cl, "sum", ss, sg, h, cols, 1)
        ctx.vop(cl, "exp", sy, sy, h, cols)
        ctx.vop(cl, "mul", sy, sy, h, cols, ss, bmode="col")
        ctx.vop(cl, "sub", sg, sg, h, cols, sy)
        ctx.store(cl, ctx.outs[0], r0, 0, h, cols, sg)


@kernel("graph.cross_entropy")
def cross_entropy(ctx: KernelContext) -> None:
    """loss = -(1/N) sum(onehot * log_softmax(logits)), on cluster 0 (one accumulator)."""
    _check_axis(ctx)
    x, y = ctx.ins
    rows, cols, tr = _rows(ctx, x, 6)
    total = ctx.alloc("sp", 4)
    first = True
    for cl, r0, h, (sx, sy, se, sm, ss) in _Blocks(ctx, rows, tr, [cols, cols, cols, 1, 1],
                                                   place_single=True):
        ctx.load(cl, x, r0, 0, h, cols, sx)
        ctx.load(cl, y, r0, 0, h, cols, sy)
        _softmax_block(ctx, cl, sx, se, sm, ss, h, cols, log=True)
        ctx.vop(cl, "mul", sx, sx, h, cols, sy)
        ctx.vred(cl, "sum", ss, sx, h, cols, 1)
        ctx.vred(cl, "sum", total, ss, h, 1, 0, accum=not first)
        first = False
    ctx.vop(0, "mul", total, total, 1, 1, bmode="imm", imm=-1.0 / rows)
    ctx.store(0, Buffer(ctx.outs[0].addr, (1, 1)), 0, 0, 1, 1, total)


@kernel("graph.cross_entropy_backward")
def cross_entropy_backward(ctx: KernelContext) -> None:
    """grad = (softmax(logits) - onehot) * grad_loss / N."""
    g, x, y = ctx.ins
    if any(b.sparse for b in ctx.ins + ctx.outs):
        raise ctx.error("row-wise ops on sparse tensors are not supported")
    rows, cols, tr = _rows(ctx, x, 4)
    gslot = ctx.alloc("sp", 4)
    for cl, r0, h, (sx, sy, sm, ss) in _Blocks(ctx, rows, tr, [cols, cols, 1, 1]):
        ctx.scalar_to_freg(cl, Buffer(g.addr, (1, 1)), gslot)
        ctx.load(cl, x, r0, 0, h, cols, sx)
        ctx.load(cl, y, r0, 0, h, cols, sy)
        _softmax_block(ctx, cl, sx, sx, sm, ss, h, cols, log=False)
        ctx.vop(cl, "sub", sx, sx, h, cols, sy)
        ctx.vop(cl, "mul", sx, sx, h, cols, bmode="freg", imm=float(SCALAR_FREG))
        ctx.vop(cl, "mul", sx, sx, h, cols, bmode="imm", imm=1.0 / rows)
        ctx.store(cl, ctx.outs[0], r0, 0, h, cols, sx)
