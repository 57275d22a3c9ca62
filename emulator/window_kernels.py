"""Compiled kernels for the per-output lookahead-window counts (docs/timing.md section 3).

An output's PE takes ``c(i, j) = sum_w max(1, E_w)`` cycles, ``E_w`` the effectual pairs
of window ``w`` (an operand whose zeros are not skipped counts as all ones). That is
``E + Z``: the effectual pairs plus the windows with none. The nonzero masks are packed
into 64-bit words, each window in its own lane of ``lane`` bits (the smallest power of two
holding ``d`` pairs, so no window straddles a word; for a power-of-two ``d`` pair k is
simply bit k). Per word, ``x = a & b`` holds the effectual pairs of its lanes,
``popcount(x)`` counts them, and the lanes with any bit set are found with one carry trick
(``((x & low) + low) | x`` sets a lane's top bit iff the lane is nonzero; ``low`` is every
bit but the lanes' top bits, and the sum cannot carry out of a lane).

numba compiles these loops because numpy cannot fuse them: numpy made five passes over an
(m, n) temporary per word, which for the common 128x128 tile with k = 256 and d = 8 took
~97 us per ``mm``, more than the functional product (~40 us); the compiled pass (packing,
counts and fold maxima) takes ~17 us, so a run with activation sparsity costs about what
a dense run costs. Integer-exact: the result is the closed form's, bit for bit (the
window-by-window and per-cycle reference tests check it). The masks are passed as C-ordered
bool arrays so each loop compiles once; compiled on first use and cached beside this file.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np

_U64 = np.uint64


def lane_bits(d: int) -> int:
    """Width of the lane that holds one window of ``d <= 64`` pairs: the smallest power of
    two >= d (a 1-bit lane is a window of one pair, which the same arithmetic handles)."""
    if not 1 <= d <= 64:
        raise ValueError(f"lookahead window of {d} pairs does not fit one 64-bit lane")
    return 1 << (d - 1).bit_length()


def layout(k: int, d: int) -> tuple[int, int, int]:
    """(windows, lanes per word, words) of a packed mask of k pairs in windows of d."""
    nw = -(-k // d)
    lanes = 64 // lane_bits(d)
    return nw, lanes, -(-nw // lanes)


@numba.extending.intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """The CPU's population count of a uint64 (LLVM ctpop)."""
    sig = numba.types.uint64(numba.types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return sig, codegen


@numba.njit(cache=True, nogil=True)
def _pack_rows(z, d, lb, lanes, words):  # pragma: no cover - compiled
    """(rows, words) uint64: pair kk of row r (set where z[r, kk]) in its window's lane."""
    rows, k = z.shape
    nw = (k + d - 1) // d
    out = np.zeros((rows, words), np.uint64)
    for r in range(rows):
        for w in range(words):
            acc = np.uint64(0)
            if lb == d:  # pair kk is bit kk: a fixed-shift loop the compiler vectorizes
                base = 64 * w
                for b in range(min(64, k - base)):
                    acc |= np.uint64(z[r, base + b]) << np.uint64(b)
            else:
                for lane in range(min(lanes, nw - w * lanes)):
                    base = (w * lanes + lane) * d
                    shift = lane * lb
                    for off in range(min(d, k - base)):
                        acc |= np.uint64(z[r, base + off]) << np.uint64(shift + off)
            out[r, w] = acc
    return out


@numba.njit(cache=True, nogil=True)
def _pack_cols(z, d, lb, lanes, words):  # pragma: no cover - compiled
    """(words, cols) uint64: pair kk of column c in its window's lane (the transpose's rows)."""
    k, cols = z.shape
    out = np.zeros((words, cols), np.uint64)
    for kk in range(k):
        win = kk // d
        w = win // lanes
        shift = np.uint64((win % lanes) * lb + kk % d)
        for c in range(cols):
            out[w, c] |= np.uint64(z[kk, c]) << shift
    return out


@numba.njit(cache=True, nogil=True)
def _counts(za, zb, d, lb, lanes, words, low, top):  # pragma: no cover - compiled
    """(c, effectual): c(i, j) int32 (m, n) and the effectual pairs summed over outputs."""
    m, k = za.shape
    n = zb.shape[1]
    nw = (k + d - 1) // d
    a = _pack_rows(za, d, lb, lanes, words)
    b = _pack_cols(zb, d, lb, lanes, words)
    c = np.full((m, n), np.int32(nw - words * lanes), np.int32)  # less the padding lanes
    effectual = 0
    for i in range(m):
        for w in range(words):
            aw = a[i, w]
            for j in range(n):
                x = aw & b[w, j]
                nonempty = (((x & low) + low) | x) & top
                e = np.int32(_popcount(x))
                effectual += e
                c[i, j] += e + lanes - np.int32(_popcount(nonempty))
    return c, effectual


@numba.njit(cache=True, nogil=True)
def _line_sums(a, nw, lanes, low, top, span):  # pragma: no cover - compiled
    """For the packed lines (rows of A or columns of B) of one operand alone, the other all
    ones: (sum over blocks of ``span`` lines of the block's largest line count, effectual
    pairs of all lines)."""
    rows, words = a.shape
    total = 0
    effectual = 0
    block = 0
    for r in range(rows):
        count = nw - words * lanes
        for w in range(words):
            x = a[r, w]
            e = np.int64(_popcount(x))
            effectual += e
            count += e + lanes - np.int64(_popcount((((x & low) + low) | x) & top))
        block = max(block, count)
        if (r + 1) % span == 0 or r == rows - 1:
            total += block
            block = 0
    return total, effectual


@numba.njit(cache=True, nogil=True)
def _fold_max_sum(c, R, C):  # pragma: no cover - compiled
    """sum over R x C folds of c of the fold's largest element (c >= 0)."""
    m, n = c.shape
    total = 0
    colmax = np.empty(n, c.dtype)
    for i0 in range(0, m, R):
        colmax[:] = c[i0]
        for i in range(i0 + 1, min(i0 + R, m)):
            for j in range(n):
                colmax[j] = max(colmax[j], c[i, j])
        for j0 in range(0, n, C):
            total += colmax[j0:j0 + C].max()
    return total


@cache
def _masks(d: int) -> tuple[int, int, np.uint64, np.uint64]:
    """(lane bits, lanes per word, low, top) of windows of d pairs."""
    lb = lane_bits(d)
    lanes = 64 // lb
    top = _U64(sum(1 << (lb * i + lb - 1) for i in range(lanes)))
    return lb, lanes, ~top, top


def _bool_c(z: np.ndarray) -> np.ndarray:
    """z as a writable C-ordered bool array (itself when it is one already)."""
    f = z.flags
    return z if z.dtype == np.bool_ and f.c_contiguous and f.writeable else np.not_equal(z, 0, order="C")


def window_cycles(za: np.ndarray | None, zb: np.ndarray | None, m: int, n: int, k: int, d: int
                  ) -> tuple[np.ndarray, int]:
    """(c, effectual) for the nonzero masks za (m, k) and zb (k, n), None where an operand
    counts as all ones: c(i, j) = sum over windows of d pairs of max(1, effectual pairs),
    int32 (m, n), and the effectual pairs over all outputs; 1 <= d <= 64.

    The masks reach the compiled loop as C-ordered bool arrays, whatever they were given as
    (0/1 floats, a transposed view), so it is compiled once, not per layout."""
    if k == 0:
        return np.zeros((m, n), np.int32), 0
    za = np.ones((m, k), bool) if za is None else _bool_c(za)
    zb = np.ones((k, n), bool) if zb is None else _bool_c(zb)
    lb, lanes, low, top = _masks(d)
    c, effectual = _counts(za, zb, d, lb, lanes, layout(k, d)[2], low, top)
    return c, int(effectual)


def fold_cycles(za: np.ndarray | None, zb: np.ndarray | None, m: int, n: int, k: int, d: int,
                R: int, C: int) -> tuple[int, int]:
    """(sum over R x C folds of the fold's largest c, effectual pairs): the MAC array's
    busy cycles of one ``mm`` (docs/timing.md section 3). With one operand all ones, c
    depends on the row (or column) only: the folds of one fold row share their maximum."""
    if k and (za is None) != (zb is None):
        lb, lanes, low, top = _masks(d)
        nw, _, words = layout(k, d)
        if zb is None:
            a = _pack_rows(_bool_c(za), d, lb, lanes, words)
            busy, eff = _line_sums(a, nw, lanes, low, top, R)
            return int(busy) * -(-n // C), int(eff) * n
        b = np.ascontiguousarray(_pack_cols(_bool_c(zb), d, lb, lanes, words).T)
        busy, eff = _line_sums(b, nw, lanes, low, top, C)
        return int(busy) * -(-m // R), int(eff) * m
    c, effectual = window_cycles(za, zb, m, n, k, d)
    return int(_fold_max_sum(c, R, C)), effectual


__all__ = ["fold_cycles", "lane_bits", "layout", "window_cycles"]
