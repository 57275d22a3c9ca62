"""The ``graph`` dialect, training ops: convolution, pooling, normalization, activations
and their backward ops, the loss and the optimizer updates (see ``graph_ops.py`` for the
conventions; shape rules live in ``shape_rules.py``).
"""

from __future__ import annotations

from . import shape_rules as rules
from .dialect import OpDef, VerifyError, attr, attrs, attrs_of, operand_count_range, register_op
from .graph_ops import UnaryOp, verify_activation
from .ir import Operation

CONV = attrs(
    stride=attr("ints", [1, 1]),
    padding=attr("ints", [0, 0]),
    dilation=attr("ints", [1, 1]),
    groups=attr("int", 1),
)
POOL = attrs(kernel_size=attr("ints"), stride=attr("ints", []), padding=attr("ints", [0, 0]))
AVG_POOL = attrs(**POOL, count_include_pad=attr("bool", True))
AXIS = attrs(axis=attr("int", -1))
GELU = attrs(approximate=attr("str", "none"))


# --- convolution and pooling -----------------------------------------------------------------
@register_op
class Conv2d(OpDef):
    """``graph.conv2d %x, %w {stride = [2, 2], padding = [1, 1]}``: NCHW input, OIHW weight."""

    name = "graph.conv2d"
    operands = ("x", "weight", "bias?")
    attributes = CONV
    infer = staticmethod(rules.conv2d)


@register_op
class Conv2dBackwardInput(OpDef):
    """``graph.conv2d_backward_input %grad_out, %w {input_shape = [N, C, H, W], ...}``."""

    name = "graph.conv2d_backward_input"
    operands = ("grad_out", "weight")
    results = ("grad_x",)
    attributes = attrs(input_shape=attr("ints"), **CONV)
    infer = staticmethod(rules.conv2d_backward_input)


@register_op
class Conv2dBackwardWeight(OpDef):
    """``graph.conv2d_backward_weight %grad_out, %x[, %mask] {weight_shape = [O, C/g, KH, KW], ...}``.

    With ``%mask`` (weight-shaped) it is the sampled weight gradient: only the entries where
    the mask is non-zero are computed, the rest are zero (the conv form of ``graph.sddmm``)."""

    name = "graph.conv2d_backward_weight"
    operands = ("grad_out", "x", "mask?")
    results = ("grad_weight",)
    attributes = attrs(weight_shape=attr("ints"), **CONV)
    infer = staticmethod(rules.conv2d_backward_weight)


@register_op
class MaxPool2d(OpDef):
    """``graph.max_pool2d %x {kernel_size = [2, 2]}`` (stride defaults to the kernel)."""

    name = "graph.max_pool2d"
    attributes = POOL
    infer = staticmethod(rules.pool2d)


@register_op
class MaxPool2dBackward(OpDef):
    """``graph.max_pool2d_backward %grad_out, %x``: each gradient to its window's first max."""

    name = "graph.max_pool2d_backward"
    operands = ("grad_out", "x")
    results = ("grad_x",)
    attributes = POOL
    infer = staticmethod(rules.pool2d_backward)


@register_op
class AvgPool2d(OpDef):
    """``graph.avg_pool2d %x {kernel_size = [2, 2], count_include_pad = true}``."""

    name = "graph.avg_pool2d"
    attributes = AVG_POOL
    infer = staticmethod(rules.pool2d)


@register_op
class AvgPool2dBackward(OpDef):
    """``graph.avg_pool2d_backward %grad_out, %x``: spreads each gradient over its window."""

    name = "graph.avg_pool2d_backward"
    operands = ("grad_out", "x")
    results = ("grad_x",)
    attributes = AVG_POOL
    infer = staticmethod(rules.pool2d_backward)


# --- normalization ---------------------------------------------------------------------
@register_op
class BatchNorm(OpDef):
    """``%out, %mean, %invstd = graph.batch_norm %x, %w, %b {eps = 1e-05}`` (training mode,
    statistics over every dim but 1, biased variance; ``activation = "relu"``: out is
    max(., 0); a fourth operand ``%r`` is added to out before the activation: a residual
    connection, see ``fuse-activations``)."""

    name = "graph.batch_norm"
    operands = ("x", "weight", "bias", "residual?")
    results = ("out", "mean", "invstd")
    attributes = attrs(eps=attr("float", 1e-5), activation=attr("str", "none"))
    infer = staticmethod(rules.batch_norm)
    verify = staticmethod(verify_activation)


