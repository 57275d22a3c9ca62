"""The TVM Relax frontend: convert Relax functions to the ``graph`` dialect, and train through
Relax's own reverse-mode pass (``relax.transform.Gradient``).

A Relax module from TVM's PyTorch importer, its ONNX importer or a ``relax.BlockBuilder``
converts function by function; each Relax op goes through one small converter of
:mod:`acf.frontends.relax_ops` (normalization and adaptive pooling:
:mod:`acf.frontends.relax_ops_nn`), and an op with no converter raises
:class:`UnsupportedRelaxOpError` naming the Relax op::

    ep = torch.export.export(model, (x,))
    mod = relax.frontend.torch.from_exported_program(ep, keep_params_as_input=True)
    module = from_relax(mod)                       # graph.func @main(x, p_fc1_weight, ...)
    outs = run_func(module.funcs[0], [x, *relax_params(mod)])

    step = relax_training_step(mod, labels_shape=(4,))   # loss + Relax Gradient, converted
    loss, *grads = run_func(step.funcs[0], [x, *params, labels])

Training: :func:`relax_gradient_module` appends a loss (``relax.training.loss``) to the
forward function, runs ``Gradient`` on it and returns the Relax module with the
``<name>_loss_adjoint`` function; :func:`relax_training_step` converts that function, whose
results ``(loss, (grad_1, ...))`` are flattened to ``loss, grad_1, ...``. TVM 0.27's gradient
pass has no batch-norm, layer-norm or GELU gradients.

Conversion notes: a transpose feeding a matmul folds into its flags and ``bias + x·wᵀ``
becomes ``graph.linear``; ``log_softmax`` followed by ``nll_loss`` becomes
``graph.cross_entropy`` of the logits (with an ``ignore_index`` naming a class, a select
by the one-hot labels less that class, over the rows kept); arithmetic on two one-number
constants is folded (Relax's power gradient writes its exponent so); ``where`` of a
comparison becomes ``graph.relu_backward`` of a difference (Relax's ReLU gradient
``where(x < 0, 0, g)`` is ``relu_backward(g, 1 - [-x > 0])``: it keeps g where x == 0, as
TVM does); Relax's ``CNHW``/``IOHW`` weight-gradient convolution becomes
``graph.conv2d_backward_weight`` and ``conv2d_transpose`` becomes
``graph.conv2d_backward_input``. A comparison is only read by a ``where``: a function
result that is one raises :class:`UnsupportedRelaxOpError` naming it. An op the graph
dialect rejects for its operands (an int64 matmul) raises it too, naming the op and the
binding.

TVM is imported lazily (``import tvm`` takes seconds and imports torch): importing this
module does not import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..compiler.ir import FuncOp, Module, TensorType, Value
from ..compiler.verifier import verify_module
from .ir_builder import FuncBuilder

#: Relax dtype -> graph element type
RELAX_ELEMENT = {"float32": "f32", "int64": "i64", "bool": "i1"}


class UnsupportedRelaxOpError(Exception):
    """A Relax op (or a form of one) with no graph-dialect lowering."""

    def __init__(self, op: str, reason: str = "", binding: str | None = None) -> None:
        where = f" (binding '{binding}')" if binding else ""
        detail = f": {reason}" if reason else ""
        super().__init__(f"unsupported Relax op '{op}'{where}{detail}")
        self.op = op
        self.reason = reason
        self.binding = binding


def _tvm() -> Any:
    try:
        import tvm
        from tvm import relax  # noqa: F401
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("the Relax frontend needs TVM: pip install 'acf[tvm]' "
                          "(apache-tvm==0.27.0.post1)") from e
    return tvm


def _ints(seq: Any) -> list[int]:
    return [int(d) for d in seq]


def tensor_type(ty: Any, what: str = "value", op: str = "?",
                binding: str | None = None) -> TensorType:
    """The graph type of a Relax ``TensorType`` with a static shape; otherwise an
    :class:`UnsupportedRelaxOpError` naming ``op`` and ``binding`` (the Relax op and var the
    type belongs to)."""
    from tvm import relax

    def refuse(reason: str) -> UnsupportedRelaxOpError:
        return UnsupportedRelaxOpError(op, reason, binding)

    if not isinstance(ty, relax.TensorType):
        raise refuse(f"{what} has type {ty}, not a tensor")
    shape = ty.shape
    if shape is None or not isinstance(shape, relax.ShapeExpr):
        raise refuse(f"{what} has no static shape ({ty})")
    try:
        dims = tuple(int(d) for d in shape.values)
    except TypeError:
        raise refuse(f"{what} has a symbolic shape ({ty})") from None
    dtype = str(ty.dtype)
    if dtype not in RELAX_ELEMENT:
        raise refuse(f"{what} has element type {dtype} (the fabric model has f32, i64, i1)")
    return TensorType(dims, RELAX_ELEMENT[dtype])


class Compare:
    """Stands for a comparison (``relax.less``...) that only a ``where`` may read: the graph
    dialect has no boolean tensors to hold its result."""

    def __init__(self, kind: str, a: Value, b: Value) -> None:
        self.kind, self.a, self.b = kind, a, b

    @property
    def op(self) -> str:
        return f"relax.{self.kind}"


def _holds(v: Any, value: Value) -> bool:
    """Whether the converted form ``v`` of a Relax var (a Value, a tuple, a comparison)
    gives access to ``value``."""
    if v is value:
        return True
    if isinstance(v, tuple):
        return any(_holds(f, value) for f in v)
    if isinstance(v, Compare):
        return v.a is value or v.b is value
    return False


class RelaxContext:
    """State of one function conversion: the builder, Relax var -> IR value(s), the binding
    being converted and its result type, and how often each Relax var is read."""

    def __init__(self, builder: FuncBuilder, uses: dict[Any, int]) -> None:
        self.b = builder
        self.env: dict[Any, Any] = {}
        self.uses = uses
        self.call: Any = None
        self.var: Any = None

    # --- reading Relax arguments --------------------------------------------------------
    def lookup(self, expr: Any) -> Any:
        """The IR value (or tuple / marker) of a Relax expression."""
        import tvm
        from tvm import relax

        if isinstance(expr, relax.Var):
            if expr not in self.env:
                raise self.unsupported(f"reads '{expr.name}', which is not defined here")
            return self.env[expr]
        if isinstance(expr, tvm.ir.expr.Constant):
            arr = expr.value.numpy()
            el = RELAX_ELEMENT.get(str(arr.dtype))
            if el is None:
                raise self.unsupported(f"constant of dtype {arr.dtype}")
            return self.b.constant(arr, el)
        if isinstance(expr, relax.Tuple):
            return tuple(self.lookup(f) for f in expr.fields)
        if isinstance(expr, relax.TupleGetItem):
            return self.lookup(expr.tuple_value)[int(expr.index)]
        if isinstance(expr, relax.Call):
            from .relax_ops import convert_call

            return convert_call(self, expr)
        raise self.unsupported(f"a {type(expr).__name__} expression has no graph-dialect "
                               "lowering")

    def value(self, expr: Any) -> Value:
        v = self.lookup(expr)
        if isinstance(v, Compare):
            raise self.unsupported(f"an operand is the result of {v.op}, which only "
                                   "relax.where reads")
        if not isinstance(v, Value):
            raise self.unsupported("an operand is not a tensor")
        return v

    def arg(self, i: int) -> Value:
        return self.value(self.call.args[i])

    def shape(self) -> tuple[int, ...]:
        """The static shape of the current binding's result."""
        return self.result_type().shape

    def result_type(self) -> TensorType:
        ty = self.var.ty if self.var is not None else self.call.ty
        return tensor_type(ty, "the result", self.op_name(),
                           self.var.name if self.var is not None else None)

    def attr(self, name: str, default: Any = None) -> Any:
        attrs = self.call.attrs
        if attrs is None:
            return default
        try:
            value = getattr(attrs, name)
        except AttributeError:
            return default
        return default if value is None else value

    def reads(self, value: Value) -> int:
        """How often the function reads ``value``, through any Relax var that holds it (a
        tuple or a comparison may hold it too). An identity conversion (a reshape to the
        same shape, a cast to the same type) binds a second var to the same IR value: its
        read only renames the value, so each such var beyond the first takes one read back
        (a var that gets the value some other way has an IR op reading it, which the caller
        checks with ``has_uses``)."""
        holders = [var for var, v in self.env.items() if _holds(v, value)]
        renames = sum(1 for var in holders if self.env[var] is value) - 1
        return sum(self.uses.get(var, 0) for var in holders) - max(renames, 0)

    # --- emitting -----------------------------------------------------------------------
    def emit(self, name: str, operands: Sequence[Value], **attrs: Any) -> Value:
        return self.b.op(name, operands, **attrs)[0]

    def const(self, value: Any, element: str = "f32") -> Value:
        return self.b.constant(np.asarray(value), element)

    def op_name(self) -> str:
        """The Relax op of the current call (``relax.add``); for a binding that is not an op
        call, the kind of its expression (``relax.If``, ``relax.ShapeExpr``, a called
        function's name)."""
        op = getattr(self.call, "op", None)
        if op is not None:
            return str(getattr(op, "name", None) or getattr(op, "name_hint", None) or op)
        return f"relax.{type(self.call).__name__}" if self.call is not None else "?"

    def unsupported(self, reason: str = "") -> UnsupportedRelaxOpError:
        name = self.var.name if self.var is not None else None
        return UnsupportedRelaxOpError(self.op_name(), reason, name)


