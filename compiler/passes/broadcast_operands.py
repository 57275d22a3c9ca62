"""A binary elementwise op whose two operands both broadcast, in the form the kernels take.

The elementwise kernel streams one operand tile by tile over the result and broadcasts the
other (a row, a column, a channel, a scalar); with both operands smaller than the result
(``[N, 1] * [1, C]``, or group norm over one group: ``[N, 1, 1] * [1, 1, C]``) neither
streams. :func:`expand_first_operand` rewrites such an op to broadcast its first operand
to the result's shape first (``graph.broadcast_to``), so only the second broadcasts::

    %y = graph.mul %a, %b : tensor<3x1xf32>, tensor<1x5xf32> -> tensor<3x5xf32>

becomes ``%a2 = graph.broadcast_to %a {shape = [3, 5]}`` and ``%y = graph.mul %a2, %b``.
``compile_module`` applies it; the interpreter gives the same values before and after.
"""

from __future__ import annotations

from ..ir import Operation, TensorType, Value
from .base import OpEmitter

BINARY = ("graph.add", "graph.sub", "graph.mul", "graph.div", "graph.maximum", "graph.minimum")


def expand_first_operand(op: Operation) -> list[Value] | None:
    if op.name not in BINARY or len(op.operands) != 2:
        return None
    out = op.results[0].type
    a, b = op.operands
    if not all(isinstance(v.type, TensorType) for v in (a, b)) or not isinstance(out, TensorType):
        return None
    if tuple(a.type.shape) == tuple(out.shape) or tuple(b.type.shape) == tuple(out.shape):  # type: ignore[union-attr]
        return None
    e = OpEmitter(op)
    full = e("graph.broadcast_to", a, shape=list(out.shape))
    return [e(op.name, full, b, **op.attributes)]
