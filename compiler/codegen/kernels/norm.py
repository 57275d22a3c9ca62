"""Normalization kernels: ``graph.batch_norm`` (training mode) and its backward,
``graph.layer_norm`` and its backward.

batch_norm keeps NCHW: a tile is a block of channels x several images x a run of pixels,
gathered channel-major with one ``ldg`` (rows = channels; see ``_BnTiles``), so per-channel
statistics are row reductions (``vred axis=1``) accumulated over the tiles of that block,
all on the cluster that owns the channel block. Three passes over x (sum -> mean; sum of
squared deviations -> invstd = rsqrt(var + eps), biased variance; normalize and store),
each per-channel value applied as a ``bmode=col`` operand (the two statistics passes are one:
tile statistics merged pairwise, see ``batch_norm``). Where a block's planes of every image
fit the scratchpad (``_BnTiles.resident``: ResNet-18 at batch 32 on acf-base, every layer)
its tiles stay loaded and the normalize pass (the backward's input-gradient pass) reads
no DRAM; otherwise it loads them again::

    ldg  sp[X] <- x[n0:n0+G, c0:c0+cb, p0:p0+pc] (channel-major)
    vred sum, sp[S], sp[X], axis=1, accum=1
    vop  sub, sp[X], sp[X], sp[S], bmode=col   vop mul, sp[X], sp[X], sp[I], bmode=col ...

layer_norm works on row blocks of the ``rows x D`` view (D = the normalized dims), the
affine weight and bias as ``bmode=row`` operands; its backward runs on one cluster so the
weight and bias gradients accumulate (``vred axis=0, accum=1``) in one place.
"""

from __future__ import annotations

import math

from ..context import SLOT_ALIGN, KernelContext
from ..schedule import Slot
from ..memory import Buffer
from . import kernel, scratch
from .rowwise import _Blocks, _rows

#: scratchpad bytes a resident batch-norm plan leaves for its per-channel vectors
RESIDENT_RESERVE = 8192


