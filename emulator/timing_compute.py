"""Closed-form durations of the MAC array, vector unit, banks and codec (docs/timing.md 3-5).

Pure functions of the operands and the cluster configuration, vectorized with numpy: the
effectual pairs of every lookahead window of every output are one batched product of 0/1
masks; fully dense operands short-circuit to arithmetic. Nothing loops per element or PE.
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


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def skip_masks(A: np.ndarray, B: np.ndarray, skip: str, cfg: ClusterTiming
               ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(za, zb) as float32 0/1 masks, or None where the operand counts as all ones."""
    za = zb = None
    if "a" in skip and cfg.skip_hw in ("a", "ab"):
        za = (A != 0)
        za = None if za.all() else za.astype(np.float32)
    if "b" in skip and cfg.skip_hw == "ab":
        zb = (B != 0)
        zb = None if zb.all() else zb.astype(np.float32)
    return za, zb


def _window_sums(z: np.ndarray, d: int) -> np.ndarray:
    """Per row of z (rows, K): sum over windows of max(1, effectual in the window).

    The per-window counts are one BLAS product with a 0/1 window-indicator matrix (exact:
    float32 counts up to 2^24); a very wide indicator falls back to a padded reshape.
    """
    rows, K = z.shape
    if d == 1:  # every window is one pair: max(1, 0 or 1) = 1
        return np.full(rows, K, np.float32)
    nw = _cdiv(K, d)
    if d <= 8:  # each window one byte: max(1, popcount) by table
        return _MAX1_POPCOUNT[_window_bytes(z, d)[:, :nw]].sum(axis=1, dtype=np.int64).astype(np.float32)
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
    if zb is None:  # effectual pairs depend on the row only
        return np.broadcast_to(_window_sums(za, d)[:, None], (m, n))
    if za is None:
        return np.broadcast_to(_window_sums(zb.T, d)[None, :], (m, n))
    nw = _cdiv(k, d)
    if nw == 1:
        return np.maximum(za @ zb, 1)
    if d <= 8:
        return _window_cycles_bytes(za, zb, d)
    if d <= 64 and d & (d - 1) == 0:
        # sum_w max(1, E_w) = E + (windows with no effectual pair): E is one BLAS product,
        # the empty windows are counted on bit-packed masks (d-bit groups of 64-bit words).
        return (za @ zb) + (nw - _nonempty_windows(za, zb, d)).astype(np.float32)
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


#: max(1, popcount(v)) of every byte value
_MAX1_POPCOUNT = np.maximum(np.bitwise_count(np.arange(256, dtype=np.uint8)), 1).astype(np.uint8)


