"""The ``graph`` dialect, core ops: linear algebra, elementwise math, shapes, reductions,
constants, masks (the training-specific ops are in ``graph_nn_ops.py``).

Each op is a small declarative class: operand and result names (defaults ``("x",)`` and
``("out",)``), typed attributes with defaults, and a shape rule from ``shape_rules.py`` (all
shape rules live there). Every op prints in the custom form
``%r = graph.NAME %a, %b {attrs} : A, B -> R``. Layouts: conv and pooling are NCHW with OIHW
weights; ``stride``/``padding``/``dilation``/``kernel_size`` are ``[h, w]`` lists.
"""

from __future__ import annotations

from . import shape_rules as rules
from .dialect import OpDef, attr, attrs, register_op

NO_TRANSPOSE = attrs(transpose_a=attr("bool", False), transpose_b=attr("bool", False))
REDUCE = attrs(axes=attr("ints", []), keepdim=attr("bool", False))


def verify_activation(op) -> None:
    """A fused activation (``fuse-activations``) is ``"none"`` or ``"relu"``."""
    from .dialect import VerifyError, attrs_of

    if attrs_of(op)["activation"] not in ("none", "relu"):
        raise VerifyError('\'activation\' must be "none" or "relu"')


# --- linear algebra ----------------------------------------------------------------------
@register_op
class Matmul(OpDef):
    """``graph.matmul %a, %b {transpose_b = true}``: a·b, optional transposes, batched
    (``{activation = "relu"}``: max(a·b, 0), see ``fuse-activations``)."""

    name = "graph.matmul"
    operands = ("a", "b")
    attributes = attrs(**NO_TRANSPOSE, activation=attr("str", "none"))
    infer = staticmethod(rules.matmul)
    verify = staticmethod(verify_activation)


@register_op
class Sddmm(OpDef):
    """``graph.sddmm %a, %b, %mask``: a·b computed only where mask != 0 (zero elsewhere)."""

    name = "graph.sddmm"
    operands = ("a", "b", "mask")
    attributes = NO_TRANSPOSE
    infer = staticmethod(rules.sddmm)


@register_op
class Linear(OpDef):
    """``graph.linear %x, %w, %b``: x·wᵀ + b with w[out, in] (``{activation = "relu"}``:
    max(x·wᵀ + b, 0), see ``fuse-activations``)."""

    name = "graph.linear"
    operands = ("x", "weight", "bias?")
    attributes = attrs(activation=attr("str", "none"))
    infer = staticmethod(rules.linear)
    verify = staticmethod(verify_activation)


class UnaryOp(OpDef):
    infer = staticmethod(rules.same_as_first)


# --- elementwise arithmetic (numpy broadcasting) -----------------------------------------
class _Binary(OpDef):
    operands = ("a", "b")
    infer = staticmethod(rules.broadcast)


@register_op
class Add(_Binary):
    """``graph.add %a, %b`` (``{activation = "relu"}``: max(a + b, 0), see
    ``fuse-activations``)."""

    name = "graph.add"
    attributes = attrs(activation=attr("str", "none"))
    verify = staticmethod(verify_activation)


@register_op
class Sub(_Binary):
    """``graph.sub %a, %b``."""

    name = "graph.sub"


@register_op
class Mul(_Binary):
    """``graph.mul %a, %b``."""

    name = "graph.mul"


@register_op
class Div(_Binary):
    """``graph.div %a, %b``."""

    name = "graph.div"


@register_op
class Maximum(_Binary):
    """``graph.maximum %a, %b``: elementwise max (a leaky ReLU is ``maximum(x, 0.01 x)``,
    a clamp a maximum then a minimum)."""

    name = "graph.maximum"


@register_op
class Minimum(_Binary):
    """``graph.minimum %a, %b``: elementwise min."""

    name = "graph.minimum"


@register_op
class Neg(UnaryOp):
    """``graph.neg %x``."""

    name = "graph.neg"


@register_op
class Exp(UnaryOp):
    """``graph.exp %x``."""

    name = "graph.exp"


@register_op
class Log(UnaryOp):
    """``graph.log %x``: the natural logarithm."""

    name = "graph.log"


@register_op
class Abs(UnaryOp):
    """``graph.abs %x``."""

    name = "graph.abs"


