"""``dce``: remove ops whose results are never used (every ``graph`` op is pure).

Before::

    %a = graph.relu %x : tensor<4xf32> -> tensor<4xf32>
    %b = graph.exp %a : tensor<4xf32> -> tensor<4xf32>
    graph.return %x : tensor<4xf32>

After::

    graph.return %x : tensor<4xf32>
"""

from __future__ import annotations

from ..ir import Module
from .base import ModulePass, erase_dead_ops


class DeadCodeElimination(ModulePass):
    """Erase unused pure ops, last to first, so whole dead chains go in one sweep."""

    name = "dce"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            erase_dead_ops(func)
