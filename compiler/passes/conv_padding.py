"""A convolution's input gradient whose padding reaches past its kernel, in the form the
conv kernels take.

The input gradient is a convolution of the output gradient with the flipped kernel,
padded by ``dilation * (kernel - 1) - padding`` on each side. Padding wider than the
kernel's reach (a 1x1 convolution with ``padding = 1``, say) makes that negative: the
forward convolution read zeros only, and the gradient of those zeros is thrown away.
The kernels pad, they do not crop, so :func:`narrow_wide_padding` rewrites such an op as
the input gradient of the same convolution over an input already padded by the excess
(its padding now within the kernel's reach), then a ``graph.slice`` that drops the excess
border::

    %gx = graph.conv2d_backward_input %g, %w {input_shape = [2, 4, 6, 6], padding = [1, 1],
                                              stride = [1, 1], dilation = [1, 1], groups = 1}
        : tensor<2x8x8x8xf32>, tensor<8x4x1x1xf32> -> tensor<2x4x6x6xf32>

becomes ``graph.conv2d_backward_input`` with ``input_shape = [2, 4, 8, 8]`` and
``padding = [0, 0]``, then ``graph.slice {offsets = [0, 0, 1, 1], sizes = [2, 4, 6, 6]}``.
The output size is unchanged, since ``H + 2 * padding`` is. ``compile_module`` applies it;
the interpreter gives the same values before and after.
"""

from __future__ import annotations

from ..dialect import attrs_of
from ..ir import Operation, Value
from .base import OpEmitter


def narrow_wide_padding(op: Operation) -> list[Value] | None:
    if op.name != "graph.conv2d_backward_input":
        return None
    a = attrs_of(op)
    n, c, h, w = (int(v) for v in a["input_shape"])  # type: ignore[union-attr]
    kh, kw = op.operands[1].type.shape[2:]  # type: ignore[union-attr]
    (ph, pw), (dh, dw) = ((int(v) for v in a[k]) for k in ("padding", "dilation"))  # type: ignore[union-attr]
    eh, ew = max(0, ph - dh * (kh - 1)), max(0, pw - dw * (kw - 1))
    if not (eh or ew):
        return None
    e = OpEmitter(op)
    wide = e(op.name, *op.operands, **{**op.attributes,
                                       "input_shape": [n, c, h + 2 * eh, w + 2 * ew],
                                       "padding": [ph - eh, pw - ew]})
    return [e.slice(wide, [0, 0, eh, ew], [n, c, h, w])]
