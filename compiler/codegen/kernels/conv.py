"""Convolution kernels (``groups = 1``): ``graph.conv2d``, ``conv2d_backward_input`` and
``conv2d_backward_weight``, as sums over kernel taps (kh, kw) of GEMMs.

Data layout: activations stay NCHW and weights OIHW in DRAM, exactly as the IR has them.
Each output tile loads, per block of input channels, a *slab*: the input rows and columns
under every tap's window (runs of whole rows, one ``ldg`` per image), and the weights of
all taps (rows of OIHW, one ``ld``). Every tap's ``mm`` then reads its operands in place
through the MAC unit's view registers (``mview``; docs/timing.md section 3): the weight
slice ``W[:, :, kh, kw]`` is every KH*KW-th column of the weight slab, and the tap's window
(shifted, strided im2col rows) a strided block of the input slab. No per-tap copies are
made, and the weight is always the ``a`` operand (``skip=ab``), so zero weights are skipped.
Zero borders are virtual: slabs read the unpadded tensor and their border elements are
zeroed on chip (``_zero_border``); the memory plan keeps a guard gap around every buffer.

``conv2d``: out[n] (Cout x OH*OW, an NCHW plane block) = sum_taps W_tap . window_tap(n).
Output tiles (images, Cout block, block of whole output rows) are placed round-robin::

    ld  sp[WS] <- W[o0:, c0:, all taps]      ldg sp[XS] <- x[n, c0:, rows_in, cols_in]
    per tap, per image:  mm acc[C] (+)= WS[tap] . XS[window]   (m = Cout, k = Cin block, n = pixels)
    ... vop add acc[C], acc[C], bias col;  st acc[C] -> out[n, o0:, rows]

``conv2d_backward_input``: the transposed conv, i.e. a stride-1 conv (dilation dh, dw) of
the output gradient padded by ``d*(K-1) - p`` with the flipped weight (``mm ta=1`` reads
the tap slice ``W[:, :, KH-1-kh, KW-1-kw]`` transposed). Stride 1 uses the slab kernel above
on g itself; a stride > 1 first dilates g in DRAM scratch (g's rows stored into block 0 of a
zeroed buffer [N*Cout*OH, sh*sw, OW], whose zero blocks make the dilated image a strided
view that ``gather_copy`` moves into the padded buffer).

``conv2d_backward_weight``: per Cout x Cin tile, gW_tap = sum over images and pixel blocks
of g (Cout x pixels) times window_tap^T (``mm tb=1``, the windows of several images stacked
along k by the view); every tap accumulates in the scratchpad, and one on-chip gather puts
the taps in OIHW order for a single ``st`` per tile. With a mask operand each tap's ``mm`` is
an ``sddmm`` sampled by that tap's mask (the conv SDDMM of a masked weight).

When the slabs do not fit the scratchpad, the taps gather their operands from DRAM instead
(``_emit_tap_gemm_from_dram``, ``_wgrad_from_dram``).

Operands several clusters share (the weight slabs of one output-channel tile; in the weight
gradient, output-gradient rows and input slabs) are loaded by one cluster of a fabric row or
column and multicast to the rest where the tiles divide evenly (``codegen.multicast``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise, product

from ..context import KernelContext
from ..memory import Buffer
from ..multicast import Layout, fits_rows_and_columns, rows_and_columns, rows_share_first
from ..schedule import Slot
from . import kernel, scratch
from .elementwise import elementwise_inplace
from .layout import fill, gather_copy
from .loops import KLoop


@dataclass(frozen=True)
class Conv:
    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    sh: int
    sw: int
    ph: int
    pw: int
    dh: int
    dw: int

    @property
    def oh(self) -> int:
        return (self.h + 2 * self.ph - self.dh * (self.kh - 1) - 1) // self.sh + 1

    @property
    def ow(self) -> int:
        return (self.w + 2 * self.pw - self.dw * (self.kw - 1) - 1) // self.sw + 1


def _conv_of(op, xshape=None, wshape=None) -> Conv:
    from ...dialect import attrs_of

    a = attrs_of(op)
    if int(a["groups"]) != 1:  # type: ignore[arg-type]
        raise ValueError("groups")
    if op.name == "graph.conv2d":
        xshape, wshape = op.operands[0].type.shape, op.operands[1].type.shape
    elif op.name == "graph.conv2d_backward_input":
        xshape, wshape = tuple(a["input_shape"]), op.operands[1].type.shape  # type: ignore[arg-type]
    else:
        xshape, wshape = op.operands[1].type.shape, tuple(a["weight_shape"])  # type: ignore[arg-type]
    (sh, sw), (ph, pw), (dh, dw) = (tuple(int(v) for v in a[k]) for k in ("stride", "padding", "dilation"))  # type: ignore[union-attr]
    n, c, h, w = xshape
    return Conv(n, c, h, w, wshape[0], wshape[2], wshape[3], sh, sw, ph, pw, dh, dw)


CONV_OPS = ("graph.conv2d", "graph.conv2d_backward_input", "graph.conv2d_backward_weight")


def read_guard_bytes(func) -> int:
    """Bytes a conv slab may read past either end of its input tensor: the zero border
    (padding, or the flipped kernel's reach in the input gradient) of one row plus one
    column. The memory plan keeps that much unused DRAM around every buffer; the slab's
    border elements are zeroed on chip after the load (see ``_zero_border``), and a slab's
    rows may be read up to that border's width late (``load_slab``)."""
    guard = 0
    for op in func.body.ops:
        if op.name not in CONV_OPS:
            continue
        try:
            v = _conv_of(op)
        except (ValueError, KeyError, TypeError):
            continue
        pad = max(v.ph, v.pw, v.dh * (v.kh - 1), v.dw * (v.kw - 1))
        # (+ pad: load_slab reads rows from column 0, up to pad elements later)
        guard = max(guard, 4 * ((pad + 1) * max(v.w, v.ow) + 2 * pad + 1))
    return -(-guard // 64) * 64


def _bwd_input_geometry(v: Conv) -> tuple[int, int, int, int]:
    """(top, left, Hz, Wz) of the dilated, padded output gradient."""
    top, left = v.dh * (v.kh - 1) - v.ph, v.dw * (v.kw - 1) - v.pw
    hz = max(v.h + v.dh * (v.kh - 1), top + v.oh * v.sh)
    wz = max(v.w + v.dw * (v.kw - 1), left + v.ow * v.sw)
    return top, left, hz, wz


@scratch("graph.conv2d", "graph.conv2d_backward_input", "graph.conv2d_backward_weight")
def _conv_scratch(op) -> list[tuple[int, ...]]:
    try:
        v = _conv_of(op)
    except ValueError:
        return []
    out: list[tuple[int, ...]] = []
    if op.name == "graph.conv2d_backward_input":
        _, _, hz, wz = _bwd_input_geometry(v)
        out.append((v.n, v.o, hz, wz))
        if v.sh * v.sw > 1:
            out.append((v.n * v.o * v.oh, v.sh * v.sw, v.ow))
        return out
    if v.ph or v.pw:
        out.append((v.n, v.c, v.h + 2 * v.ph, v.w + 2 * v.pw))
    if op.name == "graph.conv2d_backward_weight":
        if v.kh * v.kw > 1:
            out.append((v.o, v.kh * v.kw, v.c))
        # partial gradients of the image groups beyond the first (see _wgrad_split)
        out += [(v.o, v.c, v.kh, v.kw)] * (WGRAD_SPLIT_MAX - 1)
    return out


#: at most this many image groups of a conv weight gradient run on separate clusters
WGRAD_SPLIT_MAX = 4


def _wgrad_partials(ctx: KernelContext, v: Conv) -> list[Buffer]:
    """The DRAM scratch of the image groups' partial weight gradients (after the padded
    input and the tap-permutation scratch of the DRAM-gather path, when present)."""
    return ctx.scratch[len(ctx.scratch) - (WGRAD_SPLIT_MAX - 1):]


def _params(ctx: KernelContext) -> Conv:
    try:
        v = _conv_of(ctx.op)
    except ValueError:
        raise ctx.error("grouped convolution (groups > 1) reached a conv kernel: "
                        "compile_module splits them first") from None
    if any(b.sparse for b in ctx.ins + ctx.outs):
        raise ctx.error("conv operands must be stored dense (zero weights are still skipped: "
                        "the weight is the a operand of mm with skip=ab)")
    return v


def _padded_input(ctx: KernelContext, x: Buffer, v: Conv, which: int = 0) -> tuple[int, int, int]:
    """(address, Hin, Win) of the input the taps read: x itself, or a zero-padded copy."""
    if not (v.ph or v.pw):
        return x.addr, v.h, v.w
    xp = ctx.scratch[which]
    hp, wp = v.h + 2 * v.ph, v.w + 2 * v.pw
    fill(ctx, xp.addr, v.n * v.c * hp * wp)
    ctx.barrier()
    gather_copy(ctx, x.addr, xp.addr + 4 * (v.ph * wp + v.pw), [v.n * v.c, v.h, v.w],
                [v.h * v.w, v.w, 1], [hp * wp, wp, 1])
    ctx.barrier()
    return xp.addr, hp, wp


def _pixel_blocks(oh: int, ow: int, limit: int) -> list[tuple[int, int, int, int]]:
    """(oh0, rows, ow0, cols) blocks of the output plane with rows*cols <= limit."""
    if ow <= limit:
        r = max(1, limit // ow)
        r = -(-oh // -(-oh // r))  # balanced: as many blocks, of (nearly) equal rows
        return [(i, min(r, oh - i), 0, ow) for i in range(0, oh, r)]
    return [(i, 1, j, min(limit, ow - j)) for i in range(oh) for j in range(0, ow, limit)]


@dataclass(frozen=True)
class TapGemm:
    """out[n, o, pixels] (+bias) = sum over taps and input-channel blocks of A_tap . window.

    ``w_addr`` + ``w_rs``/``w_cs``: the weight as a matrix [rows=Cout(fwd)/Cout(bwd-in),
    cols=Cin] per tap at element offset ``taps[i][2]``; ``ta``: the slice is stored k x m.
    """

    x_addr: int
    cin: int
    hin: int
    win: int
    w_addr: int
    w_rs: int
    w_cs: int
    ta: bool
    out_addr: int
    n: int
    cout: int
    oh: int
    ow: int
    sh: int
    sw: int
    taps: tuple[tuple[int, int, int], ...]  # (input row offset, input col offset, weight offset)
    bias: Buffer | None = None
    pad_t: int = 0  # zero border of the input not stored in DRAM (the slabs zero it on chip)
    pad_l: int = 0


def _zero_border(ctx: KernelContext, cl: int, slab: Slot, chans: int, rows_in: int, cols_in: int,
                 row0: int, col0: int, h: int, w: int) -> None:
    """Zero the slab elements that lie outside the h x w input (the conv's zero border):
    the slab was loaded from ``row0, col0`` (possibly negative) with the input's own row
    pitch, so those elements hold neighbouring rows' data or the guard bytes around the
    tensor. ``x > +inf`` is false for every x, NaN included."""
    inf, area = float("inf"), rows_in * cols_in
    left = min(max(-col0, 0), cols_in)
    right = min(max(w - col0, 0), cols_in)
    top = min(max(-row0, 0), rows_in)
    bottom = min(max(h - row0, 0), rows_in)
    spans = []  # (element offset, rows, cols, pitch)
    if left:
        spans.append((0, chans * rows_in, left, cols_in))
    if right < cols_in:
        spans.append((right, chans * rows_in, cols_in - right, cols_in))
    if top:
        spans.append((0, chans, top * cols_in, area))
    if bottom < rows_in:
        spans.append((bottom * cols_in, chans, (rows_in - bottom) * cols_in, area))
    for off, rows, cols, pitch in spans:
        if rows > 0xFFFF or cols > 0xFFFF or pitch > 0xFFFF:
            raise ctx.error("conv slab too large for the vop fields")
        ctx.emit(cl, "vop", reads=(slab,), writes=(slab,), fn="gt", dst=slab.ref(4 * off),
                 a=slab.ref(4 * off), rows=rows, cols=cols, bmode="imm", imm=inf,
                 pitch=0 if pitch == cols else pitch)


def load_slab(ctx: KernelContext, cl: int, slot: Slot, addr: int, dims: tuple[int, int, int],
              strides: tuple[int, int, int], offset: int, col0: int) -> None:
    """``ldg`` a slab of ``dims`` (channels, rows, row elements; rows contiguous) whose rows
    start at input column ``col0``, ``addr`` being that element's address.

    Where ``col0 < 0`` the first ``-col0`` elements of every slab row are zero border, filled
    on chip after the load (``_zero_border``), so they need not come from DRAM: the rows are
    read from column 0 instead and land ``-col0`` elements further into the slot. Each row's
    DRAM run then starts on the input row's own boundary, not just before it: a 34-element
    row of a 32-wide plane read from column -1 touches four 64-byte bursts (it also crosses
    an interleave boundary), from column 0 three. A run now ends ``-col0`` elements into the
    next input row; those land on the next slab row's left border (zeroed as well), and the
    last row's past the slab, so the slot holds :func:`slab_lead` more elements and the
    memory plan's guard (``read_guard_bytes``) covers the read."""
    lead = slab_lead(col0)
    ctx.ldg(cl, slot, addr + 4 * lead, dims, strides, offset=offset + 4 * lead)


def slab_lead(col0: int) -> int:
    """Elements past its end a slab slot holds for :func:`load_slab`'s shifted rows."""
    return max(0, -col0)


def row_step(stride: int, one_row: bool, pad_top: int) -> int:
    """Input rows a slab steps over per row it holds: the stride for a one-row kernel
    without top padding (a 1x1 stride-2 shortcut reads only every other input row; the
    rows between are under no tap), else 1 (every row of the slab's span)."""
    return stride if one_row and stride > 1 and pad_top == 0 else 1


@dataclass(frozen=True)
class _SlabPlan:
    """Tile sizes of the slab tap GEMM: ``mt`` output channels, pixel ``blocks``, ``group``
    images per tile (whole-plane blocks only), ``kt`` input channels per k-block and the
    input slab (``rows_in`` x ``cols_in`` per channel) that covers every tap's window."""

    mt: int
    blocks: list[tuple[int, int, int, int]]
    pmax: int
    group: int
    kt: int
    rows_in: int
    cols_in: int
    wbufs: int = 1  # weight slab buffers
    wide: bool = False  # one mm per k-block over every tap (conv_wide)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _folds(rows: int) -> int:
    """``rows`` rounded up to whole 16-row PE folds."""
    return _cdiv(rows, 16) * 16


#: the share of the memory ports' peak that streaming kernels sustain (measured on the
#: ResNet-18 convs: requests from a row's clusters contend for its port and the DRAM
#: latency is not always hidden)
PORT_EFFICIENCY = 0.75


def _port_bytes(ctx: KernelContext) -> float:
    """Bytes per cycle into the fabric that a kernel's plan may count on: one memory port
    link per row (docs/timing.md 7), at ``PORT_EFFICIENCY``."""
    return ctx.target.port_bytes_per_cycle * PORT_EFFICIENCY


def _slab_plan(ctx: KernelContext, g: TapGemm) -> _SlabPlan | None:
    """The slab plan with the least estimated time (``_plan_cost``, at the operands'
    expected densities) of the widest output-channel tile and two narrower ones, which load
    each input slab once per output-channel tile but may load their weights far less often:
    the widest that holds whole output planes (a tile then takes several images, which share
    each weight slab) and the widest whose weights fit one k-block (they stay resident on a
    cluster from tile to tile); each also with a double-buffered weight slab, and as the
    wide-K kernel (``conv_wide``: every tap in one reduction, equal strides)."""
    from .conv_wide import group_sizes, pixels_linear, wide_plan_for

    t, elems = ctx.tiling.t, ctx.tiling.elems
    ncl = len(ctx.streams)
    mt = min(g.cout, t)
    # balanced output-channel tiles (whole PE-row folds): a ragged last tile would leave
    # its cluster idle while the others finish full ones
    mt = min(mt, _folds(_cdiv(g.cout, _cdiv(g.cout, mt))))
    blocks = _pixel_blocks(g.oh, g.ow, max(1, min(elems // mt, 0xFFFF)))
    if _cdiv(g.cout, mt) * len(blocks) * g.n < ncl:  # too few tiles for the clusters: thinner
        mt = min(mt, _folds(_cdiv(g.cout, _cdiv(ncl, len(blocks) * g.n))))
    best = _slab_plan_for(ctx, g, mt)
    plans = [best] if best is not None else []
    if best is not None and best.kt < g.cin:
        whole = elems // (g.oh * g.ow) // 16 * 16  # widest tile that holds whole output planes
        if 16 <= whole < mt:
            whole = _folds(_cdiv(g.cout, _cdiv(g.cout, whole)))
            p = _slab_plan_for(ctx, g, whole)
            if p is not None:
                plans.append(p)
        for n_m in range(_cdiv(g.cout, mt) + 1, _cdiv(g.cout, 16) + 1):
            narrower = _folds(_cdiv(g.cout, n_m))
            p = _slab_plan_for(ctx, g, narrower) if narrower < mt else None
            if p is not None and p.kt >= g.cin:
                plans.append(p)
                break
        for p in list(plans):  # each with its weight slab double-buffered (a thinner k-block)
            if p.wbufs == 1 and p.kt < g.cin:
                q = _slab_plan_for(ctx, g, p.mt, wbufs=2)
                if q is not None and q.wbufs == 2:
                    plans.append(q)
    # the wide kernel's output tiles sit in the accumulator, not the scratchpad: it may take
    # every output channel (each input slab then crosses the memory ports once), or one or
    # two tiles per fabric row (the layout that shares weights along rows and input slabs
    # down columns)
    gy = int(ctx.target.fabric.grid[1])
    wide_mts = {p.mt for p in plans} | {mt} | {_folds(_cdiv(g.cout, k)) for k in (1, 2, gy, 2 * gy)}
    for m in sorted(wide_mts) if getattr(ctx.options, "wide_taps", "auto") != "off" else ():
        one = wide_plan_for(ctx, g, m)
        groups = [1]  # whole-plane tiles may take several images
        if one is not None and len(one.blocks) == 1:
            (_, r, _, c), = one.blocks
            groups = group_sizes(ctx, g, m, pixels_linear(r, c, one.cols_in))
        for grp, wb in product(groups, (1, 2)):
            q = wide_plan_for(ctx, g, m, wb, grp)
            if q is not None and q.wbufs == wb and q not in plans:
                plans.append(q)
    if not plans:
        return None
    if getattr(ctx.options, "wide_taps", "auto") == "on" and any(p.wide for p in plans):
        plans = [p for p in plans if p.wide]
    density = _pair_density(ctx)
    costs = [_plan_cost(ctx, g, p, density) for p in plans]
    # ties (within 2 %, e.g. all bound by the same MAC time) go to the fewer bytes moved
    low = min(c for c, _ in costs)
    near = [i for i, (c, _) in enumerate(costs) if c <= 1.02 * low]
    return plans[min(near, key=lambda i: costs[i][1])]


def _pair_density(ctx: KernelContext, a: int = 1, b: int = 0) -> float:
    """Expected fraction of a conv's multiply pairs the PEs do not skip, by the target's
    skip hardware: the mm's ``a`` operand is op operand ``a`` (the weights, by default),
    its ``b`` operand op operand ``b`` (the data)."""
    c = ctx.target.cluster
    if str(c.dataflow) != "os":
        return 1.0
    skip = str(c.skip)
    da = ctx.operand_density(a) if skip in ("a", "ab") else 1.0
    db = ctx.operand_density(b) if skip == "ab" else 1.0
    return da * db


def _fold_cycles(ctx: KernelContext, k: int, density: float) -> float:
    """Expected cycles of one PE fold reducing over ``k`` pairs, ``density`` of them
    effectual: per lookahead window of d pairs, max(1, effectual) (docs/timing.md 3), the
    fold's slowest output ~10 % over the mean, plus the fold overhead."""
    c = ctx.target.cluster
    fold = int(c.fold_cycles)
    if density >= 1.0:
        return k + fold
    d = int(c.lookahead)
    per_window = d * density + (1.0 - density) ** d
    return min(float(k), _cdiv(k, d) * per_window * 1.1) + fold


def _plan_cost(ctx: KernelContext, g: TapGemm, p: _SlabPlan, density: float = 1.0
               ) -> tuple[float, float]:
    """(estimated cycles, DRAM bytes loaded) of a slab plan: the larger of the loads over
    the memory ports and one cluster's tiles. Per tile and k-block, the MACs (every PE fold
    costed by ``_fold_cycles`` at the expected effectual ``density``; the wide kernel's
    folds also cover the slab columns it throws away) and, for weights that do not stay
    resident, the slab's way in (its load and multicast over a link, and the input
    gradient's tap gathers in the wide kernel): hidden behind the MACs when the slab is
    double-buffered, added to them when not. Weight slabs of a single k-block load once
    per cluster, otherwise once per tile (once per fabric row with multicast)."""
    ncl = len(ctx.streams)
    ntap = len(g.taps)
    n_m, nblk, ng = _cdiv(g.cout, p.mt), len(p.blocks), _cdiv(g.n, p.group)
    tiles = n_m * nblk * ng
    active = min(tiles, ncl)
    x_bytes = 4 * g.n * n_m * nblk * g.cin * p.rows_in * p.cols_in
    slab = 4 * p.mt * g.cin * ntap  # every k-block of one output-channel tile
    per_cluster = _cdiv(tiles, ncl)
    nk = _cdiv(g.cin, p.kt)
    # weights stay on a cluster from tile to tile when its buffers hold every k-block
    resident = nk <= (p.wbufs if p.wide else 1)
    w_bytes = active * min(n_m, per_cluster) * slab if resident else tiles * slab
    gx, gy = (int(v) for v in ctx.target.fabric.grid)
    if p.wide and fits_rows_and_columns(ctx, n_m, nblk * ng):
        # weights along rows (each m-tile's loaded by one row), input slabs down columns
        x_bytes /= gy
        w_bytes = n_m * slab if resident else w_bytes / gx
    elif ctx.multicast and tiles >= ncl and not resident:  # a row's sender loads for the row
        w_bytes /= gx
    mfolds = _cdiv(p.mt, 16)
    issue = int(ctx.target.cluster.issue_cycles)
    tile_extra = 0.0  # per tile, besides its k-blocks
    if p.wide:  # every tap in one fold, an mm per image
        cols = sum(_cdiv((r - 1) * p.cols_in + c, 16) for _, r, _, c in p.blocks) / nblk
        mm_k = p.group * (mfolds * cols * _fold_cycles(ctx, p.kt * ntap, density) + issue)
        # the output's way out, 16 channels at a time: a copy off the accumulator (vector
        # lanes) and a gather that drops the discarded columns, each with its issue
        lanes = int(ctx.target.cluster.vec_lanes)
        tile_extra = p.group * mfolds * (2 * issue + cols * 16 * 16 / lanes + cols * 16 * 16 / 64)
    else:  # a fold per tap; whole-plane tiles run the group's images in one mm
        cols = sum(_cdiv(p.group * r * c, 16) for _, r, _, c in p.blocks) / nblk
        mm_k = ntap * (mfolds * cols * _fold_cycles(ctx, p.kt, density) + issue)
    w_k = 0.0
    if not resident:
        link = int(ctx.target.noc.link_bytes)
        w_k = 2 * (4 * p.mt * p.kt * ntap) / link
        if p.wide and g.ta:  # per tap: strided source words and the dense tile, 16 banks
            w_k += ntap * (issue + p.mt * p.kt * (1 / 16 + 1 / 64))
    per_k = mm_k + w_k if p.wbufs == 1 else max(mm_k, w_k)
    loads = x_bytes + w_bytes
    return max(loads / _port_bytes(ctx), per_cluster * (nk * per_k + tile_extra)), float(loads)


def _tap_row_step(g: TapGemm) -> int:
    """:func:`row_step` of the slab tap GEMM: its kernel is one row when every tap's row
    offset is 0 (the wide-K kernel, for kernels of several taps, keeps every row)."""
    return row_step(g.sh, all(dy == 0 for dy, _, _ in g.taps), g.pad_t)


def _slab_plan_for(ctx: KernelContext, g: TapGemm, mt: int, wbufs: int = 1) -> _SlabPlan | None:
    elems = ctx.tiling.elems
    ncl = len(ctx.streams)
    blocks = _pixel_blocks(g.oh, g.ow, max(1, min(elems // mt, 0xFFFF)))
    pmax = max(r * c for _, r, _, c in blocks)
    rmax = max(r for _, r, _, _ in blocks)
    cmax = max(c for _, _, _, c in blocks)
    dy, dx = max(d for d, _, _ in g.taps), max(d for _, d, _ in g.taps)
    step = _tap_row_step(g)
    rows_in, cols_in = (rmax - 1) * (g.sh // step) + dy + 1, (cmax - 1) * g.sw + dx + 1
    ntap = len(g.taps)
    # slots are 64-byte aligned: leave room for that rounding
    budget = (ctx.tiling.spad_bytes // 4 - 16 * 8 - (2 * mt if g.bias is not None else 0)
              - 2 * slab_lead(-g.pad_l))
    group = 1
    if len(blocks) == 1:  # a whole output plane per tile: several images share the weights,
        # as many as the accumulator holds while every cluster still gets a tile
        group = max(1, min(g.n, ctx.tiling.acc_bytes // (2 * 4 * mt * pmax)))
        mblocks = -(-g.cout // mt)
        while group > 1 and -(-g.n // group) * mblocks < ncl:
            group -= 1
        group = -(-g.n // -(-g.n // group))  # balanced image groups
    while True:
        # per input channel: the input slabs of the group (double-buffered: the next
        # k-block's load overlaps this one's MACs) and the weight slab (single-buffered
        # unless it fits twice, below: its reload waits for the MACs reading it)
        per_k = 2 * group * rows_in * cols_in + wbufs * mt * ntap
        kt = min(g.cin, budget // per_k, elems // max(mt, pmax))
        if kt >= 1 or group == 1:
            break
        group = max(1, group // 2)
    if kt < 1:
        return None
    kt = -(-g.cin // -(-g.cin // kt))  # balanced k-blocks
    if max(kt, mt) * ntap > 0xFFFF:  # the weight slab's rows are one ld (16-bit cols)
        return None
    wbufs = 2 if kt * (2 * group * rows_in * cols_in + 2 * mt * ntap) <= budget else 1
    return _SlabPlan(mt, blocks, pmax, group, kt, rows_in, cols_in, wbufs)


#: view registers of the conv kernels: a tap's weights (every ntap-th column of the slab), its
#: window (a block of whole output rows, or a run of one row), (weight gradients) the
#: windows of a block's images, transposed, (strided input gradients) a phase's outputs and
#: (whole-plane tiles) the accumulator tiles of a tile's images, one after another
_VR_TAP, _VR_WIN, _VR_RUN, _VR_WIN_T, _VR_OUT, _VR_IMGS = 1, 2, 3, 4, 5, 6


def emit_tap_gemm(ctx: KernelContext, g: TapGemm, plan: _SlabPlan | None = None) -> None:
    """Per output tile and input-channel block: the input slab under every tap's window and
    the weight slab of every tap are loaded once (runs of whole rows), and each tap's ``mm``
    reads its operands in place through view registers (``mview``: im2col on the fly)::

        ld  sp[WS] <- W[m0:, k0:, all taps]              (rows of kt*taps elements)
        ldg sp[XS] <- x[n, k0:, rows_in, cols_in]        (one per image of the tile)
        per tap, per image:  mm acc[C_n] (+)= WS[tap columns] . XS[shifted, strided window]

    A tile whose pixel block is a whole output plane takes ``group`` images, so one weight
    slab serves all of them. The slabs are double-buffered: the next k-block loads while the
    MAC unit reads this one. Where the tiles allow it (``multicast.rows_share_first``),
    every cluster of a fabric row works on the same output channels, and the row's first
    cluster loads each weight slab and multicasts it to the others (``bcast``): the slab
    crosses the row's memory port once instead of once per cluster. Falls back to gathering every tap from
    DRAM when the slabs do not fit the scratchpad. ``plan``: the caller's
    ``_slab_plan(ctx, g)``, if it made one."""
    plan = plan or _slab_plan(ctx, g)
    if plan is None:
        assert not (g.pad_t or g.pad_l), "callers pad in DRAM when the slabs do not fit"
        return _emit_tap_gemm_from_dram(ctx, g)
    if plan.wide:
        from . import conv_wide

        return conv_wide.emit(ctx, g, plan)
    em = _TapEmitter(ctx, g, plan)
    ptiles = [(n0, blk) for n0 in range(0, g.n, plan.group) for blk in plan.blocks]
    mtiles = list(range(0, g.cout, plan.mt))
    rows = rows_share_first(ctx, len(mtiles), len(ptiles)) \
        if 4 * plan.mt * plan.kt * len(g.taps) <= 0xFFFFFF else None
    if rows is None:
        tiles = [(n0, m0, blk) for n0 in range(0, g.n, plan.group) for m0 in mtiles
                 for blk in plan.blocks]
        for cl, tile in ctx.place(tiles):
            em.tile(cl, tile)
        em.finish()
        return
    # every cluster has as many tiles; a row's clusters take the same output channels in
    # the same order, so their weight slabs are the same: emitted in step, the row's sender
    # first, so each stream records the multicast where it lands among its own accesses
    order = sorted(rows.tiles, key=lambda cl: (not rows.sends("a", cl), cl))
    emit_in_step(em, rows, order, ptiles, mtiles, range(0, g.cin, plan.kt))


def emit_in_step(em, layout: Layout, order: list[int], ptiles: list, mtiles: list[int],
                 k_blocks: range) -> None:
    """Every cluster's tiles of a multicast layout, in step: per step each cluster's
    ``begin``, per k-block the emitter's ``k_step`` over the clusters in ``order``, then
    each ``end`` (so each stream records a multicast where it lands among its accesses)."""
    for j in range(layout.steps):
        for cl in order:
            mi, pi = layout.tiles[cl][j]
            n0, blk = ptiles[pi]
            em.begin(cl, (n0, mtiles[mi], blk))
        for k0 in k_blocks:
            em.k_step(order, k0, layout)
        for cl in order:
            em.end(cl)
    em.finish()


def _image_blocks(ctx: KernelContext, c_slots: list[list[Slot]]) -> tuple[int, list[Slot]]:
    """(elements between consecutive images' accumulator tiles, and per parity one slot
    spanning all of them): an mm writing every image through a destination view accesses
    that slot, which ``ctx.share`` makes an access to each image's own."""
    cs = c_slots[0]
    stride = (cs[1].addr - cs[0].addr) // 4
    assert all(b.addr - a.addr == 4 * stride for cs in c_slots for a, b in pairwise(cs))
    spans = []
    for cs in c_slots:
        whole = Slot("acc", cs[0].addr, cs[-1].addr + cs[-1].nbytes - cs[0].addr)
        ctx.share(whole, tuple(cs))
        spans.append(whole)
    return stride, spans


class ResidentSlabs:
    """Which (output channels, k-block) weight slab each buffer of each cluster holds: a
    slab still held is not loaded again; a new one takes the buffers in turn."""

    def __init__(self, clusters: int, buffers: int) -> None:
        self.buffers = buffers
        self.next = [0] * clusters
        self.held: dict[tuple[int, int], tuple[int, int]] = {}  # (cluster, buffer) -> key

    def take(self, cl: int, key: tuple[int, int]) -> tuple[int, bool]:
        """(the buffer holding ``key`` on cluster ``cl``, whether it must be loaded)."""
        for i in range(self.buffers):
            if self.held.get((cl, i)) == key:
                return i, False
        i = self.next[cl] % self.buffers
        self.next[cl] += 1
        self.held[(cl, i)] = key
        return i, True


class _TapEmitter:
    """Emits the slab tap GEMM one tile (``begin``, ``k_block`` per input-channel block,
    ``end``) at a time per cluster, keeping each cluster's slot parities and resident
    weight slabs."""

    def __init__(self, ctx: KernelContext, g: TapGemm, plan: _SlabPlan) -> None:
        self.ctx, self.g, self.plan = ctx, g, plan
        mt_max, kt_max, G = plan.mt, plan.kt, plan.group
        self.ntap = len(g.taps)
        self.slab = plan.rows_in * plan.cols_in
        self.xslabs = [ctx.alloc("sp", 4 * (G * kt_max * self.slab + slab_lead(-g.pad_l)))
                       for _ in range(2)]
        self.wslabs = [ctx.alloc("sp", 4 * mt_max * kt_max * self.ntap) for _ in range(plan.wbufs)]
        self.c_slots = [[ctx.alloc("acc", 4 * mt_max * plan.pmax) for _ in range(G)] for _ in range(2)]
        # Whole-plane tiles of several images: one mm per tap covers all of them (the
        # images' windows are blocks of the B view, their accumulator tiles blocks of a
        # destination view), so a tap's weights are read once per k-block, not once per
        # image: on small planes their strided reads' bank conflicts bounded the mm.
        self.batched = G > 1
        if self.batched:
            self.c_stride, self.c_all = _image_blocks(ctx, self.c_slots)
        self.bias_slots = [ctx.alloc("sp", 4 * mt_max) for _ in range(2)] if g.bias is not None else []
        self.plane_in, self.plane_out = g.hin * g.win, g.oh * g.ow
        n = len(ctx.streams)
        self.count = [0] * n
        self.kiter = [0] * n  # k-blocks per cluster: the input slabs' parity
        self.resident = ResidentSlabs(n, plan.wbufs)
        self.current: dict[int, tuple] = {}  # cluster -> its open tile and accumulators

    def tile(self, cl: int, tile: tuple) -> None:
        self.begin(cl, tile)
        for k0 in range(0, self.g.cin, self.plan.kt):
            self.k_block(cl, k0)
        self.end(cl)

    def finish(self) -> None:
        """Nothing is left to emit once every tile has ended (see ``WideTapEmitter``)."""

    def k_step(self, order: list[int], k0: int, layout: Layout) -> None:
        """A k-block on every cluster, each one's loads (the row's sender first) then MACs."""
        for cl in order:
            self.k_block(cl, k0, layout)

    def begin(self, cl: int, tile: tuple) -> None:
        parity = self.count[cl] % 2
        self.current[cl] = (tile, self.c_slots[parity], [True],
                            self.c_all[parity] if self.batched else None)

    def k_block(self, cl: int, k0: int, rows: Layout | None = None) -> None:
        ctx, g, plan = self.ctx, self.g, self.plan
        (n0, m0, (oh0, rows_out, ow0, cols)), cs, first, c_all = self.current[cl]
        imgs = range(n0, min(n0 + plan.group, g.n))
        ntap, slab = self.ntap, self.slab
        mt, pt = min(plan.mt, g.cout - m0), rows_out * cols
        kt = min(plan.kt, g.cin - k0)
        xslab = self.xslabs[self.kiter[cl] % 2]
        self.kiter[cl] += 1
        # a weight slab still resident from an earlier tile of this cluster (same output
        # channels and k-block: every tile, when one k-block covers Cin) is not loaded again
        w_idx, w_fresh = self.resident.take(cl, (m0, k0))
        wslab = self.wslabs[w_idx]
        row0, col0 = oh0 * g.sh - g.pad_t, ow0 * g.sw - g.pad_l
        step = _tap_row_step(g)
        for j, n in enumerate(imgs):  # the next input slab first: it overlaps the MACs
            load_slab(ctx, cl, xslab, g.x_addr + 4 * (n * g.cin * self.plane_in
                                                      + k0 * self.plane_in + row0 * g.win + col0),
                      (kt, plan.rows_in, plan.cols_in), (self.plane_in, g.win * step, 1),
                      4 * j * kt * slab, col0)
        # the weight slab keeps OIHW's column order (c-major, tap-minor): a tap's A is every
        # ntap-th column. With row multicast only the row's sender loads it, then sends it.
        load = w_fresh and (rows is None or rows.sends("a", cl))
        if g.ta:  # stored k x m: rows = Cout (k), cols = Cin (m); A^T[c, o] at c*mt*taps + o*taps
            if load:
                ctx.ld_at(cl, wslab, g.w_addr + 4 * (k0 * g.w_rs + m0 * g.w_cs), kt, mt * ntap, g.w_rs)
            va = ctx.view(cl, _VR_TAP, 1, mt * ntap, ntap, 1)
        else:     # A[o, c] at o*kt*taps + c*taps
            if load:
                ctx.ld_at(cl, wslab, g.w_addr + 4 * (m0 * g.w_rs + k0 * g.w_cs), mt, kt * ntap, g.w_rs)
            va = ctx.view(cl, _VR_TAP, 1, kt * ntap, ntap, 1)
        if load and rows is not None:
            ctx.bcast(cl, rows.group["a"][cl], wslab, 4 * mt * kt * ntap, rows.receivers["a"][cl])
        if rows_out > 1:  # B[c, (r, q)] at c*slab + r*sh*cols_in + q*sw (sh / step: rows held)
            vb = ctx.view(cl, _VR_WIN, cols, slab, g.sh // step * plan.cols_in, g.sw)
        else:         # one output row: B[c, q] at c*slab + q*sw
            vb = ctx.view(cl, _VR_RUN, 1, slab, g.sw, 1)
        if g.pad_t or g.pad_l:
            _zero_border(ctx, cl, xslab, len(imgs) * kt, plan.rows_in, plan.cols_in, row0, col0,
                         g.hin, g.win)
        if c_all is not None and len(imgs) > 1:  # every image in one mm per tap
            # B[c, (j, r, q)] at c*slab + j*kt*slab + r*sh*cols_in + q*sw
            vb = ctx.view(cl, _VR_WIN, cols, slab, g.sh // step * plan.cols_in, g.sw, d1=rows_out,
                          s3=kt * slab)
            # C[o, (j, p)] at j*stride + o*pt + p: image j's own accumulator tile
            vd = ctx.view(cl, _VR_IMGS, pt, pt, 0, 1, d1=1, s3=self.c_stride)
            for dy, dx, woff in g.taps:
                reads = (wslab, xslab) if first[0] else (wslab, xslab, c_all)
                ctx.emit(cl, "mm", reads=reads, writes=(c_all,), dst=c_all.ref(),
                         a=wslab.ref(4 * woff), b=xslab.ref(4 * (dy * plan.cols_in + dx)),
                         m=mt, n=len(imgs) * pt, k=kt, accum=int(not first[0]), ta=int(g.ta),
                         tb=0, va=va, vb=vb, vd=vd)
                first[0] = False
            return
        for dy, dx, woff in g.taps:
            for j, _ in enumerate(imgs):
                c = cs[j]
                reads = (wslab, xslab) if first[0] else (wslab, xslab, c)
                ctx.emit(cl, "mm", reads=reads, writes=(c,), dst=c.ref(), a=wslab.ref(4 * woff),
                         b=xslab.ref(4 * (j * kt * slab + dy * plan.cols_in + dx)),
                         m=mt, n=pt, k=kt, accum=int(not first[0]), ta=int(g.ta), tb=0, va=va, vb=vb)
            first[0] = False

    def end(self, cl: int) -> None:
        ctx, g, plan = self.ctx, self.g, self.plan
        (n0, m0, (oh0, rows_out, ow0, cols)), cs, *_ = self.current.pop(cl)
        imgs = range(n0, min(n0 + plan.group, g.n))
        mt, pt = min(plan.mt, g.cout - m0), rows_out * cols
        self.count[cl] += 1
        ctx.stats.macs += mt * pt * g.cin * self.ntap * len(imgs)
        for j, n in enumerate(imgs):
            c = cs[j]
            if g.bias is not None:
                bias = self.bias_slots[(self.count[cl] + j) % 2]
                ctx.load(cl, Buffer(g.bias.addr, (g.cout, 1)), m0, 0, mt, 1, bias)
                ctx.vop(cl, "add", c, c, mt, pt, bias, bmode="col")
            ctx.st_at(cl, c, g.out_addr + 4 * (n * g.cout * self.plane_out + m0 * self.plane_out
                                               + oh0 * g.ow + ow0), mt, pt, self.plane_out)


def _emit_tap_gemm_from_dram(ctx: KernelContext, g: TapGemm) -> None:
    t = ctx.tiling.t
    elems = ctx.tiling.elems
    mt_max = min(g.cout, t)
    blocks = _pixel_blocks(g.oh, g.ow, max(1, min(elems // mt_max, 0xFFFF)))
    pmax = max(r * c for _, r, _, c in blocks)
    kt_max = max(1, min(g.cin, elems // max(mt_max, pmax)))
    a_slots = [ctx.alloc("sp", 4 * mt_max * kt_max) for _ in range(2)]
    b_slots = [ctx.alloc("sp", 4 * kt_max * pmax) for _ in range(2)]
    c_slots = [ctx.alloc("acc", 4 * mt_max * pmax) for _ in range(2)]
    bias_slots = [ctx.alloc("sp", 4 * mt_max) for _ in range(2)] if g.bias is not None else []
    tiles = [(n, m0, blk) for n in range(g.n) for m0 in range(0, g.cout, mt_max) for blk in blocks]
    plane_in, plane_out = g.hin * g.win, g.oh * g.ow
    loop = KLoop(ctx)
    for cl, (n, m0, (oh0, rows, ow0, cols)) in ctx.place(tiles):
        mt, pt = min(mt_max, g.cout - m0), rows * cols
        c = c_slots[loop.tile(cl) % 2]
        steps = []
        for dy, dx, woff in g.taps:
            for k0 in range(0, g.cin, kt_max):
                kt = min(kt_max, g.cin - k0)
                if g.ta:  # stored k x m: rows = Cout (k), cols = Cin (m)
                    a_addr = g.w_addr + 4 * (woff + k0 * g.w_rs + m0 * g.w_cs)
                    a_dims, a_str = (1, kt, mt), (0, g.w_rs, g.w_cs)
                else:
                    a_addr = g.w_addr + 4 * (woff + m0 * g.w_rs + k0 * g.w_cs)
                    a_dims, a_str = (1, mt, kt), (0, g.w_rs, g.w_cs)
                b_addr = g.x_addr + 4 * (n * g.cin * plane_in + k0 * plane_in
                                         + (oh0 * g.sh + dy) * g.win + ow0 * g.sw + dx)
                steps.append((kt, a_addr, a_dims, a_str, b_addr, (kt, rows, cols),
                              (plane_in, g.sh * g.win, g.sw)))
        loop.run(cl, steps, a_slots, b_slots, c, mt, pt, ta=g.ta, tb=False)
        ctx.stats.macs += mt * pt * g.cin * len(g.taps)
        if g.bias is not None:
            bias = bias_slots[loop.tiles[cl] % 2]
            ctx.load(cl, Buffer(g.bias.addr, (g.cout, 1)), m0, 0, mt, 1, bias)
            ctx.vop(cl, "add", c, c, mt, pt, bias, bmode="col")
        ctx.st_at(cl, c, g.out_addr + 4 * (n * g.cout * plane_out + m0 * plane_out + oh0 * g.ow + ow0),
                  mt, pt, plane_out)


@kernel("graph.conv2d")
def conv2d(ctx: KernelContext) -> None:
    v = _params(ctx)
    x, w = ctx.ins[0], ctx.ins[1]
    bias = ctx.ins[2] if len(ctx.ins) == 3 else None
    taps = tuple((kh * v.dh, kw * v.dw, kh * v.kw + kw) for kh in range(v.kh) for kw in range(v.kw))
    g = TapGemm(x.addr, v.c, v.h, v.w, w.addr, v.c * v.kh * v.kw, v.kh * v.kw, False,
                ctx.outs[0].addr, v.n, v.o, v.oh, v.ow, v.sh, v.sw, taps, bias, v.ph, v.pw)
    plan = _slab_plan(ctx, g)
    if plan is None:  # no slabs: the taps gather from a zero-padded copy
        xa, hin, win = _padded_input(ctx, x, v)
        return _emit_tap_gemm_from_dram(ctx, replace(g, x_addr=xa, hin=hin, win=win, pad_t=0, pad_l=0))
    emit_tap_gemm(ctx, g, plan)


@kernel("graph.conv2d_backward_input")
def conv2d_backward_input(ctx: KernelContext) -> None:
    v = _params(ctx)
    g, w = ctx.ins
    top, left, hz, wz = _bwd_input_geometry(v)
    if top < 0 or left < 0:
        raise ctx.error("padding larger than dilation*(kernel-1) is not supported in the "
                        "input gradient")
    taps = tuple((kh * v.dh, kw * v.dw, (v.kh - 1 - kh) * v.kw + (v.kw - 1 - kw))
                 for kh in range(v.kh) for kw in range(v.kw))
    if v.sh * v.sw == 1:  # the zero border is virtual: the slabs read g itself
        tg = TapGemm(g.addr, v.o, v.oh, v.ow, w.addr, v.c * v.kh * v.kw, v.kh * v.kw, True,
                     ctx.outs[0].addr, v.n, v.c, v.h, v.w, 1, 1, taps, None, top, left)
        plan = _slab_plan(ctx, tg)
        if plan is not None:
            return emit_tap_gemm(ctx, tg, plan)
    else:
        plan = _phase_plan(ctx, v)
        if plan is not None:
            return _emit_phases(ctx, v, plan)
    gz = ctx.scratch[0]
    planes = v.n * v.o
    fill(ctx, gz.addr, planes * hz * wz)
    if v.sh * v.sw > 1:
        g2 = ctx.scratch[1]
        blk = v.sh * v.sw
        fill(ctx, g2.addr, planes * v.oh * blk * v.ow)
        ctx.barrier()
        gather_copy(ctx, g.addr, g2.addr, [planes * v.oh, v.ow], [v.ow, 1], [blk * v.ow, 1])
        src, sstr = g2.addr, [v.oh * blk * v.ow, v.sw * v.ow, 1, v.ow]
    else:
        src, sstr = g.addr, [v.oh * v.ow, v.ow, 1, 0]
    ctx.barrier()
    gather_copy(ctx, src, gz.addr + 4 * (top * wz + left), [planes, v.oh * v.sh, v.ow, v.sw],
                sstr, [hz * wz, wz, v.sw, 1])
    ctx.barrier()
    emit_tap_gemm(ctx, TapGemm(gz.addr, v.o, hz, wz, w.addr, v.c * v.kh * v.kw, v.kh * v.kw, True,
                               ctx.outs[0].addr, v.n, v.c, v.h, v.w, 1, 1, taps))


def _phases(stride: int, pad: int, dil: int, k: int, size: int
            ) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Per output phase ``q`` (outputs ``q, q + stride, ...`` of one dimension of the input
    gradient): (q, its number of outputs, [(tap, offset)]): output ``q + stride*a`` gathers
    tap ``t`` from output-gradient position ``a + offset`` (``t*dil = q + pad - stride*offset``)."""
    out = []
    for q in range(stride):
        taps = [(t, (q + pad - t * dil) // stride) for t in range(k) if (q + pad - t * dil) % stride == 0]
        out.append((q, -(-(size - q) // stride), taps))
    return out


@dataclass(frozen=True)
class _PhasePlan:
    """Tiles of the strided input gradient by phases: ``mt`` channels x ``rows`` output rows
    (a multiple of the stride) x the whole width, ``group`` images per tile (whole planes
    only), ``kt`` output-gradient channels per k-block and the g slab (``rows_in`` x
    ``cols_in`` per channel from row/column offset ``lo_h``/``lo_w``) every phase reads."""

    mt: int
    rows: int
    group: int
    kt: int
    rows_in: int
    cols_in: int
    lo_h: int
    lo_w: int


def _phase_plan(ctx: KernelContext, v: Conv) -> _PhasePlan | None:
    """The phase tiling with the least estimated time among channel-tile widths (balanced
    16-multiples): the larger of its bytes over the memory ports (each tile loads its
    channels' weights for every k-block, and every tile of a channel block the g slabs of
    its images) and its MAC folds on the busiest cluster. Narrower channel tiles fit more
    images per whole-plane tile, so each weight slab serves more of them."""
    ph_h = _phases(v.sh, v.ph, v.dh, v.kh, v.h)
    ph_w = _phases(v.sw, v.pw, v.dw, v.kw, v.w)
    offs_h = [o for _, _, taps in ph_h for _, o in taps] or [0]
    offs_w = [o for _, _, taps in ph_w for _, o in taps] or [0]
    lo_h, lo_w = min(offs_h), min(offs_w)
    cols_in = -(-v.w // v.sw) + max(offs_w) - lo_w
    t, ncl, ntap = ctx.tiling.t, len(ctx.streams), v.kh * v.kw
    budget = ctx.tiling.spad_bytes // 4 - 16 * 8 - 2 * slab_lead(lo_w)
    acc = ctx.tiling.acc_bytes // 4
    best: tuple[float, float, _PhasePlan] | None = None
    for mt in sorted({_folds(_cdiv(v.c, n_c)) for n_c in range(_cdiv(v.c, min(v.c, t)),
                                                                 _cdiv(v.c, 16) + 1)}, reverse=True):
        rows = min(v.h, max(v.sh, acc // (2 * mt * v.w) // v.sh * v.sh))
        group = max(1, min(v.n, acc // (2 * mt * v.h * v.w))) if rows >= v.h else 1
        group = -(-v.n // -(-v.n // group))  # balanced image groups
        if 2 * mt * rows * v.w > acc or rows * v.w > 0xFFFF:  # the tile is one st of rows*W
            continue
        rows_in = -(-rows // v.sh) + max(offs_h) - lo_h
        kt = min(v.o, budget // (2 * group * rows_in * cols_in + mt * ntap))
        if kt < 1 or max(kt, mt) * ntap > 0xFFFF or group * rows_in * cols_in * kt > 0xFFFFFF:
            continue
        kt = -(-v.o // -(-v.o // kt))  # balanced k-blocks
        plan = _PhasePlan(mt, rows, group, kt, rows_in, cols_in, lo_h, lo_w)
        c_tiles, r_tiles = _cdiv(v.c, mt), _cdiv(v.h, rows)
        tiles = _cdiv(v.n, group) * c_tiles * r_tiles
        w_bytes = tiles * 4 * mt * v.o * ntap
        g_bytes = c_tiles * r_tiles * 4 * v.n * v.o * rows_in * cols_in
        pixels = group * rows * v.w  # per tile: every phase's outputs, each tap once
        folds = _cdiv(mt, 16) * _cdiv(pixels, 16) * ntap * _cdiv(v.o, kt)
        macs = _cdiv(tiles, ncl) * folds * (kt + int(ctx.target.cluster.fold_cycles)) \
            / (v.sh * v.sw)
        cost = (max((w_bytes + g_bytes) / _port_bytes(ctx), macs), w_bytes + g_bytes, plan)
        if best is None or cost[:2] < best[:2]:
            best = cost
    return best[2] if best is not None else None


def _emit_phases(ctx: KernelContext, v: Conv, plan: _PhasePlan) -> None:
    """The input gradient of a strided conv as ``stride x stride`` phases, each a stride-1
    correlation of g (unpadded: a virtual zero border) with the taps that reach it. Per
    tile and k-block of output-gradient channels one g slab serves every phase; each tap's
    ``mm`` reads its weights and window in place and writes through a destination view
    into its phase's positions of the tile (every ``stride``-th row and column)::

        ld  sp[WS] <- W[k0:, c0:, all taps]     ldg sp[GS] <- g[n, k0:, rows_in, cols_in]
        per phase, per tap, per image:  mm acc[C_n](phase view) (+)= WS[tap]^T . GS[window]
        st acc[C_n] -> gx[n, c0:, y0:, :]

    A g slab serves every channel tile of its (images, rows) tile: where the tiles divide
    over the fabric (``multicast.rows_share_first``) a row's clusters take one pixel tile's
    channel tiles in step and the row's sender loads each slab and multicasts it (ResNet-18's
    layer4.0.conv1 at batch 32, 90 % masks: 24.6 -> 14.8 MB of DRAM traffic, 284 k -> 155 k
    cycles); otherwise every cluster loads its own.
    """
    g, w = ctx.ins
    out = ctx.outs[0]
    ph_h = _phases(v.sh, v.ph, v.dh, v.kh, v.h)
    ph_w = _phases(v.sw, v.pw, v.dw, v.kw, v.w)
    ntap = v.kh * v.kw
    mt_max, R, G, kt_max = plan.mt, plan.rows, plan.group, plan.kt
    slab = plan.rows_in * plan.cols_in
    gslabs = [ctx.alloc("sp", 4 * (G * kt_max * slab + slab_lead(plan.lo_w))) for _ in range(2)]
    wslab = ctx.alloc("sp", 4 * mt_max * kt_max * ntap)
    c_slots = [[ctx.alloc("acc", 4 * mt_max * R * v.w) for _ in range(G)] for _ in range(2)]
    # several images per tile: one mm per phase and tap covers all of them (images as
    # blocks of the window and destination views), as in the slab kernel
    c_stride, c_all = _image_blocks(ctx, c_slots) if G > 1 else (0, [])
    plane_g, plane_x = v.oh * v.ow, v.h * v.w
    empty = any(not taps for _, _, taps in ph_h + ph_w)  # a phase no tap reaches: zeros
    ptiles = [(n0, y0) for n0 in range(0, v.n, G) for y0 in range(0, v.h, R)]
    ctiles = list(range(0, v.c, mt_max))
    count = [0] * len(ctx.streams)
    kiter = [0] * len(ctx.streams)
    state: dict[int, tuple] = {}  # cluster -> its tile's (images, c0, y0, mt, rows, cs, call, a0, started)
    gslab_of: dict[int, Slot] = {}  # cluster -> the g slab of its current k-block

    def begin(cl: int, n0: int, c0: int, y0: int) -> None:
        imgs = range(n0, min(n0 + G, v.n))
        mt, rows = min(mt_max, v.c - c0), min(R, v.h - y0)
        cs = c_slots[count[cl] % 2]
        call = c_all[count[cl] % 2] if c_all and len(imgs) > 1 else None
        count[cl] += 1
        if empty:
            for j, _ in enumerate(imgs):
                ctx.vop(cl, "gt", cs[j], cs[j], mt * rows, v.w, bmode="imm", imm=float("inf"))
        state[cl] = (imgs, c0, y0, mt, rows, cs, call, y0 // v.sh, set())

    def k_load(cl: int, k0: int, layout: Layout | None = None) -> None:
        """The k-block's g slab (loaded, or sent by the cluster's sender) and weights."""
        imgs, c0, _, mt, _, _, _, a0, _ = state[cl]
        kt = min(kt_max, v.o - k0)
        gslab = gslab_of[cl] = gslabs[kiter[cl] % 2]
        kiter[cl] += 1
        if layout is None or layout.sends("g", cl):
            row0, col0 = a0 + plan.lo_h, plan.lo_w
            for j, n in enumerate(imgs):
                load_slab(ctx, cl, gslab, g.addr + 4 * (n * v.o * plane_g + k0 * plane_g + row0 * v.ow + col0),
                          (kt, plan.rows_in, plan.cols_in), (plane_g, v.ow, 1), 4 * j * kt * slab, col0)
            _zero_border(ctx, cl, gslab, len(imgs) * kt, plan.rows_in, plan.cols_in, row0, col0,
                         v.oh, v.ow)
            if layout is not None:
                ctx.bcast(cl, layout.group["g"][cl], gslab, 4 * len(imgs) * kt * slab,
                          layout.receivers["g"][cl])
        # A^T[o, c] = W[k0 + o, c0 + c, tap]: rows o of the slab, every ntap-th column
        ctx.ld_at(cl, wslab, w.addr + 4 * (k0 * v.c * ntap + c0 * ntap), kt, mt * ntap, v.c * ntap)

    def k_compute(cl: int, k0: int) -> None:
        imgs, _, _, mt, rows, cs, call, a0, started = state[cl]
        kt = min(kt_max, v.o - k0)
        gslab = gslab_of[cl]
        va = ctx.view(cl, _VR_TAP, 1, mt * ntap, ntap, 1)
        for qy, na, taps_h in ph_h:
            na = min(na - a0, -(-(rows - qy) // v.sh))  # this tile's rows of the phase
            for qx, nb, taps_w in ph_w:
                if na <= 0 or nb <= 0 or not taps_h or not taps_w:
                    continue
                if call is not None:  # B[o, (j, a, b)], C[c, (j, a, b)]: images as blocks
                    vb = ctx.view(cl, _VR_WIN, nb, slab, plan.cols_in, 1, d1=na, s3=kt * slab)
                    vd = ctx.view(cl, _VR_OUT, nb, rows * v.w, v.sh * v.w, v.sw, d1=na,
                                  s3=c_stride)
                    for th, oh_ in taps_h:
                        for tw, ow_ in taps_w:
                            first = (qy, qx) not in started and not empty
                            started.add((qy, qx))
                            ctx.emit(cl, "mm", reads=(wslab, gslab) if first else (wslab, gslab, call),
                                     writes=(call,), dst=call.ref(4 * (qy * v.w + qx)),
                                     a=wslab.ref(4 * (th * v.kw + tw)),
                                     b=gslab.ref(4 * ((oh_ - plan.lo_h) * plan.cols_in
                                                      + ow_ - plan.lo_w)),
                                     m=mt, n=len(imgs) * na * nb, k=kt, accum=int(not first),
                                     ta=1, tb=0, va=va, vb=vb, vd=vd)
                    continue
                # B[o, (a, b)] = g slab window; C[c, (a, b)] -> tile (qy + s*a, qx + s*b)
                vb = ctx.view(cl, _VR_WIN, nb, slab, plan.cols_in, 1)
                vd = ctx.view(cl, _VR_OUT, nb, rows * v.w, v.sh * v.w, v.sw)
                for th, oh_ in taps_h:
                    for tw, ow_ in taps_w:
                        for j, _ in enumerate(imgs):
                            c = cs[j]
                            first = (qy, qx, j) not in started and not empty
                            started.add((qy, qx, j))
                            ctx.emit(cl, "mm", reads=(wslab, gslab) if first else (wslab, gslab, c),
                                     writes=(c,), dst=c.ref(4 * (qy * v.w + qx)),
                                     a=wslab.ref(4 * (th * v.kw + tw)),
                                     b=gslab.ref(4 * (j * kt * slab + (oh_ - plan.lo_h) * plan.cols_in
                                                      + ow_ - plan.lo_w)),
                                     m=mt, n=na * nb, k=kt, accum=int(not first), ta=1, tb=0,
                                     va=va, vb=vb, vd=vd)

    def end(cl: int) -> None:
        imgs, c0, y0, mt, rows, cs, _, _, _ = state.pop(cl)
        ctx.stats.macs += mt * rows * v.w * v.o * ntap * len(imgs) // (v.sh * v.sw)
        for j, n in enumerate(imgs):
            ctx.st_at(cl, cs[j], out.addr + 4 * (n * v.c * plane_x + c0 * plane_x + y0 * v.w),
                      mt, rows * v.w, plane_x)

    k_blocks = range(0, v.o, kt_max)
    # the g slabs of one pixel tile serve every channel tile: shared along fabric rows (the
    # row's sender loads and multicasts them) where the tiles divide that way
    layout = rows_share_first(ctx, len(ptiles), len(ctiles), operand="g")
    if layout is not None and any(t is None for tl in layout.tiles.values() for t in tl):
        layout = None  # (a cluster sitting out a step would lose its slab parity)
    if layout is None:
        for cl, (n0, c0, y0) in ctx.place([(n0, c0, y0) for n0, y0 in ptiles for c0 in ctiles]):
            begin(cl, n0, c0, y0)
            for k0 in k_blocks:
                k_load(cl, k0)
                k_compute(cl, k0)
            end(cl)
        return
    for step in range(layout.steps):
        for cl in layout.order:
            pi, ci = layout.tiles[cl][step]
            n0, y0 = ptiles[pi]
            begin(cl, n0, ctiles[ci], y0)
        for k0 in k_blocks:
            for cl in layout.order:
                k_load(cl, k0, layout)
            for cl in layout.order:
                k_compute(cl, k0)
        for cl in layout.order:
            end(cl)


def _wgrad_plan(ctx: KernelContext, v: Conv, sampled: bool = False
                ) -> tuple[int, list[tuple[int, int, int, int]], int, int, int, bool, bool] | None:
    """(side s of the Cout x Cin output tiles, pixel blocks, rows_in, cols_in, images per
    block, whether the gradients accumulate in the accumulator, whether the tiles are laid
    out for multicast: ``multicast.rows_and_columns``) of the slab weight gradient, or None
    when even 16 x 16 tiles of every tap do not fit the scratchpad. Per tile the
    scratchpad holds every tap's s x s gradient (and, when sampled, every tap's
    mask tile) and a working region: the double-buffered output-gradient tiles (s x pixels
    of ``group`` images) and input slabs, which at the end of the tile also holds the
    gradient's OIHW-ordered copy. Sampled, the gradients accumulate in the accumulator
    instead when they fit it (copied to the working region at the end and reordered into
    the mask tiles' place), so the scratchpad holds one s x s tile per tap, as unsampled.
    Among the fits (tile sides that cut the channels into equal tiles), the one with the
    least estimated time wins: the larger of its MAC-array cycles (folds x (k + fold
    overhead); sampled, the mask's expected share of the outputs in chunks of a fold, each
    at ``_fold_cycles`` of its pairs' expected density) on the busiest cluster, the weight tiles split over image groups as the
    kernel does, and the bytes it streams over the memory ports (every weight tile reads
    its rows of g and its channels of x for every image, or with multicast once per fabric
    row and column: the ordered copy then needs its own region); ties go to the fewer
    bytes."""
    gx, gy = (int(d) for d in ctx.target.fabric.grid)
    t, ntap = ctx.tiling.t, v.kh * v.kw
    budget = ctx.tiling.spad_bytes // 4 - 16 * 8 - 2 * slab_lead(-v.pw)
    pe, fold = int(ctx.target.cluster.pe_rows), int(ctx.target.cluster.fold_cycles)
    if sampled:  # a = the output gradient (operand 0), b = the input (operand 1), mask 2
        mask_density, pairs = ctx.operand_density(2), _pair_density(ctx, 0, 1)
    cands: list[tuple[tuple, tuple[float, float]]] = []
    top = min(t, max(v.o, v.c))
    # tile sides that cut Cout and Cin into (nearly) equal tiles: a ragged 16-wide last
    # tile beside 48-wide ones would leave most clusters waiting for the wide ones
    widest = max(v.o, v.c)
    sides = {min(top, _folds(_cdiv(widest, k))) for k in range(1, _cdiv(widest, 16) + 1)}
    sides |= {min(v.o, v.c, top)}
    variants = []
    for s in sorted(sides, reverse=True):
        variants.append((s, False))
        n_o, n_c = _cdiv(v.o, s), _cdiv(v.c, s)
        if fits_rows_and_columns(ctx, n_o, n_c):
            variants.append((s, True))
    for s, shared in variants:
        bank = ntap * s * s
        in_acc = sampled and 4 * bank <= ctx.tiling.acc_bytes
        left = budget - (2 if sampled and not in_acc else 1) * bank  # the working region
        if shared:  # the ordered copy in a region of its own, beside the working region
            left -= bank
        elif left < bank:  # the working region must hold the ordered copy
            continue
        if left < 1 or s * ntap > 0xFFFF:
            continue
        limit = 0xFFFF
        while limit >= 1:
            blocks = _pixel_blocks(v.oh, v.ow, limit)
            pmax = max(r * c for _, r, _, c in blocks)
            step = row_step(v.sh, v.kh == 1, v.ph)
            rows_in = (max(r for _, r, _, _ in blocks) - 1) * (v.sh // step) + (v.kh - 1) * v.dh + 1
            cols_in = (max(c for _, _, _, c in blocks) - 1) * v.sw + (v.kw - 1) * v.dw + 1
            per_image = 2 * s * pmax + 2 * s * rows_in * cols_in
            if per_image <= left:
                break
            limit //= 2
        else:
            continue
        group = 1
        if len(blocks) == 1:
            group = max(1, min(v.n, left // per_image, 0xFFFF // pmax))
        tiles = -(-v.o // s) * -(-v.c // s)
        steps = -(-v.n // group) * len(blocks)
        folds = _cdiv(min(s, v.o), pe) * _cdiv(min(s, v.c), pe)
        # the clusters that share the work: the weight tiles, each split over image groups
        split = 1 if shared else max(1, min(WGRAD_SPLIT_MAX, len(ctx.streams) // tiles,
                                            _cdiv(v.n, group)))
        if sampled:  # the sampled outputs only, in chunks of a fold, at their pairs' density
            outs = min(s, v.o) * min(s, v.c)
            per_tap = max(1, _cdiv(round(mask_density * outs), pe * pe)) \
                * _fold_cycles(ctx, group * pmax, pairs)
        else:
            per_tap = folds * (group * pmax + fold)
        macs = tiles * steps * ntap * per_tap / min(len(ctx.streams), tiles * split)
        # every weight tile streams its output-gradient rows and input-slab channels of
        # every image: the bytes over the memory ports bound the layer as often as the MACs
        g_bytes = 4 * v.n * _cdiv(v.c, s) * v.o * v.oh * v.ow
        x_bytes = 4 * v.n * _cdiv(v.o, s) * v.c * len(blocks) * rows_in * cols_in
        moved = g_bytes / gx + x_bytes / gy if shared else g_bytes + x_bytes
        cost = (max(macs, moved / _port_bytes(ctx)), moved)
        cands.append(((s, blocks, rows_in, cols_in, group, in_acc, shared), cost))
    if not cands:
        return None
    # ties (within 2 %) go to the fewer bytes
    low = min(c for _, (c, _) in cands)
    return min((c for c in cands if c[1][0] <= 1.02 * low), key=lambda c: c[1][1])[0]


@kernel("graph.conv2d_backward_weight")
def conv2d_backward_weight(ctx: KernelContext) -> None:
    """Per Cout x Cin tile, every tap's gradient accumulates in the scratchpad over images
    and pixel blocks: the output-gradient block (``ld``) and the input slabs under all taps'
    windows (``ldg``) are loaded once per block (double-buffered), and each tap's ``mm``
    reads its windows in place, transposed, through a view register (the images' windows
    stacked along k); at the end one on-chip gather reorders the taps into OIHW and one
    ``st`` writes the tile::

        ld  sp[G] <- g[n.., o0:, pixels]     ldg sp[XS_j] <- x[n_j, c0:, rows_in, cols_in]
        per tap:  mm sp[C_tap] (+)= G . XS[window of every image]^T      (k = images x pixels)
        ldg sp[O] <- sp[C] (o, c, tap order);   st W[o0:, c0:, :, :] <- sp[O]

    Sampled (a mask operand: the conv SDDMM of a masked weight), each tap's ``mm`` is an
    ``sddmm`` whose sampling tile is that tap's mask, cut on chip from the tile's mask rows.
    The ordered copy shares the working region with the gradient and slab buffers, which
    are dead by then (``ctx.share`` orders the accesses to both, so the next tile's loads wait).

    Where the plan lays the tiles out block-cyclically (``multicast.rows_and_columns``: every
    cluster of a fabric row has the same output channels, of a column the same input
    channels), a row's first cluster loads each output-gradient block and a column's
    sender each input slab and multicast them (``bcast``): each crosses a memory port once
    per row or column instead of once per cluster, and the ordered copy gets its own region.
    """
    v = _params(ctx)
    mask = ctx.ins[2] if len(ctx.ins) > 2 else None
    out = ctx.outs[0]
    plan = _wgrad_plan(ctx, v, sampled=mask is not None)
    if plan is None:
        return _wgrad_from_dram(ctx, v)
    side, G, shared = plan[0], plan[4], plan[6]
    weight_tiles = [(o0, c0) for o0 in range(0, v.o, side) for c0 in range(0, v.c, side)]
    layout = rows_and_columns(ctx, _cdiv(v.o, side), _cdiv(v.c, side)) if shared else None
    em = _WgradEmitter(ctx, v, plan, mask, layout is not None)
    if layout is None:
        # fewer weight tiles than clusters: the images are split into groups that run as
        # separate tiles, each group's partial gradient summed into the output afterwards
        groups = -(-v.n // G)
        split = max(1, min(WGRAD_SPLIT_MAX, len(ctx.streams) // len(weight_tiles), groups))
        per = -(-groups // split) * G  # images per split
        split = -(-v.n // per)
        dests = [out] + _wgrad_partials(ctx, v)[:split - 1]
        tiles = [(o0, c0, p) for p in range(split) for o0, c0 in weight_tiles]
        for cl, (o0, c0, p) in ctx.place(tiles):
            em.begin(cl, o0, c0)
            for step in em.steps(range(p * per, min((p + 1) * per, v.n))):
                em.load(cl, step)
                em.macs(cl, step)
            em.end(cl, dests[p])
        for part in dests[1:]:  # the image groups' partial gradients, one pass each
            elementwise_inplace(ctx, "add", out, part)
        return
    # output-gradient rows shared along each fabric row, input slabs along each column:
    # emitted in step, every sender's load and multicast before any cluster's mm of the step
    order = layout.order
    for j in range(layout.steps):
        for cl in order:
            oi, ci = layout.tiles[cl][j]
            em.begin(cl, oi * side, ci * side)
        for step in em.steps(range(v.n)):
            for cl in order:
                em.load(cl, step, layout)
            for cl in order:
                em.macs(cl, step)
        for cl in order:
            em.end(cl, out)


class _WgradEmitter:
    """Emits the slab weight gradient per cluster: ``begin`` a Cout x Cin tile, ``load``
    and ``macs`` per step (an image group's pixel block), ``end`` (reorder and store)."""

    def __init__(self, ctx: KernelContext, v: Conv, plan: tuple, mask: Buffer | None,
                 dedicated: bool) -> None:
        side, blocks, rows_in, cols_in, G, in_acc, _ = plan
        self.ctx, self.v, self.mask = ctx, v, mask
        self.side, self.blocks, self.rows_in, self.cols_in, self.G, self.in_acc = \
            side, blocks, rows_in, cols_in, G, in_acc
        ntap = self.ntap = v.kh * v.kw
        slab = self.slab = rows_in * cols_in
        self.row_step = row_step(v.sh, v.kh == 1, v.ph)  # as _wgrad_plan counted rows_in
        pmax = max(r * c for _, r, _, c in blocks)
        self.cbank = ctx.alloc("acc" if in_acc else "sp", 4 * ntap * side * side)
        self.sbank = ctx.alloc("sp", 4 * ntap * side * side) if mask is not None else None
        self.g_slots = [ctx.alloc("sp", 4 * side * G * pmax) for _ in range(2)]
        self.xslabs = [ctx.alloc("sp", 4 * (G * side * slab + slab_lead(-v.pw))) for _ in range(2)]
        if dedicated:  # multicast slots: the ordered copy gets its own region
            self.ordered = ctx.alloc("sp", 4 * ntap * side * side)
        else:  # the ordered copy shares the working region, dead by then (ctx.share
            # orders the accesses to both, so the next tile's loads wait)
            work = (*self.g_slots, *self.xslabs)
            span = self.xslabs[-1].addr + self.xslabs[-1].nbytes - self.g_slots[0].addr
            if span < 4 * ntap * side * side:  # the region must hold the ordered copy
                work += (ctx.alloc("sp", 4 * ntap * side * side - span),)
            self.ordered = Slot("sp", self.g_slots[0].addr, 4 * ntap * side * side)
            ctx.share(self.ordered, work)
        self.plane_in, self.plane_out = v.h * v.w, v.oh * v.ow
        self.it = [0] * len(ctx.streams)
        self.current: dict[int, list] = {}  # cluster -> [o0, c0, first, images]

    def steps(self, images: range) -> list[tuple[range, tuple[int, int, int, int]]]:
        """(images, pixel block) of each step over ``images``."""
        out = []
        for n0 in range(images.start, images.stop, self.G):
            imgs = range(n0, min(n0 + self.G, images.stop))
            out += [(imgs, blk) for blk in self.blocks]
        return out

    def begin(self, cl: int, o0: int, c0: int) -> None:
        ctx, v, side, ntap = self.ctx, self.v, self.side, self.ntap
        mt, nt = min(side, v.o - o0), min(side, v.c - c0)
        self.current[cl] = [o0, c0, True, 0]
        if self.sbank is not None:  # every tap's sampling tile, cut from the tile's OIHW mask rows
            mask = self.mask
            assert mask is not None
            ctx.ld_at(cl, self.ordered, mask.addr + 4 * (o0 * v.c * ntap + c0 * ntap), mt,
                      nt * ntap, v.c * ntap)
            ctx.gather_sp(cl, self.sbank, self.ordered, 0, (ntap, mt, nt), (1, nt * ntap, ntap))

    def load(self, cl: int, step: tuple, layout: Layout | None = None) -> None:
        """The step's output-gradient block and input slabs (loaded by their senders, and
        multicast, when ``layout`` shares them)."""
        ctx, v, side = self.ctx, self.v, self.side
        imgs, (oh0, rows, ow0, cols) = step
        o0, c0, _, _ = self.current[cl]
        mt, nt = min(side, v.o - o0), min(side, v.c - c0)
        pt = rows * cols
        gb, xslab = self.g_slots[self.it[cl] % 2], self.xslabs[self.it[cl] % 2]
        self.it[cl] += 1
        if layout is None or layout.sends("a", cl):
            g0 = self.ctx.ins[0].addr + 4 * (imgs.start * v.o * self.plane_out + o0 * self.plane_out
                                             + oh0 * v.ow + ow0)
            if len(imgs) == 1:
                ctx.ld_at(cl, gb, g0, mt, pt, self.plane_out)
            else:  # whole planes of several images: mt x (images * pixels)
                ctx.ldg(cl, gb, g0, (mt, len(imgs), pt), (self.plane_out, v.o * self.plane_out, 1))
            if layout is not None:
                ctx.bcast(cl, layout.group["a"][cl], gb, 4 * mt * len(imgs) * pt,
                          layout.receivers["a"][cl])
        if layout is None or layout.sends("b", cl):
            xa, row0, col0 = self.ctx.ins[1].addr, oh0 * v.sh - v.ph, ow0 * v.sw - v.pw
            for j, n in enumerate(imgs):
                load_slab(ctx, cl, xslab, xa + 4 * (n * v.c * self.plane_in + c0 * self.plane_in
                                                    + row0 * v.w + col0),
                          (nt, self.rows_in, self.cols_in), (self.plane_in, v.w * self.row_step, 1),
                          4 * j * nt * self.slab, col0)
            if v.ph or v.pw:
                _zero_border(ctx, cl, xslab, len(imgs) * nt, self.rows_in, self.cols_in, row0, col0,
                             v.h, v.w)
            if layout is not None:
                ctx.bcast(cl, layout.group["b"][cl], xslab, 4 * len(imgs) * nt * self.slab,
                          layout.receivers["b"][cl])

    def macs(self, cl: int, step: tuple) -> None:
        """Every tap's mm (sddmm when sampled) of the step, on the slots ``load`` filled."""
        ctx, v, side, ntap = self.ctx, self.v, self.side, self.ntap
        imgs, (_, rows, _, cols) = step
        cur = self.current[cl]
        o0, c0, first = cur[0], cur[1], cur[2]
        mt, nt = min(side, v.o - o0), min(side, v.c - c0)
        pt = rows * cols
        parity = (self.it[cl] - 1) % 2
        gb, xslab, cbank, sbank = self.g_slots[parity], self.xslabs[parity], self.cbank, self.sbank
        # B stored n x k (tb=1): B[c, (j, r, q)] at c*slab + j*nt*slab + r*sh*cols_in + q*sw
        vb = ctx.view(cl, _VR_WIN_T, cols, self.slab, v.sh // self.row_step * self.cols_in, v.sw, d1=rows,
                      s3=nt * self.slab)
        for tap in range(ntap):
            kh, kw = divmod(tap, v.kw)
            reads = (gb, xslab) if first else (gb, xslab, cbank)
            extra = {}
            if sbank is not None:
                reads += (sbank,)
                extra["s"] = sbank.ref(4 * tap * mt * nt)
            ctx.emit(cl, "mm" if sbank is None else "sddmm", reads=reads, writes=(cbank,),
                     dst=cbank.ref(4 * tap * mt * nt), a=gb.ref(),
                     b=xslab.ref(4 * (kh * v.dh * self.cols_in + kw * v.dw)), m=mt, n=nt,
                     k=pt * len(imgs), accum=int(not first), ta=0, tb=1, vb=vb, **extra)
        cur[2] = False
        cur[3] += len(imgs) * pt

    def end(self, cl: int, dest: Buffer) -> None:
        """Reorder every tap's gradient into OIHW on chip and store the tile."""
        ctx, v, side, ntap = self.ctx, self.v, self.side, self.ntap
        o0, c0, _, pixels = self.current.pop(cl)
        mt, nt = min(side, v.o - o0), min(side, v.c - c0)
        ctx.stats.macs += mt * nt * pixels * ntap
        src, dst = self.cbank, self.ordered
        if self.in_acc:  # to the working region, then reordered into the mask tiles' place
            ctx.vop(cl, "copy", self.ordered, self.cbank, ntap * mt, nt)
            src, dst = self.ordered, self.sbank
        ctx.gather_sp(cl, dst, src, 0, (mt, nt, ntap), (nt, 1, mt * nt))
        ctx.st_at(cl, dst, dest.addr + 4 * (o0 * v.c * ntap + c0 * ntap), mt, nt * ntap, v.c * ntap)


def _wgrad_from_dram(ctx: KernelContext, v: Conv) -> None:
    g, x = ctx.ins[:2]
    mask = ctx.ins[2] if len(ctx.ins) > 2 else None
    out = ctx.outs[0]
    xa, hin, win = _padded_input(ctx, x, v)
    ntap = v.kh * v.kw
    direct = ntap == 1
    dst = out.addr if direct else ctx.scratch[len(ctx.scratch) - WGRAD_SPLIT_MAX].addr
    t, elems = ctx.tiling.t, ctx.tiling.elems
    ot, ct = min(v.o, t), min(v.c, t)
    blocks = _pixel_blocks(v.oh, v.ow, max(1, min(elems // max(ot, ct), 0xFFFF)))
    pmax = max(r * c for _, r, _, c in blocks)
    a_slots = [ctx.alloc("sp", 4 * ot * pmax) for _ in range(2)]
    b_slots = [ctx.alloc("sp", 4 * ct * pmax) for _ in range(2)]
    c_slots = [ctx.alloc("acc", 4 * ot * ct) for _ in range(2)]
    m_slots = [ctx.alloc("sp", 4 * ot * ct) for _ in range(2)] if mask is not None else []
    plane_in, plane_out = hin * win, v.oh * v.ow
    tiles = [(tap, o0, c0) for tap in range(ntap) for o0 in range(0, v.o, ot) for c0 in range(0, v.c, ct)]
    loop = KLoop(ctx)
    for cl, (tap, o0, c0) in ctx.place(tiles):
        kh, kw = divmod(tap, v.kw)
        mt, nt = min(ot, v.o - o0), min(ct, v.c - c0)
        c = c_slots[loop.tile(cl) % 2]
        steps = []
        for n in range(v.n):
            for oh0, rows, ow0, cols in blocks:
                pt = rows * cols
                a_addr = g.addr + 4 * (n * v.o * plane_out + o0 * plane_out + oh0 * v.ow + ow0)
                b_addr = xa + 4 * (n * v.c * plane_in + c0 * plane_in
                                   + (oh0 * v.sh + kh * v.dh) * win + ow0 * v.sw + kw * v.dw)
                steps.append((pt, a_addr, (1, mt, pt),
                              (0, plane_out, 1), b_addr, (nt, rows, cols),
                              (plane_in, v.sh * win, v.sw)))
        loop.run(cl, steps, a_slots, b_slots, c, mt, nt, ta=False, tb=True)
        ctx.stats.macs += mt * nt * v.n * plane_out
        if mask is not None:  # sampled: zero the gradient where the mask is zero
            ms = m_slots[loop.tiles[cl] % 2]
            ctx.ldg(cl, ms, mask.addr + 4 * (o0 * v.c * ntap + c0 * ntap + tap), (1, mt, nt),
                    (0, v.c * ntap, ntap))
            ctx.vop(cl, "mask", c, c, mt, nt, ms)
        if direct:
            ctx.st_at(cl, c, dst + 4 * (o0 * v.c + c0), mt, nt, v.c)
        else:
            ctx.st_at(cl, c, dst + 4 * (o0 * ntap * v.c + tap * v.c + c0), mt, nt, ntap * v.c)
    if not direct:
        ctx.barrier()
        gather_copy(ctx, dst, out.addr, [v.o, v.c, ntap], [ntap * v.c, 1, v.c],
                    [v.c * ntap, ntap, 1])
