"""Reference numpy interpreter of the ``graph`` dialect (fp32, PyTorch semantics).

Used to check that passes preserve results::

    outs = run_func(module.func("train_step"), [x, w])

Conventions: NCHW / OIHW; conv through im2col; batch norm in training mode normalizes with
the biased variance; cross entropy is the mean over the batch; ops on a parameter with a
sparse encoding (sgd_update, adam_update) only change its non-zeros, unless the update has
a mask operand (then the mask decides).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from . import graph_ops  # noqa: F401  (registers the ops)
from .dialect import attrs_of
from .graph_nn_ops import keeps_pattern
from .ir import Attribute, FuncOp, Operation, Value
from .shape_rules import normalize_axes

Semantics = Callable[[list[np.ndarray], Mapping[str, Attribute], Operation], list[np.ndarray]]
SEMANTICS: dict[str, Semantics] = {}
NP_DTYPES = {"f32": np.float32, "i64": np.int64, "i1": np.bool_, "index": np.int64}
f32 = np.float32


class InterpError(Exception):
    """The interpreter met an op it has no semantics for, or bad inputs."""


def semantics(*names: str) -> Callable[[Semantics], Semantics]:
    """Register the numpy semantics of one or more ops."""

    def wrap(fn: Semantics) -> Semantics:
        for name in names:
            SEMANTICS[name] = fn
        return fn

    return wrap


def _one(fn: Callable[..., np.ndarray]) -> Semantics:
    def run(xs: list[np.ndarray], a: Mapping[str, Attribute], op: Operation) -> list[np.ndarray]:
        with np.errstate(all="ignore"):  # IEEE results (log(-1) is NaN), as the vector unit
            return [fn(*xs)]
    return run


ELEMENTWISE: dict[str, Callable[..., np.ndarray]] = {  # graph.add: _add (its activation)
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "neg": np.negative,
    "exp": np.exp,
    "log": np.log,
    "abs": np.abs,
    # as the vector unit computes them (isa/semantics.py), in the operand's precision
    "sigmoid": lambda x: (x.dtype.type(1) / (x.dtype.type(1) + np.exp(-x))).astype(x.dtype),
    "tanh": np.tanh,
    "sqrt": np.sqrt,
    "rsqrt": lambda x: (f32(1) / np.sqrt(x)).astype(x.dtype),
    "relu": lambda x: np.maximum(x, x.dtype.type(0)),
    "relu_backward": lambda g, x, *addend: np.where(x > 0, np.add(g, *addend) if addend else g,
                                                   g.dtype.type(0)),
    "mask_apply": lambda w, m: np.where(m != 0, w, w.dtype.type(0)),
}
for _name, _fn in ELEMENTWISE.items():
    SEMANTICS[f"graph.{_name}"] = _one(_fn)


def _activation(x: np.ndarray, attrs: Mapping[str, Attribute]) -> np.ndarray:
    """An op's fused activation (``fuse-activations``), if it has one."""
    return ELEMENTWISE["relu"](x) if attrs.get("activation", "none") == "relu" else x


@semantics("graph.add")
def _add(xs, attrs, op):
    return [_activation(np.add(*xs), attrs)]


def _mm(a: np.ndarray, b: np.ndarray, attrs: Mapping[str, Attribute]) -> np.ndarray:
    a = np.swapaxes(a, -1, -2) if attrs["transpose_a"] else a
    b = np.swapaxes(b, -1, -2) if attrs["transpose_b"] else b
    return np.matmul(a, b)


@semantics("graph.matmul")
def _matmul(xs, attrs, op):
    return [_activation(_mm(xs[0], xs[1], attrs), attrs)]


@semantics("graph.sddmm")
def _sddmm(xs, attrs, op):
    return [np.where(xs[2] != 0, _mm(xs[0], xs[1], attrs), f32(0))]


