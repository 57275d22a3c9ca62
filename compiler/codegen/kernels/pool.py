"""Pooling kernels (NCHW): ``graph.max_pool2d``, ``graph.avg_pool2d`` and their backward ops.

Layout: the N*C planes are independent; an output tile is a block of whole planes (or of
output rows of one plane) and each kernel tap is one ``ldg`` of the shifted, strided
window (d0 = planes, stride H*W; d1 = output rows, stride sh*W; d2 = output columns,
stride sw), combined with ``vop max``/``add``. Padding copies the input into a DRAM
scratch filled with -inf (max) or 0 (avg).

Backward: per tap, the gradient share of every window (max: ``g`` where the tap holds the
window's *first* maximum, the PyTorch/interpreter tie rule, recomputed from the (padded)
forward input; avg: ``g / (KH*KW)``, one share for every tap) is stored to a DRAM scratch
laid out [N*C, taps, OH, OW].

* Non-overlapping windows (stride == kernel, no padding): every input element is in at
  most one window, so one ``gather_copy`` interleaves the taps back into NCHW (elements
  in no window are zero-filled).
* Otherwise (overlapping windows, padding: ResNet's 3x3 stride-2 padded max pool) an input
  element sums the shares of every window that holds it. The input's rows and columns are
  split by phase, ``y mod stride``: the elements of one phase sit at a fixed tap offset
  from the windows of each tap that reaches them, so each phase is a sum of whole
  shifted share planes (``ldg`` + ``vop add``; the share scratch has zero borders so a
  window that does not exist adds zero). The phases go to a scratch
  [N*C, SH, SW, ceil(H/SH), ceil(W/SW)] and ``gather_copy`` interleaves them into NCHW.
"""

from __future__ import annotations

from ...dialect import attrs_of
from ..context import KernelContext
from . import kernel, scratch
from .layout import const_tile, fill, gather_copy, store_block


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
    padded = [(p, h + 2 * ph, w + 2 * pw)] if ph or pw else []
    if not op.name.endswith("_backward"):
        return padded
    g = _Phases(op)
    if not g.overlapping:
        return [(p, kh * kw, oh, ow)]
    shares = [(p, g.share_planes, g.rows.size, g.cols.size), (p, sh, sw, g.rows.per_phase, g.cols.per_phase)]
    return shares + (padded if op.name == "graph.max_pool2d_backward" else [])


