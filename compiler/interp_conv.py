"""Numpy semantics of convolution and pooling (NCHW, OIHW), via im2col / col2im.

``graph.conv2d`` gathers the input into columns ``[N, groups, C/g*KH*KW, OH*OW]`` and runs
one batched matmul; the backward ops scatter columns back (col2im) or contract them with
the output gradient.
"""

from __future__ import annotations

import numpy as np

from .interp import f32, semantics
from .shape_rules import conv2d_shape


def _windows(
    xp: np.ndarray,
    kh: int,
    kw: int,
    out_hw: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
):
    """Yield ((i, j), slice_h, slice_w): the strided view of padded input for kernel tap i, j."""
    oh, ow = out_hw
    for i in range(kh):
        for j in range(kw):
            h0, w0 = i * dilation[0], j * dilation[1]
            yield (
                (i, j),
                slice(h0, h0 + stride[0] * (oh - 1) + 1, stride[0]),
                slice(w0, w0 + stride[1] * (ow - 1) + 1, stride[1]),
            )


def _pad(x: np.ndarray, padding: tuple[int, int], value: float = 0.0) -> np.ndarray:
    ph, pw = padding
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _conv_params(attrs):
    return (
        tuple(attrs["stride"]),
        tuple(attrs["padding"]),
        tuple(attrs["dilation"]),
        int(attrs["groups"]),
    )


