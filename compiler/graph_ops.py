"""The ``graph`` dialect: training-level ops (forward, backward, optimizer).

Every op prints in the custom form ``%r = graph.NAME %a, %b {attrs} : A, B -> R``; the
shape rule of each op lives in ``shape_rules.py``. Layouts: conv and pooling are NCHW with
OIHW weights; ``stride``/``padding``/``dilation``/``kernel_size`` are ``[h, w]`` lists.
"""

from __future__ import annotations

from . import shape_rules as rules
from .dialect import OpDef, attr, register_op

NO_TRANSPOSE = {"transpose_a": attr("bool", False), "transpose_b": attr("bool", False)}
CONV = {
    "stride": attr("ints", [1, 1]),
    "padding": attr("ints", [0, 0]),
    "dilation": attr("ints", [1, 1]),
    "groups": attr("int", 1),
}
POOL = {"kernel_size": attr("ints"), "stride": attr("ints", []), "padding": attr("ints", [0, 0])}
AVG_POOL = {**POOL, "count_include_pad": attr("bool", True)}


def _op(
    name: str, operands: tuple[str, ...], results: tuple[str, ...], infer, doc: str, **attributes
) -> type[OpDef]:
    """Define and register one op class from a table row."""
    cls = type(
        name.split(".")[1].title().replace("_", ""),
        (OpDef,),
        {
            "__doc__": doc,
            "name": name,
            "operands": operands,
            "results": results,
            "attributes": attributes,
            "infer": staticmethod(infer),
            "__module__": __name__,
        },
    )
    return register_op(cls)


_op(
    "graph.matmul",
    ("a", "b"),
    ("out",),
    rules.matmul,
    "``graph.matmul %a, %b {transpose_b = true}``: a·b with optional transposes "
    "(batched over leading dims).",
    **NO_TRANSPOSE,
)
_op(
    "graph.sddmm",
    ("a", "b", "mask"),
    ("out",),
    rules.sddmm,
    "``graph.sddmm %a, %b, %mask``: a·b computed only where mask != 0 (zero elsewhere).",
    **NO_TRANSPOSE,
)
_op(
    "graph.linear",
    ("x", "weight", "bias?"),
    ("out",),
    rules.linear,
    "``graph.linear %x, %w, %b``: x·wᵀ + b with w[out, in].",
)
_op(
    "graph.conv2d",
    ("x", "weight", "bias?"),
    ("out",),
    rules.conv2d,
    "``graph.conv2d %x, %w {stride = [2, 2], padding = [1, 1]}``: NCHW x OIHW.",
    **CONV,
)
_op(
    "graph.conv2d_backward_input",
    ("grad_out", "weight"),
    ("grad_x",),
    rules.conv2d_backward_input,
    "Gradient of conv2d w.r.t. its input (shape in input_shape).",
    input_shape=attr("ints"),
    **CONV,
)
_op(
    "graph.conv2d_backward_weight",
    ("grad_out", "x"),
    ("grad_weight",),
    rules.conv2d_backward_weight,
    "Gradient of conv2d w.r.t. its weight.",
    weight_shape=attr("ints"),
    **CONV,
)
_op(
    "graph.batch_norm",
    ("x", "weight", "bias"),
    ("out", "mean", "invstd"),
    rules.batch_norm,
    "Training-mode batch norm over all dims but 1 (biased variance); returns out, mean, invstd.",
    eps=attr("float", 1e-5),
)
_op(
    "graph.batch_norm_backward",
    ("grad_out", "x", "weight", "mean", "invstd"),
    ("grad_x", "grad_weight", "grad_bias"),
    rules.batch_norm_backward,
    "Gradients of training-mode batch norm.",
)
_op("graph.max_pool2d", ("x",), ("out",), rules.pool2d, "Max pooling (padding is -inf).", **POOL)
_op(
    "graph.max_pool2d_backward",
    ("grad_out", "x"),
    ("grad_x",),
    rules.pool2d_backward,
    "Routes each gradient to the first maximum of its window.",
    **POOL,
)
_op("graph.avg_pool2d", ("x",), ("out",), rules.pool2d, "Average pooling.", **AVG_POOL)
_op(
    "graph.avg_pool2d_backward",
    ("grad_out", "x"),
    ("grad_x",),
    rules.pool2d_backward,
    "Spreads each gradient evenly over its window.",
    **AVG_POOL,
)
_op("graph.relu", ("x",), ("out",), rules.same_as_first, "max(x, 0).")
_op(
    "graph.relu_backward",
    ("grad_out", "x"),
    ("grad_x",),
    rules.all_same,
    "grad_out where x > 0, else 0.",
)
_op(
    "graph.gelu",
    ("x",),
    ("out",),
    rules.same_as_first,
    'GELU, exact (erf) or {approximate = "tanh"}.',
    approximate=attr("str", "none"),
)
_op(
    "graph.gelu_backward",
    ("grad_out", "x"),
    ("grad_x",),
    rules.all_same,
    "Gradient of GELU.",
    approximate=attr("str", "none"),
)
_op("graph.softmax", ("x",), ("out",), rules.axis_op, "Softmax along axis.", axis=attr("int", -1))
_op(
    "graph.softmax_backward",
    ("grad_out", "out"),
    ("grad_x",),
    rules.axis_op,
    "out * (grad_out - sum(grad_out * out, axis)).",
    axis=attr("int", -1),
)
_op(
    "graph.log_softmax",
    ("x",),
    ("out",),
    rules.axis_op,
    "Log-softmax along axis.",
    axis=attr("int", -1),
)
_op(
    "graph.log_softmax_backward",
    ("grad_out", "out"),
    ("grad_x",),
    rules.axis_op,
    "grad_out - exp(out) * sum(grad_out, axis).",
    axis=attr("int", -1),
)
_op(
    "graph.layer_norm",
    ("x", "weight", "bias"),
    ("out", "mean", "rstd"),
    rules.layer_norm,
    "Layer norm over the last normalized_rank dims; returns out, mean, rstd.",
    normalized_rank=attr("int", 1),
    eps=attr("float", 1e-5),
)
_op(
    "graph.layer_norm_backward",
    ("grad_out", "x", "mean", "rstd", "weight"),
    ("grad_x", "grad_weight", "grad_bias"),
    rules.layer_norm_backward,
    "Gradients of layer norm.",
    normalized_rank=attr("int", 1),
)
for _name, _doc in (("add", "a + b"), ("sub", "a - b"), ("mul", "a * b"), ("div", "a / b")):
    _op(f"graph.{_name}", ("a", "b"), ("out",), rules.broadcast, f"{_doc}, numpy broadcasting.")
