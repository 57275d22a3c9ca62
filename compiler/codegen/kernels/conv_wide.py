"""The slab conv with every tap in one reduction ("wide K").

The slab kernel of :mod:`.conv` runs one ``mm`` per tap and input-channel block, so each
reduction is only ``kt`` long, and every 16 x 16 fold of outputs pays the PE array's fold
overhead (``cluster.fold_cycles``) per tap. With zero-skipping that overhead dominates: at
10 % weights a fold of ``k = 64`` costs ~12 cycles of MACs and 16 of overhead. Here one
``mm`` per k-block reduces over all taps and channels at once (``k = taps * kt``), which
the view registers can express when the output pixels are *linear* in the input slab:

* B is read transposed (``tb``): its stored rows are output pixels ``p' = r*cols_in + q``
  at ``stride * p'`` (the slab's own row pitch, so the ``cols_in - cols`` columns past each
  output row are computed and thrown away: about half of them at stride 2), its stored
  columns ``kk = (tap row, tap column, channel)`` through the view's block / run /
  element levels;
* A is the weight slab read through a view (forward: OIHW's channel-major, tap-minor
  columns in tap-major order; input gradient: the flipped taps gathered on chip into
  tap-major tiles, since a view cannot walk backwards);
* the accumulator tile (``mt`` x ``n'``, with the discarded columns) is compacted on the way
  out, 16 output channels at a time: ``vop copy`` to the scratchpad, an on-chip ``ldg``
  that drops the discarded columns, ``st``.

A whole-plane tile may take several images (an mm and accumulator tile each, one weight
slab for all). Tiles are laid out so that the weight slabs are multicast along fabric
rows and the input slabs down columns (``multicast.rows_and_columns``) where the tile
counts divide the grid, else the weights along rows; weights stay resident on a cluster
when its buffers hold every k-block.

Used by :func:`.conv.emit_tap_gemm` when :func:`.conv._slab_plan` finds it cheaper at the
operands' expected densities (``KernelContext.operand_density``).
"""

from __future__ import annotations

from itertools import product

from ..context import KernelContext
from ..memory import Buffer
from ..multicast import Layout, rows_and_columns, rows_share_first
from .conv import (
    _VR_TAP,
    _VR_WIN,
    ResidentSlabs,
    TapGemm,
    _pixel_blocks,
    _SlabPlan,
    _zero_border,
    emit_in_step,
    load_slab,
    slab_lead,
)

#: output channels compacted per step (one PE fold of rows)
CHUNK = 16
#: output buffers of the compaction (a tile's chunks rotate through them)
OUT_BUFS = 4


