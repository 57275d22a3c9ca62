"""Axis helpers shared by the kernels (thin wrappers over the graph shape rules)."""

from __future__ import annotations

from ..shape_rules import normalize_axes


def normalize(axes: list[int], rank: int) -> list[int]:
    """Sorted non-negative axes; empty means all."""
    return normalize_axes(axes, rank)


def last_axis(axis: int, rank: int) -> bool:
    return normalize_axes([axis], rank) == [rank - 1]
