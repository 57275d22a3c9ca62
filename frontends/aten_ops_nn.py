"""Converters of core-ATen neural-network ops: convolution, normalization, pooling,
softmax and the negative-log-likelihood loss (forward and backward); the activations are
in ``aten_ops_activations``.

Compositions used where the graph dialect has no exact op (documented per converter):
batch-norm running statistics (``mul``/``add`` of the saved mean and of the unbiased
variance ``reduce_mean((x - mean)^2) * n/(n-1)``), ``nll_loss_forward/backward`` (via
``graph.cross_entropy(_backward)``; fused with the preceding ``_log_softmax`` when there is
one; with an ``ignore_index`` naming a class, a select by the one-hot labels less that
class), ``_adaptive_avg_pool2d`` / ``adaptive_max_pool2d`` (an average / max pool whose
window divides the input).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import fx

from ..compiler.ir import Value
from ..compiler.shape_rules import pool2d_shape
from .aten_ops_core import _reshape
from .aten_to_ir import ConvertContext, PoolIndices, converter
from .gathers import adaptive_bins, along
from .ir_builder import constant_array

aten = torch.ops.aten


def _pair(v: Any, default: list[int] | None = None) -> list[int]:
    if v is None or (isinstance(v, (list, tuple)) and len(v) == 0):
        return list(default or [])
    if isinstance(v, int):
        return [v, v]
    return [int(v[0]), int(v[-1])] if len(v) in (1, 2) else list(v)


def _arg(node: fx.Node, i: int, name: str, default: Any) -> Any:
    return node.args[i] if len(node.args) > i else node.kwargs.get(name, default)


# --- convolution ------------------------------------------------------------------------
# A 1-d convolution is the 2-d one over rows of height 1: (N, C, L) -> (N, C, 1, L), its
# kernel (O, C/g, K) -> (O, C/g, 1, K), stride/padding/dilation (1, s) / (0, p) / (1, d).
# A transposed convolution (weight (Cin, Cout/g, KH, KW)) is the input gradient of the
# convolution whose weight that is: conv2d_backward_input of x, sized by the output (its
# output_padding rows and columns get no taps); its backward swaps the roles again.
def _conv_attrs(ctx: ConvertContext, node: fx.Node, first: int) -> dict[str, Any]:
    stride, padding, dilation, _transposed, _out_pad, groups = node.args[first:first + 6]
    if len(stride) == 1:
        return {"stride": [1, int(stride[0])], "padding": [0, int(padding[0])],
                "dilation": [1, int(dilation[0])], "groups": int(groups)}
    if len(stride) != 2:
        raise ctx.unsupported(f"{len(stride)}-d convolution (graph.conv2d is 2-d)")
    return {"stride": _pair(stride), "padding": _pair(padding), "dilation": _pair(dilation),
            "groups": int(groups)}


def _rows(ctx: ConvertContext, v: Value) -> Value:
    """A 1-d convolution's operand (rank 3) as a 2-d one's (height 1); rank 4 as it is."""
    shape = v.type.shape  # type: ignore[union-attr]
    return v if len(shape) == 4 else _reshape(ctx, v, (shape[0], shape[1], 1, shape[2]))


def _like(ctx: ConvertContext, v: Value | None, ref: Value) -> Value | None:
    """v (a 2-d convolution's result) reshaped to ref's rank-3 shape where ref is 1-d."""
    shape = ref.type.shape  # type: ignore[union-attr]
    return v if v is None or len(shape) == 4 else _reshape(ctx, v, tuple(shape))


@converter(aten.convolution.default)
def _convolution(ctx: ConvertContext, node: fx.Node) -> Value:
    x, w, b = node.args[:3]
    attrs = _conv_attrs(ctx, node, 3)
    operands = [_rows(ctx, ctx.value(x)), _rows(ctx, ctx.value(w))]
    shape = ctx.shape()
    if node.args[6]:  # transposed
        rows = shape if len(shape) == 4 else (shape[0], shape[1], 1, shape[2])
        y = ctx.emit("graph.conv2d_backward_input", operands, input_shape=list(rows), **attrs)
        if b is not None:
            y = ctx.emit("graph.add", [y, _reshape(ctx, ctx.value(b), (1, rows[1], 1, 1))])
    else:
        y = ctx.emit("graph.conv2d", operands + ([ctx.value(b)] if b is not None else []), **attrs)
    return _reshape(ctx, y, shape) if len(shape) == 3 else y


@converter(aten.convolution_backward.default)
def _convolution_backward(ctx: ConvertContext, node: fx.Node) -> tuple:
    g0, x0, w0 = ctx.values(node.args[:3])
    g, x, w = _rows(ctx, g0), _rows(ctx, x0), _rows(ctx, w0)
    attrs = _conv_attrs(ctx, node, 4)
    mask = node.args[10]
    transposed = bool(node.args[7])  # x played the output gradient, g the input
    gx = gw = gb = None
    if mask[0]:
        gx = (ctx.emit("graph.conv2d", [g, w], **attrs) if transposed else
              ctx.emit("graph.conv2d_backward_input", [g, w],
                       input_shape=list(x.type.shape), **attrs))  # type: ignore[union-attr]
    if mask[1]:
        gw = ctx.emit("graph.conv2d_backward_weight", [x, g] if transposed else [g, x],
                      weight_shape=list(w.type.shape), **attrs)  # type: ignore[union-attr]
    if mask[2]:
        gb = ctx.emit("graph.reduce_sum", [g], axes=[0, 2, 3])
    return _like(ctx, gx, x0), _like(ctx, gw, w0), gb


# --- batch norm -----------------------------------------------------------------------------
def _affine(ctx: ConvertContext, v: Any, c: int, fill: float) -> Value:
    return ctx.value(v) if v is not None else ctx.const(np.full((c,), fill, np.float32))


def _channel_view(ctx: ConvertContext, v: Value, rank: int) -> Value:
    c = v.type.shape[0]  # type: ignore[union-attr]
    return ctx.emit("graph.reshape", [v], shape=[1, c] + [1] * (rank - 2))


def _running_update(ctx: ConvertContext, old: Value, new: Value, momentum: float) -> Value:
    """``(1 - momentum) * old + momentum * new`` (PyTorch's running-statistics update)."""
    keep = ctx.emit("graph.mul", [old, ctx.const(1.0 - momentum)])
    return ctx.emit("graph.add", [keep, ctx.emit("graph.mul", [new, ctx.const(momentum)])])


def _bn_train(ctx: ConvertContext, node: fx.Node, has_stats: bool) -> tuple:
    x = ctx.value(node.args[0])
    shape = x.type.shape  # type: ignore[union-attr]
    c = shape[1]
    w, b = _affine(ctx, node.args[1], c, 1.0), _affine(ctx, node.args[2], c, 0.0)
    momentum, eps = (node.args[6], node.args[7]) if has_stats else (node.args[4], node.args[5])
    out, mean, invstd = ctx.emit_all("graph.batch_norm", [x, w, b], eps=float(eps))
    if not has_stats:
        return out, mean, invstd
    count = int(np.prod(shape)) // c
    # the batch variance from invstd = 1/sqrt(var + eps), on C values, rather than a
    # second pass of three full-size ops over x (the kernel already made that pass). fp32
    # keeps it to ~1e-7 relative while var >> eps*1e-7; a constant channel (var = 0) may
    # come out as +-1e-12 instead of 0
    inv2 = ctx.emit("graph.mul", [invstd, invstd])
    var = ctx.emit("graph.sub", [ctx.emit("graph.div", [ctx.const(1.0), inv2]),
                                 ctx.const(float(eps))])
    unbiased = ctx.emit("graph.mul", [var, ctx.const(count / max(count - 1, 1))])
    new_mean = _running_update(ctx, ctx.value(node.args[3]), mean, float(momentum))
    new_var = _running_update(ctx, ctx.value(node.args[4]), unbiased, float(momentum))
    return out, mean, invstd, new_mean, new_var


@converter(aten._native_batch_norm_legit_functional.default, aten._native_batch_norm_legit.default)
def _batch_norm_functional(ctx: ConvertContext, node: fx.Node) -> tuple:
    if not node.args[5]:
        return _bn_eval(ctx, node)
    return _bn_train(ctx, node, has_stats=True)


@converter(aten._native_batch_norm_legit.no_stats)
def _batch_norm_no_stats(ctx: ConvertContext, node: fx.Node) -> tuple:
    if not node.args[3]:
        raise ctx.unsupported("evaluation-mode batch norm without running statistics")
    return _bn_train(ctx, node, has_stats=False)


@converter(aten._native_batch_norm_legit_no_training.default)
def _bn_eval(ctx: ConvertContext, node: fx.Node) -> tuple:
    """Evaluation mode: ``(x - running_mean) * rsqrt(running_var + eps) * w + b``."""
    x = ctx.value(node.args[0])
    rank, c = x.type.rank, x.type.shape[1]  # type: ignore[union-attr]
    w, b = _affine(ctx, node.args[1], c, 1.0), _affine(ctx, node.args[2], c, 0.0)
    rm, rv = ctx.value(node.args[3]), ctx.value(node.args[4])
    eps = node.args[-1]
    inv = ctx.emit("graph.rsqrt", [ctx.emit("graph.add", [rv, ctx.const(float(eps))])])
    scale = _channel_view(ctx, ctx.emit("graph.mul", [inv, w]), rank)
    out = ctx.emit("graph.mul", [ctx.emit("graph.sub", [x, _channel_view(ctx, rm, rank)]), scale])
    out = ctx.emit("graph.add", [out, _channel_view(ctx, b, rank)])
    empty = ctx.const(np.zeros((0,), np.float32))
    return (out, empty, empty) if len(node.args) == 7 else (out, empty, empty, rm, rv)


@converter(aten.native_batch_norm_backward.default)
def _batch_norm_backward(ctx: ConvertContext, node: fx.Node) -> tuple:
    g, x = ctx.values(node.args[:2])
    if not node.args[7]:
        raise ctx.unsupported("backward of evaluation-mode batch norm")
    w = _affine(ctx, node.args[2], x.type.shape[1], 1.0)  # type: ignore[union-attr]
    mean, invstd = ctx.values(node.args[5:7])
    return tuple(ctx.emit_all("graph.batch_norm_backward", [g, x, w, mean, invstd]))


# --- layer norm ----------------------------------------------------------------------------
@converter(aten.native_layer_norm.default)
def _layer_norm(ctx: ConvertContext, node: fx.Node) -> tuple:
    x, shape, w, b, eps = node.args
    size = [int(d) for d in shape]
    w_v = ctx.value(w) if w is not None else ctx.const(np.ones(size, np.float32))
    b_v = ctx.value(b) if b is not None else ctx.const(np.zeros(size, np.float32))
    return tuple(ctx.emit_all("graph.layer_norm", [ctx.value(x), w_v, b_v],
                              normalized_rank=len(size), eps=float(eps)))


@converter(aten.native_layer_norm_backward.default)
def _layer_norm_backward(ctx: ConvertContext, node: fx.Node) -> tuple:
    g, x, shape, mean, rstd, w = node.args[:6]
    size = [int(d) for d in shape]
    w_v = ctx.value(w) if w is not None else ctx.const(np.ones(size, np.float32))
    return tuple(ctx.emit_all("graph.layer_norm_backward",
                              [ctx.value(g), ctx.value(x), ctx.value(mean), ctx.value(rstd), w_v],
                              normalized_rank=len(size)))


# --- pooling --------------------------------------------------------------------------------
def _pool_attrs(ctx: ConvertContext, node: fx.Node, first: int) -> dict[str, Any]:
    kernel = _pair(node.args[first])
    stride = _pair(_arg(node, first + 1, "stride", []), kernel)
    padding = _pair(_arg(node, first + 2, "padding", 0), [0, 0])
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


def _check_shape(ctx: ConvertContext, v: Value, what: str) -> Value:
    if v.type.shape != ctx.shape():  # type: ignore[union-attr]
        raise ctx.unsupported(f"{what} (result {list(ctx.shape())}, graph op gives "
                              f"{list(v.type.shape)})")  # type: ignore[union-attr]
    return v


@converter(aten.max_pool2d_with_indices.default)
def _max_pool(ctx: ConvertContext, node: fx.Node) -> tuple:
    x = ctx.value(node.args[0])
    if _pair(_arg(node, 4, "dilation", 1)) != [1, 1]:
        raise ctx.unsupported("dilated max pooling")
    attrs = _pool_attrs(ctx, node, 1)
    out = ctx.emit("graph.max_pool2d", [x], **attrs)
    if out.type.shape != tuple(node.meta["val"][0].shape):  # type: ignore[union-attr]
        raise ctx.unsupported("ceil-mode max pooling that adds a window")
    return out, PoolIndices(x, *(tuple(attrs[a]) for a in ("kernel_size", "stride", "padding")))


@converter(aten.max_pool2d_with_indices_backward.default)
def _max_pool_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    g, x = ctx.values(node.args[:2])
    if _pair(node.args[5]) != [1, 1]:
        raise ctx.unsupported("dilated max pooling")
    attrs = _pool_attrs(ctx, node, 2)
    if node.args[6] and pool2d_shape(x.type, attrs)[2:] != g.type.shape[2:]:  # type: ignore[arg-type, union-attr]
        raise ctx.unsupported("ceil-mode max pooling that adds a window")
    # ceil mode adding no window pools as floor mode does (the forward checks the same)
    return ctx.emit("graph.max_pool2d_backward", [g, x], **attrs)


def _avg_attrs(ctx: ConvertContext, node: fx.Node, first: int) -> dict[str, Any]:
    attrs = _pool_attrs(ctx, node, first)
    ceil = _arg(node, first + 3, "ceil_mode", False)
    attrs["count_include_pad"] = bool(_arg(node, first + 4, "count_include_pad", True))
    if _arg(node, first + 5, "divisor_override", None) is not None:
        raise ctx.unsupported("avg pooling with divisor_override")
    if ceil:
        raise ctx.unsupported("ceil-mode avg pooling")
    return attrs


@converter(aten.avg_pool2d.default)
def _avg_pool(ctx: ConvertContext, node: fx.Node) -> Value:
    out = ctx.emit("graph.avg_pool2d", [ctx.value(node.args[0])], **_avg_attrs(ctx, node, 1))
    return _check_shape(ctx, out, "avg pooling shape")


@converter(aten.avg_pool2d_backward.default)
def _avg_pool_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    g, x = ctx.values(node.args[:2])
    return ctx.emit("graph.avg_pool2d_backward", [g, x], **_avg_attrs(ctx, node, 2))


def _adaptive_window(ctx: ConvertContext, x: Value, out_hw: list[int]) -> list[int]:
    h, w = x.type.shape[2:]  # type: ignore[union-attr]
    if h % out_hw[0] or w % out_hw[1]:
        raise ctx.unsupported(f"adaptive pooling of {h}x{w} to {out_hw[0]}x{out_hw[1]} "
                              "(windows must divide the input)")
    return [h // out_hw[0], w // out_hw[1]]


def _divides(x: Value, out_hw: list[int]) -> bool:
    h, w = x.type.shape[2:]  # type: ignore[union-attr]
    return not (h % out_hw[0] or w % out_hw[1])


def _adaptive_means(ctx: ConvertContext, v: Value, hw: list[int], out_hw: list[int],
                    forward: bool) -> Value:
    """Adaptive average pooling whose bins do not divide the input: the mean over H, then
    over W, each a GEMM with the bins' averaging matrix (the backward: the same GEMMs from
    the other side, spreading each gradient over its bin)."""
    for dim, size, out in ((2, hw[0], out_hw[0]), (3, hw[1], out_hw[1])):
        v = _along(ctx, v, dim, ctx.const(adaptive_bins(size, out)), gather=forward)
    return v


@converter(aten._adaptive_avg_pool2d.default)
def _adaptive_avg_pool(ctx: ConvertContext, node: fx.Node) -> Value:
    x = ctx.value(node.args[0])
    out_hw = _pair(node.args[1])
    if not _divides(x, out_hw):
        return _adaptive_means(ctx, x, list(x.type.shape[2:]), out_hw, forward=True)  # type: ignore[union-attr]
    k = _adaptive_window(ctx, x, out_hw)
    return ctx.emit("graph.avg_pool2d", [x], kernel_size=k, stride=k)


@converter(aten.adaptive_max_pool2d.default)
def _adaptive_max_pool(ctx: ConvertContext, node: fx.Node) -> tuple:
    """A max pool whose window (and stride) divides the input; its indices as for one."""
    x = ctx.value(node.args[0])
    k = _adaptive_window(ctx, x, _pair(node.args[1]))
    out = ctx.emit("graph.max_pool2d", [x], kernel_size=k, stride=k)
    return out, PoolIndices(x, tuple(k), tuple(k), (0, 0))


@converter(aten.adaptive_max_pool2d_backward.default)
def _adaptive_max_pool_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    g, x = ctx.values(node.args[:2])
    k = _adaptive_window(ctx, x, list(g.type.shape[2:]))  # type: ignore[union-attr]
    return ctx.emit("graph.max_pool2d_backward", [g, x], kernel_size=k, stride=k)


@converter(aten._adaptive_avg_pool2d_backward.default)
def _adaptive_avg_pool_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    g, x = ctx.values(node.args[:2])
    out_hw = list(g.type.shape[2:])  # type: ignore[union-attr]
    if not _divides(x, out_hw):
        return _adaptive_means(ctx, g, list(x.type.shape[2:]), out_hw, forward=False)  # type: ignore[union-attr]
    k = _adaptive_window(ctx, x, out_hw)
    return ctx.emit("graph.avg_pool2d_backward", [g, x], kernel_size=k, stride=k)


# --- softmax and the loss ---------------------------------------------------------------
@converter(aten.threshold_backward.default)
def _threshold_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    if node.args[2] != 0:
        raise ctx.unsupported(f"threshold {node.args[2]} (only ReLU's 0)")
    return ctx.emit("graph.relu_backward", ctx.values(node.args[:2]))


@converter(aten.gelu.default)
def _gelu(ctx: ConvertContext, node: fx.Node) -> Value:
    approximate = _arg(node, 1, "approximate", "none")
    return ctx.emit("graph.gelu", [ctx.value(node.args[0])], approximate=approximate)


@converter(aten.gelu_backward.default)
def _gelu_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    approximate = _arg(node, 2, "approximate", "none")
    return ctx.emit("graph.gelu_backward", ctx.values(node.args[:2]), approximate=approximate)


# --- embeddings: GEMMs with a one-hot operand --------------------------------------------
def _one_hot_rows(ctx: ConvertContext, idx: Value, classes: int) -> Value:
    """``[n, classes]`` one-hot rows of the indices ``idx`` (any shape): ``graph.one_hot``
    of a function argument (the runtime passes it one-hot), or a constant for constant
    indices (e.g. positions from ``arange``)."""
    n = int(np.prod(idx.type.shape))  # type: ignore[union-attr]
    op = idx.defining_op
    if op is not None and op.name == "graph.constant":
        positions = np.asarray(op.attributes["value"].array, np.int64).reshape(n)  # type: ignore[union-attr]
        return ctx.const(np.eye(classes, dtype=np.float32)[positions])
    return _reshape(ctx, ctx.emit("graph.one_hot", [idx], classes=classes), (n, classes))


# --- gathers with index tensors (upsampling) ------------------------------------------
# ``x[:, :, ih, iw]`` with index tensors on consecutive dims, each varying along its own dim
# of their broadcast (the outer-product form nearest and bilinear upsampling produce), is a
# gather per dim: a GEMM with the dim's one-hot selection matrix, as for embeddings (one
# effectual MAC per output element). The scatter-add of the backward (``index_put`` with
# accumulate) is the GEMM with the same matrix on the other side.
def _separable_indices(ctx: ConvertContext, x: Value, indices: list[Any]) -> list[tuple[int, Value]]:
    rank = len(x.type.shape)  # type: ignore[union-attr]
    lead = next((i for i, v in enumerate(indices) if v is not None), len(indices))
    idx = indices[lead:]
    if not idx or any(v is None for v in idx) or lead + len(idx) > rank:
        raise ctx.unsupported("indexing other than by index tensors on consecutive dims")
    out = []
    for j, node in enumerate(idx):
        shape = (1,) * (len(idx) - len(ctx.shape(node))) + ctx.shape(node)
        if any(d != 1 for t, d in enumerate(shape) if t != j):
            raise ctx.unsupported("index tensors that are not an outer product (one varying "
                                  "along each indexed dim)")
        out.append((lead + j, ctx.value(node)))
    return out


def _along(ctx: ConvertContext, x: Value, dim: int, select: Value, gather: bool) -> Value:
    return along(ctx.emit, x, dim, select, gather)


@converter(aten._unsafe_index.Tensor, aten.index.Tensor)
def _index(ctx: ConvertContext, node: fx.Node) -> Value:
    x = ctx.value(node.args[0])
    if x.type.element != "f32":  # type: ignore[union-attr]
        raise ctx.integer_arithmetic("index")  # the gather is a GEMM, in fp32
    for dim, idx in _separable_indices(ctx, x, list(node.args[1])):
        size = x.type.shape[dim]  # type: ignore[union-attr]
        x = _along(ctx, x, dim, _one_hot_rows(ctx, idx, size), gather=True)
    return x


@converter(aten._unsafe_index_put.default, aten.index_put.default)
def _index_put(ctx: ConvertContext, node: fx.Node) -> Value:
    """``base`` plus the values scattered with sums (``accumulate``: repeated indices add)."""
    base, values = ctx.value(node.args[0]), ctx.value(node.args[2])
    if not (node.args[3] if len(node.args) > 3 else node.kwargs.get("accumulate", False)):
        raise ctx.unsupported("index_put without accumulate (repeated indices would keep one)")
    for dim, idx in _separable_indices(ctx, base, list(node.args[1])):
        size = base.type.shape[dim]  # type: ignore[union-attr]
        values = _along(ctx, values, dim, _one_hot_rows(ctx, idx, size), gather=False)
    return ctx.emit("graph.add", [base, values])


@converter(aten.embedding.default)
def _embedding(ctx: ConvertContext, node: fx.Node) -> Value:
    """``one_hot(idx) · table``: a GEMM whose one-hot operand has one non-zero per row, so
    the zero-skipping PEs issue one effectual MAC per output element."""
    table, idx = ctx.value(node.args[0]), ctx.value(node.args[1])
    rows = _one_hot_rows(ctx, idx, table.type.shape[0])  # type: ignore[union-attr]
    return _reshape(ctx, ctx.emit("graph.matmul", [rows, table]), ctx.shape())


@converter(aten.embedding_dense_backward.default)
def _embedding_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """``one_hot(idx)ᵀ · g`` (a repeated index sums its rows), the padding row zeroed."""
    g, idx = ctx.values(node.args[:2])
    classes, padding_idx = int(node.args[2]), int(node.args[3])
    if node.args[4]:
        raise ctx.unsupported("scale_grad_by_freq")
    rows = _one_hot_rows(ctx, idx, classes)
    width = g.type.shape[-1]  # type: ignore[union-attr]
    flat = _reshape(ctx, g, (rows.type.shape[0], width))  # type: ignore[union-attr]
    grad = ctx.emit("graph.matmul", [rows, flat], transpose_a=True)
    if padding_idx >= 0:
        keep = np.ones((classes, 1), np.float32)
        keep[padding_idx] = 0.0
        grad = ctx.emit("graph.mul", [grad, ctx.const(keep)])
    return grad


@converter(aten.native_dropout.default)
def _dropout(ctx: ConvertContext, node: fx.Node) -> tuple[Value, Value]:
    """``x * keep / (1 - p)`` with the keep-mask a step input the caller supplies
    (``FuncBuilder.dropout_masks``, one per dropout node: the runtime draws it each step),
    so the fabric needs no random-number generator. Returns (output, keep-mask)."""
    x = ctx.value(node.args[0])
    p, train = float(node.args[1]), node.args[2]
    if train is False or p == 0.0:
        return x, ctx.const(np.ones(x.type.shape, np.float32))  # type: ignore[union-attr]
    keep = ctx.b.dropout_masks.get(node.name)
    if keep is None:
        raise ctx.unsupported("dropout in training needs its keep-mask as a step input "
                              "(capture_training_step and the torch.compile backend add it)")
    if p >= 1.0:
        zero = ctx.const(np.zeros(x.type.shape, np.float32))  # type: ignore[union-attr]
        return zero, zero
    kept = ctx.emit("graph.mul", [x, keep])
    return ctx.emit("graph.mul", [kept, ctx.const(1.0 / (1.0 - p))]), keep


@converter(aten._softmax.default)
def _softmax(ctx: ConvertContext, node: fx.Node) -> Value:
    return ctx.emit("graph.softmax", [ctx.value(node.args[0])], axis=int(node.args[1]))


@converter(aten._safe_softmax.default)
def _safe_softmax(ctx: ConvertContext, node: fx.Node) -> Value:
    """Softmax, but 0 on rows whose inputs are all -inf (a query whose every key is masked;
    torch's math attention uses it), where plain softmax gives NaN: the softmax selected
    (``relu_backward``, so the NaN is not multiplied but dropped) by a 0/1 keep-row mask,
    ``max(row) > -inf`` as ``-FLT_MAX - max(row) <= 0``. Its backward needs nothing more:
    ``softmax_backward`` of a 0 row is 0. Scores with no row all -inf (no mask, a causal
    one: see :func:`_rows_may_be_all_neg_inf`) take the plain softmax."""
    if _arg(node, 2, "dtype", None) not in (None, torch.float32):
        raise ctx.unsupported("a softmax in another dtype than fp32")
    x = ctx.value(node.args[0])
    shape = tuple(x.type.shape)  # type: ignore[union-attr]
    axis = int(node.args[1]) % len(shape)
    probs = ctx.emit("graph.softmax", [x], axis=axis)
    if not _rows_may_be_all_neg_inf(ctx, node.args[0], axis):
        return probs
    row_max = ctx.emit("graph.reduce_max", [x], axes=[axis], keepdim=True)
    lowest = ctx.const(np.finfo(np.float32).min)
    all_masked = ctx.b.positive_mask(ctx.emit("graph.sub", [lowest, row_max]))
    keep = ctx.emit("graph.broadcast_to", [ctx.b.complement(all_masked)], shape=list(shape))
    return ctx.emit("graph.relu_backward", [probs, keep])


def _rows_may_be_all_neg_inf(ctx: ConvertContext, scores: Any, axis: int) -> bool:
    """Whether a row of ``scores`` along ``axis`` may be all -inf: not where no -inf can
    reach them, nor where they are ``x + mask`` with no -inf reaching x and a constant mask
    (attention's, causal ones included, folded on the host) none of whose rows is all -inf."""
    if not isinstance(scores, fx.Node) or not _may_hold_neg_inf(ctx, scores):
        return False
    if scores.target != aten.add.Tensor or scores.kwargs.get("alpha", 1) != 1:
        return True
    for x, mask in (scores.args[:2], scores.args[1::-1]):
        array = _converted_constant(ctx, mask)
        if isinstance(x, fx.Node) and array is not None and not _may_hold_neg_inf(ctx, x):
            full = np.broadcast_to(array, ctx.shape(scores))
            return bool(np.any(np.all(full == -np.inf, axis=axis)))
    return True


def _converted_constant(ctx: ConvertContext, arg: Any) -> np.ndarray | None:
    """The value of an FX argument converted to a ``graph.constant`` itself, else None (a
    broadcast of one, an expanded mask, is not read: scores with one keep the safe softmax)."""
    v = ctx.env.get(arg) if isinstance(arg, fx.Node) else None
    return constant_array(v, through_broadcasts=False) if isinstance(v, Value) else None


#: GEMMs: their results are taken to be finite (what a GEMM reads is: an attention mask is
#: added after one), so a -inf upstream of one does not reach the softmax after it
_GEMMS = frozenset({aten.mm.default, aten.bmm.default, aten.addmm.default,
                    aten.baddbmm.default})
#: ops that make no -inf from finite operands (overflow aside) but pass one through: views,
#: copies, sums and products, selects, and the bool logic masks are built with
_PASS_INF = frozenset({
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.expand.default,
    aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
    aten.permute.default, aten.transpose.int, aten.t.default, aten.unsqueeze.default,
    aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.slice.Tensor,
    aten.select.int, aten.cat.default, aten.stack.default, aten._to_copy.default,
    aten.add.Tensor, aten.add.Scalar, aten.sub.Tensor, aten.sub.Scalar, aten.mul.Tensor,
    aten.mul.Scalar, aten.neg.default, aten.where.self, aten.where.ScalarSelf,
    aten.where.ScalarOther, aten.where.Scalar, aten.masked_fill.Scalar,
    aten.masked_fill.Tensor, aten.copy.default, aten.lift_fresh_copy.default,
    aten.zeros.default, aten.ones.default, aten.full.default, aten.scalar_tensor.default,
    aten.arange.default, aten.arange.start, aten.arange.start_step, aten.eq.Scalar,
    aten.eq.Tensor, aten.ne.Scalar, aten.ne.Tensor, aten.lt.Scalar, aten.lt.Tensor,
    aten.le.Scalar, aten.le.Tensor, aten.gt.Scalar, aten.gt.Tensor, aten.ge.Scalar,
    aten.ge.Tensor, aten.logical_not.default, aten.logical_and.default,
    aten.logical_or.default, aten.bitwise_not.default, aten.bitwise_and.Tensor,
    aten.bitwise_or.Tensor, aten.fill.Scalar, aten.slice_scatter.default,
    aten.select_scatter.default, aten.triu.default, aten.tril.default, operator.getitem,
})


def _may_hold_neg_inf(ctx: ConvertContext, root: fx.Node) -> bool:
    """Whether -inf can reach ``root`` (conservatively): from a step input (an additive
    attention mask), a constant or a number argument that is infinite (a mask built from
    literals, ``masked_fill(-inf)``) or an op not known to pass only finite values on;
    a GEMM stops the search (its result is finite)."""
    seen: set[fx.Node] = set()
    stack = [root]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "get_attr":
            # already converted to a constant, as is every node upstream of the current one
            array = _converted_constant(ctx, n)
            if array is None or not np.all(np.isfinite(array)):
                return True
            continue
        if n.op != "call_function":
            return True  # a placeholder: a step input may be a mask
        if n.target in _GEMMS:
            continue
        if n.target not in _PASS_INF or _has_infinite_number((n.args, n.kwargs)):
            return True
        stack.extend(n.all_input_nodes)
    return False


def _has_infinite_number(args: Any) -> bool:
    if isinstance(args, (list, tuple)):
        return any(_has_infinite_number(a) for a in args)
    if isinstance(args, dict):
        return any(_has_infinite_number(a) for a in args.values())
    return isinstance(args, float) and not np.isfinite(args)


@converter(aten._log_softmax.default)
def _log_softmax(ctx: ConvertContext, node: fx.Node) -> Value:
    return ctx.emit("graph.log_softmax", [ctx.value(node.args[0])], axis=int(node.args[1]))


@converter(aten._softmax_backward_data.default)
def _softmax_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    return ctx.emit("graph.softmax_backward", ctx.values(node.args[:2]), axis=int(node.args[2]))


@converter(aten._log_softmax_backward_data.default)
def _log_softmax_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    grad, out = node.args[:2]
    if (_is_nll_backward(grad) and _rank2_axis1(node.args[2], out)
            and _ignored_class(ctx, grad, 3) is None):
        # log_softmax_backward(nll_loss_backward(g, logp, t), logp) = ce_backward(g, logp, t):
        # softmax(logp) = softmax(logits), so the logits themselves are not needed.
        g, _logp, target = grad.args[:3]
        ce = ctx.emit("graph.cross_entropy_backward",
                      [ctx.value(g), ctx.value(out), ctx.value(target)])
        return _sum_reduction(ctx, grad, 4, ce)
    return ctx.emit("graph.log_softmax_backward", ctx.values(node.args[:2]),
                    axis=int(node.args[2]))


# --- negative log likelihood -------------------------------------------------------------------
def _is_nll_backward(arg: Any) -> bool:
    return isinstance(arg, fx.Node) and arg.target == aten.nll_loss_backward.default


def _rank2_axis1(axis: int, node: Any) -> bool:
    return isinstance(node, fx.Node) and len(node.meta["val"].shape) == 2 and axis % 2 == 1


def _check_nll(ctx: ConvertContext, node: fx.Node, first: int) -> None:
    weight, reduction = node.args[first:first + 2]
    if weight is not None:
        raise ctx.unsupported("class weights")
    if reduction not in (1, 2):
        raise ctx.unsupported("reduction='none'")
    if len(ctx.meta(node.args[first - 1]).shape) != 1:
        raise ctx.unsupported("targets that are not one label per row")


def _ignored_class(ctx: ConvertContext, node: fx.Node, first: int) -> int | None:
    """The class an ``nll_loss`` node's ``ignore_index`` (argument ``first + 2``) names, or
    None where it names none (PyTorch's -100: no label is ignored, and the runtime refuses
    a label outside the classes)."""
    ignore_index = int(node.args[first + 2])
    classes = ctx.meta(node.args[first - 2]).shape[1]
    return ignore_index if 0 <= ignore_index < classes else None


def _kept_one_hot(ctx: ConvertContext, target: Value, classes: int, ignored: int) -> Value:
    """``one_hot(t)`` with the ignored class's column zeroed: row i is 1 at t_i, or all 0
    where t_i is ignored (its weight in torch's mean)."""
    rows = ctx.emit("graph.one_hot", [target], classes=classes)
    kept = np.ones(classes, np.float32)
    kept[ignored] = 0.0
    return ctx.emit("graph.mul", [rows, ctx.const(kept)])


def _sum_reduction(ctx: ConvertContext, nll: fx.Node, reduction_arg: int, v: Value) -> Value:
    """graph.cross_entropy is a mean; reduction='sum' (2) scales it by the batch size."""
    if nll.args[reduction_arg] != 2:
        return v
    n = ctx.shape(nll.args[reduction_arg - 2])[0]
    return ctx.emit("graph.mul", [v, ctx.const(float(n))])


@converter(aten.nll_loss_forward.default)
def _nll_loss_forward(ctx: ConvertContext, node: fx.Node) -> tuple:
    """-mean(logp[i, t_i]); over a ``_log_softmax`` it is ``graph.cross_entropy`` of the
    logits, else ``cross_entropy(logp) - mean(logsumexp(logp))`` (logp - log_softmax(logp)
    is logsumexp(logp) in every column)."""
    logp_node, target = node.args[:2]
    _check_nll(ctx, node, 2)
    logp, t = ctx.value(logp_node), ctx.value(target)
    n = logp.type.shape[0]  # type: ignore[union-attr]
    ignored = _ignored_class(ctx, node, 2)
    if ignored is not None:
        # the rows labelled with the ignored class left out: -sum(logp where w), over the
        # rows kept for the mean (sum(w): torch's total_weight; NaN if none is kept)
        w = _kept_one_hot(ctx, t, logp.type.shape[1], ignored)  # type: ignore[union-attr]
        picked = ctx.emit("graph.reduce_sum", [ctx.emit("graph.relu_backward", [logp, w])])
        loss = ctx.emit("graph.neg", [picked])
        total = ctx.emit("graph.reduce_sum", [w])
        if node.args[3] == 1:
            loss = ctx.emit("graph.div", [loss, total])
        return loss, total
    src = logp_node
    if (isinstance(src, fx.Node) and src.target == aten._log_softmax.default
            and _rank2_axis1(src.args[1], src)):
        loss = ctx.emit("graph.cross_entropy", [ctx.value(src.args[0]), t])
    else:
        ce = ctx.emit("graph.cross_entropy", [logp, t])
        lse = ctx.emit("graph.sub", [logp, ctx.emit("graph.log_softmax", [logp], axis=1)])
        loss = ctx.emit("graph.sub", [ce, ctx.emit("graph.reduce_mean", [lse])])
    return _sum_reduction(ctx, node, 3, loss), ctx.const(float(n))


@converter(aten.nll_loss_backward.default)
def _nll_loss_backward(ctx: ConvertContext, node: fx.Node) -> Value:
    """-onehot(t) * g / N = ce_backward(g, 0, t) - g / (N * C): softmax(0) is 1/C. With an
    ``ignore_index`` naming a class, ``-w * g / sum(w)`` (``-w * g`` for a sum), ``w`` the
    one-hot labels less that class: ignored rows get no gradient."""
    g, logp_node, target = node.args[:3]
    _check_nll(ctx, node, 3)
    n, c = ctx.shape(logp_node)
    gv = ctx.value(g)
    ignored = _ignored_class(ctx, node, 3)
    if ignored is not None:
        w = _kept_one_hot(ctx, ctx.value(target), c, ignored)
        if node.args[4] == 1:
            gv = ctx.emit("graph.div", [gv, ctx.emit("graph.reduce_sum", [w])])
        return ctx.emit("graph.neg", [ctx.emit("graph.mul", [w, gv])])
    zeros = ctx.const(np.zeros((n, c), np.float32))
    ce = ctx.emit("graph.cross_entropy_backward", [gv, zeros, ctx.value(target)])
    uniform = ctx.emit("graph.mul", [gv, ctx.const(1.0 / (n * c))])
    out = ctx.emit("graph.sub", [ce, uniform])
    return _sum_reduction(ctx, node, 4, out)
