"""Pooling kernels (NCHW): ``graph.max_pool2d``, ``graph.avg_pool2d`` and their backward ops.

Layout: the N*C planes are independent; an output tile is a block of whole planes (or of
output rows of one plane) and each kernel tap is one ``ldg`` of the shifted, strided
window (d0 = planes, stride H*W; d1 = output rows, stride sh*W; d2 = output columns,
stride sw), combined with ``vop max``/``add``. Padding copies the input into a DRAM
scratch filled with -inf (max) or 0 (avg).

Backward (non-overlapping windows, stride == kernel, no padding): per tap, the gradient
share of every window (max: ``g`` where the tap holds the window's *first* maximum, the
PyTorch/interpreter tie rule, recomputed from the forward input; avg: ``g / (KH*KW)``) is
stored to a DRAM scratch laid out [N*C, KH*KW, OH, OW]; one ``gather_copy`` interleaves
the taps back into NCHW (rows/columns not covered by any window are zero-filled).
"""

from __future__ import annotations

from ...dialect import attrs_of
from ..context import KernelContext
from . import kernel, scratch
from .layout import const_tile, fill, gather_copy


def _pool_params(op):
    a = attrs_of(op)
    x = op.operands[0].type.shape if op.name in ("graph.max_pool2d", "graph.avg_pool2d") \
        else op.operands[1].type.shape
    kh, kw = (int(v) for v in a["kernel_size"])  # type: ignore[union-attr]
    sh, sw = (int(v) for v in a["stride"]) if a["stride"] else (kh, kw)  # type: ignore[union-attr]
    ph, pw = (int(v) for v in a["padding"])  # type: ignore[union-attr]
    n, c, h, w = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    return n * c, h, w, kh, kw, sh, sw, ph, pw, oh, ow


@scratch("graph.max_pool2d", "graph.avg_pool2d", "graph.max_pool2d_backward",
         "graph.avg_pool2d_backward")
def _pool_scratch(op) -> list[tuple[int, ...]]:
    p, h, w, kh, kw, sh, sw, ph, pw, oh, ow = _pool_params(op)
    if op.name.endswith("_backward"):
        return [(p, kh * kw, oh, ow)]
    return [(p, h + 2 * ph, w + 2 * pw)] if ph or pw else []


