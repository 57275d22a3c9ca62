"""Softmax and log-softmax (and their backward ops) over an axis other than the last, in the
form the kernels take.

The row-wise kernels reduce along the last axis. :func:`move_axis_last` rewrites an op over
axis ``a`` of a rank-``r`` tensor as a ``graph.transpose`` that moves ``a`` last, the op
over the last axis, and the inverse ``graph.transpose``::

    %y = graph.softmax %x {axis = 1} : tensor<2x5x3xf32> -> tensor<2x5x3xf32>

becomes ``%t = graph.transpose %x {perm = [0, 2, 1]}``, ``%s = graph.softmax %t {axis = -1}``
and ``%y = graph.transpose %s {perm = [0, 2, 1]}``. ``compile_module`` applies it; the
interpreter gives the same values before and after.
"""

from __future__ import annotations

from ..ir import Operation, TensorType, Value
from .base import OpEmitter

AXIS_OPS = ("graph.softmax", "graph.log_softmax", "graph.softmax_backward",
            "graph.log_softmax_backward")


def move_axis_last(op: Operation) -> list[Value] | None:
    if op.name not in AXIS_OPS:
        return None
    t = op.operands[0].type
    if not isinstance(t, TensorType) or t.rank < 2:
        return None
    axis = int(op.attributes.get("axis", -1))  # type: ignore[arg-type]
    axis %= t.rank
    if axis == t.rank - 1:
        return None
    perm = [d for d in range(t.rank) if d != axis] + [axis]
    back = [perm.index(d) for d in range(t.rank)]
    e = OpEmitter(op)
    moved = [e("graph.transpose", v, perm=perm) for v in op.operands]
    out = e(op.name, *moved, **{**op.attributes, "axis": -1})
    return [e("graph.transpose", out, perm=back)]
