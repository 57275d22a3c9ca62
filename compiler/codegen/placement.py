"""Placement: which cluster computes each output tile of a kernel.

Kept apart so a NoC-aware placement (keeping tiles near their DRAM port, or near the
cluster that holds an operand) can replace :func:`round_robin`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from acf.isa.target import Target

T = TypeVar("T")
Placement = Callable[[Sequence[T], Target], list[tuple[int, T]]]


def clusters_of(target: Target) -> int:
    gx, gy = target.fabric.grid
    return int(gx) * int(gy)


def round_robin(tiles: Sequence[T], target: Target) -> list[tuple[int, T]]:
    """Tile ``i`` goes to cluster ``i mod clusters`` (cluster id = y * X + x)."""
    n = clusters_of(target)
    return [(i % n, tile) for i, tile in enumerate(tiles)]


def single(tiles: Sequence[T], target: Target) -> list[tuple[int, T]]:
    """Everything on cluster 0 (kernels that reduce across tiles)."""
    return [(0, tile) for tile in tiles]


def row_spread(tiles: Sequence[T], target: Target) -> list[tuple[int, T]]:
    """Tile ``i`` goes to row ``i mod Y``, column ``(i // Y) mod X``: consecutive tiles use
    different rows, so their memory traffic enters through different ports (docs/timing.md
    section 7: traffic to row y crosses port ``P_y``), nearest columns first."""
    gx, gy = (int(v) for v in target.fabric.grid)
    return [(((i % gy) * gx + (i // gy) % gx), tile) for i, tile in enumerate(tiles)]


def balanced(load: Callable[[T], float]) -> Placement:
    """A NoC-aware placement from a per-tile load (encoded bytes the tile's loads move).

    Longest-processing-time greedy: tiles by decreasing load, each to the row whose memory
    port carries the least so far, and in that row to the least-loaded cluster (the nearer
    one on ties: fewer hops from the port). Each cluster keeps its tiles in program order.
    Balances the per-link load of the row ports and the per-cluster work at once.
    """

    def place(tiles: Sequence[T], target: Target) -> list[tuple[int, T]]:
        gx, gy = (int(v) for v in target.fabric.grid)
        weights = [float(load(t)) for t in tiles]
        row = [0.0] * gy
        cl = [0.0] * (gx * gy)
        where = [0] * len(tiles)
        for i in sorted(range(len(tiles)), key=lambda i: (-weights[i], i)):
            y = min(range(gy), key=lambda y: (row[y], y))
            x = min(range(gx), key=lambda x: (cl[y * gx + x], x))
            where[i] = y * gx + x
            row[y] += weights[i]
            cl[y * gx + x] += weights[i]
        return [(where[i], t) for i, t in enumerate(tiles)]

    return place
