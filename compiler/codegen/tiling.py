"""Tiling: the tile sizes of a compilation, checked against the target's buffers.

One square tile side ``T`` serves every matmul dimension (TM = TN = TK = T) so that a
sparse tensor has one packed-tile grid whatever role it plays (forward weight, transposed
in the backward-data GEMM, sampled in the SDDMM weight gradient). ``T`` is the largest
multiple of the PE array (rows and columns) such that double-buffered A and B tiles plus a
double-buffered sampling tile fit the scratchpad and a double-buffered C tile fits the
accumulator. Vector kernels use tiles of at most ``T*T`` elements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from acf.isa.target import Target

F32 = 4
MAX_DIM = 65535  # rows/cols fields are 16 bits


@dataclass(frozen=True)
class Tiling:
    """``t``: the square matmul tile side; ``elems``: the vector-kernel tile budget."""

    t: int
    spad_bytes: int
    acc_bytes: int

    @property
    def elems(self) -> int:
        return self.t * self.t

    @property
    def shape(self) -> tuple[int, int]:
        return (self.t, self.t)


def matmul_spad_bytes(t: int) -> int:
    """Scratchpad bytes of the matmul kernel at tile side t: 2 x (A, B, S) tiles."""
    return 2 * 3 * t * t * F32


def matmul_acc_bytes(t: int) -> int:
    return 2 * t * t * F32


def choose_tiling(target: Target, tile: int = 0) -> Tiling:
    """The largest PE-aligned tile side that fits (or ``tile`` if given and it fits).

    Raises ``ValueError`` saying which buffer is too small.
    """
    c = target.cluster
    spad, acc = int(c.spad_bytes), int(c.acc_bytes)
    step = math.lcm(int(c.pe_rows), int(c.pe_cols))
    if tile < 0:
        raise ValueError(f"tile side {tile}: must be positive (or 0 for the tiler's choice)")
    if tile:
        if matmul_spad_bytes(tile) > spad or matmul_acc_bytes(tile) > acc:
            raise ValueError(
                f"tile {tile}x{tile} needs {matmul_spad_bytes(tile)} scratchpad bytes and "
                f"{matmul_acc_bytes(tile)} accumulator bytes; {target.name} has {spad} and {acc}"
            )
        return Tiling(tile, spad, acc)
    t = step
    if matmul_spad_bytes(t) > spad or matmul_acc_bytes(t) > acc:
        t = 1
        while matmul_spad_bytes(t + 1) <= spad and matmul_acc_bytes(t + 1) <= acc:
            t += 1
        if matmul_spad_bytes(t) > spad:
            raise ValueError(
                f"{target.name}: the scratchpad ({spad} bytes) cannot hold one "
                "double-buffered 1x1 tile set"
            )
        return Tiling(t, spad, acc)
    while (
        matmul_spad_bytes(t + step) <= spad
        and matmul_acc_bytes(t + step) <= acc
        and t + step <= 256
    ):
        t += step
    return Tiling(t, spad, acc)


def gemm_output_tile(m: int, n: int, t: int, clusters: int, batch: int = 1, *, step_m: int = 1,
                     step_n: int = 1, split_m: bool = True, split_n: bool = True) -> tuple[int, int]:
    """(rows, cols) of a GEMM's output tiles: at most ``t`` each, equal along each dimension
    (a ragged last tile leaves its cluster idle while the others finish full ones) and in
    whole PE folds (``step_m`` x ``step_n``), and split further while there are fewer tiles
    than clusters, the larger side first. A dimension whose operand (or result) is stored in
    packed ``t x t`` sparse tiles cannot be split: ``split_m`` / ``split_n`` False keep it
    at ``t``. The matmul kernel and the cost model both tile with this."""

    def even(extent: int, parts: int, step: int) -> int:
        size = -(-extent // max(1, parts))
        return min(t, -(-size // step) * step)

    def smaller(extent: int, size: int, step: int) -> int:
        """The next smaller even tile size (``size`` itself when there is none)."""
        parts = -(-extent // size) + 1
        while parts <= -(-extent // step):
            new = even(extent, parts, step)
            if new < size:
                return new
            parts += 1
        return size

    tm = even(m, -(-m // t), step_m) if split_m else t
    tn = even(n, -(-n // t), step_n) if split_n else t
    while batch * -(-m // tm) * -(-n // tn) < clusters:
        sides = []  # (current size, side, next smaller size); ties: the columns
        if split_m and (new := smaller(m, tm, step_m)) < tm:
            sides.append((tm, 0, new))
        if split_n and (new := smaller(n, tn, step_n)) < tn:
            sides.append((tn, 1, new))
        if not sides:
            break
        _, side, new = max(sides)
        if side == 0:
            tm = new
        else:
            tn = new
    return tm, tn


def k_chunk_order(k: int, t: int, cluster: int) -> list[int]:
    """The k-chunk offsets (chunks of ``t``) in the order a cluster's GEMM tile reduces them:
    rotated by the cluster id, so the clusters' concurrent loads start at different column
    offsets. DRAM channels take ``(address // interleave) % channels`` (docs/timing.md section
    6), so when the row pitch is a multiple of ``channels x interleave`` (any power-of-two
    width from 512 fp32 on acf-base) every row of a chunk's tile lands on the same few
    channels; clusters all loading the same chunk then queue on those channels while the
    others idle (the 512x512x512 GEMM on acf-wide, one output tile per cluster: 39.5k ->
    17.7k cycles with a 90 %-sparse CSR weight, 54.5k -> 44.0k dense). The matmul kernel
    (where it does not multicast: a shared tile serves every cluster's mm of one chunk, so
    they keep one order) and the cost model both order chunks with this."""
    chunks = list(range(0, k, t))
    r = cluster % len(chunks)
    return chunks[r:] + chunks[:r]


def row_block(cols: int, tiling: Tiling, buffers: int) -> int:
    """Rows per tile for a row-wise kernel (softmax...) keeping ``buffers`` tiles of
    ``rows x cols`` in the scratchpad; 0 when a single row does not fit."""
    if cols * F32 * buffers > tiling.spad_bytes or cols > MAX_DIM:
        return 0
    return max(1, min(tiling.elems // max(cols, 1), tiling.spad_bytes // (cols * F32 * buffers)))


def vector_tile(rows: int, cols: int, tiling: Tiling) -> tuple[int, int]:
    """(tile rows, tile cols) of at most ``tiling.elems`` elements for a rows x cols view."""
    tc = max(1, min(cols, tiling.elems, MAX_DIM))
    tr = max(1, min(rows, tiling.elems // tc, MAX_DIM))
    return tr, tc
