"""Normalization kernels: ``graph.batch_norm`` (training mode) and its backward,
``graph.layer_norm`` and its backward.

batch_norm keeps NCHW: a tile is a block of channels x a run of pixels of one image, loaded
with one ``ld`` (rows = channels at pitch H*W), so per-channel statistics are column
reductions (``vred axis=1``) accumulated over the images and pixel runs of that block, all
on the cluster that owns the channel block. Three passes over x (sum -> mean; sum of
squared deviations -> invstd = rsqrt(var + eps), biased variance; normalize and store),
each per-channel value applied as a ``bmode=col`` operand::

    ld   sp[X] <- x[n, c0:c0+cb, p0:p0+pc]      vred sum, sp[S], sp[X], axis=1, accum=1
    vop  sub, sp[X], sp[X], sp[S], bmode=col   vop mul, sp[X], sp[X], sp[I], bmode=col ...

layer_norm works on row blocks of the ``rows x D`` view (D = the normalized dims), the
affine weight and bias as ``bmode=row`` operands; its backward runs on one cluster so the
weight and bias gradients accumulate (``vred axis=0, accum=1``) in one place.
"""

from __future__ import annotations

import math

from ..context import KernelContext
from ..memory import Buffer
from . import kernel
from .rowwise import _Blocks, _rows


def _bn_geometry(ctx: KernelContext, x: Buffer) -> tuple[int, int, int, int, int]:
    shape = x.shape
    n, c = shape[0], shape[1]
    hw = math.prod(shape[2:])
    elems = ctx.tiling.elems
    pc = min(hw, elems)
    cb = max(1, min(c, elems // pc))
    return n, c, hw, pc, cb


def _bn_chunks(n: int, hw: int, pc: int) -> list[tuple[int, int, int]]:
    return [(i, p0, min(pc, hw - p0)) for i in range(n) for p0 in range(0, hw, pc)]


@kernel("graph.batch_norm")
def batch_norm(ctx: KernelContext) -> None:
    x, w, b = ctx.ins
    out, mean, invstd = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("batch_norm of sparse tensors is not supported")
    n, c, hw, pc, cb = _bn_geometry(ctx, x)
    count = n * hw
    eps = float(ctx.attrs["eps"])  # type: ignore[arg-type]
    xs = [ctx.alloc("sp", 4 * cb * pc) for _ in range(2)]
    s, q, sw, sb = (ctx.alloc("sp", 4 * cb) for _ in range(4))
    chunks = _bn_chunks(n, hw, pc)
    col = lambda v: Buffer(v.addr, (c, 1))  # noqa: E731
    for cl, c0 in ctx.place(list(range(0, c, cb))):
        h = min(cb, c - c0)
        def tiles():
            for i, (ni, p0, pw) in enumerate(chunks):
                sx = xs[i % 2]
                ctx.ld_at(cl, sx, x.addr + 4 * (ni * c * hw + c0 * hw + p0), h, pw, hw)
                yield i, ni, p0, pw, sx
        for i, _, _, pw, sx in tiles():
            ctx.vred(cl, "sum", s, sx, h, pw, 1, accum=i > 0)
        ctx.vop(cl, "mul", s, s, h, 1, bmode="imm", imm=1.0 / count)
        for i, _, _, pw, sx in tiles():
            ctx.vop(cl, "sub", sx, sx, h, pw, s, bmode="col")
            ctx.emit(cl, "vred", reads=(sx, q) if i else (sx,), writes=(q,), fn="sumsq",
                     dst=q.ref(), a=sx.ref(), rows=h, cols=pw, axis=1, accum=int(i > 0))
        ctx.vop(cl, "mul", q, q, h, 1, bmode="imm", imm=1.0 / count)
        ctx.vop(cl, "add", q, q, h, 1, bmode="imm", imm=eps)
        ctx.vop(cl, "rsqrt", q, q, h, 1)
        ctx.load(cl, col(w), c0, 0, h, 1, sw)
        ctx.load(cl, col(b), c0, 0, h, 1, sb)
        for i, ni, p0, pw, sx in tiles():
            ctx.vop(cl, "sub", sx, sx, h, pw, s, bmode="col")
            ctx.vop(cl, "mul", sx, sx, h, pw, q, bmode="col")
            ctx.vop(cl, "mul", sx, sx, h, pw, sw, bmode="col")
            ctx.vop(cl, "add", sx, sx, h, pw, sb, bmode="col")
            ctx.st_at(cl, sx, out.addr + 4 * (ni * c * hw + c0 * hw + p0), h, pw, hw)
        ctx.store(cl, col(mean), c0, 0, h, 1, s)
        ctx.store(cl, col(invstd), c0, 0, h, 1, q)


@kernel("graph.batch_norm_backward")
def batch_norm_backward(ctx: KernelContext) -> None:
    g, x, w, mean, invstd = ctx.ins
    gx, gw, gb = ctx.outs
    if any(t.sparse for t in ctx.ins + ctx.outs):
        raise ctx.error("batch_norm_backward of sparse tensors is not supported")
    n, c, hw, pc, cb = _bn_geometry(ctx, x)
    count = n * hw
    xs = [ctx.alloc("sp", 4 * cb * pc) for _ in range(2)]
    gs = [ctx.alloc("sp", 4 * cb * pc) for _ in range(2)]
    sm, si, sw, sgw, sgb = (ctx.alloc("sp", 4 * cb) for _ in range(5))
    chunks = _bn_chunks(n, hw, pc)
    col = lambda v: Buffer(v.addr, (c, 1))  # noqa: E731
    for cl, c0 in ctx.place(list(range(0, c, cb))):
        h = min(cb, c - c0)
        ctx.load(cl, col(mean), c0, 0, h, 1, sm)
        ctx.load(cl, col(invstd), c0, 0, h, 1, si)

        def tiles():
            for i, (ni, p0, pw) in enumerate(chunks):
                sx, sg = xs[i % 2], gs[i % 2]
                off = 4 * (ni * c * hw + c0 * hw + p0)
                ctx.ld_at(cl, sg, g.addr + off, h, pw, hw)
                ctx.ld_at(cl, sx, x.addr + off, h, pw, hw)
                ctx.vop(cl, "sub", sx, sx, h, pw, sm, bmode="col")   # xhat
                ctx.vop(cl, "mul", sx, sx, h, pw, si, bmode="col")
                yield i, off, pw, sx, sg
        for i, _, pw, sx, sg in tiles():
            ctx.vred(cl, "sum", sgb, sg, h, pw, 1, accum=i > 0)
            ctx.vop(cl, "mul", sx, sx, h, pw, sg)
            ctx.vred(cl, "sum", sgw, sx, h, pw, 1, accum=i > 0)
        ctx.load(cl, col(w), c0, 0, h, 1, sw)
        ctx.vop(cl, "mul", sw, sw, h, 1, si)
        ctx.vop(cl, "mul", sw, sw, h, 1, bmode="imm", imm=1.0 / count)
        for i, off, pw, sx, sg in tiles():
            ctx.vop(cl, "mul", sx, sx, h, pw, sgw, bmode="col")
            ctx.vop(cl, "mul", sg, sg, h, pw, bmode="imm", imm=float(count))
            ctx.vop(cl, "sub", sg, sg, h, pw, sgb, bmode="col")
            ctx.vop(cl, "sub", sg, sg, h, pw, sx)
            ctx.vop(cl, "mul", sg, sg, h, pw, sw, bmode="col")
            ctx.st_at(cl, sg, gx.addr + off, h, pw, hw)
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
