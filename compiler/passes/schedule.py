"""``schedule``: decide how each op that produces code is ordered after the previous one and
record it as ``acf_sync`` (see :mod:`acf.compiler.dialects.tiled`).

Inside an op, clusters work on disjoint output tiles and the units of a cluster are ordered
by dependency tokens derived from their on-chip slot accesses (``codegen.schedule``).
Between ops the edge is a ``barrier``: the later op may read what the earlier one stored to
DRAM, and every kernel allocates its scratchpad slots and token ids afresh, which is only
safe once the previous kernel's instructions have ended. The first op needs nothing
(``none``). ``acf_deps`` lists the ids (body indices) of the earlier ops whose results the
op reads: the data edges a barrier covers, for readers and future token-level schedules.

After ``schedule``::

    %y = graph.linear %x, %w {..., acf_sync = "none", acf_deps = []} : ...
    %z = graph.relu %y {..., acf_sync = "barrier", acf_deps = [0]} : ...
"""

from __future__ import annotations

from ..dialects.tiled import SYNC, code_ops
from ..ir import Module, Value
from .base import ModulePass

DEPS = "acf_deps"


class Schedule(ModulePass):
    """Annotate the synchronization between consecutive ops."""

    name = "schedule"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            ids: dict[Value, int] = {}
            first = True
            for op_id, op in code_ops(func):
                deps = sorted({ids[v] for v in op.operands if v in ids})
                op.attributes[SYNC] = "none" if first else "barrier"
                op.attributes[DEPS] = deps
                ids.update((r, op_id) for r in op.results)
                first = False
