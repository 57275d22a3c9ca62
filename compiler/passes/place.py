"""``place{policy=round-robin|balanced}``: choose how each op's output tiles map to clusters
and record it as ``acf_place`` (see :mod:`acf.compiler.dialects.tiled`); ``balanced`` is the
default, as ``CompileOptions`` spreads tiles over the row ports by default.

``round-robin``: tile ``i`` goes to cluster ``i mod clusters``. ``balanced``: longest
processing time first over the row ports and clusters (``codegen.placement.balanced``),
weighing each GEMM output tile by the bytes its loads move (the activation rows, dense,
plus the weight rows at the weight's ``density`` argument attribute when it is sparse);
the tiles of other kernels weigh the same.

Before::

    %y = graph.linear %x, %w {acf_tile = [32, 32, 32]} : ...

After ``place{policy=balanced}``::

    %y = graph.linear %x, %w {acf_tile = [32, 32, 32], acf_place = "balanced"} : ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..codegen.placement import Placement, balanced, round_robin
from ..dialects.tiled import PLACE, POLICIES, code_ops, tile_of
from ..ir import Module, Operation, TensorType, Value
from .base import ModulePass, PassOption

GEMMS = ("graph.linear", "graph.matmul", "graph.sddmm")


def _density(value: Value) -> float:
    """The measured density of a sparse function argument (1.0 when dense or unknown)."""
    t = value.type
    if not isinstance(t, TensorType) or t.encoding is None or value.defining_op is not None:
        return 1.0
    attrs = value.owner.arg_attributes[value.index]  # type: ignore[union-attr]
    return float(attrs.get("density", 1.0))  # type: ignore[arg-type]


def gemm_tile_load(op: Operation, t: int, t_n: int = 0) -> Callable[[Any], float]:
    """Bytes the loads of one output tile ``(batch, i0, j0)`` (at most ``t x t_n``, ``t_n``
    defaulting to ``t``) of a GEMM op move."""
    t_n = t_n or t
    a, b = op.operands[0].type.shape, op.operands[1].type.shape  # type: ignore[union-attr]
    ta = bool(op.attributes.get("transpose_a", False))
    tb = op.name == "graph.linear" or bool(op.attributes.get("transpose_b", False))
    m, k = (a[-1], a[-2]) if ta else (a[-2] if len(a) > 1 else 1, a[-1])
    if op.name == "graph.linear":  # x[..., K]: every leading dim is a row (the kernel's view)
        m = math.prod(a[:-1])
    n = b[-2] if tb else b[-1]
    density = _density(op.operands[1])

    def load(tile: Any) -> float:
        _, i0, j0 = tile
        return 4.0 * k * (min(t, m - i0) + density * min(t_n, n - j0))

    return load


def placement_for(op: Operation) -> Placement:
    """The placement function of an annotated op (``lower-to-acf`` calls this)."""
    from ..dialects.tiled import place_of

    if place_of(op) == "round-robin":
        return round_robin
    if op.name in GEMMS:
        return balanced(gemm_tile_load(op, *tile_of(op)[:2]))
    return balanced(lambda tile: 1.0)


def _policy(text: str) -> str:
    if text not in POLICIES:
        raise ValueError(text)
    return text


_policy.__name__ = " or ".join(POLICIES)  # read by PassOption's error message


class Place(ModulePass):
    """Annotate each op that produces code with its tile placement policy."""

    name = "place"
    options = {"policy": PassOption(_policy, "balanced",  # type: ignore[arg-type]
                                    "round-robin or balanced")}
    policy: str

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for _, op in code_ops(func):
                op.attributes[PLACE] = self.policy