def _count_uses(func: Any) -> dict[Any, int]:
    from tvm import relax

    uses: dict[Any, int] = {}

    def visit(e: Any) -> None:
        if isinstance(e, relax.Var):
            uses[e] = uses.get(e, 0) + 1
        elif isinstance(e, relax.Call):
            for a in e.args:
                visit(a)
        elif isinstance(e, relax.Tuple):
            for f in e.fields:
                visit(f)
        elif isinstance(e, relax.TupleGetItem):
            visit(e.tuple_value)

    for block in func.body.blocks:
        for binding in block.bindings:
            visit(binding.value)
    visit(func.body.body)
    return uses


def _flatten(ctx: RelaxContext, v: Any) -> list[Value]:
    if isinstance(v, tuple):
        return [x for f in v for x in _flatten(ctx, f)]
    if isinstance(v, Compare):
        var = next((k for k, val in ctx.env.items() if val is v), None)
        raise UnsupportedRelaxOpError(
            v.op, "a comparison result (a boolean tensor) is only read as the condition of "
            "relax.where", var.name if var is not None else None)
    if not isinstance(v, Value):
        var = next((k for k, val in ctx.env.items() if val is v), None)
        raise UnsupportedRelaxOpError("relax.Function", "a function result is not a tensor",
                                      var.name if var is not None else None)
    return [v]


