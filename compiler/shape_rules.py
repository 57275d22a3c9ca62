"""Result-type rules of every ``graph`` op, in one place.

Each rule takes the operand types and an attribute view (``attrs["stride"]`` gives the
default when the op does not set it) and returns the result types, or raises
:class:`ShapeError` with a message that the verifier turns into a located diagnostic.
Results are always dense here; an op may still declare a sparse encoding on a result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .ir import Attribute, TensorType, Type

Attrs = Mapping[str, Attribute]
Types = Sequence[TensorType]


class ShapeError(Exception):
    """Operand types or attributes that no valid op could have."""


def _fmt(t: Type) -> str:
    return str(t)


def same_as_first(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``relu``, ``exp``, ``softmax``...: one result shaped like the first operand."""
    return [ts[0].dense()]


def all_same(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``relu_backward(grad, x)``, ``mask_apply(w, mask)``: all operands share one shape."""
    for t in ts[1:]:
        if t.shape != ts[0].shape:
            raise ShapeError(f"operand shapes differ: {_fmt(ts[0])} vs {_fmt(t)}")
    return [ts[0].dense()]


def broadcast_role(shape: tuple[int, ...], out: tuple[int, ...]) -> str:
    """How an operand of ``shape`` broadcasts against an elementwise result ``out``: ``tile``
    (the whole shape), ``scalar`` (one element), ``row`` (last axis), ``col`` (``[..., 1]``),
    ``channel`` (one value per channel of an NCHW-like tensor, ``[1, C, 1, 1]``) or
    ``other``. Elementwise kernels broadcast all but ``other`` themselves."""
    shape, out = tuple(shape), tuple(out)
    if shape == out:
        return "tile"
    if int(np.prod(shape, dtype=np.int64)) == 1:
        return "scalar"
    padded = (1,) * (len(out) - len(shape)) + shape
    if padded == out:
        return "tile"
    if len(out) >= 1 and padded == (1,) * (len(out) - 1) + out[-1:]:
        return "row"
    if len(out) >= 2 and padded == out[:-1] + (1,):
        return "col"
    if len(out) >= 3 and padded == (1,) * (len(out) - 3) + (out[-3], 1, 1):
        return "channel"
    return "other"


def broadcast(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``add``, ``mul``...: numpy broadcasting, equal element types."""
    if ts[0].element != ts[1].element:
        raise ShapeError(f"element types differ: {_fmt(ts[0])} vs {_fmt(ts[1])}")
    try:
        shape = np.broadcast_shapes(ts[0].shape, ts[1].shape)
    except ValueError:
        raise ShapeError(f"shapes {_fmt(ts[0])} and {_fmt(ts[1])} do not broadcast") from None
    return [TensorType(tuple(shape), ts[0].element)]


def _matmul_shape(a: TensorType, b: TensorType, ta: bool, tb: bool) -> TensorType:
    if a.rank < 2 or a.rank != b.rank:
        raise ShapeError(f"matmul needs operands of equal rank >= 2, got {_fmt(a)}, {_fmt(b)}")
    m, k = (a.shape[-1], a.shape[-2]) if ta else (a.shape[-2], a.shape[-1])
    k2, n = (b.shape[-1], b.shape[-2]) if tb else (b.shape[-2], b.shape[-1])
    if k != k2:
        raise ShapeError(f"contracting dimensions differ: {k} vs {k2}")
    if a.shape[:-2] != b.shape[:-2]:
        raise ShapeError(f"batch dimensions differ: {_fmt(a)} vs {_fmt(b)}")
    return TensorType(a.shape[:-2] + (m, n), a.element)


def matmul(ts: Types, attrs: Attrs) -> list[TensorType]:
    return [_matmul_shape(ts[0], ts[1], bool(attrs["transpose_a"]), bool(attrs["transpose_b"]))]


def sddmm(ts: Types, attrs: Attrs) -> list[TensorType]:
    out = matmul(ts[:2], attrs)[0]
    if ts[2].shape != out.shape:
        raise ShapeError(f"mask {_fmt(ts[2])} does not match the product shape {out.shape}")
    return [out]


def linear(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``x[..., K] · w[N, K]^T + bias[N]``."""
    x, w = ts[0], ts[1]
    if w.rank != 2 or x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise ShapeError(f"linear needs x[..., K] and w[N, K], got {_fmt(x)}, {_fmt(w)}")
    if len(ts) == 3 and ts[2].shape != (w.shape[0],):
        raise ShapeError(f"bias must be tensor<{w.shape[0]}x{w.element}>, got {_fmt(ts[2])}")
    return [TensorType(x.shape[:-1] + (w.shape[0],), x.element)]


def _int(attrs: Attrs, name: str) -> int:
    value = attrs[name]
    if not isinstance(value, int):
        raise ShapeError(f"'{name}' must be an integer")
    return value


def _pair(attrs: Attrs, name: str) -> tuple[int, int]:
    value = attrs[name]
    if not isinstance(value, list) or len(value) != 2:
        raise ShapeError(f"'{name}' must be a list of two integers")
    return int(value[0]), int(value[1])


def _window(size: int, kernel: int, stride: int, pad: int, dilation: int = 1) -> int:
    if stride <= 0 or dilation <= 0 or kernel <= 0 or pad < 0:
        raise ShapeError(f"window {kernel} needs a positive kernel, stride ({stride}) and "
                         f"dilation ({dilation}) and a padding >= 0 ({pad})")
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        raise ShapeError(f"window {kernel} (stride {stride}, pad {pad}) does not fit size {size}")
    return out


def conv2d_shape(x: tuple[int, ...], w: tuple[int, ...], attrs: Attrs) -> tuple[int, ...]:
    if len(x) != 4 or len(w) != 4:
        raise ShapeError("conv2d needs NCHW input and OIHW weight")
    groups = _int(attrs, "groups")
    if groups <= 0 or x[1] != w[1] * groups or w[0] % groups:
        raise ShapeError(f"channels do not match: input {x[1]}, weight {w[1]} x {groups} groups")
    (sh, sw), (ph, pw), (dh, dw) = (_pair(attrs, n) for n in ("stride", "padding", "dilation"))
    return (x[0], w[0], _window(x[2], w[2], sh, ph, dh), _window(x[3], w[3], sw, pw, dw))


def conv2d(ts: Types, attrs: Attrs) -> list[TensorType]:
    if len(ts) == 3 and ts[2].shape != (ts[1].shape[0],):
        raise ShapeError(f"bias must have shape ({ts[1].shape[0]},), got {_fmt(ts[2])}")
    return [TensorType(conv2d_shape(ts[0].shape, ts[1].shape, attrs), ts[0].element)]


def _expect(actual: TensorType, shape: tuple[int, ...], what: str) -> None:
    if actual.shape != shape:
        raise ShapeError(f"{what} must have shape {shape}, got {_fmt(actual)}")


def conv2d_backward_input(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_out, w) {input_shape}`` -> grad_input."""
    shape = tuple(int(d) for d in attrs["input_shape"])  # type: ignore[union-attr]
    _expect(ts[0], conv2d_shape(shape, ts[1].shape, attrs), "grad_out")
    return [TensorType(shape, ts[0].element)]


def conv2d_backward_weight(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_out, x[, mask]) {weight_shape}`` -> grad_weight."""
    shape = tuple(int(d) for d in attrs["weight_shape"])  # type: ignore[union-attr]
    _expect(ts[0], conv2d_shape(ts[1].shape, shape, attrs), "grad_out")
    if len(ts) > 2:
        _expect(ts[2], shape, "mask")
    return [TensorType(shape, ts[0].element)]


def pool2d_shape(x: TensorType, attrs: Attrs) -> tuple[int, ...]:
    if x.rank != 4:
        raise ShapeError(f"pooling needs an NCHW input, got {_fmt(x)}")
    kh, kw = _pair(attrs, "kernel_size")
    sh, sw = _pair(attrs, "stride") if attrs["stride"] else (kh, kw)
    ph, pw = _pair(attrs, "padding")
    return x.shape[:2] + (_window(x.shape[2], kh, sh, ph), _window(x.shape[3], kw, sw, pw))


def pool2d(ts: Types, attrs: Attrs) -> list[TensorType]:
    return [TensorType(pool2d_shape(ts[0], attrs), ts[0].element)]


def pool2d_backward(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_out, x)`` -> grad_x."""
    _expect(ts[0], pool2d_shape(ts[1], attrs), "grad_out")
    return [ts[1].dense()]


def _channels(x: TensorType) -> TensorType:
    if x.rank < 2:
        raise ShapeError(f"batch_norm needs an input of rank >= 2, got {_fmt(x)}")
    return TensorType((x.shape[1],), x.element)


def batch_norm(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(x, weight, bias[, residual])`` -> out, mean, invstd."""
    c = _channels(ts[0])
    for t in ts[1:3]:
        _expect(t, c.shape, "weight and bias")
    if len(ts) > 3:
        _expect(ts[3], ts[0].shape, "residual")
    return [ts[0].dense(), c, c]


def batch_norm_backward(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_out, x, weight, mean, invstd[, relu_out])`` -> grad_x, grad_weight, grad_bias."""
    _expect(ts[0], ts[1].shape, "grad_out")
    c = _channels(ts[1])
    for t in ts[2:5]:
        _expect(t, c.shape, "weight, mean and invstd")
    if len(ts) > 5:
        _expect(ts[5], ts[1].shape, "relu_out")
    return [ts[1].dense(), c, c]


def _norm_split(x: TensorType, attrs: Attrs) -> tuple[TensorType, TensorType]:
    k = _int(attrs, "normalized_rank")
    if not 1 <= k <= x.rank:
        raise ShapeError(f"normalized_rank {k} out of range for {_fmt(x)}")
    stats = TensorType(x.shape[:-k] + (1,) * k, x.element)
    return TensorType(x.shape[-k:], x.element), stats


def layer_norm(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(x, weight, bias)`` -> out, mean, rstd (stats keep the normalized dims as 1)."""
    affine, stats = _norm_split(ts[0], attrs)
    for t in ts[1:]:
        _expect(t, affine.shape, "weight and bias")
    return [ts[0].dense(), stats, stats]


def layer_norm_backward(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_out, x, mean, rstd, weight)`` -> grad_x, grad_weight, grad_bias."""
    _expect(ts[0], ts[1].shape, "grad_out")
    affine, stats = _norm_split(ts[1], attrs)
    _expect(ts[2], stats.shape, "mean")
    _expect(ts[3], stats.shape, "rstd")
    _expect(ts[4], affine.shape, "weight")
    return [ts[1].dense(), affine, affine]


def normalize_axes(axes: Sequence[int], rank: int) -> list[int]:
    out = sorted({a + rank if a < 0 else a for a in axes}) if axes else list(range(rank))
    if any(not 0 <= a < rank for a in out):
        raise ShapeError(f"axes {list(axes)} out of range for rank {rank}")
    return out


def reduce(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``{axes = [1], keepdim = false}``; no axes means all axes."""
    x = ts[0]
    axes = normalize_axes(attrs["axes"], x.rank)  # type: ignore[arg-type]
    keep = bool(attrs["keepdim"])
    shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape) if keep or i not in axes)
    return [TensorType(shape, x.element)]


def axis_op(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``softmax``/``log_softmax`` (+ backward): all operands alike, ``axis`` in range."""
    normalize_axes([int(attrs["axis"])], ts[0].rank)  # type: ignore[arg-type]
    return all_same(ts, attrs)


def reshape(ts: Types, attrs: Attrs) -> list[TensorType]:
    shape = tuple(int(d) for d in attrs["shape"])  # type: ignore[union-attr]
    if int(np.prod(shape)) != int(np.prod(ts[0].shape)) or any(d < 0 for d in shape):
        raise ShapeError(f"cannot reshape {_fmt(ts[0])} to {list(shape)}")
    return [TensorType(shape, ts[0].element)]


def transpose(ts: Types, attrs: Attrs) -> list[TensorType]:
    perm = [int(p) for p in attrs["perm"]]  # type: ignore[union-attr]
    if sorted(perm) != list(range(ts[0].rank)):
        raise ShapeError(f"perm {perm} is not a permutation of rank {ts[0].rank}")
    return [TensorType(tuple(ts[0].shape[p] for p in perm), ts[0].element)]


def broadcast_to(ts: Types, attrs: Attrs) -> list[TensorType]:
    shape = tuple(int(d) for d in attrs["shape"])  # type: ignore[union-attr]
    try:
        ok = np.broadcast_shapes(ts[0].shape, shape) == shape
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"cannot broadcast {_fmt(ts[0])} to {list(shape)}")
    return [TensorType(shape, ts[0].element)]


def _slice_box(shape: tuple[int, ...], offsets: list[int], sizes: list[int],
               strides: list[int]) -> None:
    """Offsets, sizes and strides (one per dim of ``shape``) pick a box inside it."""
    if not len(offsets) == len(sizes) == len(strides) == len(shape):
        raise ShapeError(f"offsets, sizes and strides need one entry per dim of {list(shape)}, "
                         f"got {len(offsets)}, {len(sizes)} and {len(strides)}")
    for d, (n, o, k, s) in enumerate(zip(shape, offsets, sizes, strides)):
        if s < 1 or k < 0 or o < 0 or (k > 0 and o + (k - 1) * s >= n):
            raise ShapeError(f"dim {d}: {k} elements from {o} in steps of {s} do not fit in "
                             f"{n} (offsets and sizes >= 0, strides >= 1)")


def slice_(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``slice(x)``: ``x[o0 : o0 + k0*s0 : s0, ...]``, shaped ``sizes``."""
    sizes = [int(d) for d in attrs["sizes"]]  # type: ignore[union-attr]
    _slice_box(ts[0].shape, [int(d) for d in attrs["offsets"]],  # type: ignore[union-attr]
               sizes, [int(d) for d in attrs["strides"]])  # type: ignore[union-attr]
    return [TensorType(tuple(sizes), ts[0].element)]


def slice_backward(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``slice_backward(g)``: zeros of ``shape`` with ``g`` where the slice read."""
    shape = tuple(int(d) for d in attrs["shape"])  # type: ignore[union-attr]
    _slice_box(shape, [int(d) for d in attrs["offsets"]],  # type: ignore[union-attr]
               list(ts[0].shape), [int(d) for d in attrs["strides"]])  # type: ignore[union-attr]
    return [TensorType(shape, ts[0].element)]


def concat(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``concat(x1, x2, ...)`` along ``axis``: the other dims and the element type agree."""
    if not ts:
        raise ShapeError("needs at least one operand to concatenate")
    first = ts[0]
    axis = int(attrs["axis"])  # type: ignore[arg-type]
    if not -first.rank <= axis < first.rank:
        raise ShapeError(f"axis {axis} is out of range for rank {first.rank}")
    axis %= first.rank
    for t in ts[1:]:
        if (t.rank != first.rank or t.element != first.element
                or any(a != b for d, (a, b) in enumerate(zip(t.shape, first.shape)) if d != axis)):
            raise ShapeError(f"cannot concatenate {_fmt(first)} and {_fmt(t)} along axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in ts)
    return [TensorType(tuple(shape), first.element)]


def one_hot(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``one_hot(indices : i64)`` -> f32, one more dim of ``classes``."""
    classes = int(attrs["classes"])  # type: ignore[arg-type]
    if ts[0].element != "i64" or classes < 1:
        raise ShapeError(f"need i64 indices and classes >= 1, got {_fmt(ts[0])} and {classes}")
    return [TensorType(tuple(ts[0].shape) + (classes,), "f32")]


def _logits_labels(logits: TensorType, labels: TensorType) -> None:
    if logits.rank != 2 or labels.shape != logits.shape[:1] or labels.element != "i64":
        raise ShapeError(f"need logits[N, C] and i64 labels[N], got {_fmt(logits)}, {_fmt(labels)}")


def cross_entropy(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(logits[N, C], labels[N] : i64)`` -> mean loss ``tensor<f32>``."""
    _logits_labels(ts[0], ts[1])
    return [TensorType((), ts[0].element)]


def cross_entropy_backward(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(grad_loss : tensor<f32>, logits, labels)`` -> grad_logits."""
    _expect(ts[0], (), "grad_loss")
    _logits_labels(ts[1], ts[2])
    return [ts[1].dense()]


def constant(ts: Types, attrs: Attrs) -> list[TensorType]:
    return [attrs["value"].type]  # type: ignore[union-attr]


def sgd_update(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(param, grad, momentum_buf[, mask])`` -> new param, new momentum_buf."""
    all_same(ts, attrs)
    return [ts[0], ts[2].dense()]


def adam_update(ts: Types, attrs: Attrs) -> list[TensorType]:
    """``(param, grad, m, v, step : tensor<...>[, mask])`` -> new param, m, v."""
    all_same(ts[:4], attrs)
    _expect(ts[4], (), "step")
    if len(ts) > 5:
        _expect(ts[5], ts[0].shape, "mask")
    return [ts[0], ts[2].dense(), ts[3].dense()]


def no_results(ts: Types, attrs: Attrs) -> list[TensorType]:
    return []
