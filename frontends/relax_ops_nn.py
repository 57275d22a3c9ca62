"""Converters of Relax's normalization and adaptive-pooling ops (``relax.nn.layer_norm``,
``relax.nn.batch_norm``, ``relax.nn.adaptive_avg_pool2d``), registered with
:func:`acf.frontends.relax_ops.converter` when that module is imported.

``batch_norm`` in inference form is a per-channel scale and shift of the running
statistics; in training form it is ``graph.batch_norm`` (batch statistics, biased variance,
as TVM's lowering) plus TVM's update of the running statistics. Adaptive average pooling
whose bins divide the input is ``graph.avg_pool2d``; otherwise the mean over each bin,
first along H then along W, is a GEMM with the bins' averaging matrix (as the PyTorch
frontend lowers ``_adaptive_avg_pool2d``).
"""

from __future__ import annotations

import numpy as np

from ..compiler.ir import Value
from .gathers import adaptive_bins
from .relax import RelaxContext
from .relax_ops import _gather_along, _reshape, converter


def _flag(ctx: RelaxContext, name: str) -> bool:
    return bool(ctx.attr(name, True))


# --- normalization ----------------------------------------------------------------------
@converter("relax.nn.layer_norm")
def _layer_norm(ctx: RelaxContext) -> Value:
    """``graph.layer_norm`` over the trailing ``len(axes)`` dims."""
    x, w, b = ctx.arg(0), ctx.arg(1), ctx.arg(2)
    rank = x.type.rank  # type: ignore[union-attr]
    axes = sorted(int(a) % rank for a in ctx.attr("axes"))
    k = len(axes)
    if k == 0 or axes != list(range(rank - k, rank)):
        raise ctx.unsupported(f"normalizing axes {axes} (only the trailing dims)")
    if not (_flag(ctx, "center") and _flag(ctx, "scale")):
        # TVM's own lowering applies gamma and beta whatever these say
        raise ctx.unsupported("center=False or scale=False")
    affine = tuple(x.type.shape[-k:])  # type: ignore[union-attr]
    if w.type.shape != affine or b.type.shape != affine:  # type: ignore[union-attr]
        raise ctx.unsupported(f"gamma {w.type} and beta {b.type} for normalized shape "
                              f"{list(affine)}")
    return ctx.emit("graph.layer_norm", [x, w, b], normalized_rank=k,
                    eps=float(ctx.attr("epsilon", 1e-5)))


def _channel_view(ctx: RelaxContext, v: Value, rank: int, axis: int) -> Value:
    shape = [1] * rank
    shape[axis] = v.type.shape[0]  # type: ignore[union-attr]
    return _reshape(ctx, v, tuple(shape))


@converter("relax.nn.batch_norm")
def _batch_norm(ctx: RelaxContext) -> tuple[Value, Value, Value]:
    """``(out, new_running_mean, new_running_var)``, as TVM's lowering computes them.

    Inference form (``training=False``): ``(x - rm) * (rsqrt(rv + eps) * gamma) + beta`` with
    the running statistics passed through. Training form: ``graph.batch_norm`` (channel
    axis 1 only), and the running statistics ``(1 - m) * r + m * s`` of the batch mean and
    biased batch variance (TVM's update: the variance is not the unbiased one)."""
    x, gamma, beta, rm, rv = (ctx.arg(i) for i in range(5))
    rank = x.type.rank  # type: ignore[union-attr]
    axis = int(ctx.attr("axis", 1))
    if rank < 2 or not -rank <= axis < rank:
        raise ctx.unsupported(f"channel axis {axis} of {x.type}")
    axis %= rank
    channels = x.type.shape[axis]  # type: ignore[union-attr]
    if any(v.type.shape != (channels,) for v in (gamma, beta, rm, rv)):  # type: ignore[union-attr]
        raise ctx.unsupported(f"parameters that are not [{channels}] vectors")
    eps = float(ctx.attr("epsilon", 1e-5))
    scale, center = _flag(ctx, "scale"), _flag(ctx, "center")
    if not bool(ctx.attr("training", False)):
        factor = ctx.emit("graph.rsqrt", [ctx.emit("graph.add", [rv, ctx.const(np.float32(eps))])])
        if scale:
            factor = ctx.emit("graph.mul", [factor, gamma])
        out = ctx.emit("graph.sub", [x, _channel_view(ctx, rm, rank, axis)])
        out = ctx.emit("graph.mul", [out, _channel_view(ctx, factor, rank, axis)])
        if center:
            out = ctx.emit("graph.add", [out, _channel_view(ctx, beta, rank, axis)])
        return out, rm, rv
    if axis != 1:
        raise ctx.unsupported(f"training-mode batch norm over axis {axis} (graph.batch_norm "
                              "normalizes axis 1)")
    w = gamma if scale else ctx.const(np.ones(channels, np.float32))
    b = beta if center else ctx.const(np.zeros(channels, np.float32))
    out, mean, _ = ctx.b.op("graph.batch_norm", [x, w, b], eps=eps)
    reduce_axes = [d for d in range(rank) if d != 1]
    diff = ctx.emit("graph.sub", [x, _channel_view(ctx, mean, rank, 1)])
    var = ctx.emit("graph.reduce_mean", [ctx.emit("graph.mul", [diff, diff])], axes=reduce_axes)
    m = float(ctx.attr("momentum", 0.1))

    def update(running: Value, batch: Value) -> Value:
        kept = ctx.emit("graph.mul", [running, ctx.const(np.float32(1.0 - m))])
        return ctx.emit("graph.add", [kept, ctx.emit("graph.mul", [batch, ctx.const(np.float32(m))])])

    return out, update(rm, mean), update(rv, var)


# --- adaptive pooling -------------------------------------------------------------------
@converter("relax.nn.adaptive_avg_pool2d")
def _adaptive_avg_pool2d(ctx: RelaxContext) -> Value:
    x = ctx.arg(0)
    layout = str(ctx.attr("layout", "NCHW"))
    out_layout = str(ctx.attr("out_layout", layout) or layout)
    if (layout, out_layout) != ("NCHW", "NCHW") or x.type.rank != 4:  # type: ignore[union-attr]
        raise ctx.unsupported(f"layout {layout} -> {out_layout} of {x.type}")
    h, w = x.type.shape[2:]  # type: ignore[union-attr]
    oh, ow = ctx.shape()[2:]
    if (oh, ow) == (h, w):
        return x
    if h % oh == 0 and w % ow == 0:
        k = [h // oh, w // ow]
        return ctx.emit("graph.avg_pool2d", [x], kernel_size=k, stride=k, padding=[0, 0])
    out = x
    for dim, size, n in ((2, h, oh), (3, w, ow)):
        if size != n:
            out = _gather_along(ctx, out, dim, ctx.const(adaptive_bins(size, n)))
    return out
