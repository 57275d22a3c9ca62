"""``cse``: common-subexpression elimination of identical pure ops.

Two ops are the same when name, operands, attributes and result types agree (a
``sparsity`` annotation does not count). The first one stays; its location is kept.

Before::

    %a = graph.relu %x : tensor<4xf32> -> tensor<4xf32>
    %b = graph.relu %x : tensor<4xf32> -> tensor<4xf32>
    %c = graph.add %a, %b : tensor<4xf32>, tensor<4xf32> -> tensor<4xf32>

After::

    %a = graph.relu %x : tensor<4xf32> -> tensor<4xf32>
    %c = graph.add %a, %a : tensor<4xf32>, tensor<4xf32> -> tensor<4xf32>
"""

from __future__ import annotations

from collections.abc import Hashable

from ..ir import Block, Module, Operation, Value, attribute_key
from .base import ModulePass, is_pure


def op_key(op: Operation) -> Hashable:
    """What makes two pure ops interchangeable."""
    attrs = tuple(
        sorted((k, attribute_key(v)) for k, v in op.attributes.items() if k != "sparsity")
    )
    return (op.name, tuple(id(v) for v in op.operands), attrs, tuple(r.type for r in op.results))


def cse_block(block: Block) -> None:
    seen: dict[Hashable, Operation] = {}
    replace: dict[Value, Value] = {}
    duplicates: list[Operation] = []
    for op in block.ops:
        for user in op.walk():  # nested regions may read replaced values too
            user.operands = [replace.get(v, v) for v in user.operands]
        if not is_pure(op):
            continue
        key = op_key(op)
        if key in seen:
            for old, new in zip(op.results, seen[key].results):
                replace[old] = new
            duplicates.append(op)
        else:
            seen[key] = op
    for op in duplicates:  # now unused: every reader was redirected above
        op.erase()


class CommonSubexpressionElimination(ModulePass):
    """Merge identical pure ops within each function body (other dead code stays)."""

    name = "cse"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            cse_block(func.body)