@semantics("graph.linear")
def _linear(xs, attrs, op):
    out = np.matmul(xs[0], xs[1].T)
    return [_activation(out + xs[2] if len(xs) == 3 else out, attrs)]


@semantics("graph.reshape")
def _reshape(xs, attrs, op):
    return [xs[0].reshape(attrs["shape"])]


@semantics("graph.transpose")
def _transpose(xs, attrs, op):
    return [np.ascontiguousarray(np.transpose(xs[0], attrs["perm"]))]


def _box(offsets, sizes, strides) -> tuple[slice, ...]:
    return tuple(slice(o, o + k * s, s) for o, k, s in zip(offsets, sizes, strides))


@semantics("graph.slice")
def _slice(xs, attrs, op):
    return [np.ascontiguousarray(xs[0][_box(attrs["offsets"], attrs["sizes"], attrs["strides"])])]


@semantics("graph.slice_backward")
def _slice_backward(xs, attrs, op):
    out = np.zeros(attrs["shape"], xs[0].dtype)
    out[_box(attrs["offsets"], xs[0].shape, attrs["strides"])] = xs[0]
    return [out]


@semantics("graph.concat")
def _concat(xs, attrs, op):
    return [np.concatenate(xs, axis=attrs["axis"])]


@semantics("graph.broadcast_to")
def _broadcast_to(xs, attrs, op):
    return [np.broadcast_to(xs[0], attrs["shape"]).copy()]


@semantics("graph.reduce_sum", "graph.reduce_max", "graph.reduce_mean")
def _reduce(xs, attrs, op):
    fn = {"graph.reduce_sum": np.sum, "graph.reduce_max": np.max, "graph.reduce_mean": np.mean}[
        op.name
    ]
    axes = tuple(normalize_axes(attrs["axes"], xs[0].ndim))
    return [np.asarray(fn(xs[0], axis=axes, keepdims=bool(attrs["keepdim"])), xs[0].dtype)]


@semantics("graph.constant")
def _constant(xs, attrs, op):
    return [attrs["value"].array.copy()]


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@semantics("graph.softmax", "graph.log_softmax")
def _softmax_op(xs, attrs, op):
    fn = _softmax if op.name == "graph.softmax" else _log_softmax
    return [fn(xs[0], int(attrs["axis"]))]


@semantics("graph.softmax_backward")
def _softmax_backward(xs, attrs, op):
    g, out = xs
    return [out * (g - (g * out).sum(axis=int(attrs["axis"]), keepdims=True))]


@semantics("graph.log_softmax_backward")
def _log_softmax_backward(xs, attrs, op):
    g, out = xs
    return [g - np.exp(out) * g.sum(axis=int(attrs["axis"]), keepdims=True)]


_erf = np.frompyfunc(math.erf, 1, 1)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _gelu_parts(x: np.ndarray, approximate: str) -> tuple[np.ndarray, np.ndarray]:
    """(gelu(x), d gelu / dx), computed in float64 and rounded once to float32."""
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        inner = _SQRT_2_OVER_PI * (x64 + 0.044715 * x64**3)
        t = np.tanh(inner)
        value = 0.5 * x64 * (1 + t)
        grad = 0.5 * (1 + t) + 0.5 * x64 * (1 - t**2) * _SQRT_2_OVER_PI * (
            1 + 3 * 0.044715 * x64**2
        )
    else:
        cdf = 0.5 * (1 + np.asarray(_erf(x64 / math.sqrt(2.0)), dtype=np.float64))
        value = x64 * cdf
        grad = cdf + x64 * np.exp(-0.5 * x64**2) / math.sqrt(2 * math.pi)
    return value.astype(x.dtype), grad.astype(x.dtype)


@semantics("graph.gelu")
def _gelu(xs, attrs, op):
    return [_gelu_parts(xs[0], str(attrs["approximate"]))[0]]


