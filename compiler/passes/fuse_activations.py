"""``fuse-activations``: fold a ReLU into the batch norm or add that alone feeds it.

Each elementwise op is a pass over its tensor through DRAM (memory-bound on the fabric);
a fused ReLU is one more vector op on the producer's tiles before they are stored, so the
ReLU's load and store of the whole activation go away. The producer must have no other
use of that result (the pre-activation value is then never needed).

Before::

    %y, %m, %v = graph.batch_norm %x, %w, %b : ...
    %r = graph.relu %y : tensor<8x4x2x2xf32> -> tensor<8x4x2x2xf32>
    graph.return %r, %m, %v : ...

After::

    %y, %m, %v = graph.batch_norm %x, %w, %b {activation = "relu"} : ...
    graph.return %y, %m, %v : ...
"""

from __future__ import annotations

from itertools import islice

from ..ir import Module
from .base import ModulePass

#: producers that take a fused ReLU, and which of their results it applies to
FUSABLE = {"graph.batch_norm": 0, "graph.add": 0}


class FuseActivations(ModulePass):
    """Fold ``graph.relu`` into a single-use ``graph.batch_norm`` output or ``graph.add``."""

    name = "fuse-activations"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            for op in list(func.body.ops):
                if op.name != "graph.relu":
                    continue
                (v,) = op.operands
                producer = v.defining_op
                if (producer is None or FUSABLE.get(producer.name) != v.index
                        or producer.attributes.get("activation", "none") != "none"
                        or len(list(islice(v.uses(), 2))) != 1  # the ReLU alone
                        or v.type != op.results[0].type):
                    continue
                producer.attributes["activation"] = "relu"
                op.results[0].replace_all_uses_with(v)
                op.erase()