def _verify_bn_backward(op) -> None:
    """A fused ReLU backward (``activation = "relu"``) comes with the ReLU's output."""
    from .dialect import VerifyError, attrs_of

    verify_activation(op)
    fused = attrs_of(op)["activation"] == "relu"
    if fused != (len(op.operands) == 6):
        raise VerifyError('\'activation\' = "relu" and the relu_out operand go together')


@register_op
class BatchNormBackward(OpDef):
    """``%gx, %gw, %gb = graph.batch_norm_backward %g, %x, %w, %mean, %invstd`` (``{activation
    = "relu"}, %y``: the gradient of ``relu(batch_norm(x))`` whose output was y, i.e. g
    taken where y > 0 first, see ``fuse-activations``)."""

    name = "graph.batch_norm_backward"
    operands = ("grad_out", "x", "weight", "mean", "invstd", "relu_out?")
    results = ("grad_x", "grad_weight", "grad_bias")
    attributes = attrs(activation=attr("str", "none"))
    infer = staticmethod(rules.batch_norm_backward)
    verify = staticmethod(_verify_bn_backward)


@register_op
class LayerNorm(OpDef):
    """``%out, %mean, %rstd = graph.layer_norm %x, %w, %b {normalized_rank = 1}``."""

    name = "graph.layer_norm"
    operands = ("x", "weight", "bias")
    results = ("out", "mean", "rstd")
    attributes = attrs(normalized_rank=attr("int", 1), eps=attr("float", 1e-5))
    infer = staticmethod(rules.layer_norm)


@register_op
class LayerNormBackward(OpDef):
    """``%gx, %gw, %gb = graph.layer_norm_backward %g, %x, %mean, %rstd, %w``."""

    name = "graph.layer_norm_backward"
    operands = ("grad_out", "x", "mean", "rstd", "weight")
    results = ("grad_x", "grad_weight", "grad_bias")
    attributes = attrs(normalized_rank=attr("int", 1))
    infer = staticmethod(rules.layer_norm_backward)


# --- activations -------------------------------------------------------------------------
class _Backward(OpDef):
    operands = ("grad_out", "x")
    results = ("grad_x",)
    infer = staticmethod(rules.all_same)


def _verify_gelu(op: Operation) -> None:
    if attrs_of(op)["approximate"] not in ("none", "tanh"):
        raise VerifyError('\'approximate\' must be "none" or "tanh"')


@register_op
class Relu(UnaryOp):
    """``graph.relu %x``: max(x, 0)."""

    name = "graph.relu"


@register_op
class ReluBackward(_Backward):
    """``graph.relu_backward %grad_out, %x``: grad_out where x > 0, else 0 (a third operand
    is added to grad_out first: two gradients summed, see ``fuse-activations``)."""

    name = "graph.relu_backward"
    operands = ("grad_out", "x", "addend?")


@register_op
class Gelu(UnaryOp):
    """``graph.gelu %x {approximate = "tanh"}``: exact (erf) GELU unless approximated."""

    name = "graph.gelu"
    attributes = GELU
    verify = staticmethod(_verify_gelu)


@register_op
class GeluBackward(_Backward):
    """``graph.gelu_backward %grad_out, %x``."""

    name = "graph.gelu_backward"
    attributes = GELU
    verify = staticmethod(_verify_gelu)


@register_op
class Softmax(OpDef):
    """``graph.softmax %x {axis = -1}``."""

    name = "graph.softmax"
    attributes = AXIS
    infer = staticmethod(rules.axis_op)


@register_op
class SoftmaxBackward(OpDef):
    """``graph.softmax_backward %grad_out, %out``: out * (g - sum(g * out, axis))."""

    name = "graph.softmax_backward"
    operands = ("grad_out", "out")
    results = ("grad_x",)
    attributes = AXIS
    infer = staticmethod(rules.axis_op)


@register_op
class LogSoftmax(Softmax):
    """``graph.log_softmax %x {axis = -1}``."""

    name = "graph.log_softmax"


@register_op
class LogSoftmaxBackward(SoftmaxBackward):
    """``graph.log_softmax_backward %grad_out, %out``: g - exp(out) * sum(g, axis)."""

    name = "graph.log_softmax_backward"


# --- loss and optimizers -------------------------------------------------
@register_op
class OneHot(OpDef):
    """``graph.one_hot %idx {classes = 100} : tensor<4x7xi64> -> tensor<4x7x100xf32>``:
    1.0 at each index, 0.0 elsewhere. An embedding lookup is ``one_hot(idx) · table`` (a
    GEMM whose one-hot operand the PEs skip all but one of per row) and its gradient
    ``one_hot(idx)ᵀ · g``. Like cross entropy's labels, the indices are a function
    argument the runtime passes one-hot."""

    name = "graph.one_hot"
    operands = ("indices",)
    attributes = attrs(classes=attr("int"))
    infer = staticmethod(rules.one_hot)