@semantics("graph.gelu_backward")
def _gelu_backward(xs, attrs, op):
    return [xs[0] * _gelu_parts(xs[1], str(attrs["approximate"]))[1]]


def _normalize(x: np.ndarray, axes: tuple[int, ...], eps: float):
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv = (f32(1) / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
    return (x - mean) * inv, mean, inv


def _channel_view(v: np.ndarray, rank: int) -> np.ndarray:
    return v.reshape((1, -1) + (1,) * (rank - 2))


@semantics("graph.batch_norm")
def _batch_norm(xs, attrs, op):
    x, w, b = xs[:3]
    axes = (0,) + tuple(range(2, x.ndim))
    xhat, mean, inv = _normalize(x, axes, float(attrs["eps"]))
    out = xhat * _channel_view(w, x.ndim) + _channel_view(b, x.ndim)
    if len(xs) > 3:  # a fused residual add
        out = out + xs[3]
    out = _activation(out, attrs)
    return [out, mean.reshape(-1), inv.reshape(-1)]


@semantics("graph.batch_norm_backward")
def _batch_norm_backward(xs, attrs, op):
    g, x, w, mean, inv = xs[:5]
    if attrs["activation"] == "relu":  # fused: the ReLU's backward first
        g = ELEMENTWISE["relu_backward"](g, xs[5])
    axes = (0,) + tuple(range(2, x.ndim))
    count = x.size // x.shape[1]
    inv_v = _channel_view(inv, x.ndim)
    xhat = (x - _channel_view(mean, x.ndim)) * inv_v
    grad_bias = g.sum(axis=axes)
    grad_weight = (g * xhat).sum(axis=axes)
    scale = _channel_view(w, x.ndim) * inv_v / f32(count)
    grad_x = scale * (
        f32(count) * g
        - _channel_view(grad_bias, x.ndim)
        - xhat * _channel_view(grad_weight, x.ndim)
    )
    return [grad_x, grad_weight, grad_bias]


@semantics("graph.layer_norm")
def _layer_norm(xs, attrs, op):
    x, w, b = xs
    axes = tuple(range(x.ndim - int(attrs["normalized_rank"]), x.ndim))
    xhat, mean, inv = _normalize(x, axes, float(attrs["eps"]))
    return [xhat * w + b, mean, inv]


@semantics("graph.layer_norm_backward")
def _layer_norm_backward(xs, attrs, op):
    g, x, mean, inv, w = xs
    k = int(attrs["normalized_rank"])
    axes, lead = tuple(range(x.ndim - k, x.ndim)), tuple(range(x.ndim - k))
    count = f32(int(np.prod(x.shape[-k:])))
    xhat = (x - mean) * inv
    gxhat = g * w
    grad_x = (
        inv
        / count
        * (
            count * gxhat
            - gxhat.sum(axis=axes, keepdims=True)
            - xhat * (gxhat * xhat).sum(axis=axes, keepdims=True)
        )
    )
    return [grad_x, (g * xhat).sum(axis=lead), g.sum(axis=lead)]


def one_hot(indices: np.ndarray, classes: int) -> np.ndarray:
    """f32 one-hot of integer ``indices`` (one more dim of ``classes``); the interpreter's
    ``graph.one_hot`` and what the runtime passes for one-hot inputs. Raises ValueError
    naming an index outside ``[0, classes)``."""
    idx = np.asarray(indices, np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= classes):
        bad = int(idx.min() if idx.min() < 0 else idx.max())
        raise ValueError(f"index {bad} is outside [0, {classes})")
    return np.eye(classes, dtype=f32)[idx]


@semantics("graph.one_hot")
def _one_hot(xs, attrs, op):
    try:
        return [one_hot(xs[0], int(attrs["classes"]))]
    except ValueError as exc:
        raise InterpError(f"one_hot: {exc}") from None


@semantics("graph.cross_entropy")
def _cross_entropy(xs, attrs, op):
    logits, labels = xs
    picked = _log_softmax(logits, 1)[np.arange(len(labels)), labels]
    return [np.asarray(-picked.mean(), logits.dtype)]


@semantics("graph.cross_entropy_backward")
def _cross_entropy_backward(xs, attrs, op):
    g, logits, labels = xs
    grad = _softmax(logits, 1)
    grad[np.arange(len(labels)), labels] -= f32(1)
    return [grad * (g / f32(len(labels)))]


def _keep_pattern(
    op: Operation, param: np.ndarray, outs: list[np.ndarray], olds: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """A sparse-encoded param changes only at its non-zeros (its pattern is runtime data),
    unless the update has a mask operand: then the mask decides (see ``_masked``)."""
    if not keeps_pattern(op):
        return outs
    keep = param != 0
    return [np.where(keep, new, old) for new, old in zip(outs, olds)]


@semantics("graph.sgd_update")
def _sgd_update(xs, attrs, op):
    p, grad, buf = xs[:3]
    g = grad + f32(attrs["weight_decay"]) * p
    new_buf = f32(attrs["momentum"]) * buf + g
    step = g + f32(attrs["momentum"]) * new_buf if attrs["nesterov"] else new_buf
    new_p = p - f32(attrs["lr"]) * step
    return _masked(xs[3:], _keep_pattern(op, p, [new_p, new_buf], [p, buf]))


def _masked(mask: Sequence[np.ndarray], outs: list[np.ndarray]) -> list[np.ndarray]:
    """The optional trailing mask operand of an update zeroes the new param off the mask."""
    if mask:
        outs[0] = np.where(np.asarray(mask[0]) != 0, outs[0], f32(0)).astype(outs[0].dtype)
    return outs


@semantics("graph.adam_update")
def _adam_update(xs, attrs, op):
    p, grad, m, v, step = xs[:5]
    b1, b2, t = f32(attrs["beta1"]), f32(attrs["beta2"]), float(step)
    # torch's 1 - beta comes from the double beta (not 1 - fp32(beta): 1.3e-5 off at 0.999)
    c1, c2 = f32(1 - float(attrs["beta1"])), f32(1 - float(attrs["beta2"]))
    g = grad + f32(attrs["weight_decay"]) * p
    new_m = b1 * m + c1 * g
    new_v = b2 * v + c2 * g * g
    m_hat = new_m / f32(1 - float(attrs["beta1"]) ** t)
    v_hat = new_v / f32(1 - float(attrs["beta2"]) ** t)
    new_p = p - f32(attrs["lr"]) * m_hat / (np.sqrt(v_hat) + f32(attrs["eps"]))
    return _masked(xs[5:], _keep_pattern(op, p, [new_p, new_m, new_v], [p, m, v]))


def run_func(func: FuncOp, args: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``func`` on numpy inputs (converted to the argument element types)."""
    from . import interp_conv  # noqa: F401  (registers conv and pooling semantics)

    if len(args) != len(func.arguments):
        raise InterpError(
            f"@{func.sym_name} takes {len(func.arguments)} arguments, got {len(args)}"
        )
    env: dict[Value, np.ndarray] = {}
    for value, array in zip(func.arguments, args):
        dtype = NP_DTYPES[getattr(value.type, "element", getattr(value.type, "name", "f32"))]
        env[value] = np.asarray(array, dtype=dtype)
    for op in func.body.ops:
        if op.name == "graph.return":
            return [env[v] for v in op.operands]
        if op.name not in SEMANTICS:
            raise InterpError(f"no semantics for '{op.name}'")
        outs = SEMANTICS[op.name]([env[v] for v in op.operands], attrs_of(op), op)
        for value, out in zip(op.results, outs):
            env[value] = np.asarray(out, dtype=NP_DTYPES[value.type.element])  # type: ignore[union-attr]
    raise InterpError(f"@{func.sym_name} has no graph.return")