def convert_function(func: Any, name: str = "main") -> FuncOp:
    """Convert one Relax ``Function`` (static shapes, dataflow bindings) to a
    ``graph.func``; its parameters are the arguments (Relax names), tuple results are
    flattened in order."""
    from tvm import relax

    if not isinstance(func, relax.Function):
        raise TypeError(f"expected a relax.Function, got {type(func).__name__}")
    types = [tensor_type(p.ty, f"parameter '{p.name}'", "relax.Function", p.name)
             for p in func.params]
    b = FuncBuilder(name, types, [p.name for p in func.params])
    ctx = RelaxContext(b, _count_uses(func))
    ctx.env.update(zip(func.params, b.args))
    for block in func.body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):
                raise UnsupportedRelaxOpError(type(binding).__name__, "only plain bindings",
                                              binding.var.name)
            ctx.var, value = binding.var, binding.value
            ctx.call = value
            out = ctx.lookup(value)
            if isinstance(out, Value):
                _check_type(ctx, out)
                if out.name_hint is None and out.defining_op is not None:
                    out.name_hint = binding.var.name
            ctx.env[binding.var] = out
    ctx.var, ctx.call = None, func.body.body  # an error names the result's expression
    out = b.finish(_flatten(ctx, ctx.lookup(func.body.body)))
    _drop_dead_ops(out)
    return out


