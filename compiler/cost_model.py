"""Analytical cost of GEMM operand tiles and GEMM layers, derived from ``docs/timing.md``.

Three levels, each a closed form of the timing contract:

* :func:`tile_cost` - one operand tile in one format: its exact encoded bytes
  (``isa.formats``), flits, DRAM cycles, NoC cycles, codec cycles and the duration of an
  uncontended ``ld`` (section 7b: ``I + max(DRAM, latency + NoC, codec, scratchpad banks)``).
  Counts are exact
  from a mask when one is given, expected values from a density otherwise.
* :func:`mm_cycles` - the MAC array time of one ``mm`` (section 3) given the skip hardware:
  exact from masks (the lookahead-window formula), or its expectation from densities
  (``E[max(1, Binomial(d, p))]`` per window, plus the expected maximum over a fold);
  :func:`sddmm_cycles` the same for one ``sddmm`` (chunks of sampled outputs, not folds).
* :func:`gemm_cost` - a whole GEMM as ``compiler/codegen/kernels/matmul.py`` emits it: the
  kernel itself emits its instructions (output tiles, placement, operand reuse, multicast
  layouts) into a recording context, and ``compiler/gemm_replay.py`` times them with the two
  closed forms above over in-order unit queues, the shared NoC links (row-port paths and
  multicast trees, section 7) and the DRAM channels (each tile's byte runs interleaved over
  them, section 6).

Nothing here imports the emulator (``compiler`` and ``emulator`` know nothing of each
other); ``tests/compiler/test_cost_model.py`` checks the numbers against it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from acf.isa import formats
from acf.isa.symbols import packed_slot_bytes
from acf.isa.target import Target

#: Formats the model compares (``nm2:4`` only when the pattern is 2:4).
FORMATS = ("dense", "csr", "csc", "coo", "bitmap", "bcsr4x4", "nm2:4")


def _cdiv(a: int, b: int) -> int:
    return -(-int(a) // int(b))


# ---- one tile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TileCost:
    """Cost of loading one ``rows x cols`` tile in ``format`` (cycles are integers)."""

    format: str
    rows: int
    cols: int
    nnz: float
    bytes: int
    values: int        # codec values (0 for dense)
    indices: int       # codec index + pointer entries (0 for dense)
    flits: int
    dram_cycles: int   # channel busy time, latency excluded
    noc_cycles: int    # H*r + F on the memory route
    codec_cycles: int
    load_cycles: int   # an uncontended ``ld``: I + max(DRAM + lat, lat + NoC, codec, banks)
    bank_cycles: int = 0  # scratchpad bank cycles writing the (decoded) tile


def is_pattern(mask: np.ndarray | None, fmt: str) -> bool:
    """Whether a tile with this mask can be stored in ``fmt`` (nm needs its N:M pattern)."""
    spec = formats.FormatSpec.parse(fmt)
    if spec.format != formats.Format.NM:
        return True
    if mask is None:
        return False
    return formats.is_nm(np.asarray(mask, np.float32), spec.n, spec.m)


def tile_counts(fmt: str, rows: int, cols: int, mask: np.ndarray | None = None,
                density: float | None = None) -> tuple[int, int, int, float]:
    """``(bytes moved, codec values, codec index entries, nnz)`` of a tile: the exact encoded
    size for a compressed format, the raw ``4 * rows * cols`` for dense (no header, no codec).

    Exact from ``mask`` (any array, non-zero = kept); from ``density`` the expected counts
    (bcsr blocks: ``GR*GC*(1 - (1-p)^(br*bc))``).
    """
    spec = formats.FormatSpec.parse(fmt)
    if mask is not None:
        tile = (np.asarray(mask) != 0).astype(np.float32)
        mc = formats.metadata_counts(tile, spec)
        if spec.format == formats.Format.DENSE:  # raw values: a dense ld moves no header
            return 4 * rows * cols, 0, 0, float(mc.nnz)
        return mc.encoded_size, mc.stored_values, mc.index_entries + mc.pointer_entries, float(mc.nnz)
    p = 1.0 if density is None else min(1.0, max(0.0, float(density)))
    rc = rows * cols
    nnz = int(round(p * rc))
    f = spec.format
    if f == formats.Format.DENSE:
        return 4 * rc, 0, 0, float(nnz)
    if f == formats.Format.BCSR:
        br, bc = spec.block_rows, spec.block_cols
        gr, gc = _cdiv(rows, br), _cdiv(cols, bc)
        blocks = int(round(gr * gc * (1.0 - (1.0 - p) ** (br * bc))))
        return (formats.encoded_size(spec, rows, cols, nblocks=blocks), blocks * br * bc,
                blocks + gr + 1, float(nnz))
    if f == formats.Format.NM:
        slots = rows * (cols // spec.m) * spec.n
        return formats.encoded_size(spec, rows, cols), slots, slots, float(nnz)
    size = formats.encoded_size(spec, rows, cols, nnz=nnz)
    index = {formats.Format.CSR: nnz + rows + 1, formats.Format.CSC: nnz + cols + 1,
             formats.Format.COO: 2 * nnz, formats.Format.BITMAP: 0}[f]
    return size, nnz, index, float(nnz)


def dram_busy(target: Target, nbytes: int, runs: int = 1) -> int:
    """Channel busy cycles of ``runs`` equal contiguous runs totalling ``nbytes``, spread
    over the channels by the interleave (the most loaded channel; latency excluded)."""
    d = target.dram
    if nbytes <= 0:
        return 0
    il, ch, burst, bpc = (int(d.interleave_bytes), int(d.channels), int(d.burst_bytes),
                          int(d.bytes_per_cycle))
    run = nbytes / runs
    pieces_per_run = max(1, math.ceil(run / il))
    pieces = runs * pieces_per_run
    bursts_per_piece = _cdiv(math.ceil(run / pieces_per_run), burst)
    per_channel = _cdiv(pieces, ch) * bursts_per_piece
    return _cdiv(per_channel * burst, bpc)


def codec_cycles(target: Target, values: int, indices: int) -> int:
    c = target.cluster
    return max(_cdiv(values, int(c.codec_values_per_cycle)), _cdiv(indices, int(c.codec_index_per_cycle)))


def tile_cost(target: Target, fmt: str, rows: int, cols: int, *, mask: np.ndarray | None = None,
              density: float | None = None, hops: int = 1) -> TileCost:
    """The cost of one ``ld`` of a tile; ``hops`` = links from the row's memory port
    (``x + 1`` for cluster ``(x, y)``)."""
    nbytes, values, indices, nnz = tile_counts(fmt, rows, cols, mask, density)
    flits = max(1, _cdiv(nbytes, int(target.noc.link_bytes)))
    lat = int(target.dram.latency_cycles)
    dense = formats.FormatSpec.parse(fmt).format == formats.Format.DENSE
    runs = rows if dense else 1
    dram = dram_busy(target, nbytes, runs)
    noc = hops * int(target.noc.router_latency) + flits
    codec = codec_cycles(target, values, indices)
    # the decoded tile lands in a 64-byte-aligned slot: each bank takes its share of words
    bank = _cdiv(_cdiv(4 * rows * cols, int(target.cluster.spad_bank_bytes)),
                 int(target.cluster.spad_banks))
    load = int(target.cluster.issue_cycles) + max(dram + lat, lat + noc, codec, bank)
    return TileCost(str(fmt), rows, cols, nnz, nbytes, values, indices, flits, dram, noc, codec,
                    load, bank)


# ---- the MAC array ----------------------------------------------------------------------


def _skips(target: Target, skip: str) -> tuple[bool, bool]:
    hw = str(target.cluster.skip)
    return ("a" in skip and hw in ("a", "ab")), ("b" in skip and hw == "ab")


def _window_sums(z: np.ndarray, d: int) -> np.ndarray:
    """Per row of z (rows, K): sum over windows of d of max(1, effectual)."""
    rows, k = z.shape
    nw = _cdiv(k, d)
    pad = np.zeros((rows, nw * d), np.float32)
    pad[:, :k] = z
    return np.maximum(pad.reshape(rows, nw, d).sum(axis=2), 1).sum(axis=1)


@lru_cache(maxsize=4096)
def _expected_window_sum(k: int, d: int, p: float) -> tuple[float, float]:
    """Mean and variance of sum over windows of max(1, Binomial(len, p)); the full windows
    are alike, so one full window and the ragged last one are computed."""
    def window(n: int) -> tuple[float, float]:
        ks = np.arange(n + 1)
        pk = np.array([math.comb(n, int(i)) * p ** i * (1 - p) ** (n - i) for i in ks])
        v = np.maximum(ks, 1)
        m1 = float((pk * v).sum())
        return m1, float((pk * v * v).sum()) - m1 * m1

    full, rest = divmod(k, d)
    mean = var = 0.0
    if full:
        m, v = window(d)
        for _ in range(full):  # summed one window at a time: the same rounding as before
            mean += m
            var += v
    if rest:
        m, v = window(rest)
        mean += m
        var += v
    return mean, var


def _expected_max(mean: float, var: float, n: int) -> float:
    """Expected maximum of n such sums (a normal approximation)."""
    if n <= 1 or var <= 0:
        return mean
    return mean + math.sqrt(var) * math.sqrt(2.0 * math.log(n)) * 0.85


def _pe_cycles(za: np.ndarray | None, zb: np.ndarray | None, m: int, n: int, k: int,
               d: int) -> np.ndarray:
    """c(i, j), the cycles of each output's PE (section 3's window formula), from the
    effectual masks of the skipped operands (None: all ones)."""
    if za is None and zb is None:
        return np.full((m, n), float(k), np.float32)
    if za is not None and zb is not None:
        ca = np.zeros((m, n), np.float32)
        nw = _cdiv(k, d)
        a = np.zeros((m, nw * d), np.float32)
        a[:, :k] = za
        b = np.zeros((nw * d, n), np.float32)
        b[:k] = zb
        for w in range(nw):
            ca += np.maximum(a[:, w * d:(w + 1) * d] @ b[w * d:(w + 1) * d], 1)
        return ca
    if za is not None:
        return np.broadcast_to(_window_sums(za.astype(np.float32), d)[:, None], (m, n))
    return np.broadcast_to(_window_sums(zb.T.astype(np.float32), d)[None, :], (m, n))  # type: ignore[union-attr]


def _skipped_operands(target: Target, skip: str, a_mask, b_mask, a_density: float,
                      b_density: float) -> tuple[float, float, np.ndarray | None, np.ndarray | None]:
    """(pa, pb, za, zb) of an ``mm``/``sddmm``'s operands as the skip hardware sees them: the
    density of each (its mask's, else the given one; 1 where its zeros are not skipped),
    and the non-zero mask of each skipped operand given as a mask (None otherwise). An
    empty mask (k = 0) has no density and takes the given one."""
    sa, sb = _skips(target, skip)
    pa = float(np.mean(np.asarray(a_mask) != 0)) if a_mask is not None and np.size(a_mask) else a_density
    pb = float(np.mean(np.asarray(b_mask) != 0)) if b_mask is not None and np.size(b_mask) else b_density
    za = (np.asarray(a_mask) != 0) if (a_mask is not None and sa) else None
    zb = (np.asarray(b_mask) != 0) if (b_mask is not None and sb) else None
    return (pa if sa else 1.0), (pb if sb else 1.0), za, zb


def _all_ones_as_none(z: np.ndarray | None) -> np.ndarray | None:
    """A mask with no zero counts as all ones (the closed forms' short cut)."""
    return None if z is not None and z.all() else z


def mm_cycles(target: Target, m: int, n: int, k: int, *, a_mask: np.ndarray | None = None,
              b_mask: np.ndarray | None = None, a_density: float = 1.0, b_density: float = 1.0,
              skip: str = "ab") -> float:
    """Cycles of one ``mm`` (m x k by k x n). Masks (0/1, shapes (m, k) and (k, n)) make it
    exact; otherwise the expectation at the given densities."""
    c = target.cluster
    R, C, d, I, Fo = int(c.pe_rows), int(c.pe_cols), max(1, int(c.lookahead)), int(c.issue_cycles), int(c.fold_cycles)
    sa, sb = _skips(target, skip)
    folds = _cdiv(m, R) * _cdiv(n, C)
    pa, pb, za, zb = _skipped_operands(target, skip, a_mask, b_mask, a_density, b_density)
    if str(c.dataflow) == "systolic":
        return I + folds * (k + R + C - 2 + Fo)
    if str(c.dataflow) == "flexible":
        if a_mask is not None or b_mask is not None:
            ones_a = za if za is not None else np.ones((m, k), bool)
            ones_b = zb if zb is not None else np.ones((k, n), bool)
            eff = float(ones_a.sum(axis=0) @ ones_b.sum(axis=1)) if (ones_a.size and ones_b.size) else 0.0
            if a_mask is None and sa:
                eff *= a_density
            if b_mask is None and sb:
                eff *= b_density
        else:
            eff = m * n * k * pa * pb
        return I + max(1, math.ceil(eff / (R * C))) + int(c.reduce_cycles) + Fo
    if k == 0:
        return I + folds * Fo
    exact_a = a_mask is not None or pa >= 1.0
    exact_b = b_mask is not None or pb >= 1.0
    if exact_a and exact_b:
        za, zb = _all_ones_as_none(za), _all_ones_as_none(zb)
        if za is None and zb is None:
            return I + folds * (k + Fo)
        cij = _pe_cycles(za, zb, m, n, k, d)
        fm, fn = _cdiv(m, R), _cdiv(n, C)
        pad = np.zeros((fm * R, fn * C), np.float32)
        pad[:m, :n] = cij
        return I + float(pad.reshape(fm, R, fn, C).max(axis=(1, 3)).sum()) + folds * Fo
    mean, var = _expected_window_sum(k, d, pa * pb)
    per_fold = min(float(k), _expected_max(mean, var, min(m, R) * min(n, C)))
    return I + folds * (per_fold + Fo)


def sddmm_cycles(target: Target, m: int, n: int, k: int, *, s_mask: np.ndarray | None = None,
                 s_density: float = 1.0, a_mask: np.ndarray | None = None,
                 b_mask: np.ndarray | None = None, a_density: float = 1.0,
                 b_density: float = 1.0, skip: str = "ab") -> float:
    """Cycles of one ``sddmm`` (m x k by k x n, outputs sampled where the (m, n) sample S is
    non-zero; section 3): ``os`` cuts the sampled outputs, in row-major order, into chunks
    of ``R*C``, each as long as its slowest output plus the drain; ``flexible`` counts the
    sampled effectual MACs; ``systolic`` runs a dense ``mm``. Exact from masks; from
    densities the expectation (S's sampled count, then as :func:`mm_cycles`)."""
    c = target.cluster
    R, C, d, I, Fo = int(c.pe_rows), int(c.pe_cols), max(1, int(c.lookahead)), int(c.issue_cycles), int(c.fold_cycles)
    sample = (np.asarray(s_mask) != 0) if s_mask is not None else None
    P = int(sample.sum()) if sample is not None else round(s_density * m * n)
    if P == 0:  # nothing sampled, in every dataflow
        return I
    if str(c.dataflow) == "systolic":
        return mm_cycles(target, m, n, k, skip=skip)
    pa, pb, za, zb = _skipped_operands(target, skip, a_mask, b_mask, a_density, b_density)
    exact_a = a_mask is not None or pa >= 1.0
    exact_b = b_mask is not None or pb >= 1.0
    if str(c.dataflow) == "flexible":
        if exact_a and exact_b and sample is not None:
            a = za.astype(np.float32) if za is not None else np.ones((m, k), np.float32)
            b = zb.astype(np.float32) if zb is not None else np.ones((k, n), np.float32)
            eff = float((a @ b)[sample].sum(dtype=np.float64))
        else:
            eff = P * k * pa * pb
        return I + max(1, math.ceil(eff / (R * C))) + int(c.reduce_cycles) + Fo
    chunks = _cdiv(P, R * C)
    if k == 0:
        return I + chunks * Fo
    if exact_a and exact_b:
        za, zb = _all_ones_as_none(za), _all_ones_as_none(zb)
        if za is None and zb is None:
            return I + chunks * (k + Fo)
        if sample is not None:
            pad = np.zeros(chunks * R * C, np.float32)
            pad[:P] = _pe_cycles(za, zb, m, n, k, d)[sample]  # row-major sampled outputs
            return I + float(pad.reshape(chunks, -1).max(axis=1).sum()) + chunks * Fo
    mean, var = _expected_window_sum(k, d, pa * pb)
    per_chunk = min(float(k), _expected_max(mean, var, min(P, R * C)))
    return I + chunks * (per_chunk + Fo)


# ---- a whole GEMM -----------------------------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """A GEMM operand: its 2-D stored shape, format and (optionally) its mask."""

    rows: int
    cols: int
    fmt: str = "dense"
    mask: np.ndarray | None = None
    density: float = 1.0
    transposed: bool = False  # stored transposed (mm ta / tb)

    def tile_mask(self, r0: int, c0: int, h: int, w: int) -> np.ndarray | None:
        if self.mask is None:
            return None
        return np.asarray(self.mask)[r0:r0 + h, c0:c0 + w]


@dataclass
class GemmCost:
    """Modelled cycles of a GEMM and where they go."""

    cycles: int
    load_cycles: int            # sum of ld durations (all clusters)
    mac_cycles: int             # sum of mm durations (all clusters)
    port_flits: dict[int, int]  # row -> flits through its memory port (both directions)
    dram_bytes: int
    per_cluster_end: dict[int, int] = field(default_factory=dict)


class _Links:
    """Section 7 link reservation (pipelined over the route's links)."""

    def __init__(self, r: int) -> None:
        self.free: dict[tuple, int] = {}
        self.r = r
        self.flits: dict[tuple, int] = {}

    def reserve(self, request: int, links: list[tuple], flits: int) -> int:
        r = self.r
        t0 = max([request] + [self.free.get(l, 0) - h * r for h, l in enumerate(links)])
        for h, l in enumerate(links):
            self.free[l] = t0 + h * r + flits
            self.flits[l] = self.flits.get(l, 0) + flits
        return t0 + len(links) * r + flits

    def reserve_tree(self, request: int, links: dict[tuple, int], flits: int) -> int:
        """A multicast: each link at its depth in the tree (section 7)."""
        r = self.r
        t0 = max([request] + [self.free.get(l, 0) - h * r for l, h in links.items()])
        for l, h in links.items():
            self.free[l] = t0 + h * r + flits
            self.flits[l] = self.flits.get(l, 0) + flits
        return t0 + (max(links.values(), default=-1) + 1) * r + flits


class _Dram:
    """Section 6 DRAM channels: a tile's byte runs split at the interleave, each channel busy
    for its bursts from ``max(request, free)``; every operand is taken to start on a
    ``channels x interleave`` boundary (the memory plan aligns buffers at least that far)."""

    def __init__(self, target: Target) -> None:
        d = target.dram
        self.ch, self.il = int(d.channels), int(d.interleave_bytes)
        self.burst, self.bpc = int(d.burst_bytes), int(d.bytes_per_cycle)
        self.lat = int(d.latency_cycles)
        self.free = [0] * self.ch

    def bursts(self, runs: list[tuple[int, int]]) -> dict[int, int]:
        """Bursts per channel of byte runs ``(address, length)``: each run's pieces (split at
        the interleave) at once, as arrays (the same tiles recur in every format costed)."""
        return _bursts(self.ch, self.il, self.burst, tuple(runs))

    def access(self, request: int, bursts: dict[int, int]) -> int:
        """End cycle (latency in) of an access requested at ``request``."""
        end = request
        for c, b in bursts.items():
            self.free[c] = max(request, self.free[c]) + _cdiv(b * self.burst, self.bpc)
            end = max(end, self.free[c])
        return end + self.lat


@lru_cache(maxsize=8192)
def _bursts(ch: int, il: int, burst: int, runs: tuple[tuple[int, int], ...]) -> dict[int, int]:
    """See :meth:`_Dram.bursts` (the result is shared: callers only read it)."""
    if not runs:
        return {}
    r = np.asarray(runs, np.int64)
    a, n = r[:, 0], r[:, 1]
    first = np.minimum(n, il - a % il)  # up to the next boundary
    rest = n - first
    full, last = rest // il, rest % il  # whole interleaves, remainder
    c0 = (a // il) % ch
    per_il = -(-il // burst)
    counts = np.bincount(c0, weights=-(-first // burst), minlength=ch)
    # whole interleaves: every channel gets full // ch of them, and the full % ch channels
    # after c0 one more (a difference array over two rounds of the channels)
    counts += per_il * int((full // ch).sum())
    r = full % ch
    diff = np.bincount(c0 + 1, minlength=2 * ch + 1)[:2 * ch + 1] - \
        np.bincount(c0 + 1 + r, minlength=2 * ch + 1)[:2 * ch + 1]
    cover = np.cumsum(diff)[:2 * ch]
    counts += per_il * (cover[:ch] + cover[ch:])
    tail = last > 0
    counts += np.bincount((c0[tail] + full[tail] + 1) % ch,
                          weights=-(-last[tail] // burst), minlength=ch)
    counts = counts.astype(np.int64)
    return {int(c): int(b) for c, b in enumerate(counts) if b}


def tile_runs(op: Operand, r0: int, c0: int, h: int, w: int, t: int, nbytes: int
              ) -> list[tuple[int, int]]:
    """Byte runs of a stored tile: rows of a dense (row-major) operand, or one packed ``t x t``
    tile's encoding at its slot (a dense tile's worst-case encoding per slot, as
    ``isa.symbols`` lays packed tiles out)."""
    if op.fmt == "dense":
        return [(4 * ((r0 + r) * op.cols + c0), 4 * w) for r in range(h)]
    index = (r0 // t) * _cdiv(op.cols, t) + c0 // t
    return [(index * packed_slot_bytes(op.fmt, t, t), nbytes)]


def memory_route(x: int, y: int, inbound: bool = True) -> list[tuple]:
    """Links between port ``P_y`` and cluster ``(x, y)`` (xy routing from the west port)."""
    links = [(("p", y), ("c", 0, y))] + [(("c", i, y), ("c", i + 1, y)) for i in range(x)]
    if inbound:
        return links
    return [(b, a) for a, b in reversed(links)]


def gemm_cost(target: Target, m: int, n: int, k: int, a: Operand, b: Operand, *, t: int,
              placement: Callable | None = None, out_fmt: str = "dense",
              skip: str = "ab", sample: Operand | None = None) -> GemmCost:
    """Model ``C[m,n] = op(A) op(B)`` compiled by the matmul kernel with tile side ``t``:
    the kernel's own instructions (``placement``: the default one, with its multicast
    layouts, when None), each timed by the closed forms above over in-order unit queues,
    shared row-port links and DRAM channels (``compiler/gemm_replay.py``). ``sample``: the
    ``graph.sddmm`` kernel, sampled at this ``m x n`` operand S (in its format, loaded per
    output tile; the ``mm``s become ``sddmm``s, timed by :func:`sddmm_cycles`)."""
    from .gemm_replay import replay  # it runs the kernel, which this module's callers import

    return replay(target, m, n, k, a, b, t=t, placement=placement, out_fmt=out_fmt, skip=skip,
                  sample=sample)


# ---- format choice ----------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """The format chosen for one value and the modelled cost of every candidate."""

    format: str
    costs: dict[str, float]
    density: float


def candidates(mask: np.ndarray | None, rows: int, cols: int,
               formats_: Sequence[str] = FORMATS) -> list[str]:
    out = []
    for f in formats_:
        spec = formats.FormatSpec.parse(f)
        if spec.format == formats.Format.NM and (cols % spec.m or not is_pattern(mask, f)):
            continue
        out.append(f)
    return out


def choose(costs: dict[str, float], current: str = "dense", tie: float = 0.01) -> str:
    """The cheapest format; one within ``tie`` of it loses to ``current`` (no layout change
    for a negligible gain) and then to dense (no codec work)."""
    best = min(costs, key=lambda f: (costs[f], FORMATS.index(f) if f in FORMATS else 99))
    for keep in (current, "dense"):
        if keep in costs and costs[keep] <= costs[best] * (1 + tie):
            return keep
    return best
