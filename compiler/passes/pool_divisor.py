"""Average pooling that leaves the padding out of its divisor, in the form the kernels take.

With ``count_include_pad = false`` (Relax's default, PyTorch's option) a window that
overlaps the padding divides by the number of input elements it covers, not by
``KH * KW``. The pooling kernels divide by ``KH * KW``; the divisors differ only by a
factor that depends on the window's position, so :func:`divide_by_covered` rewrites the op
as the kernel's and a product with the constant ``KH * KW / covered`` over the output
plane (broadcast over batch and channels)::

    %y = graph.avg_pool2d %x {kernel_size = [3, 3], stride = [2, 2], padding = [1, 1],
                              count_include_pad = false} : tensor<1x2x5x5xf32> -> tensor<1x2x3x3xf32>

becomes ``%s = graph.avg_pool2d %x {... count_include_pad = true}`` and its product with
``graph.constant {value = dense<[[2.25, 1.5, 2.25, 1.5, 1.0, ...]]>} : () ->
tensor<1x9xf32>`` over ``%s`` reshaped to rows of planes (2x9), reshaped back; the
backward scales the incoming gradient by the same constant first (each window's share is
``g / covered``). ``compile_module`` applies it; the interpreter gives
the same values before and after, up to the rounding of the extra product.
"""

from __future__ import annotations

import numpy as np

from ..dialect import attrs_of
from ..interp_conv import avg_divisor
from ..ir import DenseElements, Operation, TensorType, Value
from .base import OpEmitter

POOLS = ("graph.avg_pool2d", "graph.avg_pool2d_backward")


def divide_by_covered(op: Operation) -> list[Value] | None:
    if op.name not in POOLS or op.attributes.get("count_include_pad", True):
        return None
    x = op.operands[0] if op.name == "graph.avg_pool2d" else op.operands[1]
    out = op.results[0].type if op.name == "graph.avg_pool2d" else op.operands[0].type
    if not (isinstance(x.type, TensorType) and isinstance(out, TensorType)):
        return None
    a = attrs_of(op)
    kh, kw = (int(v) for v in a["kernel_size"])  # type: ignore[union-attr]
    oh, ow = out.shape[2:]
    # the interpreter's own divisor: the input elements each window covers, (OH, OW)
    covered = np.asarray(avg_divisor(np.zeros((1, 1, *x.type.shape[2:]), np.float32), a))[0, 0]
    e = OpEmitter(op)
    attrs = {**op.attributes, "count_include_pad": True}
    if (covered == kh * kw).all():  # no window reaches the padding
        return [e(op.name, *op.operands, **attrs)]
    scale = (kh * kw / covered).astype(np.float32).reshape(1, oh * ow)
    c = e("graph.constant", value=DenseElements(scale, TensorType(scale.shape)))

    def scaled(v: Value) -> Value:  # as rows of planes, so the scale is a row broadcast
        n, ch = v.type.shape[:2]  # type: ignore[union-attr]
        rows = e("graph.reshape", v, shape=[n * ch, oh * ow])
        return e("graph.reshape", e("graph.mul", rows, c), shape=[n, ch, oh, ow])

    if op.name == "graph.avg_pool2d":
        return [scaled(e(op.name, x, **attrs))]
    return [e(op.name, scaled(op.operands[0]), x, **attrs)]