def _blocks(p: int, oh: int, ow: int, elems: int) -> list[tuple[int, int, int, int, int, int]]:
    """(plane0, planes, oh0, rows, ow0, cols) tiles of at most ``elems`` outputs."""
    if oh * ow <= elems:
        pb = max(1, elems // (oh * ow))
        return [(i, min(pb, p - i), 0, oh, 0, ow) for i in range(0, p, pb)]
    if ow <= elems:
        r = elems // ow
        return [(i, 1, j, min(r, oh - j), 0, ow) for i in range(p) for j in range(0, oh, r)]
    return [(i, 1, j, 1, k, min(elems, ow - k)) for i in range(p) for j in range(oh)
            for k in range(0, ow, elems)]


class _Pool:
    def __init__(self, ctx: KernelContext) -> None:
        (self.p, self.h, self.w, self.kh, self.kw, self.sh, self.sw, self.ph, self.pw,
         self.oh, self.ow) = _pool_params(ctx.op)
        if any(b.sparse for b in ctx.ins + ctx.outs):
            raise ctx.error("pooling of sparse tensors is not supported")
        self.ctx = ctx

    def source(self, x_addr: int, value: float) -> tuple[int, int, int]:
        if not (self.ph or self.pw):
            return x_addr, self.h, self.w
        ctx = self.ctx
        xp = ctx.scratch[0]
        hp, wp = self.h + 2 * self.ph, self.w + 2 * self.pw
        fill(ctx, xp.addr, self.p * hp * wp, value)
        ctx.barrier()
        gather_copy(ctx, x_addr, xp.addr + 4 * (self.ph * wp + self.pw), [self.p, self.h, self.w],
                    [self.h * self.w, self.w, 1], [hp * wp, wp, 1])
        ctx.barrier()
        return xp.addr, hp, wp

    def window(self, cl, slot, src, hin, win, tile, tap) -> None:
        p0, pb, oh0, rows, ow0, cols = tile
        kh, kw = divmod(tap, self.kw)
        addr = src + 4 * (p0 * hin * win + (oh0 * self.sh + kh) * win + ow0 * self.sw + kw)
        self.ctx.ldg(cl, slot, addr, (pb, rows, cols), (hin * win, self.sh * win, self.sw))


@kernel("graph.max_pool2d", "graph.avg_pool2d")
def pool2d(ctx: KernelContext) -> None:
    P = _Pool(ctx)
    is_max = ctx.op.name == "graph.max_pool2d"
    if not is_max and not ctx.attrs["count_include_pad"] and (P.ph or P.pw):
        raise ctx.error("avg_pool2d with count_include_pad = false and padding is not supported")
    src, hin, win = P.source(ctx.ins[0].addr, float("-inf") if is_max else 0.0)
    elems = ctx.tiling.elems
    acc = [ctx.alloc("sp", 4 * elems) for _ in range(2)]
    xs = [ctx.alloc("sp", 4 * elems) for _ in range(2)]
    count = [0] * len(ctx.streams)
    plane_out = P.oh * P.ow
    for cl, tile in ctx.place(_blocks(P.p, P.oh, P.ow, elems)):
        p0, pb, oh0, rows, ow0, cols = tile
        m, pt = acc[count[cl] % 2], rows * cols
        for tap in range(P.kh * P.kw):
            if tap == 0:
                P.window(cl, m, src, hin, win, tile, tap)
                continue
            x = xs[(count[cl] + tap) % 2]
            P.window(cl, x, src, hin, win, tile, tap)
            ctx.vop(cl, "max" if is_max else "add", m, m, pb, pt, x)
        count[cl] += 1
        if not is_max:
            ctx.vop(cl, "mul", m, m, pb, pt, bmode="imm", imm=1.0 / (P.kh * P.kw))
        ctx.st_at(cl, m, ctx.outs[0].addr + 4 * (p0 * plane_out + oh0 * P.ow + ow0), pb, pt, plane_out)


@kernel("graph.max_pool2d_backward", "graph.avg_pool2d_backward")
def pool2d_backward(ctx: KernelContext) -> None:
    P = _Pool(ctx)
    if P.ph or P.pw or (P.sh, P.sw) != (P.kh, P.kw):
        raise ctx.error("pooling backward needs stride == kernel_size and no padding")
    is_max = ctx.op.name == "graph.max_pool2d_backward"
    g, x = ctx.ins
    out = ctx.outs[0]
    gs = ctx.scratch[0]
    ntap = P.kh * P.kw
    plane_out = P.oh * P.ow
    elems = ctx.tiling.elems
    names = ["g", "m", "nt", "x", "e"] if is_max else ["g"]
    slots = {k: ctx.alloc("sp", 4 * elems) for k in names}
    for cl, tile in ctx.place(_blocks(P.p, P.oh, P.ow, elems)):
        p0, pb, oh0, rows, ow0, cols = tile
        pt = rows * cols
        sg = slots["g"]
        ctx.ld_at(cl, sg, g.addr + 4 * (p0 * plane_out + oh0 * P.ow + ow0), pb, pt, plane_out)
        base = gs.addr + 4 * (p0 * ntap * plane_out + oh0 * P.ow + ow0)
        if not is_max:
            ctx.vop(cl, "mul", sg, sg, pb, pt, bmode="imm", imm=1.0 / ntap)
            for tap in range(ntap):
                ctx.st_at(cl, sg, base + 4 * tap * plane_out, pb, pt, ntap * plane_out)
            continue
        m, nt, sx, e = slots["m"], slots["nt"], slots["x"], slots["e"]
        P.window(cl, m, x.addr, P.h, P.w, tile, 0)
        for tap in range(1, ntap):
            P.window(cl, sx, x.addr, P.h, P.w, tile, tap)
            ctx.vop(cl, "max", m, m, pb, pt, sx)
        const_tile(ctx, cl, nt, pb, pt, 1.0)
        for tap in range(ntap):
            P.window(cl, sx, x.addr, P.h, P.w, tile, tap)
            ctx.vop(cl, "eq", e, sx, pb, pt, m)           # tap holds the window max
            ctx.vop(cl, "mul", e, e, pb, pt, nt)          # ... and no earlier tap did
            ctx.vop(cl, "sub", nt, nt, pb, pt, e)
            ctx.vop(cl, "mask", e, sg, pb, pt, e)         # g where selected
            ctx.st_at(cl, e, base + 4 * tap * plane_out, pb, pt, ntap * plane_out)
    ctx.barrier()
    if P.oh * P.kh < P.h or P.ow * P.kw < P.w:
        fill(ctx, out.addr, P.p * P.h * P.w)
        ctx.barrier()
    gather_copy(ctx, gs.addr, out.addr, [P.p, P.oh, P.kh, P.ow, P.kw],
                [ntap * plane_out, P.ow, P.kw * plane_out, 1, plane_out],
                [P.h * P.w, P.kh * P.w, P.w, P.kw, 1])