@lru_cache(maxsize=64)
def _byte_weights(k: int, d: int) -> np.ndarray:
    """(k, 8 * words) float32: pair k's bit (``2^(k mod d)``) in the byte of its window
    ``k // d`` (windows of d <= 8 pairs; bytes past the last window stay zero)."""
    words = _cdiv(_cdiv(k, d), 8)
    w = np.zeros((k, 8 * words), np.float32)
    idx = np.arange(k)
    w[idx, idx // d] = 2.0 ** (idx % d)
    w.flags.writeable = False
    return w


def _window_bytes(z: np.ndarray, d: int) -> np.ndarray:
    """(rows, 8 * words) uint8: the effectual bits of each window of d <= 8 pairs of each
    row of the 0/1 matrix z (rows, k), one byte per window, zero bytes past the last."""
    rows, k = z.shape
    if d != 8:  # one small BLAS product with the bit weights (exact: at most 255)
        return (z @ _byte_weights(k, d)).astype(np.uint8)
    out = np.zeros((rows, 8 * _cdiv(_cdiv(k, 8), 8)), np.uint8)
    out[:, :_cdiv(k, 8)] = np.packbits(np.ascontiguousarray(z != 0), axis=1, bitorder="little")
    return out


def _window_cycles_bytes(za: np.ndarray, zb: np.ndarray, d: int) -> np.ndarray:
    """c(i, j) for windows of d <= 8 pairs, each window one byte of a 64-bit word.

    Per word, ``x = a & b`` holds the effectual pairs of 8 windows; a byte's popcount is
    its window's effectual pairs, and OR-ing 1 into the empty bytes first makes each
    window count ``max(1, pairs)``, so ``c`` is the popcounts summed over words (less the
    padding bytes past the last window, each counted 1). Every temporary is an (m, n)
    array allocated once."""
    m, k = za.shape
    n = zb.shape[1]
    a = _window_bytes(za, d).view(np.uint64)                      # (m, words)
    b = np.ascontiguousarray(_window_bytes(zb.T, d).view(np.uint64).T)  # (words, n)
    words = a.shape[1]
    x = np.empty((m, n), np.uint64)
    x8 = x.view(np.uint8).reshape(m, n, 8)
    empty = np.empty((m, n, 8), np.bool_)
    empty64 = empty.view(np.uint64).reshape(m, n)
    pc = np.empty((m, n), np.uint8)
    c = np.zeros((m, n), np.int32)
    for w in range(words):
        np.bitwise_and(a[:, w:w + 1], b[w], out=x)
        np.equal(x8, 0, out=empty)
        np.bitwise_or(x, empty64, out=x)
        np.bitwise_count(x, out=pc)
        np.add(c, pc, out=c)
    pad = 8 * words - _cdiv(k, d)
    if pad:
        c -= pad
    return c


def _pack_rows(z: np.ndarray, words: int) -> np.ndarray:
    """Rows of a 0/1 matrix as little-endian bit strings in ``words`` 64-bit words."""
    rows, k = z.shape
    out = np.zeros((rows, 8 * words), np.uint8)
    out[:, :_cdiv(k, 8)] = np.packbits(z.astype(bool), axis=1, bitorder="little")
    return out.view(np.uint64)


def _nonempty_windows(za: np.ndarray, zb: np.ndarray, d: int) -> np.ndarray:
    """(m, n) count of lookahead windows holding at least one effectual pair (d = 2^p <= 64).

    Per 64-bit word of the packed masks, ``x = a & b`` holds the effectual pairs of 64/d
    windows; a d-bit group is nonzero iff ``((x & L) + L) | x`` has its top bit set (L: all
    bits but the groups' top bits; the sum carries into the top bit without leaving the
    group). Up to d words' indicators are merged into one word (word w shifted right by
    w mod d, still inside its group), so one popcount counts them all. Every temporary is
    an (rows, n) array, contiguous: no reduction over a short axis.
    """
    m, k = za.shape
    n = zb.shape[1]
    words = _cdiv(k, 64)
    a, b = _pack_rows(za, words), _pack_rows(zb.T, words)
    bt = np.ascontiguousarray(b.T)  # (words, n)
    top = np.uint64(sum(1 << i for i in range(d - 1, 64, d)))
    low = ~top
    if d > 1:
        a_low, b_low = a & low, bt & low
    out = np.zeros((m, n), np.int64)
    step = max(1, _CHUNK_ELEMS // max(1, n))
    for r0 in range(0, m, step):  # chunks of rows bound the (rows, n) temporaries
        total = out[r0:r0 + step]
        merged = None
        for w in range(words):
            col = slice(w, w + 1)
            if d == 1:  # every pair is its own window
                total += np.bitwise_count(a[r0:r0 + step, col] & bt[w])
                continue
            y = a_low[r0:r0 + step, col] & b_low[w]
            y += low
            y |= a[r0:r0 + step, col] & bt[w]
            y &= top
            if w % d:
                y >>= np.uint64(w % d)
            merged = y if merged is None else np.bitwise_or(merged, y, out=merged)
            if w % d == d - 1 or w == words - 1:
                total += np.bitwise_count(merged)
                merged = None
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
    za, zb = skip_masks(A, B, skip, cfg)
    eff = effectual_macs(za, zb, m, n, k)
    folds = _cdiv(m, cfg.R) * _cdiv(n, cfg.C)
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