def _drop_dead_ops(func: FuncOp) -> None:
    """Erase ops whose results nothing reads (transposes folded into matmul flags...)."""
    changed = True
    while changed:
        changed = False
        for op in reversed(list(func.body.ops)):
            if op.name != "graph.return" and op.results and not any(
                    r.has_uses() for r in op.results):
                op.erase()
                changed = True


def _check_type(ctx: RelaxContext, out: Value) -> None:
    want = ctx.result_type()
    if out.type.shape != want.shape or out.type.element != want.element:  # type: ignore[union-attr]
        raise ctx.unsupported(f"internal error: converted to {out.type}, Relax says {want}")


def from_relax(mod: Any, func_name: str = "main", name: str | None = None) -> Module:
    """Convert ``mod[func_name]`` (an IRModule, or a Relax Function) to a verified graph
    module with one ``graph.func`` named ``name`` (default: ``func_name``)."""
    _tvm()
    from tvm import relax

    func = mod if isinstance(mod, relax.Function) else mod[func_name]
    module = Module([convert_function(func, name or func_name)])
    verify_module(module)
    return module


def relax_params(mod: Any, func_name: str = "main") -> list[np.ndarray]:
    """The parameter values TVM's PyTorch importer stores with ``keep_params_as_input=True``
    (the function's ``params`` attribute), as numpy arrays in argument order."""
    func = mod[func_name]
    attrs = func.attrs
    if attrs is None or "params" not in attrs:
        return []
    return [p.numpy() for p in attrs["params"]]


def _unwrap_unit_tuple(mod: Any, func_name: str) -> Any:
    """Return ``mod`` with ``func_name`` returning its single tensor, not a 1-tuple."""
    from tvm import relax

    func = mod[func_name]
    body = func.body
    result = body.body
    if not (isinstance(result, relax.Var) and isinstance(result.ty, relax.TupleType)):
        return mod
    blocks = list(body.blocks)
    last = blocks[-1]
    bindings = list(last.bindings)
    tup = bindings[-1]
    if not (tup.var.same_as(result) and isinstance(tup.value, relax.Tuple)
            and len(tup.value.fields) == 1):
        return mod
    inner = tup.value.fields[0]
    # the returned tensor must leave the dataflow block: rebind it as an output var
    out_var = relax.Var(tup.var.name, inner.ty)
    bindings[-1] = relax.VarBinding(out_var, inner)
    blocks[-1] = relax.DataflowBlock(bindings) if isinstance(last, relax.DataflowBlock) \
        else relax.BindingBlock(bindings)
    new_func = relax.Function(func.params, relax.SeqExpr(blocks, out_var), inner.ty,
                              func.is_pure, func.attrs)
    mod = mod.clone() if hasattr(mod, "clone") else mod
    mod[func_name] = new_func
    return mod