def out_bufs(mt: int) -> int:
    return min(OUT_BUFS, -(-mt // CHUNK))


def tap_grid(g: TapGemm) -> tuple[int, int, int, int] | None:
    """(taps per column KH, per row KW, row step dh, column step dw) when the taps are a
    full KH x KW grid in row-major order (what the view's block and run levels walk)."""
    ys = sorted({t[0] for t in g.taps})
    xs = sorted({t[1] for t in g.taps})
    kh, kw = len(ys), len(xs)
    dh = ys[1] - ys[0] if kh > 1 else 1
    dw = xs[1] - xs[0] if kw > 1 else 1
    want = [(i * dh + ys[0], j * dw + xs[0]) for i in range(kh) for j in range(kw)]
    if ys[0] or xs[0] or [(t[0], t[1]) for t in g.taps] != want:
        return None
    return kh, kw, dh, dw


def pixels_linear(rows: int, cols: int, cols_in: int) -> int:
    """n': the B rows of a block of ``rows`` x ``cols`` outputs on slab rows of ``cols_in``."""
    return (rows - 1) * cols_in + cols


def group_sizes(ctx: KernelContext, g: TapGemm, mt: int, nmax: int) -> list[int]:
    """Images per whole-plane tile worth planning: 1, powers of two, and the most the
    accumulator holds (each image its own double-buffered mt x n' tile), balanced."""
    most = max(1, min(g.n, (ctx.tiling.acc_bytes // 4 // 2) // (mt * nmax + 16)))
    sizes = {1, most} | {k for k in (2, 4, 8, 16) if k < most}
    return sorted({-(-g.n // -(-g.n // k)) for k in sizes})


def wide_plan_for(ctx: KernelContext, g: TapGemm, mt: int, wbufs: int = 1, group: int = 1
                  ) -> _SlabPlan | None:
    """A slab plan for the wide kernel (``group`` images per whole-plane tile, each with its
    own mm and accumulator tile, sharing the tile's weight slabs), or None when it does not
    apply (unequal strides, a single tap, taps off a grid) or does not fit."""
    if g.sh != g.sw or len(g.taps) < 2 or tap_grid(g) is None:
        return None
    ntap = len(g.taps)
    dy, dx = max(t[0] for t in g.taps), max(t[1] for t in g.taps)
    # the accumulator holds two mt x n' tiles per image (double-buffered); 64-byte slots
    cap = min((ctx.tiling.acc_bytes // 4 // (2 * group) - 16) // mt, 0xFFFF)
    row = (g.ow - 1) * g.sw + dx + 1  # a whole output row's slab row
    if g.ow <= cap:
        limit = max(1, (cap - g.ow) // row + 1) * g.ow
    else:
        limit = cap
    blocks = _pixel_blocks(g.oh, g.ow, max(1, limit))
    rmax = max(r for _, r, _, _ in blocks)
    cmax = max(c for _, _, _, c in blocks)
    pmax = max(r * c for _, r, _, c in blocks)
    rows_in, cols_in = (rmax - 1) * g.sh + dy + 1, (cmax - 1) * g.sw + dx + 1
    nmax = max(pixels_linear(r, c, cols_in) for _, r, _, c in blocks)
    if nmax > cap or (group > 1 and len(blocks) > 1):
        return None
    chunk = min(mt, CHUNK)
    budget = (ctx.tiling.spad_bytes // 4 - 16 * 10 - (2 * mt if g.bias is not None else 0)
              - chunk * nmax - out_bufs(mt) * chunk * pmax - 2 * slab_lead(-g.pad_l))
    stage = 1 if g.ta else 0  # the input gradient's staging slab (before its tap gathers)
    per_k = 2 * group * rows_in * cols_in + (wbufs + stage) * mt * ntap
    kt = min(g.cin, max(0, budget) // per_k, 0xFFFF // ntap)
    if kt < 1:
        return None
    kt = -(-g.cin // -(-g.cin // kt))  # balanced k-blocks
    if max(kt, mt) * ntap > 0xFFFF:
        return None
    if max(4 * mt * kt * ntap, 4 * group * kt * rows_in * cols_in) > 0xFFFFFF:
        return None  # a bcast's byte count
    wbufs = 2 if kt * (2 * group * rows_in * cols_in + (2 + stage) * mt * ntap) <= budget else 1
    return _SlabPlan(mt, blocks, pmax, group, kt, rows_in, cols_in, wbufs, wide=True)


class WideTapEmitter:
    """Emits the wide slab conv one tile (``begin``, per input-channel block ``k_load`` then
    ``k_compute``, ``end``) at a time per cluster. Under a multicast layout
    (``codegen.multicast``) a row's first cluster loads each weight slab and ``bcast``s it
    along the row, and (``rows_and_columns``) a column's sender loads each input slab, zeroes
    its border and ``bcast``s it down the column: every cluster's loads of a k-block are
    emitted before any cluster's MACs (``k_step``), so each stream records the multicasts
    ahead of its reads."""

    def __init__(self, ctx: KernelContext, g: TapGemm, plan: _SlabPlan) -> None:
        self.ctx, self.g, self.plan = ctx, g, plan
        self.ntap = len(g.taps)
        self.grid = tap_grid(g)
        self.slab = plan.rows_in * plan.cols_in
        mt, kt = plan.mt, plan.kt
        self.nmax = max(pixels_linear(r, c, plan.cols_in) for _, r, _, c in plan.blocks)
        self.chunk = min(mt, CHUNK)
        wslab = 4 * mt * kt * self.ntap
        self.group = plan.group
        self.xslabs = [ctx.alloc("sp", 4 * (self.group * kt * self.slab + slab_lead(-g.pad_l)))
                       for _ in range(2)]
        # the input gradient's slabs are loaded into a staging buffer and gathered into the
        # tap-major copies the MACs read (one per weight buffer), which are multicast; the
        # forward's are read where they land
        self.wstage = ctx.alloc("sp", wslab) if g.ta else None
        self.wslabs = [ctx.alloc("sp", wslab) for _ in range(plan.wbufs)]
        self.c_slots = [[ctx.alloc("acc", 4 * mt * self.nmax) for _ in range(self.group)]
                        for _ in range(2)]
        self.wide_out = ctx.alloc("sp", 4 * self.chunk * self.nmax)
        # one output buffer per chunk of a tile (at most OUT_BUFS): a chunk's gather then
        # waits for the store of the previous tile's chunk, not this tile's
        self.outs = [ctx.alloc("sp", 4 * self.chunk * plan.pmax)
                     for _ in range(out_bufs(mt))]
        self.bias_slot = ctx.alloc("sp", 4 * mt) if g.bias is not None else None
        self.plane_in, self.plane_out = g.hin * g.win, g.oh * g.ow
        n = len(ctx.streams)
        self.count = [0] * n
        self.kiter = [0] * n  # k-blocks per cluster: the input slabs' parity
        self.resident = ResidentSlabs(n, plan.wbufs)
        self.onext = [0] * n  # compacted chunks per cluster: the next output buffer
        self.current: dict[int, tuple] = {}  # cluster -> (tile, accumulators, first k-block)
        self.loaded: dict[int, tuple] = {}  # cluster -> (xslab, weight buffer) of its k-block
        self.pending: dict[int, tuple] = {}  # cluster -> (tile, accumulators) awaiting output

    def tile(self, cl: int, tile: tuple) -> None:
        self.begin(cl, tile)
        for k0 in range(0, self.g.cin, self.plan.kt):
            self.k_load(cl, k0)
            self.k_compute(cl, k0)
        self.end(cl)

    def k_step(self, order: list[int], k0: int, layout: Layout) -> None:
        """A k-block on every cluster: every cluster's loads and multicasts, then every
        cluster's MACs (a cluster may receive from several senders)."""
        for cl in order:
            self.k_load(cl, k0, layout)
        for cl in order:
            self.k_compute(cl, k0)

    def begin(self, cl: int, tile: tuple) -> None:
        self.current[cl] = (tile, self.c_slots[self.count[cl] % 2], [True])

    def k_load(self, cl: int, k0: int, layout: Layout | None = None) -> None:
        """The k-block's input slab and (unless resident) weight slab: loaded, or sent by
        the cluster's senders."""
        ctx, g, plan = self.ctx, self.g, self.plan
        (n, m0, (oh0, _, ow0, _)), _, _ = self.current[cl]
        ntap, cols_in = self.ntap, plan.cols_in
        mt, kt = min(plan.mt, g.cout - m0), min(plan.kt, g.cin - k0)
        xslab = self.xslabs[self.kiter[cl] % 2]
        self.kiter[cl] += 1
        # still resident from an earlier tile of this cluster: not reloaded
        w_idx, fresh = self.resident.take(cl, (m0, k0))
        self.loaded[cl] = (xslab, w_idx)
        row0, col0 = oh0 * g.sh - g.pad_t, ow0 * g.sw - g.pad_l
        imgs = self.images(n)
        if layout is None or layout.sends("b", cl):
            for j, img in enumerate(imgs):
                load_slab(ctx, cl, xslab, g.x_addr + 4 * (img * g.cin * self.plane_in
                                                          + k0 * self.plane_in + row0 * g.win + col0),
                          (kt, plan.rows_in, cols_in), (self.plane_in, g.win, 1),
                          4 * j * kt * self.slab, col0)
            if g.pad_t or g.pad_l:
                _zero_border(ctx, cl, xslab, len(imgs) * kt, plan.rows_in, cols_in, row0, col0,
                             g.hin, g.win)
            if layout is not None and layout.shared("b"):
                ctx.bcast(cl, layout.group["b"][cl], xslab, 4 * len(imgs) * kt * self.slab,
                          layout.receivers["b"][cl])
        if not fresh or not (layout is None or layout.sends("a", cl)):
            return
        dst = self.wslabs[w_idx]
        if g.ta:  # stored k x m: rows = Cout (k), cols = Cin (m) x taps
            ctx.ld_at(cl, self.wstage, g.w_addr + 4 * (k0 * g.w_rs + m0 * g.w_cs), kt, mt * ntap,  # type: ignore[arg-type]
                      g.w_rs)
            # A[o, (t, c)] = W[c, o, flipped t]: per tap, gather its mt x kt tile (tap-major);
            # the loading cluster does it once for the clusters it multicasts to
            for t, (_, _, woff) in enumerate(g.taps):
                ctx.gather_sp(cl, dst, self.wstage, woff, (mt, kt, 1),  # type: ignore[arg-type]
                              (ntap, mt * ntap, 1), offset=4 * t * mt * kt)
        else:  # A[o, c*taps + t]
            ctx.ld_at(cl, dst, g.w_addr + 4 * (m0 * g.w_rs + k0 * g.w_cs), mt, kt * ntap, g.w_rs)
        if layout is not None and layout.shared("a"):
            ctx.bcast(cl, layout.group["a"][cl], dst, 4 * mt * kt * ntap, layout.receivers["a"][cl])

    def k_compute(self, cl: int, k0: int) -> None:
        """The k-block's MACs: one mm per image over every tap."""
        ctx, g, plan = self.ctx, self.g, self.plan
        (n, m0, (_, rows_out, _, cols)), cs, first = self.current[cl]
        xslab, w_idx = self.loaded.pop(cl)
        ntap, slab, cols_in = self.ntap, self.slab, plan.cols_in
        mt, kt = min(plan.mt, g.cout - m0), min(plan.kt, g.cin - k0)
        a_slot = self.wslabs[w_idx]
        if g.ta:  # the tap-major copy k_load gathered (A'[t][o][c])
            va = ctx.view(cl, _VR_TAP, kt, kt, mt * kt, 1)
        else:  # A[o, (t, c)] at o*kt*taps + c*taps + t
            assert all(t[2] == i for i, t in enumerate(g.taps)), "forward taps in weight order"
            va = ctx.view(cl, _VR_TAP, kt, kt * ntap, 1, ntap)
        # B stored n' x K: row p' = r*cols_in + q at stride*p' (equal strides: output row r
        # starts stride*cols_in into the slab); column (tap row, tap column, channel) at
        # tap row*dh*cols_in + tap column*dw + channel*slab
        _, kw, dh, dw = self.grid  # type: ignore[misc]
        vb = ctx.view(cl, _VR_WIN, kt, g.sw, dw, slab, d1=kw, s3=dh * cols_in)
        for j, _ in enumerate(self.images(n)):  # each image into its own accumulator tile
            c = cs[j]
            reads = (a_slot, xslab) if first[0] else (a_slot, xslab, c)
            ctx.emit(cl, "mm", reads=reads, writes=(c,), dst=c.ref(), a=a_slot.ref(),
                     b=xslab.ref(4 * j * kt * slab), m=mt, n=pixels_linear(rows_out, cols, cols_in),
                     k=kt * ntap, accum=int(not first[0]), ta=0, tb=1, va=va, vb=vb)
        first[0] = False

    def images(self, n0: int) -> range:
        return range(n0, min(n0 + self.group, self.g.n))

    def end(self, cl: int) -> None:
        """Close the cluster's tile. Its output leaves one tile later (``finish`` flushes
        the last): the compaction's on-chip gathers share the ``ld`` queue with the slab
        loads, and each waits for a store; emitted after the next tile's loads, they no
        longer hold those loads back."""
        tile, c, _ = self.current.pop(cl)
        self.count[cl] += 1
        self._flush(cl)
        self.pending[cl] = (tile, c)

    def finish(self) -> None:
        for cl in sorted(self.pending):
            self._flush(cl)

    def _flush(self, cl: int) -> None:
        if cl not in self.pending:
            return
        ctx, g, plan = self.ctx, self.g, self.plan
        (n0, m0, (oh0, rows_out, ow0, cols)), cs = self.pending.pop(cl)
        mt, pt = min(plan.mt, g.cout - m0), rows_out * cols
        wide = pixels_linear(rows_out, cols, plan.cols_in)
        imgs = self.images(n0)
        ctx.stats.macs += mt * pt * g.cin * self.ntap * len(imgs)
        if self.bias_slot is not None:
            ctx.load(cl, Buffer(g.bias.addr, (g.cout, 1)), m0, 0, mt, 1, self.bias_slot)  # type: ignore[union-attr]
        for (j, n), o0 in product(enumerate(imgs), range(0, mt, self.chunk)):
            c = cs[j]
            rws = min(self.chunk, mt - o0)
            out = self.outs[self.onext[cl] % len(self.outs)]
            self.onext[cl] += 1
            ctx.emit(cl, "vop", reads=(c,), writes=(self.wide_out,), fn="copy",
                     dst=self.wide_out.ref(), a=c.ref(4 * o0 * wide), rows=rws, cols=wide,
                     bmode="tile", imm=0.0)
            ctx.gather_sp(cl, out, self.wide_out, 0, (rws, rows_out, cols), (wide, plan.cols_in, 1))
            if self.bias_slot is not None:
                ctx.emit(cl, "vop", reads=(out, self.bias_slot), writes=(out,), fn="add",
                         dst=out.ref(), a=out.ref(), b=self.bias_slot.ref(4 * o0), rows=rws,
                         cols=pt, bmode="col", imm=0.0)
            ctx.st_at(cl, out, g.out_addr + 4 * (n * g.cout * self.plane_out
                                                 + (m0 + o0) * self.plane_out + oh0 * g.ow + ow0),
                      rws, pt, self.plane_out)


def emit(ctx: KernelContext, g: TapGemm, plan: _SlabPlan) -> None:
    """The wide kernel over every tile: the weights shared along fabric rows and the input
    slabs down columns where the tiles allow (``rows_and_columns``), else the weights along
    rows (``rows_share_first``), else the default placement. With a layout, all clusters
    run in step: per k-block every cluster's loads (and multicasts), then every cluster's
    MACs."""
    em = WideTapEmitter(ctx, g, plan)
    ptiles = [(n0, blk) for n0 in range(0, g.n, plan.group) for blk in plan.blocks]
    mtiles = list(range(0, g.cout, plan.mt))
    layout = rows_and_columns(ctx, len(mtiles), len(ptiles)) or \
        rows_share_first(ctx, len(mtiles), len(ptiles))
    if layout is None:
        tiles = [(n, m0, blk) for n, blk in ptiles for m0 in mtiles]
        for cl, tile in ctx.place(tiles):
            em.tile(cl, tile)
        em.finish()
        return
    emit_in_step(em, layout, layout.order, ptiles, mtiles, range(0, g.cin, plan.kt))
