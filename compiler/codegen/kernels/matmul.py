"""GEMM kernels: ``graph.matmul`` (``transpose_a``/``transpose_b`` via the mm ``ta``/``tb``
flags), ``graph.linear`` (x·wᵀ via ``tb``, bias added on the accumulator tile) and
``graph.sddmm`` (the mask tile is the sampling tile S of ``sddmm``).

Per output tile (at most M x N, equal tiles in whole PE folds, split further while there are
fewer tiles than clusters: ``tiling.gemm_output_tile``; placed over the clusters by
``ctx.place``), per k-chunk of K (each cluster starting at its own chunk,
``tiling.k_chunk_order``, so concurrent loads spread over the DRAM channels); M, N, K are
the tiling's sizes, and a dimension along a packed sparse operand or result takes the
packed side T instead::

    ld  A[kk % 2] <- A tile          ld  B[kk % 2] <- B tile (decoded if sparse)
    mm  acc C[t % 2] (+)= A . B      (sddmm: sampled at S[t % 2])
    st  C -> DRAM                    (encoded if the result is sparse)

Double-buffered A, B, S and C slots; tokens come from the slot accesses. Operand reuse:
each cluster remembers which A and B tile each of its slots holds; an operand tile already
resident is not loaded again, and a new one goes to the slot least recently used (plain
alternation when nothing repeats). Each cluster takes its output tiles row-block by row-block
or column-block by column-block, whichever keeps more operand bytes resident.

Multicast (``codegen.multicast``, default placement only): where the tile grid divides over
the fabric (the output tiles shrink, down to half a side, until it does), dense operand tiles of at least ``MULTICAST_MIN_BYTES`` are shared: the
clusters of a row take the same A row-blocks (of a column the same B column-blocks) in the
same order, one of them loads each k-chunk's tile and ``bcast``s it, and every cluster's
``mm`` of the chunk follows. A packed sparse operand is still loaded by each cluster; its
fixed ``t``-wide blocks often leave no grid that divides, and then the dense operand is
shared in a ragged layout (the clusters of a row take turns over the other operand's
blocks; the last turn leaves some idle).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..context import KernelContext
from ..memory import Buffer
from ..multicast import (
    Layout,
    fits_rows_and_columns,
    fits_rows_share_first,
    rows_and_columns,
    rows_share_first,
)
from ..tiling import gemm_output_tile, k_chunk_order
from . import kernel

REUSE = True  # keep resident operand tiles (off: reload every tile, for comparisons)
MULTICAST_MIN_BYTES = 16384


@dataclass(frozen=True)
class Gemm:
    """C[b] (+)= op(A[b]) op(B[b]) [sampled at S] [+ bias row]."""

    a: Buffer
    b: Buffer
    out: Buffer
    m: int
    n: int
    k: int
    ta: bool = False
    tb: bool = False
    batch: int = 1
    sample: Buffer | None = None
    bias: Buffer | None = None
    activation: str = "none"  # a fused ReLU (fuse-activations), applied before the store


def output_tile(ctx: KernelContext, g: Gemm) -> tuple[int, int]:
    """(rows, cols) of the output tiles (``tiling.gemm_output_tile``, at most the tiling's
    ``m x n``): packed sparse operands and results keep the ``t x t`` grid along their
    dimensions."""
    fixed = g.out.sparse or g.sample is not None and g.sample.sparse
    pin_m, pin_n = fixed or g.a.sparse, fixed or g.b.sparse
    tiling = ctx.tiling
    return gemm_output_tile(g.m, g.n, tiling.t if pin_m else tiling.m, len(ctx.streams), g.batch,
                            step_m=int(ctx.target.cluster.pe_rows),
                            step_n=int(ctx.target.cluster.pe_cols),
                            split_m=not pin_m, split_n=not pin_n,
                            t_n=tiling.t if pin_n else tiling.n)


def k_chunk(ctx: KernelContext, g: Gemm) -> int:
    """The k-chunk: the tiling's ``k``, or the packed side ``t`` where a packed sparse
    operand runs along k (one chunk reads one of its tiles)."""
    return ctx.tiling.t if g.a.sparse or g.b.sparse else ctx.tiling.k


def emit_gemm(ctx: KernelContext, g: Gemm) -> None:
    tm, tn, ragged = _multicast_tile(ctx, g)
    kc = k_chunk(ctx, g)
    em = _GemmEmitter(ctx, g, (tm, tn), kc)
    layout = _multicast_layout(ctx, g, tm, tn, ragged)
    if layout is None:
        tiles = [(bi, i0, j0) for bi in range(g.batch) for i0 in range(0, g.m, tm)
                 for j0 in range(0, g.n, tn)]
        for cl, tile in _reuse_order(list(ctx.place(tiles)), g, kc, tm, tn):
            em.begin(cl, tile)
            order = k_chunk_order(g.k, kc, cl)
            for k0 in order:
                em.load(cl, k0)
                em.mm(cl, k0, first=k0 == order[0])
            em.end(cl)
        return
    # shared operand tiles: emitted in step, every sender's load and multicast of a k-chunk
    # before any cluster's mm of it (codegen.multicast); a cluster without a tile in a step
    # (a ragged layout's last turn) only takes its sender's multicast into its slot
    layout, swapped = layout

    def origin(item: tuple[int, int] | None) -> tuple[int, int, int] | None:
        if item is None:
            return None
        i, j = (item[1], item[0]) if swapped else item
        return 0, i * tm, j * tn

    for step in range(layout.steps):
        tiles = {cl: origin(layout.tiles[cl][step]) for cl in layout.order}
        busy = [cl for cl in layout.order if tiles[cl] is not None]
        for cl in busy:
            em.begin(cl, tiles[cl])
        for k0 in range(0, g.k, kc):
            for cl in layout.order:
                if tiles[cl] is not None:
                    em.load(cl, k0, layout)
                else:
                    em.receive(cl, k0, layout, tiles)
            for cl in busy:
                em.mm(cl, k0, first=k0 == 0)
        for cl in busy:
            em.end(cl)


def _shared_operands(ctx: KernelContext, g: Gemm, tm: int, tn: int) -> tuple[bool, bool]:
    """Whether A's and B's tiles are worth sharing over the fabric: dense (a packed sparse
    operand is loaded by each cluster: its encoded bytes are few, and a multicast would carry
    them decoded) and at least ``MULTICAST_MIN_BYTES`` (with small tiles the load, multicast
    and mm of a chunk run one after another, and with two slots per operand the latency that
    adds is not hidden: 16 x 16 tiles ran 2 % slower multicast)."""
    if g.batch != 1 or not REUSE:
        return False, False
    kc = k_chunk(ctx, g)
    share_a = not g.a.sparse and 4 * tm * min(kc, g.k) >= MULTICAST_MIN_BYTES
    share_b = not g.b.sparse and 4 * tn * min(kc, g.k) >= MULTICAST_MIN_BYTES
    return share_a, share_b


def _share_plan(ctx: KernelContext, g: Gemm, tm: int, tn: int, ragged: bool = False
                ) -> tuple[bool, int, int, bool] | None:
    """How ``tm x tn`` output tiles would be shared: (both operands, items shared first,
    items of the other operand, whether the first items are B's column blocks), or None.
    A ragged layout shares one operand (A where it can)."""
    share_a, share_b = _shared_operands(ctx, g, tm, tn)
    n_i, n_j = -(-g.m // tm), -(-g.n // tn)
    if share_a:
        return share_b and not ragged, n_i, n_j, False
    if share_b:
        return False, n_j, n_i, True
    return None


def _multicast_layout(ctx: KernelContext, g: Gemm, tm: int, tn: int, ragged: bool = False):
    """(layout, whether its first items are B's column blocks) for sharing the dense
    operands' tiles over the fabric (:func:`_shared_operands`), or None."""
    plan = _share_plan(ctx, g, tm, tn, ragged)
    if plan is None:
        return None
    both, n_first, n_other, swapped = plan
    if both:
        layout = rows_and_columns(ctx, n_first, n_other)
    else:
        layout = rows_share_first(ctx, n_first, n_other, operand="b" if swapped else "a",
                                  ragged=ragged)
    return None if layout is None else (layout, swapped)


def _multicast_fits(ctx: KernelContext, g: Gemm, tm: int, tn: int, ragged: bool = False) -> bool:
    """Whether :func:`_multicast_layout` would find a layout for ``tm x tn`` output tiles
    (without taking the multicast groups it would use)."""
    plan = _share_plan(ctx, g, tm, tn, ragged)
    if plan is None:
        return False
    both, n_first, n_other, _ = plan
    if both:
        return fits_rows_and_columns(ctx, n_first, n_other)
    return fits_rows_share_first(ctx, n_first, n_other, ragged)


def _multicast_tile(ctx: KernelContext, g: Gemm) -> tuple[int, int, bool]:
    """The output tile and whether its sharing layout is ragged: ``output_tile``'s, or where
    its tile grid does not divide over the
    fabric for sharing (2048 rows in tiles of 144: 15 row blocks on 4 fabric rows), the
    largest one down to half of it on each side, in whole PE folds and along dimensions
    that can be split, whose grid does. Sharing divides the dense operands' port bytes by
    up to the fabric's side, which pays for the smaller tiles' extra folds many times over
    (2048 x 512 x 512 dense on acf-base: 144-row tiles, not shared, 267k cycles; 128-row
    tiles, shared, 174k). Where no such tile divides (a packed sparse B keeps its ``t``-wide
    column blocks: 2048 columns are 15 of them), the largest of the same tiles that allows
    it shares one operand in a ragged layout (``multicast.rows_share_first``): 512 x 2048 x
    2048 with a 10 % bitmap weight: 571k cycles with each cluster loading its own x tiles,
    271k shared)."""
    tm, tn = output_tile(ctx, g)
    if g.batch != 1 or not REUSE or _multicast_fits(ctx, g, tm, tn):
        return tm, tn, False
    fixed = g.out.sparse or g.sample is not None and g.sample.sparse

    def sizes(extent: int, size: int, step: int, split: bool) -> list[int]:
        """Tile sides for ``parts`` = the current count up to twice it, largest first."""
        if not split:
            return [size]
        count = -(-extent // size)
        out = set()
        for parts in range(count, 2 * count + 1):
            per = -(-extent // parts)
            out.add(min(size, -(-per // step) * step))
        return sorted((s for s in out if 2 * s >= size), reverse=True)

    cands = [(a, b)
             for a in sizes(g.m, tm, int(ctx.target.cluster.pe_rows), not (fixed or g.a.sparse))
             for b in sizes(g.n, tn, int(ctx.target.cluster.pe_cols), not (fixed or g.b.sparse))]
    cands.sort(key=lambda c: -c[0] * c[1])
    for a, b in cands:
        if _multicast_fits(ctx, g, a, b):
            return a, b, False
    # Ragged only where a packed sparse operand or result pins the tile grid (dense
    # operands find an even grid above or do better unshared: 4096 x 64 x 576 dense shared
    # ragged in 128 x 32 tiles, 141k cycles; unshared 144 x 64, 116k), and over several
    # k-chunks: with one, a tile's load, multicast and mm run one after another and the
    # idle turns are not repaid (784 x 256 MLP weight gradient at batch 32: 5,291 -> 5,385;
    # both measured while a sender still waited for its own multicast).
    pinned = fixed or g.a.sparse or g.b.sparse
    if pinned and g.k > k_chunk(ctx, g):
        for a, b in cands:
            if _multicast_fits(ctx, g, a, b, ragged=True):
                return a, b, True
    return tm, tn, False


class _GemmEmitter:
    """Emits the GEMM kernel per cluster: ``begin`` an output tile, ``load`` and ``mm`` per
    k-chunk, ``end`` (bias, store); keeps each cluster's resident operand tiles and slot
    parities."""

    def __init__(self, ctx: KernelContext, g: Gemm, tile: tuple[int, int], kc: int) -> None:
        self.ctx, self.g = ctx, g
        self.kc = t = kc
        self.tm, self.tn = tm, tn = tile
        self.a_slots = [ctx.alloc("sp", 4 * tm * t) for _ in range(2)]
        self.b_slots = [ctx.alloc("sp", 4 * t * tn) for _ in range(2)]
        self.s_slots = [ctx.alloc("sp", 4 * tm * tn) for _ in range(2)] if g.sample else []
        self.bias_slots = [ctx.alloc("sp", 4 * tn) for _ in range(2)] if g.bias else []
        self.c_slots = [ctx.alloc("acc", 4 * tm * tn) for _ in range(2)]
        if g.batch > 1 and any(x is not None and x.sparse for x in (g.a, g.b, g.sample, g.out)):
            raise ctx.error("batched matmul with a sparse operand is not supported")
        if g.k == 0:
            raise ctx.error("matmul with an empty contraction dimension")
        self.titer = [0] * len(ctx.streams)
        self.a_res = [_Resident(self.a_slots) for _ in ctx.streams]
        self.b_res = [_Resident(self.b_slots) for _ in ctx.streams]
        self.current: dict[int, tuple] = {}  # cluster -> (tile, C slot, S ref, A, B)

    def begin(self, cl: int, tile: tuple[int, int, int]) -> None:
        ctx, g = self.ctx, self.g
        bi, i0, j0 = tile
        mt, nt = min(self.tm, g.m - i0), min(self.tn, g.n - j0)
        c = self.c_slots[self.titer[cl] % 2]
        s = None
        if g.sample:
            s = self.s_slots[self.titer[cl] % 2]
            ctx.load(cl, g.sample, i0, j0, mt, nt, s, base=4 * bi * g.m * g.n)
        self.titer[cl] += 1
        self.current[cl] = [tile, c, s, None, None]

    def load(self, cl: int, k0: int, layout: Layout | None = None) -> None:
        """The k-chunk's A and B tiles unless resident (only the sender loads a shared one,
        then multicasts it)."""
        ctx, g = self.ctx, self.g
        cur = self.current[cl]
        bi, i0, j0 = cur[0]
        mt, nt = min(self.tm, g.m - i0), min(self.tn, g.n - j0)
        kt = min(self.kc, g.k - k0)
        a, a_new = self.a_res[cl].slot((bi, i0, k0))
        b, b_new = self.b_res[cl].slot((bi, j0, k0))
        cur[3], cur[4] = a, b
        if a_new and (layout is None or layout.sends("a", cl)):
            if g.ta:
                ctx.load(cl, g.a, k0, i0, kt, mt, a, base=4 * bi * g.m * g.k)
            else:
                ctx.load(cl, g.a, i0, k0, mt, kt, a, base=4 * bi * g.m * g.k)
            if layout is not None and layout.shared("a"):
                ctx.bcast(cl, layout.group["a"][cl], a, 4 * mt * kt, layout.receivers["a"][cl])
        if b_new and (layout is None or layout.sends("b", cl)):
            if g.tb:
                ctx.load(cl, g.b, j0, k0, nt, kt, b, base=4 * bi * g.n * g.k)
            else:
                ctx.load(cl, g.b, k0, j0, kt, nt, b, base=4 * bi * g.n * g.k)
            if layout is not None and layout.shared("b"):
                ctx.bcast(cl, layout.group["b"][cl], b, 4 * kt * nt, layout.receivers["b"][cl])

    def receive(self, cl: int, k0: int, layout: Layout, tiles: dict) -> None:
        """A cluster without a tile this step: its sender's multicast of the k-chunk still
        lands in its slot (the group is fixed), so its resident record follows the
        sender's, which keeps the two choosing the same slots in later steps."""
        for operand, res in (("a", self.a_res[cl]), ("b", self.b_res[cl])):
            if not layout.shared(operand):
                continue
            sent = tiles[layout.sender[operand][cl]]
            if sent is not None:
                bi, i0, j0 = sent
                res.slot((bi, i0 if operand == "a" else j0, k0))

    def mm(self, cl: int, k0: int, first: bool) -> None:
        """The chunk's ``mm``; ``first``: the tile's first chunk, which starts the sum."""
        ctx, g = self.ctx, self.g
        (_, i0, j0), c, s, a, b = self.current[cl]
        mt, nt = min(self.tm, g.m - i0), min(self.tn, g.n - j0)
        kt = min(self.kc, g.k - k0)
        extra = {"s": s.ref()} if s is not None else {}
        reads = (a, b) + ((s,) if s is not None else ()) + (() if first else (c,))
        ctx.emit(cl, "sddmm" if g.sample else "mm", reads=reads, writes=(c,), dst=c.ref(),
                 a=a.ref(), b=b.ref(), m=mt, n=nt, k=kt, accum=int(not first), ta=int(g.ta),
                 tb=int(g.tb), **extra)
        ctx.stats.macs += mt * nt * kt

    def end(self, cl: int) -> None:
        ctx, g = self.ctx, self.g
        (bi, i0, j0), c, *_ = self.current.pop(cl)
        mt, nt = min(self.tm, g.m - i0), min(self.tn, g.n - j0)
        if g.bias is not None:
            bias = self.bias_slots[self.titer[cl] % 2]
            ctx.load(cl, g.bias, 0, j0, 1, nt, bias)
            ctx.vop(cl, "add", c, c, mt, nt, bias, bmode="row")
        if g.activation == "relu":
            ctx.vop(cl, "relu", c, c, mt, nt)
        ctx.store(cl, g.out, i0, j0, mt, nt, c, base=4 * bi * g.m * g.n)


class _Resident:
    """Which operand tile each of one cluster's slots of one operand holds."""

    def __init__(self, slots: list[Any]) -> None:
        self.slots = slots
        self.held: list[Any] = [None] * len(slots)
        self.used = [i - len(slots) for i in range(len(slots))]  # slot 0 is taken first
        self.clock = 0

    def slot(self, key: Any) -> tuple[Any, bool]:
        """(the slot for tile ``key``, whether it must be loaded)."""
        self.clock += 1
        if REUSE and key in self.held:
            i, new = self.held.index(key), False
        else:
            i, new = min(range(len(self.slots)), key=lambda s: self.used[s]), True
            self.held[i] = key
        self.used[i] = self.clock
        return self.slots[i], new


def _shared_bytes(order: list[tuple[int, int, int]], g: Gemm, t: int, tm: int, tn: int) -> int:
    """Operand bytes that stay resident between consecutive tiles of one cluster (one k-chunk
    per tile, or two: both of its chunks stay in the two slots)."""
    chunks = -(-g.k // t)
    if chunks > 2:
        return 0
    saved = 0
    for (b1, i1, j1), (b2, i2, j2) in pairwise(order):
        if b1 == b2 and i1 == i2:
            saved += min(tm, g.m - i1) * g.k
        if b1 == b2 and j1 == j2:
            saved += min(tn, g.n - j1) * g.k
    return saved


def _reuse_order(placed: list[tuple[int, Any]], g: Gemm, t: int, tm: int, tn: int
                 ) -> list[tuple[int, Any]]:
    """Each cluster's tiles row-block by row-block (program order) or column-block by
    column-block, whichever shares more operand tiles between consecutive tiles; clusters
    interleave as before (slot i of the order keeps the cluster it had)."""
    if not REUSE:
        return placed
    by_cl: dict[int, list[Any]] = {}
    for cl, tile in placed:
        by_cl.setdefault(cl, []).append(tile)
    for cl, mine in by_cl.items():
        cols = sorted(mine, key=lambda x: (x[0], x[2], x[1]))
        if _shared_bytes(cols, g, t, tm, tn) > _shared_bytes(mine, g, t, tm, tn):
            by_cl[cl] = cols
    nxt = {cl: iter(mine) for cl, mine in by_cl.items()}
    return [(cl, next(nxt[cl])) for cl, _ in placed]


def _dims(ctx: KernelContext, ta: bool, tb: bool) -> tuple[int, int, int, int]:
    a, b = ctx.op.operands[0].type.shape, ctx.op.operands[1].type.shape  # type: ignore[union-attr]
    m, k = (a[-1], a[-2]) if ta else (a[-2], a[-1])
    n = b[-2] if tb else b[-1]
    batch = 1
    for d in a[:-2]:
        batch *= d
    return m, n, k, batch


@kernel("graph.matmul", "graph.sddmm")
def matmul(ctx: KernelContext) -> None:
    ta, tb = bool(ctx.attrs["transpose_a"]), bool(ctx.attrs["transpose_b"])
    m, n, k, batch = _dims(ctx, ta, tb)
    ins = ctx.ins
    sample = ins[2] if ctx.op.name == "graph.sddmm" else None
    emit_gemm(ctx, Gemm(ins[0], ins[1], ctx.outs[0], m, n, k, ta, tb, batch, sample,
                        activation=str(ctx.attrs.get("activation", "none"))))


@kernel("graph.linear")
def linear(ctx: KernelContext) -> None:
    ins = ctx.ins
    x_shape = ctx.op.operands[0].type.shape  # type: ignore[union-attr]
    w_shape = ctx.op.operands[1].type.shape  # type: ignore[union-attr]
    m = 1
    for d in x_shape[:-1]:
        m *= d
    bias = ins[2] if len(ins) == 3 else None
    x = Buffer(ins[0].addr, (m, x_shape[-1]), ins[0].fmt, ins[0].tile, ins[0].name)
    out = ctx.outs[0]
    out2 = Buffer(out.addr, (m, w_shape[0]), out.fmt, out.tile, out.name)
    if x.sparse and len(x_shape) != 2 or out.sparse and len(x_shape) != 2:
        raise ctx.error("linear with a sparse input or result needs a 2-D input")
    emit_gemm(ctx, Gemm(x, ins[1], out2, m, w_shape[0], w_shape[1], tb=True, bias=bias,
                        activation=str(ctx.attrs["activation"])))