@register_op
class Sigmoid(UnaryOp):
    """``graph.sigmoid %x``: 1 / (1 + exp(-x)) (SiLU is ``x * sigmoid(x)``)."""

    name = "graph.sigmoid"


@register_op
class Tanh(UnaryOp):
    """``graph.tanh %x``."""

    name = "graph.tanh"


@register_op
class Sqrt(UnaryOp):
    """``graph.sqrt %x``."""

    name = "graph.sqrt"


@register_op
class Rsqrt(UnaryOp):
    """``graph.rsqrt %x``: 1 / sqrt(x)."""

    name = "graph.rsqrt"


# --- shapes and reductions -----------------------------------------------------------------
@register_op
class Reshape(OpDef):
    """``graph.reshape %x {shape = [2, 8]}`` (row-major)."""

    name = "graph.reshape"
    attributes = attrs(shape=attr("ints"))
    infer = staticmethod(rules.reshape)


@register_op
class Transpose(OpDef):
    """``graph.transpose %x {perm = [1, 0]}``: out.shape[i] = x.shape[perm[i]] (permute)."""

    name = "graph.transpose"
    attributes = attrs(perm=attr("ints"))
    infer = staticmethod(rules.transpose)


@register_op
class BroadcastTo(OpDef):
    """``graph.broadcast_to %x {shape = [4, 8]}``."""

    name = "graph.broadcast_to"
    attributes = attrs(shape=attr("ints"))
    infer = staticmethod(rules.broadcast_to)


@register_op
class Slice(OpDef):
    """``graph.slice %x {offsets = [0, 2], sizes = [4, 3], strides = [1, 1]}``: the box
    ``x[o : o + k*s : s]`` per dim (like MLIR's ``tensor.extract_slice``); a select is a
    slice of size 1 and a reshape."""

    name = "graph.slice"
    attributes = attrs(offsets=attr("ints"), sizes=attr("ints"), strides=attr("ints"))
    infer = staticmethod(rules.slice_)


@register_op
class SliceBackward(OpDef):
    """``graph.slice_backward %g {shape = [4, 8], offsets = [0, 2], strides = [1, 1]}``:
    zeros of ``shape`` holding ``g`` in the box a ``graph.slice`` of that shape read."""

    name = "graph.slice_backward"
    operands = ("grad",)
    attributes = attrs(shape=attr("ints"), offsets=attr("ints"), strides=attr("ints"))
    infer = staticmethod(rules.slice_backward)


@register_op
class Concat(OpDef):
    """``graph.concat %a, %b {axis = 0}``: the operands one after another along ``axis``
    (the backward of a split; a stack is a concat of reshaped operands)."""

    name = "graph.concat"
    operands = ("values*",)
    attributes = attrs(axis=attr("int"))
    infer = staticmethod(rules.concat)


class _Reduce(OpDef):
    attributes = REDUCE
    infer = staticmethod(rules.reduce)


@register_op
class ReduceSum(_Reduce):
    """``graph.reduce_sum %x {axes = [1], keepdim = true}`` (no axes: all of them)."""

    name = "graph.reduce_sum"


@register_op
class ReduceMax(_Reduce):
    """``graph.reduce_max %x {axes = [0]}``."""

    name = "graph.reduce_max"


@register_op
class ReduceMean(_Reduce):
    """``graph.reduce_mean %x {axes = [2, 3]}``."""

    name = "graph.reduce_mean"


# --- constants, masks and the terminator ------------------------------------------
@register_op
class Constant(OpDef):
    """``graph.constant {value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>``."""

    name = "graph.constant"
    operands = ()
    attributes = attrs(value=attr("dense"))
    infer = staticmethod(rules.constant)


@register_op
class MaskApply(OpDef):
    """``graph.mask_apply %w, %mask``: w * mask for a 0/1 mask (w where mask != 0, else 0)."""

    name = "graph.mask_apply"
    operands = ("w", "mask")
    infer = staticmethod(rules.all_same)


@register_op
class Return(OpDef):
    """``graph.return %a, %b : tensor<...>, tensor<...>`` ends a ``graph.func``."""

    name = "graph.return"
    operands = ("values*",)
    results = ()
    infer = staticmethod(rules.no_results)
