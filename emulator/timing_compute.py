"""Closed-form durations of the MAC array, vector unit, banks and codec (docs/timing.md 3-5).

Pure functions of the operands and the cluster configuration, vectorized with numpy;
fully dense operands short-circuit to arithmetic. The one count numpy cannot do in few
passes, the lookahead windows of every output when both operands are zero-skipped, is a
compiled loop over bit-packed masks (window_kernels.py). Nothing loops per PE in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Window-count chunk: bounds the (windows, m, n) temporary of the batched mask product.
_CHUNK_ELEMS = 1 << 22


@dataclass(frozen=True)
class ClusterTiming:
    """The cluster fields the closed forms use (read once from the target)."""

    R: int
    C: int
    d: int
    I: int
    Fo: int
    L: int
    dataflow: str
    skip_hw: str
    reduce_cycles: int
    special: int
    bank_bytes: int
    banks: int
    codec_v: int
    codec_x: int

    @staticmethod
    def of(target) -> ClusterTiming:
        c = target.cluster
        return ClusterTiming(int(c.pe_rows), int(c.pe_cols), max(1, int(c.lookahead)), int(c.issue_cycles),
                             int(c.fold_cycles), int(c.vec_lanes), str(c.dataflow), str(c.skip),
                             int(c.reduce_cycles), int(c.vec_special_cycles), int(c.spad_bank_bytes),
                             int(c.spad_banks), int(c.codec_values_per_cycle), int(c.codec_index_per_cycle))


#: The fewest MAC slots (m * n * k) of an ``mm`` whose windows the compiled kernels count;
#: smaller ones take the numpy paths below, which give the same counts (exact small
#: integers in float32). A short run then never loads numba: its import and the load of
#: its cached kernels took ~0.9 s, most of ``acfc run``'s start on a small sparse program.
COMPILED_MIN_MACS = 1 << 15


def _compiled(m: int, n: int, k: int, d: int) -> bool:
    """Whether the window counts of an (m, n, k) ``mm`` with lookahead d use the kernels."""
    return d <= 64 and m * n * k >= COMPILED_MIN_MACS


def _kernels():
    """The compiled window counts, imported on first use: a run with no zero-skipped
    operand (dense, or a target without skipping), or only small ones, never loads numba
    (~0.9 s with its cached kernels, ~120 MB)."""
    from . import window_kernels
    return window_kernels


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _nonzero(A: np.ndarray, B: np.ndarray, skip: str, cfg: ClusterTiming
             ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(za, zb): bool masks of A's and B's nonzeros where their zeros are skipped (the
    instruction asks and the PEs can), None where the operand counts as all ones (not
    skipped, or dense: the closed forms short-circuit those)."""
    za = zb = None
    if "a" in skip and cfg.skip_hw in ("a", "ab"):
        za = np.not_equal(A, 0, order="C")
        za = None if za.all() else za
    if "b" in skip and cfg.skip_hw == "ab":
        zb = np.not_equal(B, 0, order="C")
        zb = None if zb.all() else zb
    return za, zb


def _f32(*masks: np.ndarray | None) -> tuple[np.ndarray | None, ...]:
    """Bool masks as float32 0/1 (the BLAS paths' operands); None stays None."""
    return tuple(None if z is None else z.astype(np.float32, copy=False) for z in masks)