class _Axis:
    """One spatial axis of a pooling backward, split by phase: output (input-gradient) index
    ``y = phase + stride * u`` is reached by tap ``i`` of window ``u + shift`` for every
    ``(i, shift)`` in ``taps[phase]``. ``before``/``after``: zero border the share planes
    need so that every shifted window a phase reads exists (windows off the end add 0)."""

    def __init__(self, n: int, k: int, s: int, pad: int, out: int) -> None:
        self.per_phase = -(-n // s)
        self.count = [max(0, -(-(n - a) // s)) for a in range(s)]  # indices of each phase
        self.taps = [[(i, (a + pad - i) // s) for i in range(k) if (a + pad - i) % s == 0]
                     for a in range(s)]
        shifts = [(d, self.count[a]) for a in range(s) if self.count[a] for _, d in self.taps[a]]
        self.before = max([0] + [-d for d, _ in shifts])
        self.after = max([0] + [c - 1 + d - (out - 1) for d, c in shifts])
        self.size = out + self.before + self.after


class _Phases:
    """The backward's geometry: whether windows overlap (or are padded), each axis by
    phase, and how many share planes the shares scratch holds."""

    def __init__(self, op) -> None:
        _, h, w, kh, kw, sh, sw, ph, pw, oh, ow = _pool_params(op)
        self.overlapping = bool(ph or pw) or (sh, sw) != (kh, kw)
        self.rows, self.cols = _Axis(h, kh, sh, ph, oh), _Axis(w, kw, sw, pw, ow)
        # max: a share plane per tap (where it holds the first maximum); avg: one for all
        self.share_planes = kh * kw if op.name == "graph.max_pool2d_backward" else 1


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

    def source(self, x_addr: int, value: float, scratch: int = 0) -> tuple[int, int, int]:
        """The input, or its copy padded with ``value`` in ``ctx.scratch[scratch]``."""
        if not (self.ph or self.pw):
            return x_addr, self.h, self.w
        ctx = self.ctx
        xp = ctx.scratch[scratch]
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
    is_max = ctx.op.name == "graph.max_pool2d_backward"
    if not is_max and not ctx.attrs["count_include_pad"] and (P.ph or P.pw):
        raise ctx.error("avg_pool2d with count_include_pad = false and padding is not supported")
    G = _Phases(ctx.op)
    g, x = ctx.ins
    shares = ctx.scratch[0]
    R, C = G.rows, G.cols
    planes = G.share_planes if G.overlapping else P.kh * P.kw
    plane = R.size * C.size if G.overlapping else P.oh * P.ow
    row_pitch = C.size if G.overlapping else P.ow
    first = R.before * row_pitch + C.before if G.overlapping else 0
    # max: the windows of the input padded with -inf (scratch 2 exists where it is padded)
    src, hin, win = P.source(x.addr, float("-inf"), 2) if is_max else (x.addr, P.h, P.w)
    if G.overlapping and (R.before or R.after or C.before or C.after):
        fill(ctx, shares.addr, P.p * planes * plane)  # windows that do not exist share 0
        ctx.barrier()
    _shares(ctx, P, is_max, g.addr, src, hin, win, shares.addr, planes, plane, row_pitch, first)
    ctx.barrier()
    if not G.overlapping:
        _interleave_taps(ctx, P, shares.addr, ctx.outs[0].addr)
        return
    _sum_phases(ctx, P, G, shares.addr, ctx.scratch[1].addr)
    ctx.barrier()
    _interleave_phases(ctx, P, G, ctx.scratch[1].addr, ctx.outs[0].addr)


def _shares(ctx: KernelContext, P: _Pool, is_max: bool, g_addr: int, src: int, hin: int,
            win: int, dst: int, planes: int, plane: int, row_pitch: int, first: int) -> None:
    """Each window's gradient share per tap to ``dst`` [p, planes, rows, row_pitch] (the
    window (oh, ow) at element ``first + oh * row_pitch + ow`` of its plane)."""
    ntap = P.kh * P.kw
    plane_out = P.oh * P.ow
    elems = ctx.tiling.elems
    names = ["g", "m", "nt", "x", "e"] if is_max else ["g"]
    slots = {k: ctx.alloc("sp", 4 * elems) for k in names}
    for cl, tile in ctx.place(_blocks(P.p, P.oh, P.ow, elems)):
        p0, pb, oh0, rows, ow0, cols = tile
        pt = rows * cols
        sg = slots["g"]
        ctx.ld_at(cl, sg, g_addr + 4 * (p0 * plane_out + oh0 * P.ow + ow0), pb, pt, plane_out)
        base = dst + 4 * (p0 * planes * plane + first + oh0 * row_pitch + ow0)
        shape, pitches = (pb, rows, cols), (planes * plane, row_pitch, 1)
        if not is_max:
            ctx.vop(cl, "mul", sg, sg, pb, pt, bmode="imm", imm=1.0 / ntap)
            for tap in range(planes):
                store_block(ctx, cl, sg, base + 4 * tap * plane, shape, pitches)
            continue
        m, nt, sx, e = slots["m"], slots["nt"], slots["x"], slots["e"]
        P.window(cl, m, src, hin, win, tile, 0)
        for tap in range(1, ntap):
            P.window(cl, sx, src, hin, win, tile, tap)
            ctx.vop(cl, "max", m, m, pb, pt, sx)
        const_tile(ctx, cl, nt, pb, pt, 1.0)
        for tap in range(ntap):
            P.window(cl, sx, src, hin, win, tile, tap)
            ctx.vop(cl, "eq", e, sx, pb, pt, m)           # tap holds the window max
            ctx.vop(cl, "mul", e, e, pb, pt, nt)          # ... and no earlier tap did
            ctx.vop(cl, "sub", nt, nt, pb, pt, e)
            ctx.vop(cl, "mask", e, sg, pb, pt, e)         # g where selected
            store_block(ctx, cl, e, base + 4 * tap * plane, shape, pitches)


def _interleave_taps(ctx: KernelContext, P: _Pool, shares: int, out: int) -> None:
    """Non-overlapping windows: input element (oh*KH + i, ow*KW + j) is tap (i, j)'s share."""
    ntap, plane_out = P.kh * P.kw, P.oh * P.ow
    if P.oh * P.kh < P.h or P.ow * P.kw < P.w:
        fill(ctx, out, P.p * P.h * P.w)
        ctx.barrier()
    gather_copy(ctx, shares, out, [P.p, P.oh, P.kh, P.ow, P.kw],
                [ntap * plane_out, P.ow, P.kw * plane_out, 1, plane_out],
                [P.h * P.w, P.kh * P.w, P.w, P.kw, 1])


def _sum_phases(ctx: KernelContext, P: _Pool, G: _Phases, shares: int, dst: int) -> None:
    """Phase (a, b) of the input gradient, [p, U, V] at ``dst`` [p, SH, SW, U, V]: the sum
    over the taps that reach it of their share planes, shifted."""
    R, C = G.rows, G.cols
    plane = R.size * C.size
    U, V = R.per_phase, C.per_phase
    phase_pitch = P.sh * P.sw * U * V
    if any(R.count[a] and C.count[b] and not (R.taps[a] and C.taps[b])
           for a in range(P.sh) for b in range(P.sw)):  # a stride beyond the kernel
        fill(ctx, dst, P.p * phase_pitch)
        ctx.barrier()
    elems = ctx.tiling.elems
    acc = [ctx.alloc("sp", 4 * elems) for _ in range(2)]
    xs = [ctx.alloc("sp", 4 * elems) for _ in range(2)]
    count = [0] * len(ctx.streams)
    for a in range(P.sh):
        for b in range(P.sw):
            taps = [((i * P.kw + j) % G.share_planes, di, dj)
                    for i, di in R.taps[a] for j, dj in C.taps[b]]
            if not (taps and R.count[a] and C.count[b]):
                continue
            for cl, tile in ctx.place(_blocks(P.p, R.count[a], C.count[b], elems)):
                p0, pb, u0, rows, v0, cols = tile
                pt = rows * cols
                k = count[cl] % 2
                count[cl] += 1
                for n, (tap, di, dj) in enumerate(taps):
                    addr = shares + 4 * (p0 * G.share_planes * plane + tap * plane
                                         + (u0 + di + R.before) * C.size + v0 + dj + C.before)
                    slot = acc[k] if n == 0 else xs[n % 2]
                    ctx.ldg(cl, slot, addr, (pb, rows, cols), (G.share_planes * plane, C.size, 1))
                    if n:
                        ctx.vop(cl, "add", acc[k], acc[k], pb, pt, slot)
                store_block(ctx, cl, acc[k], dst + 4 * (p0 * phase_pitch + (a * P.sw + b) * U * V
                                                         + u0 * V + v0),
                            (pb, rows, cols), (phase_pitch, V, 1))


def _interleave_phases(ctx: KernelContext, P: _Pool, G: _Phases, phases: int, out: int) -> None:
    """out[p, y, x] = phases[p, y % SH, x % SW, y // SH, x // SW]: the rows (columns) of
    whole strides, then the last partial stride of rows (columns) if H (W) leaves one."""
    U, V = G.rows.per_phase, G.cols.per_phase
    sh, sw, h, w = P.sh, P.sw, P.h, P.w
    row_parts = [(0, h // sh, sh)] + ([(h // sh, 1, h % sh)] if h % sh else [])
    col_parts = [(0, w // sw, sw)] + ([(w // sw, 1, w % sw)] if w % sw else [])
    for u0, nu, na in row_parts:
        for v0, nv, nb in col_parts:
            gather_copy(ctx, phases + 4 * (u0 * V + v0), out + 4 * (sh * u0 * w + sw * v0),
                        [P.p, nu, na, nv, nb], [sh * sw * U * V, V, sw * U * V, 1, U * V],
                        [h * w, sh * w, w, sw, 1])