@register_op
class CrossEntropy(OpDef):
    """``graph.cross_entropy %logits, %labels : tensor<NxCxf32>, tensor<Nxi64> -> tensor<f32>``
    (mean over the batch)."""

    name = "graph.cross_entropy"
    operands = ("logits", "labels")
    results = ("loss",)
    infer = staticmethod(rules.cross_entropy)


@register_op
class CrossEntropyBackward(OpDef):
    """``graph.cross_entropy_backward %g, %logits, %labels``: (softmax - onehot) * g / N."""

    name = "graph.cross_entropy_backward"
    operands = ("grad_loss", "logits", "labels")
    results = ("grad_logits",)
    infer = staticmethod(rules.cross_entropy_backward)


@register_op
class SgdUpdate(OpDef):
    """``%p2, %buf2 = graph.sgd_update %p, %grad, %buf {lr = 0.1, momentum = 0.9}``.

    PyTorch SGD: g = grad + wd*p; buf = momentum*buf + g; p -= lr*buf (``nesterov``:
    p -= lr*(g + momentum*buf)). With a trailing
    ``%mask`` the new param is masked (zero where the mask is zero), as a following
    ``mask_apply`` would, without a second pass over it. Without one, a param with a
    sparse encoding changes only at its non-zeros (its pattern is kept); with one, the mask
    decides even for an encoded param (a held weight at zero, e.g. a connection just grown
    at zero, is updated)."""

    name = "graph.sgd_update"
    operands = ("param", "grad", "momentum_buf", "mask?")
    results = ("new_param", "new_momentum_buf")
    attributes = attrs(
        lr=attr("float"), momentum=attr("float", 0.0), weight_decay=attr("float", 0.0),
        nesterov=attr("bool", False),
    )
    infer = staticmethod(rules.sgd_update)

    @staticmethod
    def verify(op) -> None:
        _hyper_in_range(op, {"lr": (0, None), "momentum": (0, None), "weight_decay": (0, None)})
        if op.attributes.get("nesterov") and not float(op.attributes.get("momentum", 0.0)) > 0:
            raise VerifyError("nesterov needs a momentum above 0 (as torch.optim.SGD)")


@register_op
class AdamUpdate(OpDef):
    """``%p2, %m2, %v2 = graph.adam_update %p, %grad, %m, %v, %step {lr = 0.001}``.

    PyTorch Adam with bias correction at ``step`` (1-based, a rank-0 tensor); a sparse
    param and a trailing ``%mask`` as in ``sgd_update``."""

    name = "graph.adam_update"
    operands = ("param", "grad", "m", "v", "step", "mask?")
    results = ("new_param", "new_m", "new_v")
    attributes = attrs(
        lr=attr("float"),
        beta1=attr("float", 0.9),
        beta2=attr("float", 0.999),
        eps=attr("float", 1e-8),
        weight_decay=attr("float", 0.0),
    )
    infer = staticmethod(rules.adam_update)

    @staticmethod
    def verify(op) -> None:
        _hyper_in_range(op, {"lr": (0, None), "beta1": (0, 1), "beta2": (0, 1), "eps": (0, None),
                             "weight_decay": (0, None)})


def _hyper_in_range(op, bounds: dict[str, tuple[float, float | None]]) -> None:
    """Optimizer hyperparameters finite, at least ``lo`` and below ``hi`` (torch.optim's
    checks: a NaN or negative learning rate is an error there too)."""
    import math

    for key, (lo, hi) in bounds.items():
        value = op.attributes.get(key)  # the defaults are in range
        if value is None:
            continue
        v = float(value)  # type: ignore[arg-type]
        if not math.isfinite(v) or v < lo or (hi is not None and v >= hi):
            span = f"in [{lo}, {hi})" if hi is not None else f"finite and at least {lo}"
            raise VerifyError(f"{key} = {value} must be {span}")


#: operands of each optimizer update before its optional trailing mask
_UPDATE_REQUIRED = {cls.name: operand_count_range(cls)[0] for cls in (SgdUpdate, AdamUpdate)}


def update_mask(op):
    """The trailing mask operand of an optimizer update (``sgd_update``, ``adam_update``),
    or None."""
    n = _UPDATE_REQUIRED[op.name]
    return op.operands[n] if len(op.operands) > n else None


def keeps_pattern(op) -> bool:
    """Whether an optimizer update changes only its parameter's non-zeros: a sparse-encoded
    parameter and no mask operand (with one, the mask decides)."""
    return getattr(op.operands[0].type, "encoding", None) is not None and update_mask(op) is None
