"""Tiling: the tile sizes of a compilation, checked against the target's buffers.

A GEMM kernel tiles its output in at most ``M x N`` tiles and reduces in k-chunks of at
most ``K``. Sparse tensors are packed in square ``T x T`` tiles, ``T = min(M, N, K)``, so
that a sparse tensor has one packed-tile grid whatever role it plays (forward weight,
transposed in the backward-data GEMM, sampled in the SDDMM weight gradient); a GEMM
dimension that runs along a packed sparse operand or result is tiled at ``T`` instead of
its own size (a k-chunk of a sparse weight covers one packed tile). The tiler's choice is
square (M = N = K = T): the largest multiple of the PE array (rows and columns) such that
double-buffered A and B tiles plus a double-buffered sampling tile fit the scratchpad and
a double-buffered C tile fits the accumulator. The conv kernels tile with ``T``; vector
kernels use tiles of at most ``T*T`` elements.

For one function, :func:`tiler_choice` narrows that side where an optimizer update over
packed tiles would not fit the scratchpad, or where it would cut the M-column groups of an
N:M tensor; :func:`check_nm_tile` refuses a side (forced or not) that still cuts them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from acf.isa.symbols import as_2d_shape
from acf.isa.target import Target

from ..ir import FuncOp, Operation, Value
from ..sparse_encoding import encoding_to_format
from .errors import error_at

F32 = 4
MAX_DIM = 65535  # rows/cols fields are 16 bits


@dataclass(frozen=True)
class Tiling:
    """``t``: the packed sparse tile side (and the conv kernels'); ``m``, ``n``, ``k``: the
    GEMM kernel's output tile and k-chunk bounds (0: ``t``); ``elems``: the vector-kernel
    tile budget."""

    t: int
    spad_bytes: int
    acc_bytes: int
    m: int = 0
    n: int = 0
    k: int = 0

    def __post_init__(self) -> None:
        for name in ("m", "n", "k"):
            if not getattr(self, name):
                object.__setattr__(self, name, self.t)

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.m, self.n, self.k

    @property
    def elems(self) -> int:
        """At most ``t * t``: the GEMM tile set's budget holds six such tiles in the
        scratchpad and two in the accumulator whatever ``m``, ``n``, ``k`` are."""
        return self.t * self.t

    @property
    def shape(self) -> tuple[int, int]:
        return (self.t, self.t)


def gemm_bytes(m: int, n: int, k: int) -> tuple[int, int]:
    """(scratchpad, accumulator) bytes of a double-buffered m x n x k GEMM tile set: A, B and
    the sampling tile S in the scratchpad, C in the accumulator."""
    return 2 * F32 * (m * k + k * n + m * n), 2 * F32 * m * n


def matmul_spad_bytes(t: int) -> int:
    """Scratchpad bytes of the matmul kernel at tile side t: 2 x (A, B, S) tiles."""
    return gemm_bytes(t, t, t)[0]


def matmul_acc_bytes(t: int) -> int:
    return gemm_bytes(t, t, t)[1]


def pe_step(target: Target) -> int:
    """The PE alignment of a tile side: a multiple of both PE array dimensions."""
    return math.lcm(int(target.cluster.pe_rows), int(target.cluster.pe_cols))


def choose_tiling(target: Target, tile: int | tuple[int, int, int] = 0) -> Tiling:
    """The largest PE-aligned tile side that fits (or ``tile`` if given and it fits: one
    side, or GEMM sizes ``(m, n, k)``, whose smallest is the packed side).

    Raises ``ValueError`` saying which buffer is too small.
    """
    c = target.cluster
    spad, acc = int(c.spad_bytes), int(c.acc_bytes)
    step = pe_step(target)
    if isinstance(tile, tuple | list):
        m, n, k = (int(v) for v in tile)
        if len(set(tile)) == 1:
            return choose_tiling(target, m)
        if min(m, n, k) <= 0:
            raise ValueError(f"tile {m}x{n}x{k}: sizes must be positive")
        need_spad, need_acc = gemm_bytes(m, n, k)
        if need_spad > spad or need_acc > acc:
            raise ValueError(f"tile {m}x{n}x{k} needs {need_spad} scratchpad bytes and "
                             f"{need_acc} accumulator bytes; {target.name} has {spad} and {acc}")
        return Tiling(min(m, n, k), spad, acc, m, n, k)
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


#: ``update_fits(op, t, spad_bytes)``: False for an optimizer update over packed ``t x t``
#: tiles that does not fit a scratchpad of ``spad_bytes`` (``kernels.optim.packed_update_fits``)
UpdateFits = Callable[[Operation, int, int], bool]


def fit_packed_updates(func: FuncOp, target: Target, tiling: Tiling,
                       update_fits: UpdateFits) -> Tiling:
    """The tiler's side, smaller where an optimizer update over packed sparse tiles would
    not fit the scratchpad with it (a packed tile loads whole; Adam keeping a pattern holds
    nine of them): the largest PE-aligned side that fits every such update.

    ``update_fits`` is the optimizer kernel's rule, passed in rather than imported: the
    kernels import this module."""
    step = pe_step(target)
    t = tiling.t
    while t > step and not all(update_fits(op, t, tiling.spad_bytes) for op in func.body.ops):
        t -= step
    return tiling if t == tiling.t else choose_tiling(target, t)


def _nm_group(v: Value) -> int:
    """M of a value stored N:M (its packed tiles hold whole groups of M columns), else 0."""
    enc = getattr(v.type, "encoding", None)
    if enc is None:
        return 0
    try:
        match = re.fullmatch(r"nm\d+:(\d+)", encoding_to_format(enc))
    except ValueError:
        return 0
    return int(match[1]) if match else 0


def _nm_values(func: FuncOp) -> list[Value]:
    values = list(func.arguments) + [r for op in func.body.ops for r in op.results]
    return [v for v in values if _nm_group(v)]


def _splits_groups(v: Value, side: int) -> bool:
    """Whether packed tiles of ``side`` columns cut an N:M value's groups of M columns (a
    value no wider than the side is one tile: nothing to cut)."""
    m = _nm_group(v)
    return bool(m) and side < as_2d_shape(v.type.shape)[1] and side % m != 0  # type: ignore[union-attr]


def fit_nm_groups(func: FuncOp, target: Target, tiling: Tiling) -> Tiling:
    """The tiler's side, smaller where it would cut the M-column groups of an N:M tensor
    wider than one tile (a packed tile holds whole groups, e.g. nm2:8 on acf-small, whose
    side is 52): the largest multiple of every such M, and of the PE array where one fits,
    not above it."""
    groups = {_nm_group(v) for v in _nm_values(func) if _splits_groups(v, tiling.t)}
    if not groups:
        return tiling
    group = math.lcm(*groups)
    step = pe_step(target)
    for unit in (math.lcm(group, step), group):
        t = tiling.t // unit * unit
        if t:
            return tiling if t == tiling.t else choose_tiling(target, t)
    return tiling  # a side below one group: check_nm_tile reports the tensors it splits


def tiler_choice(func: FuncOp, target: Target, update_fits: UpdateFits) -> Tiling:
    """The tiling compile_module picks without a forced tile (and the tile pass records);
    ``update_fits``: the optimizer kernel's rule (:func:`fit_packed_updates`)."""
    tiling = choose_tiling(target)
    return fit_nm_groups(func, target, fit_packed_updates(func, target, tiling, update_fits))