def _aligned(nbytes: int) -> int:
    return -(-nbytes // SLOT_ALIGN) * SLOT_ALIGN


class _BnTiles:
    """Tiles of one batch-norm operand: a block of ``cb`` channels x ``group`` images x a
    run of ``pc`` pixels, gathered channel-major (``ldg``, rows = channels), so that the
    ``h x (group*pw)`` tile's rows are its channels: per-channel statistics are row
    reductions and per-channel operands ``bmode=col``, whatever the images in it.

    Channel blocks are (nearly) equal and at least one per cluster where there are
    channels enough (a block's statistics stay on its cluster); a tile takes as many
    images as fit ``tiling.elems``, which keeps the instruction count per pixel low."""

    def __init__(self, ctx: KernelContext, x: Buffer, cb: int = 0) -> None:
        shape = x.shape
        self.n, self.c = n, c = shape[0], shape[1]
        self.hw = hw = math.prod(shape[2:])
        elems = ctx.tiling.elems
        self.pc = pc = min(hw, elems)
        if not cb:
            cb = max(1, min(c, elems // pc))
            blocks = max(-(-c // cb), min(c, len(ctx.streams)))
            cb = -(-c // blocks)
        self.cb = cb
        group = max(1, min(n, elems // (cb * pc))) if pc == hw else 1
        self.group = -(-n // -(-n // group))  # balanced image groups
        self.chunks = [(n0, min(self.group, n - n0), p0, min(pc, hw - p0))
                       for n0 in range(0, n, self.group) for p0 in range(0, hw, pc)]

    @classmethod
    def resident(cls, ctx: KernelContext, x: Buffer, tensors: int, temps: int = 0
                 ) -> tuple[_BnTiles, int] | None:
        """Tiles whose channel block (``tensors`` operands of it, plus ``temps`` tiles of
        scratch) stays in the scratchpad between the kernel's passes, and how many such
        blocks a cluster holds at once (2: the next block loads while this one computes
        and stores; else 1), or None when not even one channel's planes of every image
        fit. The pass after the first then reads no DRAM: batch norm moves x once instead
        of twice, its backward g and x once instead of twice (both are bound by the memory
        ports: ResNet-18's batch-32 layer1 backward read 16.8 MB per pass, 269k cycles
        streamed, 151k resident). Blocks are as even over the clusters as the budget
        allows (the busiest cluster's channels are minimized)."""
        n, c = x.shape[0], x.shape[1]
        hw = math.prod(x.shape[2:])
        budget = ctx.tiling.spad_bytes - RESIDENT_RESERVE
        per_channel = 4 * n * hw * tensors
        clusters = len(ctx.streams)

        def fits(bt: _BnTiles, sets: int) -> bool:
            slots = sum(_aligned(bt.chunk_bytes(imgs, pw)) for _, imgs, _, pw in bt.chunks)
            return sets * tensors * slots + temps * _aligned(bt.tile_bytes) <= budget

        def busiest(cb: int) -> int:  # channels on the cluster with the most blocks
            return math.ceil(math.ceil(c / cb) / clusters) * cb

        for sets in (2, 1):
            top = min(c, budget // (sets * per_channel))
            sizes = sorted(range(1, top + 1), key=lambda cb: (busiest(cb), -cb))
            for cb in sizes:
                bt = cls(ctx, x, cb)
                if fits(bt, sets):
                    return bt, sets
        return None

    @property
    def count(self) -> int:
        return self.n * self.hw

    @property
    def tile_bytes(self) -> int:
        return 4 * self.cb * self.group * self.pc

    def chunk_bytes(self, imgs: int, pw: int) -> int:
        return 4 * self.cb * imgs * pw

    def block_slots(self, ctx: KernelContext, sets: int) -> list[list[Slot]]:
        """Per resident block held at once, a slot for each of its chunks."""
        return [[ctx.alloc("sp", self.chunk_bytes(imgs, pw)) for _, imgs, _, pw in self.chunks]
                for _ in range(sets)]

    def offset(self, n0: int, c0: int, p0: int) -> int:
        return 4 * (n0 * self.c * self.hw + c0 * self.hw + p0)

    def load(self, ctx: KernelContext, cl: int, slot: Slot, buf: Buffer, n0: int, imgs: int,
             c0: int, h: int, p0: int, pw: int) -> None:
        ctx.ldg(cl, slot, buf.addr + self.offset(n0, c0, p0), (h, imgs, pw),
                (self.hw, self.c * self.hw, 1))

    def store(self, ctx: KernelContext, cl: int, slot: Slot, buf: Buffer, n0: int, imgs: int,
              c0: int, h: int, p0: int, pw: int) -> None:
        if imgs == 1:  # the channels' runs at the plane pitch: one store
            ctx.st_at(cl, slot, buf.addr + self.offset(n0, c0, p0), h, pw, self.hw)
            return
        for ch in range(h):  # a channel's images at the image pitch
            ctx.st_at(cl, slot, buf.addr + self.offset(n0, c0 + ch, p0), imgs, pw,
                      self.c * self.hw, offset=4 * ch * imgs * pw)


@kernel("graph.batch_norm")
def batch_norm(ctx: KernelContext) -> None:
    x, w, b = ctx.ins[:3]
    residual = ctx.ins[3] if len(ctx.ins) > 3 else None  # fused residual add
    out, mean, invstd = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("batch_norm of sparse tensors is not supported")
    plan = _BnTiles.resident(ctx, x, 1, temps=2 if residual is not None else 0)
    bt, sets = plan if plan is not None else (_BnTiles(ctx, x), 0)
    rs = [ctx.alloc("sp", bt.tile_bytes) for _ in range(2)] if residual is not None else []
    c, cb = bt.c, bt.cb
    eps = float(ctx.attrs["eps"])  # type: ignore[arg-type]
    relu = ctx.attrs["activation"] == "relu"  # fused (fuse-activations): one more vop per tile
    if sets:
        xsets = bt.block_slots(ctx, sets)
    else:
        xs = [ctx.alloc("sp", bt.tile_bytes) for _ in range(2)]
    nvec = max(sets, 1)
    vecs = [[ctx.alloc("sp", 4 * cb) for _ in range(6)] for _ in range(nvec)]
    tmeans = [[ctx.alloc("sp", 4 * cb) for _ in bt.chunks] for _ in range(sets)]
    col = lambda v: Buffer(v.addr, (c, 1))  # noqa: E731
    count = [0] * len(ctx.streams)
    for cl, c0 in ctx.place(list(range(0, c, cb))):
        h = min(cb, c - c0)
        k = count[cl] % nvec
        count[cl] += 1
        s, q, sw, sb, tq, d = vecs[k]

        def slot(i: int):
            return xsets[k][i] if sets else xs[i % 2]

        def tiles():
            for i, (n0, imgs, p0, pw) in enumerate(bt.chunks):
                sx = slot(i)
                bt.load(ctx, cl, sx, x, n0, imgs, c0, h, p0, pw)
                yield i, n0, imgs, p0, imgs * pw, sx
        # one pass for both statistics: each tile's mean and sum of squared deviations
        # from it, merged into the running ones (Chan, Golub & LeVeque's pairwise update,
        # as stable as two passes); the counts are known here, so the weights are immediates.
        # A resident tile keeps its deviations from its own mean (kept per tile), so the
        # normalize pass subtracts only the difference to the block's mean.
        seen = 0
        for i, _, _, _, cols, sx in tiles():
            ts = tmeans[k][i] if sets else (s if i == 0 else d)
            m2_t = q if i == 0 else tq
            ctx.vred(cl, "sum", ts, sx, h, cols, 1)
            ctx.vop(cl, "mul", ts, ts, h, 1, bmode="imm", imm=1.0 / cols)
            ctx.vop(cl, "sub", sx, sx, h, cols, ts, bmode="col")
            ctx.emit(cl, "vred", reads=(sx,), writes=(m2_t,), fn="sumsq", dst=m2_t.ref(),
                     a=sx.ref(), rows=h, cols=cols, axis=1, accum=0)
            if i == 0 and sets:
                ctx.vop(cl, "copy", s, ts, h, 1)
            if i:  # delta = mean_t - mean; mean += delta*n_t/n; M2 += M2_t + delta^2*n_a*n_t/n
                n = seen + cols
                ctx.vop(cl, "sub", d, ts, h, 1, s)
                ctx.vop(cl, "mul", sb, d, h, 1, bmode="imm", imm=cols / n)
                ctx.vop(cl, "add", s, s, h, 1, sb)
                ctx.vop(cl, "mul", d, d, h, 1, d)
                ctx.vop(cl, "mul", d, d, h, 1, bmode="imm", imm=seen * cols / n)
                ctx.vop(cl, "add", q, q, h, 1, tq)
                ctx.vop(cl, "add", q, q, h, 1, d)
            seen += cols
        ctx.vop(cl, "mul", q, q, h, 1, bmode="imm", imm=1.0 / bt.count)
        ctx.vop(cl, "add", q, q, h, 1, bmode="imm", imm=eps)
        ctx.vop(cl, "rsqrt", q, q, h, 1)
        ctx.load(cl, col(w), c0, 0, h, 1, sw)
        ctx.load(cl, col(b), c0, 0, h, 1, sb)
        if sets:  # resident: each tile holds x - its own mean
            normalize = ((i, n0, imgs, p0, imgs * pw, slot(i), tmeans[k][i])
                         for i, (n0, imgs, p0, pw) in enumerate(bt.chunks))
        elif len(bt.chunks) == 1:  # the one tile is still there, holding x - mean
            n0, imgs, p0, pw = bt.chunks[0]
            normalize = iter([(0, n0, imgs, p0, imgs * pw, xs[0], s)])
        else:  # lazily: each tile's load is emitted just before its vops
            normalize = ((*t, None) for t in tiles())
        for i, n0, imgs, p0, cols, sx, tile_mean in normalize:
            if tile_mean is None:
                ctx.vop(cl, "sub", sx, sx, h, cols, s, bmode="col")
            elif len(bt.chunks) > 1:  # x - mean = (x - mean_t) - (mean - mean_t)
                ctx.vop(cl, "sub", d, s, h, 1, tile_mean)
                ctx.vop(cl, "sub", sx, sx, h, cols, d, bmode="col")
            ctx.vop(cl, "mul", sx, sx, h, cols, q, bmode="col")
            ctx.vop(cl, "mul", sx, sx, h, cols, sw, bmode="col")
            ctx.vop(cl, "add", sx, sx, h, cols, sb, bmode="col")
            if residual is not None:
                sr = rs[i % 2]
                bt.load(ctx, cl, sr, residual, n0, imgs, c0, h, p0, cols // imgs)
                ctx.vop(cl, "add", sx, sx, h, cols, sr)
            if relu:
                ctx.vop(cl, "relu", sx, sx, h, cols)
            bt.store(ctx, cl, sx, out, n0, imgs, c0, h, p0, cols // imgs)
        ctx.store(cl, col(mean), c0, 0, h, 1, s)
        ctx.store(cl, col(invstd), c0, 0, h, 1, q)


@scratch("graph.batch_norm_backward")
def _bn_backward_scratch(op) -> list[tuple[int, ...]]:
    """A fused ReLU backward streamed (not resident) keeps the masked gradient for its second
    pass here."""
    return [op.operands[1].type.shape] if len(op.operands) > 5 else []


@kernel("graph.batch_norm_backward")
def batch_norm_backward(ctx: KernelContext) -> None:
    g, x, w, mean, invstd = ctx.ins[:5]
    y = ctx.ins[5] if len(ctx.ins) > 5 else None  # fused ReLU backward: g where y > 0
    gx, gw, gb = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("batch_norm_backward of sparse tensors is not supported")
    # resident: g and x; scratch: g * xhat, and two tiles of y (dead once g is masked)
    plan = _BnTiles.resident(ctx, x, 2, temps=3 if y is not None else 1)
    bt, sets = plan if plan is not None else (_BnTiles(ctx, x), 0)
    c, cb, count = bt.c, bt.cb, bt.count
    ys = [ctx.alloc("sp", bt.tile_bytes) for _ in range(2)] if y is not None else []
    if sets:  # a slot per chunk and operand, per resident block; one for g * xhat
        tmp = ctx.alloc("sp", bt.tile_bytes)
        xsets, gsets = bt.block_slots(ctx, sets), bt.block_slots(ctx, sets)
    else:
        xs = [ctx.alloc("sp", bt.tile_bytes) for _ in range(2)]
        gs = [ctx.alloc("sp", bt.tile_bytes) for _ in range(2)]
    nvec = max(sets, 1)
    vecs = [[ctx.alloc("sp", 4 * cb) for _ in range(5)] for _ in range(nvec)]
    col = lambda v: Buffer(v.addr, (c, 1))  # noqa: E731
    blocks = [0] * len(ctx.streams)
    for cl, c0 in ctx.place(list(range(0, c, cb))):
        h = min(cb, c - c0)
        k = blocks[cl] % nvec
        blocks[cl] += 1
        sm, si, sw, sgw, sgb = vecs[k]
        ctx.load(cl, col(mean), c0, 0, h, 1, sm)
        ctx.load(cl, col(invstd), c0, 0, h, 1, si)

        def slots(i: int):
            return (xsets[k][i], gsets[k][i]) if sets else (xs[i % 2], gs[i % 2])

        def tiles(again: bool = False):
            """Pass 1 (or, streamed, pass 2: the masked g from the scratch copy)."""
            for i, (n0, imgs, p0, pw) in enumerate(bt.chunks):
                sx, sg = slots(i)
                cols = imgs * pw
                if y is not None and again:
                    bt.load(ctx, cl, sg, ctx.scratch[0], n0, imgs, c0, h, p0, pw)
                else:
                    bt.load(ctx, cl, sg, g, n0, imgs, c0, h, p0, pw)
                if y is not None and not again:
                    sy = ys[i % 2]
                    bt.load(ctx, cl, sy, y, n0, imgs, c0, h, p0, pw)
                    ctx.vop(cl, "relu_bwd", sg, sy, h, cols, sg)
                    if not sets:  # streamed: pass 2 reads the masked g, not g and y again
                        bt.store(ctx, cl, sg, ctx.scratch[0], n0, imgs, c0, h, p0, pw)
                bt.load(ctx, cl, sx, x, n0, imgs, c0, h, p0, pw)
                ctx.vop(cl, "sub", sx, sx, h, cols, sm, bmode="col")   # xhat
                ctx.vop(cl, "mul", sx, sx, h, cols, si, bmode="col")
                yield i, n0, imgs, p0, cols, sx, sg
        for i, _, _, _, cols, sx, sg in tiles():
            ctx.vred(cl, "sum", sgb, sg, h, cols, 1, accum=i > 0)
            gxhat = tmp if sets else sx  # a resident tile keeps xhat for the second pass
            ctx.vop(cl, "mul", gxhat, sx, h, cols, sg)
            ctx.vred(cl, "sum", sgw, gxhat, h, cols, 1, accum=i > 0)
        ctx.load(cl, col(w), c0, 0, h, 1, sw)
        ctx.vop(cl, "mul", sw, sw, h, 1, si)
        ctx.vop(cl, "mul", sw, sw, h, 1, bmode="imm", imm=1.0 / count)
        if sets:  # resident: the tiles hold xhat and g
            again = ((i, n0, imgs, p0, imgs * pw, *slots(i))
                     for i, (n0, imgs, p0, pw) in enumerate(bt.chunks))
        else:
            again = tiles(again=True)
        for _, n0, imgs, p0, cols, sx, sg in again:
            ctx.vop(cl, "mul", sx, sx, h, cols, sgw, bmode="col")
            ctx.vop(cl, "mul", sg, sg, h, cols, bmode="imm", imm=float(count))
            ctx.vop(cl, "sub", sg, sg, h, cols, sgb, bmode="col")
            ctx.vop(cl, "sub", sg, sg, h, cols, sx)
            ctx.vop(cl, "mul", sg, sg, h, cols, sw, bmode="col")
            bt.store(ctx, cl, sg, gx, n0, imgs, c0, h, p0, cols // imgs)
        ctx.store(cl, col(gw), c0, 0, h, 1, sgw)
        ctx.store(cl, col(gb), c0, 0, h, 1, sgb)


def _ln_view(ctx: KernelContext, buf: Buffer) -> tuple[Buffer, int, int]:
    k = int(ctx.attrs["normalized_rank"])  # type: ignore[arg-type]
    d = math.prod(buf.shape[len(buf.shape) - k:])
    rows = math.prod(buf.shape[:len(buf.shape) - k])
    return Buffer(buf.addr, (rows, d)), rows, d


@kernel("graph.layer_norm")
def layer_norm(ctx: KernelContext) -> None:
    x, w, b = ctx.ins
    out, mean, rstd = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("layer_norm of sparse tensors is not supported")
    xv, rows, d = _ln_view(ctx, x)
    _, _, tr = _rows(ctx, xv, 4)
    eps = float(ctx.attrs["eps"])  # type: ignore[arg-type]
    wv, bv = Buffer(w.addr, (1, d)), Buffer(b.addr, (1, d))
    ov = Buffer(out.addr, (rows, d))
    mv, rv = Buffer(mean.addr, (rows, 1)), Buffer(rstd.addr, (rows, 1))
    for cl, r0, h, (sx, sw, sb, sm, sr) in _Blocks(ctx, rows, tr, [d, d, d, 1, 1]):
        ctx.load(cl, xv, r0, 0, h, d, sx)
        ctx.load(cl, wv, 0, 0, 1, d, sw)
        ctx.load(cl, bv, 0, 0, 1, d, sb)
        ctx.vred(cl, "sum", sm, sx, h, d, 1)
        ctx.vop(cl, "mul", sm, sm, h, 1, bmode="imm", imm=1.0 / d)
        ctx.vop(cl, "sub", sx, sx, h, d, sm, bmode="col")
        ctx.emit(cl, "vred", reads=(sx,), writes=(sr,), fn="sumsq", dst=sr.ref(), a=sx.ref(),
                 rows=h, cols=d, axis=1, accum=0)
        ctx.vop(cl, "mul", sr, sr, h, 1, bmode="imm", imm=1.0 / d)
        ctx.vop(cl, "add", sr, sr, h, 1, bmode="imm", imm=eps)
        ctx.vop(cl, "rsqrt", sr, sr, h, 1)
        ctx.vop(cl, "mul", sx, sx, h, d, sr, bmode="col")
        ctx.vop(cl, "mul", sx, sx, h, d, sw, bmode="row")
        ctx.vop(cl, "add", sx, sx, h, d, sb, bmode="row")
        ctx.store(cl, ov, r0, 0, h, d, sx)
        ctx.store(cl, mv, r0, 0, h, 1, sm)
        ctx.store(cl, rv, r0, 0, h, 1, sr)


@kernel("graph.layer_norm_backward")
def layer_norm_backward(ctx: KernelContext) -> None:
    g, x, mean, rstd, w = ctx.ins
    gx, gw, gb = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("layer_norm_backward of sparse tensors is not supported")
    xv, rows, d = _ln_view(ctx, x)
    gv, gxv = Buffer(g.addr, (rows, d)), Buffer(gx.addr, (rows, d))
    _, _, tr = _rows(ctx, xv, 10)
    mv, rv, wv = Buffer(mean.addr, (rows, 1)), Buffer(rstd.addr, (rows, 1)), Buffer(w.addr, (1, d))
    agw, agb, sw = (ctx.alloc("sp", 4 * d) for _ in range(3))
    ctx.load(0, wv, 0, 0, 1, d, sw)
    first = True
    for cl, r0, h, (sx, sg, st, sm, sr, s1, s2) in _Blocks(ctx, rows, tr, [d, d, d, 1, 1, 1, 1],
                                                          place_single=True):
        ctx.load(cl, xv, r0, 0, h, d, sx)
        ctx.load(cl, gv, r0, 0, h, d, sg)
        ctx.load(cl, mv, r0, 0, h, 1, sm)
        ctx.load(cl, rv, r0, 0, h, 1, sr)
        ctx.vop(cl, "sub", sx, sx, h, d, sm, bmode="col")     # xhat
        ctx.vop(cl, "mul", sx, sx, h, d, sr, bmode="col")
        ctx.vop(cl, "mul", st, sg, h, d, sx)
        ctx.vred(cl, "sum", agw, st, h, d, 0, accum=not first)
        ctx.vred(cl, "sum", agb, sg, h, d, 0, accum=not first)
        first = False
        ctx.vop(cl, "mul", sg, sg, h, d, sw, bmode="row")     # gxhat
        ctx.vred(cl, "sum", s1, sg, h, d, 1)
        ctx.vop(cl, "mul", st, sg, h, d, sx)
        ctx.vred(cl, "sum", s2, st, h, d, 1)
        ctx.vop(cl, "mul", sx, sx, h, d, s2, bmode="col")
        ctx.vop(cl, "mul", sg, sg, h, d, bmode="imm", imm=float(d))
        ctx.vop(cl, "sub", sg, sg, h, d, s1, bmode="col")
        ctx.vop(cl, "sub", sg, sg, h, d, sx)
        ctx.vop(cl, "mul", sr, sr, h, 1, bmode="imm", imm=1.0 / d)
        ctx.vop(cl, "mul", sg, sg, h, d, sr, bmode="col")
        ctx.store(cl, gxv, r0, 0, h, d, sg)
    ctx.store(0, Buffer(gw.addr, (1, d)), 0, 0, 1, d, agw)
    ctx.store(0, Buffer(gb.addr, (1, d)), 0, 0, 1, d, agb)
