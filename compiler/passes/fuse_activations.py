"""``fuse-activations``: fold a ReLU into the batch norm, add or GEMM (linear, matmul) that
alone feeds it, a residual add into the batch norm whose output it alone consumes, and a
ReLU's backward into the batch norm's backward that alone consumes it.

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

Residual: ``%o = graph.add %y, %r {activation = "relu"}`` of a batch norm's output ``%y``
used nowhere else becomes ``graph.batch_norm %x, %w, %b, %r {activation = "relu"}``: the
batch norm's output is not written and read back.

Backward: the masked gradient is written by ``relu_backward`` and read back by the batch
norm's backward; folded, the batch norm's backward reads the gradient and the ReLU's output
(whose pass it already makes over its tiles) and the masked gradient never reaches DRAM::

    %gr = graph.relu_backward %g, %y : ...
    %gx, %gw, %gb = graph.batch_norm_backward %gr, %x, %w, %m, %v : ...

becomes ``%gx, %gw, %gb = graph.batch_norm_backward %g, %x, %w, %m, %v, %y {activation =
"relu"}``. Where the masked gradient has other uses, a sum of two gradients that only the
ReLU's backward reads is folded into it instead: ``relu_backward(add(a, b), y)`` becomes
``relu_backward(a, y, b)``.
"""

from __future__ import annotations

from itertools import islice

from ..ir import Module, Operation
from .base import ModulePass

#: producers that take a fused ReLU, and which of their results it applies to (a GEMM
#: applies it to each output tile in the accumulator, after the bias, before the store)
FUSABLE = {"graph.batch_norm": 0, "graph.add": 0, "graph.linear": 0, "graph.matmul": 0}


class FuseActivations(ModulePass):
    """Fold ``graph.relu`` into a single-use ``graph.batch_norm`` output or ``graph.add``, a
    ``graph.add`` into the batch norm whose single-use output it adds, and a single-use
    ``graph.relu_backward`` into the ``graph.batch_norm_backward`` it feeds."""

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
            ops = list(func.body.ops)
            position = {id(o): i for i, o in enumerate(ops)}  # erasing keeps the order
            for op in ops:
                if op.name == "graph.relu_backward" and not _fold_into_bn_backward(op):
                    _fold_add_into_relu_backward(op)
                elif op.name == "graph.add":
                    _fold_into_bn(op, position)


def _fold_into_bn(op: Operation, position: dict[int, int]) -> None:
    """``add(batch_norm(x).out, r)`` (and its ReLU) where that output has no other use: the
    batch norm adds r itself. Of two such batch norms, the later one takes the other's
    output (which must be defined before it; ``position``: each op's place in the body)."""
    a, b = op.operands
    v = op.results[0]
    if a.type != v.type or b.type != v.type:
        return
    for bn_value, other in sorted(((a, b), (b, a)), reverse=True,
                                  key=lambda pair: position.get(id(pair[0].defining_op), -1)):
        bn = bn_value.defining_op
        if (bn is None or bn.name != "graph.batch_norm" or bn_value.index != 0
                or len(bn.operands) != 3 or bn.attributes.get("activation", "none") != "none"
                or len(list(islice(bn_value.uses(), 2))) != 1):
            continue
        source = other.defining_op
        if source is not None and position.get(id(source), len(position)) > position[id(bn)]:
            continue  # the residual is computed after the batch norm
        bn.operands.append(other)
        bn.attributes["activation"] = op.attributes.get("activation", "none")
        v.replace_all_uses_with(bn_value)
        op.erase()
        return


def _fold_into_bn_backward(op: Operation) -> bool:
    """``relu_backward(g, y)`` feeding only a batch norm's backward as its gradient: the
    batch norm's backward takes g and y and applies the mask itself."""
    if len(op.operands) != 2:
        return False
    g, y = op.operands
    v = op.results[0]
    uses = list(islice(v.uses(), 2))
    if len(uses) != 1:
        return False
    user, index = uses[0]
    if (user.name != "graph.batch_norm_backward" or index != 0 or len(user.operands) != 5
            or user.attributes.get("activation", "none") != "none"
            or g.type != v.type or y.type != v.type):
        return False
    user.operands[0] = g
    user.operands.append(y)
    user.attributes["activation"] = "relu"
    op.erase()
    return True


def _fold_add_into_relu_backward(op: Operation) -> None:
    """``relu_backward(add(a, b), y)`` with the sum used nowhere else (two gradients of a
    residual branch point): ``relu_backward(a, y, b)`` adds them on its tiles."""
    if len(op.operands) != 2:
        return
    g, _ = op.operands
    add = g.defining_op
    if (add is None or add.name != "graph.add" or add.attributes.get("activation", "none") != "none"
            or len(list(islice(g.uses(), 2))) != 1
            or any(x.type != g.type for x in add.operands)):
        return
    a, b = add.operands
    op.operands[0] = a
    op.operands.append(b)
    add.erase()