def check_nm_tile(where: Operation | FuncOp, v: Value, tiling: Tiling, tile: object) -> None:
    """A packed tile side narrower than an N:M tensor must hold whole groups of M columns:
    the format cannot store part of a group. ``tile``: the forced tile (0: none), named in
    the error."""
    if not _splits_groups(v, tiling.t):
        return
    m = _nm_group(v)
    cols = as_2d_shape(v.type.shape)[1]  # type: ignore[union-attr]
    forced = "x".join(map(str, tile)) if isinstance(tile, tuple | list) else str(tile)
    if not tile:  # the tiler's own side (no tile was forced) still cut the groups
        side = f"the tiler's side {tiling.t}"
    else:
        side = f"tile {forced}" if forced == str(tiling.t) else f"tile {forced} (packed side {tiling.t})"
    name = f"'%{v.name_hint}'" if v.name_hint else "a value"
    raise error_at(where, f"{side} splits the groups of {m} columns of {name}, stored "
                          f"N:M with M = {m} (a packed tile holds whole groups): use a tile "
                          f"side that is a multiple of {m}, or at least {cols}")


def gemm_output_tile(m: int, n: int, t: int, clusters: int, batch: int = 1, *, step_m: int = 1,
                     step_n: int = 1, split_m: bool = True, split_n: bool = True,
                     t_n: int = 0) -> tuple[int, int]:
    """(rows, cols) of a GEMM's output tiles: at most ``t`` rows and ``t_n`` (default ``t``)
    columns, equal along each dimension
    (a ragged last tile leaves its cluster idle while the others finish full ones) and in
    whole PE folds (``step_m`` x ``step_n``), and split further while there are fewer tiles
    than clusters, the larger side first. A dimension whose operand (or result) is stored in
    packed sparse tiles cannot be split: ``split_m`` / ``split_n`` False keep it at its
    bound (the caller passes the packed side). The matmul kernel and the cost model both
    tile with this."""
    t_m, t_n = t, t_n or t

    def even(extent: int, parts: int, step: int, cap: int) -> int:
        size = -(-extent // max(1, parts))
        return min(cap, -(-size // step) * step)

    def smaller(extent: int, size: int, step: int, cap: int) -> int:
        """The next smaller even tile size (``size`` itself when there is none)."""
        parts = -(-extent // size) + 1
        while parts <= -(-extent // step):
            new = even(extent, parts, step, cap)
            if new < size:
                return new
            parts += 1
        return size

    tm = even(m, -(-m // t_m), step_m, t_m) if split_m else t_m
    tn = even(n, -(-n // t_n), step_n, t_n) if split_n else t_n
    while batch * -(-m // tm) * -(-n // tn) < clusters:
        sides = []  # (current size, side, next smaller size); ties: the columns
        if split_m and (new := smaller(m, tm, step_m, t_m)) < tm:
            sides.append((tm, 0, new))
        if split_n and (new := smaller(n, tn, step_n, t_n)) < tn:
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