for _name, _doc in (("neg", "-x"), ("exp", "e**x"), ("sqrt", "sqrt(x)"), ("rsqrt", "1/sqrt(x)")):
    _op(f"graph.{_name}", ("x",), ("out",), rules.same_as_first, f"{_doc}, elementwise.")
_op(
    "graph.reshape",
    ("x",),
    ("out",),
    rules.reshape,
    "``{shape = [2, 8]}``, row-major.",
    shape=attr("ints"),
)
_op(
    "graph.transpose",
    ("x",),
    ("out",),
    rules.transpose,
    "``{perm = [1, 0]}``: out.shape[i] = x.shape[perm[i]] (also serves as permute).",
    perm=attr("ints"),
)
_op(
    "graph.broadcast_to",
    ("x",),
    ("out",),
    rules.broadcast_to,
    "``{shape = [4, 8]}``.",
    shape=attr("ints"),
)
for _name in ("sum", "max", "mean"):
    _op(
        f"graph.reduce_{_name}",
        ("x",),
        ("out",),
        rules.reduce,
        f"Reduce-{_name} over ``axes`` (all if empty), ``keepdim``.",
        axes=attr("ints", []),
        keepdim=attr("bool", False),
    )
_op(
    "graph.cross_entropy",
    ("logits", "labels"),
    ("loss",),
    rules.cross_entropy,
    "Mean over the batch of -log_softmax(logits)[label].",
)
_op(
    "graph.cross_entropy_backward",
    ("grad_loss", "logits", "labels"),
    ("grad_logits",),
    rules.cross_entropy_backward,
    "(softmax(logits) - onehot(labels)) * grad_loss / N.",
)
_op(
    "graph.constant",
    (),
    ("out",),
    rules.constant,
    "``graph.constant {value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>``.",
    value=attr("dense"),
)
_op(
    "graph.mask_apply",
    ("w", "mask"),
    ("out",),
    rules.all_same,
    "w * mask for a 0/1 mask (exactly: w where mask != 0, else 0).",
)
_op(
    "graph.sgd_update",
    ("param", "grad", "momentum_buf"),
    ("new_param", "new_momentum_buf"),
    rules.sgd_update,
    "PyTorch SGD: g = grad + wd*param; buf = momentum*buf + g; param -= lr*buf. A param with "
    "a sparse encoding is updated only at its non-zeros (its pattern is kept).",
    lr=attr("float"),
    momentum=attr("float", 0.0),
    weight_decay=attr("float", 0.0),
)
_op(
    "graph.adam_update",
    ("param", "grad", "m", "v", "step"),
    ("new_param", "new_m", "new_v"),
    rules.adam_update,
    "PyTorch Adam with bias correction at ``step`` (1-based); sparse params as in sgd_update.",
    lr=attr("float"),
    beta1=attr("float", 0.9),
    beta2=attr("float", 0.999),
    eps=attr("float", 1e-8),
    weight_decay=attr("float", 0.0),
)
_op(
    "graph.return",
    ("values*",),
    (),
    rules.no_results,
    "``graph.return %a, %b : tensor<...>, tensor<...>`` ends a graph.func.",
)