def _im2col(x: np.ndarray, wshape: tuple[int, ...], attrs) -> np.ndarray:
    """Columns of shape [N, groups, C/g*KH*KW, OH*OW]."""
    stride, padding, dilation, groups = _conv_params(attrs)
    n, c = x.shape[:2]
    _, _, oh, ow = conv2d_shape(x.shape, wshape, attrs)
    kh, kw = wshape[2:]
    xp = _pad(x, padding)
    cols = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for (i, j), sh, sw in _windows(xp, kh, kw, (oh, ow), stride, dilation):
        cols[:, :, i, j] = xp[:, :, sh, sw]
    return cols.reshape(n, groups, (c // groups) * kh * kw, oh * ow)


def _col2im(cols: np.ndarray, xshape: tuple[int, ...], wshape: tuple[int, ...], attrs):
    stride, padding, dilation, _ = _conv_params(attrs)
    n, c, h, w = xshape
    _, _, oh, ow = conv2d_shape(xshape, wshape, attrs)
    kh, kw = wshape[2:]
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    xp = np.zeros((n, c, h + 2 * padding[0], w + 2 * padding[1]), cols.dtype)
    for (i, j), sh, sw in _windows(xp, kh, kw, (oh, ow), stride, dilation):
        xp[:, :, sh, sw] += cols[:, :, i, j]
    return xp[:, :, padding[0] : padding[0] + h, padding[1] : padding[1] + w]


def _grouped_weight(w: np.ndarray, groups: int) -> np.ndarray:
    o = w.shape[0]
    return w.reshape(groups, o // groups, -1)


@semantics("graph.conv2d")
def _conv2d(xs, attrs, op):
    x, w = xs[0], xs[1]
    groups = int(attrs["groups"])
    cols = _im2col(x, w.shape, attrs)
    out = np.matmul(_grouped_weight(w, groups), cols)  # [N, g, O/g, OH*OW]
    n, _, oh, ow = conv2d_shape(x.shape, w.shape, attrs)
    out = out.reshape(n, w.shape[0], oh, ow)
    if len(xs) == 3:
        out = out + xs[2].reshape(1, -1, 1, 1)
    return [out]


@semantics("graph.conv2d_backward_input")
def _conv2d_backward_input(xs, attrs, op):
    g, w = xs
    groups = int(attrs["groups"])
    xshape = tuple(attrs["input_shape"])
    n, o, oh, ow = g.shape
    gg = g.reshape(n, groups, o // groups, oh * ow)
    cols = np.matmul(np.swapaxes(_grouped_weight(w, groups), -1, -2), gg)
    return [_col2im(cols, xshape, w.shape, attrs)]


@semantics("graph.conv2d_backward_weight")
def _conv2d_backward_weight(xs, attrs, op):
    g, x = xs[:2]
    groups = int(attrs["groups"])
    wshape = tuple(attrs["weight_shape"])
    n, o, oh, ow = g.shape
    cols = _im2col(x, wshape, attrs)
    gg = g.reshape(n, groups, o // groups, oh * ow)
    grad = np.matmul(gg, np.swapaxes(cols, -1, -2)).sum(axis=0, dtype=f32).reshape(wshape)
    if len(xs) > 2:  # sampled: only where the mask is non-zero
        grad = np.where(np.asarray(xs[2]) != 0, grad, f32(0)).astype(f32)
    return [grad]


def _pool_params(x: np.ndarray, attrs):
    kh, kw = attrs["kernel_size"]
    stride = tuple(attrs["stride"]) if attrs["stride"] else (kh, kw)
    padding = tuple(attrs["padding"])
    oh = (x.shape[2] + 2 * padding[0] - kh) // stride[0] + 1
    ow = (x.shape[3] + 2 * padding[1] - kw) // stride[1] + 1
    return (kh, kw), stride, padding, (oh, ow)


def _pool_windows(xp: np.ndarray, attrs, x: np.ndarray) -> np.ndarray:
    """Stacked windows: [KH*KW, N, C, OH, OW]."""
    (kh, kw), stride, _, out_hw = _pool_params(x, attrs)
    return np.stack(
        [xp[:, :, sh, sw] for _, sh, sw in _windows(xp, kh, kw, out_hw, stride, (1, 1))]
    )


@semantics("graph.max_pool2d")
def _max_pool2d(xs, attrs, op):
    x = xs[0]
    return [_pool_windows(_pad(x, tuple(attrs["padding"]), -np.inf), attrs, x).max(axis=0)]


@semantics("graph.max_pool2d_backward")
def _max_pool2d_backward(xs, attrs, op):
    g, x = xs
    (kh, kw), stride, padding, out_hw = _pool_params(x, attrs)
    first_max = _pool_windows(_pad(x, padding, -np.inf), attrs, x).argmax(axis=0)
    gp = np.zeros(_pad(x, padding).shape, g.dtype)
    for (i, j), sh, sw in _windows(gp, kh, kw, out_hw, stride, (1, 1)):
        gp[:, :, sh, sw] += np.where(first_max == i * kw + j, g, f32(0))
    return [gp[:, :, padding[0] : padding[0] + x.shape[2], padding[1] : padding[1] + x.shape[3]]]


def avg_divisor(x: np.ndarray, attrs) -> np.ndarray | np.floating:
    (kh, kw), _, padding, _ = _pool_params(x, attrs)
    if attrs["count_include_pad"]:
        return f32(kh * kw)
    ones = _pad(np.ones((1, 1) + x.shape[2:], x.dtype), padding)
    return _pool_windows(ones, attrs, x).sum(axis=0)


@semantics("graph.avg_pool2d")
def _avg_pool2d(xs, attrs, op):
    x = xs[0]
    windows = _pool_windows(_pad(x, tuple(attrs["padding"])), attrs, x)
    return [windows.sum(axis=0) / avg_divisor(x, attrs)]


@semantics("graph.avg_pool2d_backward")
def _avg_pool2d_backward(xs, attrs, op):
    g, x = xs
    (kh, kw), stride, padding, out_hw = _pool_params(x, attrs)
    share = g / avg_divisor(x, attrs)
    gp = np.zeros(_pad(x, padding).shape, g.dtype)
    for _, sh, sw in _windows(gp, kh, kw, out_hw, stride, (1, 1)):
        gp[:, :, sh, sw] += share
    return [gp[:, :, padding[0] : padding[0] + x.shape[2], padding[1] : padding[1] + x.shape[3]]]
