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