def relax_gradient_module(mod: Any, func_name: str = "main", *,
                          labels_shape: Sequence[int] | None = None,
                          loss: Any = None, reduction: str = "mean",
                          num_inputs: int | None = None,
                          require_grads: Sequence[int] | None = None) -> tuple[Any, str]:
    """Append a loss to ``mod[func_name]`` and differentiate it with Relax's ``Gradient``.

    ``loss``: a ``relax.training.loss.Loss`` instance or a loss ``relax.Function``
    (predictions, targets) -> scalar; default: ``CrossEntropyLoss(reduction)``. A ``Loss``
    instance gets the targets it takes: int64 labels of ``labels_shape`` (default: the
    predictions' batch dim) for ``CrossEntropyLoss``, int64 one-hot rows shaped like the
    predictions for ``CategoricalCrossEntropyLoss``, and for a regression loss (``MSELoss``,
    ``L1Loss``) targets of the predictions' type (``labels_shape``, when given, overrides
    the shape). ``require_grads``:
    indices of the parameters to differentiate; default: every parameter after the first
    ``num_inputs`` (default: the function's ``num_input`` attribute, else 1).

    Returns the module with ``<func_name>_loss`` and ``<func_name>_loss_adjoint`` and the
    adjoint function's name; the adjoint returns ``(loss, (grad_1, ...))``.
    """
    tvm = _tvm()
    from tvm import relax
    from tvm.relax.training import AppendLoss
    from tvm.relax.training.loss import CrossEntropyLoss, Loss

    mod = _unwrap_unit_tuple(mod, func_name)
    func = mod[func_name]
    pred_ty = func.ret_ty
    if loss is None:
        loss = CrossEntropyLoss(reduction=reduction)
    if isinstance(loss, Loss):
        loss = loss(pred_ty, _targets_type(loss, pred_ty, labels_shape))
    loss_name = f"{func_name}_loss"
    mod = AppendLoss(func_name, loss, num_backbone_outputs=1, new_func_name=loss_name)(mod)
    loss_func = mod[loss_name]
    if require_grads is None:
        if num_inputs is None:
            attrs = func.attrs
            num_inputs = int(attrs["num_input"]) if attrs is not None and \
                "num_input" in attrs else 1
        n_func_params = len(func.params)
        require_grads = range(num_inputs, n_func_params)
    grads = [loss_func.params[i] for i in require_grads]
    mod = relax.transform.Gradient(loss_name, require_grads=grads)(mod)
    del tvm
    return mod, f"{loss_name}_adjoint"


def _targets_type(loss: Any, pred_ty: Any, labels_shape: Sequence[int] | None) -> Any:
    """The Relax type of the targets ``loss`` compares the predictions with: class labels
    (int64, one per row) for cross entropy, int64 one-hot rows for the categorical form,
    else (a regression loss: a difference of predictions and targets) the predictions' own
    type."""
    from tvm import relax
    from tvm.relax.training.loss import CategoricalCrossEntropyLoss, CrossEntropyLoss

    pred = tensor_type(pred_ty, "the prediction", "relax.training.loss", None)
    if isinstance(loss, CrossEntropyLoss):
        shape, dtype = pred.shape[:1], "int64"
    elif isinstance(loss, CategoricalCrossEntropyLoss):
        shape, dtype = pred.shape, "int64"
    else:
        shape, dtype = pred.shape, str(pred_ty.dtype)
    if labels_shape is not None:
        shape = tuple(labels_shape)
    return relax.TensorType([int(d) for d in shape], dtype)


def relax_training_step(mod: Any, func_name: str = "main", *, name: str = "train_step",
                        **gradient_options: Any) -> Module:
    """The loss-and-gradients function of ``mod[func_name]`` (see
    :func:`relax_gradient_module`, which takes ``gradient_options``) as a graph module:
    arguments as the Relax loss function's (inputs, parameters, labels), results
    ``loss, grad_1, ...``."""
    grad_mod, adjoint = relax_gradient_module(mod, func_name, **gradient_options)
    return from_relax(grad_mod, adjoint, name)


def run_relax(mod: Any, args: Sequence[np.ndarray], func_name: str = "main",
              target: str = "llvm") -> list[np.ndarray]:
    """Compile ``mod`` with ``tvm.compile`` for the CPU and run ``func_name`` on the Relax
    VM (a numerical reference); tuple results are flattened."""
    tvm = _tvm()
    from tvm import relax

    ex = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    # np.ascontiguousarray would make a 0-d argument 1-d
    out = vm[func_name](*[tvm.runtime.tensor(np.array(a, order="C", copy=True)) for a in args])

    def flat(o: Any) -> list[np.ndarray]:
        if hasattr(o, "numpy"):
            return [o.numpy()]
        return [x for item in o for x in flat(item)]

    return flat(out)