def skip_masks(A: np.ndarray, B: np.ndarray, skip: str, cfg: ClusterTiming
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(za, zb) as float32 0/1 masks, or None where the operand counts as all ones."""
    return _f32(*_nonzero(A, B, skip, cfg))  # type: ignore[return-value]


def _window_sums(z: np.ndarray, d: int) -> np.ndarray:
    """Per row of z (rows, K): sum over windows of max(1, effectual in the window), for
    windows wider than the compiled counts take (d > 64).

    The per-window counts are one BLAS product with a 0/1 window-indicator matrix (exact:
    float32 counts up to 2^24); a very wide indicator falls back to a padded reshape.
    """
    rows, K = z.shape
    nw = _cdiv(K, d)
    if K * nw <= _CHUNK_ELEMS:
        return np.maximum(z @ _window_matrix(K, d), 1).sum(axis=1)
    pad = np.zeros((rows, nw * d), np.float32)
    pad[:, :K] = z
    return np.maximum(pad.reshape(rows, nw, d).sum(axis=2), 1).sum(axis=1)


@lru_cache(maxsize=64)
def _window_matrix(K: int, d: int) -> np.ndarray:
    """(K, windows) float32: 1 where pair k lies in window w (k // d == w)."""
    w = np.zeros((K, _cdiv(K, d)), np.float32)
    w[np.arange(K), np.arange(K) // d] = 1
    w.flags.writeable = False
    return w


def pe_cycles(za: np.ndarray | None, zb: np.ndarray | None, m: int, n: int, k: int, d: int) -> np.ndarray:
    """c(i, j): cycles of each output's PE (docs/timing.md section 3), shape (m, n)."""
    if k == 0:
        return np.zeros((m, n), np.float32)
    if za is None and zb is None:
        return np.full((m, n), k, np.float32)
    if _compiled(m, n, k, d):  # the common lookaheads: a compiled loop over bit-packed masks
        return _kernels().window_cycles(za, zb, m, n, k, d)[0]
    za, zb = _f32(za, zb)  # the products below count: bool operands would only OR
    if zb is None:  # effectual pairs depend on the row only
        return np.broadcast_to(_window_sums(za, d)[:, None], (m, n))
    if za is None:
        return np.broadcast_to(_window_sums(zb.T, d)[None, :], (m, n))
    nw = _cdiv(k, d)
    if nw == 1:
        return np.maximum(za @ zb, 1)
    a = np.zeros((m, nw * d), np.float32)
    a[:, :k] = za
    b = np.zeros((nw * d, n), np.float32)
    b[:k] = zb
    a = a.reshape(m, nw, d).transpose(1, 0, 2)  # (windows, m, d)
    b = b.reshape(nw, d, n)                     # (windows, d, n)
    out = np.zeros((m, n), np.float32)
    step = max(1, _CHUNK_ELEMS // max(1, m * n))
    for w0 in range(0, nw, step):  # loops over chunks of windows, not elements
        out += np.maximum(np.matmul(a[w0:w0 + step], b[w0:w0 + step]), 1).sum(axis=0)
    return out


def effectual_macs(za: np.ndarray | None, zb: np.ndarray | None, m: int, n: int, k: int,
                   sample: np.ndarray | None = None) -> int:
    """sum of eff[i, j, k] over computed outputs (all, or where ``sample`` is set)."""
    if sample is not None:
        if za is None and zb is None:
            return int(sample.sum()) * k
        a = za if za is not None else np.ones((m, k), np.float32)
        b = zb if zb is not None else np.ones((k, n), np.float32)
        return round(float((a @ b)[sample].sum(dtype=np.float64)))
    # column / row counts as BLAS products (exact in float32 below 2^24), dotted in float64
    ca = (np.ones(m, np.float32) @ za).astype(np.float64) if za is not None else np.full(k, float(m))
    rb = (zb @ np.ones(n, np.float32)).astype(np.float64) if zb is not None else np.full(k, float(n))
    return round(float(ca @ rb))


def _fold_max_sum(c: np.ndarray, R: int, C: int) -> int:
    """sum over R x C folds (fold rows first) of the fold's max c."""
    m, n = c.shape
    fm, fn = _cdiv(m, R), _cdiv(n, C)
    if m % R or n % C:  # c >= 0: zero padding changes no maximum
        pad = np.zeros((fm * R, fn * C), c.dtype)
        pad[:m, :n] = c
        c = pad
    # one reduction at a time: numpy reduces over one axis much faster than over two
    return int(c.reshape(fm, R, fn * C).max(axis=1).reshape(fm, fn, C).max(axis=2).sum(dtype=np.int64))


def mm_cycles(A: np.ndarray, B: np.ndarray, skip: str, cfg: ClusterTiming) -> tuple[int, int, int]:
    """(cycles, issued MACs, effectual MACs) of ``mm`` with A (m, k) and B (k, n)."""
    m, k = A.shape
    n = B.shape[1]
    issued = m * n * k
    folds = _cdiv(m, cfg.R) * _cdiv(n, cfg.C)
    za, zb = _nonzero(A, B, skip, cfg)
    if (za is not None or zb is not None) and cfg.dataflow == "os" and _compiled(m, n, k, cfg.d):
        # zeros skipped on either side: one compiled pass over the packed masks
        busy, eff = _kernels().fold_cycles(za, zb, m, n, k, cfg.d, cfg.R, cfg.C)
        return cfg.I + busy + folds * cfg.Fo, issued, eff
    za, zb = _f32(za, zb)
    eff = effectual_macs(za, zb, m, n, k)
    if cfg.dataflow == "systolic":
        return cfg.I + folds * (k + cfg.R + cfg.C - 2 + cfg.Fo), issued, eff
    if cfg.dataflow == "flexible":
        return cfg.I + max(1, _cdiv(eff, cfg.R * cfg.C)) + cfg.reduce_cycles + cfg.Fo, issued, eff
    if za is None and zb is None or k == 0:
        return cfg.I + folds * (k + cfg.Fo), issued, eff
    if za is None or zb is None:  # c depends on the row (or column) only: fold maxima of a vector
        v = _window_sums(za, cfg.d) if zb is None else _window_sums(zb.T, cfg.d)
        span, other = (cfg.R, _cdiv(n, cfg.C)) if zb is None else (cfg.C, _cdiv(m, cfg.R))
        pad = np.zeros(_cdiv(v.size, span) * span, np.float32)
        pad[:v.size] = v
        return cfg.I + other * int(pad.reshape(-1, span).max(axis=1).sum()) + folds * cfg.Fo, issued, eff
    c = pe_cycles(za, zb, m, n, k, cfg.d)
    return cfg.I + _fold_max_sum(np.asarray(c), cfg.R, cfg.C) + folds * cfg.Fo, issued, eff


def sddmm_cycles(A: np.ndarray, B: np.ndarray, S: np.ndarray, skip: str, cfg: ClusterTiming
                 ) -> tuple[int, int, int]:
    """(cycles, issued, effectual) of ``sddmm``: outputs sampled where S (m, n) is set."""
    m, k = A.shape
    n = B.shape[1]
    P = int(S.sum())
    if P == 0:
        return cfg.I, 0, 0
    za, zb = skip_masks(A, B, skip, cfg)
    eff = effectual_macs(za, zb, m, n, k, S)
    issued = P * k
    if cfg.dataflow == "systolic":
        folds = _cdiv(m, cfg.R) * _cdiv(n, cfg.C)
        return cfg.I + folds * (k + cfg.R + cfg.C - 2 + cfg.Fo), issued, eff
    if cfg.dataflow == "flexible":
        return cfg.I + max(1, _cdiv(eff, cfg.R * cfg.C)) + cfg.reduce_cycles + cfg.Fo, issued, eff
    chunks = _cdiv(P, cfg.R * cfg.C)
    c = np.asarray(pe_cycles(za, zb, m, n, k, cfg.d))[S]  # row-major sampled outputs
    pad = np.zeros(chunks * cfg.R * cfg.C, np.float32)
    pad[:P] = c
    return cfg.I + int(pad.reshape(chunks, -1).max(axis=1).sum()) + chunks * cfg.Fo, issued, eff


def vec_cycles(elements: int, work: int, cfg: ClusterTiming) -> int:
    """Lane cycles of a vector operation: ceil(N / L) * work."""
    return _cdiv(elements, cfg.L) * work


def bank_cycles(operands: list[tuple[str, int, int, int, int]], cfg: ClusterTiming) -> int:
    """max over (buffer, bank) of word accesses; operands are (buffer, addr, rows, cols, pitch).

    Each operand's distinct words are the union of its rows' word ranges (rows ascending, so
    a row only overlaps the rows before it); every range adds ``n // banks`` to each bank and
    one more to ``n % banks`` banks from its first, counted with a difference array.
    """
    bb, nb = cfg.bank_bytes, cfg.banks
    if all(rows <= 1 or not pitch or pitch == cols for _, _, rows, cols, pitch in operands):
        return _bank_cycles_contiguous(operands, bb, nb)
    per_buffer: dict[str, np.ndarray] = {}
    for buf, addr, rows, cols, pitch in operands:
        if rows <= 0 or cols <= 0:
            continue
        pitch = pitch or cols
        starts = addr + 4 * pitch * np.arange(rows, dtype=np.int64)
        lo = starts // bb
        hi = (starts + 4 * cols - 1) // bb
        prev = np.maximum.accumulate(np.concatenate([[lo[0] - 1], hi[:-1]]))
        lo = np.maximum(lo, prev + 1)
        n = np.maximum(hi - lo + 1, 0)
        keep = n > 0
        lo, n = lo[keep], n[keep]
        counts = per_buffer.setdefault(buf, np.zeros(nb, np.int64))
        counts += int((n // nb).sum())
        rem = n % nb
        first = lo % nb
        diff = np.bincount(first, minlength=2 * nb + 1) - np.bincount(first + rem, minlength=2 * nb + 1)
        cover = np.cumsum(diff[: 2 * nb])
        counts += cover[:nb] + cover[nb:]
    return int(max((int(c.max()) for c in per_buffer.values()), default=0))


def _bank_cycles_contiguous(operands: list[tuple[str, int, int, int, int]], bb: int, nb: int) -> int:
    """bank_cycles when every operand is one contiguous word range (plain integers: most
    vector operands are, and numpy's per-call cost would dominate). A range of n words adds
    ``n // nb`` to every bank of its buffer (kept as one number) and one more to the
    ``n % nb`` banks from its first."""
    per_buffer: dict[str, list] = {}  # buffer -> [accesses on every bank, extra per bank]
    for buf, addr, rows, cols, _ in operands:
        if rows <= 0 or cols <= 0:
            continue
        lo, hi = addr // bb, (addr + 4 * rows * cols - 1) // bb
        full, rem = divmod(hi - lo + 1, nb)
        e = per_buffer.get(buf)
        if e is None:
            e = per_buffer[buf] = [0, [0] * nb]
        e[0] += full
        if rem:
            extra, first = e[1], lo % nb
            for b in range(first, min(first + rem, nb)):
                extra[b] += 1
            for b in range(first + rem - nb):
                extra[b] += 1
    return max((e[0] + max(e[1]) for e in per_buffer.values()), default=0)


def codec_cycles(values: int, index_entries: int, cfg: ClusterTiming) -> int:
    """max(ceil(V / values per cycle), ceil(X / indices per cycle)); 0 for dense tiles."""
    return max(_cdiv(values, cfg.codec_v), _cdiv(index_entries, cfg.codec_x))


__all__ = ["ClusterTiming", "bank_cycles", "codec_cycles", "effectual_macs", "mm_cycles",
           "pe_cycles", "sddmm_cycles", "skip_masks", "vec_cycles", "view_bank_cycles"]


def gather_bank_cycles(addrs: np.ndarray, dst: int, n: int, cfg: ClusterTiming) -> int:
    """Bank cycles of an ``ldg`` from the scratchpad: the gathered source elements (byte
    addresses ``addrs``) and the dense ``n``-element destination tile, both in ``sp``; each
    distinct word any byte of an operand lies in is one access to its bank (docs/timing.md
    sections 4, 7b).

    Distinct words are marked in a table over their span (sorting or hashing every
    element's words costs several times more); with words of 4 bytes or more the
    destination's words are one contiguous range, counted in closed form."""
    bb, nb = cfg.bank_bytes, cfg.banks
    counts = np.zeros(nb, np.int64)
    if addrs.size:
        counts += _word_banks(addrs, bb, nb)
    if n > 0 and bb >= 4:
        first = dst // bb
        full, rem = divmod((dst + 4 * n - 1) // bb - first + 1, nb)
        counts += full + ((np.arange(nb) - first) % nb < rem)
    elif n > 0:
        counts += _word_banks(dst + 4 * np.arange(n, dtype=np.int64), bb, nb)
    return int(counts.max())


def view_bank_cycles(operands: list[tuple[str, np.ndarray]], cfg: ClusterTiming) -> int:
    """Bank cycles of mm/sddmm operands read or written through view registers ((buffer,
    byte addresses of the operand's elements)): each distinct word of each operand is one
    access to its bank of its buffer (sp and acc bank separately); the busiest bank's
    count (docs/timing.md section 3)."""
    counts: dict[str, np.ndarray] = {}
    for buf, addrs in operands:
        if addrs.size:
            c = counts.setdefault(buf, np.zeros(cfg.banks, np.int64))
            c += _word_banks(addrs, cfg.bank_bytes, cfg.banks)
    return max((int(c.max()) for c in counts.values()), default=0)


def _word_banks(addrs: np.ndarray, bb: int, nb: int) -> np.ndarray:
    """Per bank, the distinct words holding any byte of an element (an element spans at
    most 4 words: its first and last byte's words, and those between when words are
    narrower than 4 bytes)."""
    lo, hi = addrs // bb, (addrs + 3) // bb
    w0 = int(lo.min())
    mark = np.zeros(int(hi.max()) - w0 + 1, np.bool_)
    mark[lo - w0] = True
    mark[hi - w0] = True
    if bb < 3:
        for k in (1, 2):
            mark[np.minimum(lo + k, hi) - w0] = True
    return np.bincount((np.flatnonzero(mark) + w0) % nb, minlength=nb)
