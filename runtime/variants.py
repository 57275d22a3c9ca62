"""Program variants the runtime compiles from one training-step module.

A *variant* is a small, named rewrite of the (already pass-pipelined) module; it is part of
the program cache key, so switching between variants that were compiled once never
recompiles:

* ``wgrad="sddmm"`` (default): the module as the ``sparse-training`` pipeline left it, masked
  weight gradients as ``graph.sddmm`` (only unpruned positions are computed).
* ``wgrad="dense"``: every sampled weight gradient (an ``sddmm`` that contracts over the
  batch or feeds an optimizer; sampled conv weight gradients) becomes the dense one; a
  returned gradient is the full dense weight gradient (RigL growth; SR-STE needs it too but
  cannot run on a session, see :class:`~acf.runtime.session.Session`), while what the
  optimizer consumes is masked again (``graph.mask_apply``) or, for an update that keeps its
  sparse-encoded parameter's pattern (no mask operand), left to the optimizer kernel.
* ``formats={param: fmt}``: the storage format of a masked parameter (``dense``, ``csr``,
  ``bitmap``, ...), applied to the parameter argument, its mask argument when that is
  sparse-encoded, and the parameter the optimizer returns; after the pipeline, also to what
  only its update reads or writes (its sampled gradient, optimizer state and mask:
  :func:`compress_with_weights`). This is what re-specialization changes.
* ``states={param: fmt}``: the format of the optimizer state of a masked parameter that
  stays dense-stored (a conv kernel: the compressed formats are packed 2-D tiles and the
  conv kernels read weights dense), chosen like a weight's from its density band.

Masks themselves are never part of a variant: they are input data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from acf.compiler.graph_nn_ops import keeps_pattern
from acf.compiler.ir import FuncOp, Module, Operation, TensorType, Value
from acf.compiler.passes.base import new_op_before
from acf.compiler.shape_rules import broadcast_role
from acf.compiler.sparse_encoding import encoding_to_format, format_to_encoding

OPTIMIZERS = ("graph.sgd_update", "graph.adam_update")
GEMMS = ("graph.linear", "graph.matmul", "graph.sddmm", "graph.conv2d",
         "graph.conv2d_backward_input", "graph.conv2d_backward_weight")


@dataclass(frozen=True)
class Variant:
    """What distinguishes two programs compiled from one module (part of the cache key)."""

    wgrad: str = "sddmm"
    formats: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: optimizer-state formats of masked weights that stay dense-stored (conv kernels)
    states: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def format_of(self, param: str) -> str | None:
        return dict(self.formats).get(param)

    def with_format(self, param: str, fmt: str) -> Variant:
        f = dict(self.formats)
        f[param] = fmt
        return Variant(self.wgrad, tuple(sorted(f.items())), self.states)

    def with_state(self, param: str, fmt: str) -> Variant:
        f = dict(self.states)
        f[param] = fmt
        return Variant(self.wgrad, self.formats, tuple(sorted(f.items())))

    def with_wgrad(self, wgrad: str) -> Variant:
        return Variant(wgrad, self.formats, self.states)

    def key(self) -> str:
        fmts = ",".join(f"{p}={f}" for p, f in self.formats)
        states = ",".join(f"{p}={f}" for p, f in self.states)
        return f"wgrad={self.wgrad};formats={fmts}" + (f";states={states}" if states else "")


def value_format(value: Value) -> str:
    t = value.type
    return encoding_to_format(t.encoding) if isinstance(t, TensorType) else "dense"


def _set_format(value: Value, fmt: str) -> None:
    t = value.type
    assert isinstance(t, TensorType)
    value.type = TensorType(t.shape, t.element, format_to_encoding(fmt))


def masked_params(func: FuncOp) -> dict[str, str]:
    """``{param argument: mask argument}`` of a training step.

    Found from the data flow: the sampling operand of an ``sddmm`` (or the mask of a
    ``mask_apply``) whose result becomes the gradient of an optimizer update of a parameter
    argument, or, by the frontend's naming convention, an argument ``mask.<param>``.
    """
    args = {v.name_hint: v for v in func.arguments}
    out: dict[str, str] = {}
    for name in args:
        if name and name.startswith("mask.") and name[5:] in args:
            out[name[5:]] = name
    for op in func.body.ops:
        if op.name not in OPTIMIZERS:
            continue
        param = op.operands[0]
        if param.defining_op is not None or not param.name_hint or param.name_hint in out:
            continue
        grad = op.operands[1].defining_op
        if grad is None:
            continue
        mask = None
        if grad.name == "graph.sddmm" or is_sampled_conv_wgrad(grad):
            mask = grad.operands[2]
        elif grad.name == "graph.mask_apply":
            mask = grad.operands[1]
        if mask is not None and mask.defining_op is None and mask is not param and mask.name_hint:
            out[param.name_hint] = mask.name_hint
    return out


def apply_formats(module: Module, func: FuncOp, formats: dict[str, str]) -> None:
    """Store each named parameter in ``fmt`` (argument, sparse mask, optimizer result)."""
    if not formats:
        return
    masks = masked_params(func)
    args = {v.name_hint: v for v in func.arguments}
    for param, fmt in formats.items():
        p = args[param]
        _set_format(p, fmt)
        m = args.get(masks.get(param, ""))
        if m is not None and value_format(m) != "dense":
            _set_format(m, fmt)
        for op in func.body.ops:
            if op.name in OPTIMIZERS and op.operands[0] is p:
                _set_format(op.results[0], fmt)
    ret = func.return_op
    if ret is not None:
        func.function_result_types = [v.type for v in ret.operands]


def elide_bound_masks(func: FuncOp, masks: dict[str, str]) -> int:
    """Drop ``mask_apply(%w, %mask.w)`` of a masked parameter *argument* by its own mask,
    and of the new value of a sparse-encoded one (its update keeps its pattern).

    The session binds a masked parameter already multiplied by its mask (it stores weights
    masked, see :meth:`Session.run_step`), so that op is the identity on every value the
    runtime passes; on the fabric it is a full pass over the weight per step. A sparse-
    encoded weight then reaches its GEMMs encoded (the forward loads only its non-zeros). The masks of
    the gradient and of the updated parameter stay (a mask change can leave momentum at a
    newly pruned position). Returns how many were dropped."""
    args = {v.name_hint: v for v in func.arguments if v.name_hint}
    count = 0
    for op in list(func.body.ops):
        if op.name != "graph.mask_apply":
            continue
        w, m = op.operands
        if m.defining_op is not None or not m.name_hint:
            continue
        param = _bound_param(w, args)
        if param is None or masks.get(param.name_hint) != m.name_hint:
            continue
        if op.result.type != w.type and not _takes_encoded(op.result, w):
            continue
        op.result.replace_all_uses_with(w)
        op.erase()
        count += 1
    ret = func.return_op
    if count and ret is not None:
        func.function_result_types = [v.type for v in ret.operands]
    return count


def mark_densities(func: FuncOp, densities: dict[str, float]) -> None:
    """Give each masked parameter argument a ``density`` attribute: its measured density
    when the session has seen its mask, else its mask argument's (the frontend records the
    example masks' densities). A compile-time hint the kernels' cost models use to tile for
    zero-skipping (``KernelContext.operand_density``): the program is correct at any
    density, and a later mask change does not recompile."""
    attrs_of = {v.name_hint: attrs for v, attrs in zip(func.arguments, func.body.arg_attributes)}
    for param, mask in masked_params(func).items():
        if param not in attrs_of:
            continue
        if param in densities:
            attrs_of[param]["density"] = round(float(densities[param]), 4)
        elif mask in attrs_of and "density" in attrs_of[mask]:
            attrs_of[param]["density"] = attrs_of[mask]["density"]


def _bound_param(w: Value, args: dict[str, Value]) -> Value | None:
    """The masked parameter argument ``w`` is, or whose sparse-encoded update ``w`` is (an
    update of an encoded parameter keeps its pattern, which lies inside the mask)."""
    if w.defining_op is None:
        return w if w.name_hint and args.get(w.name_hint) is w else None
    upd = w.defining_op
    if (upd.name in OPTIMIZERS and w is upd.results[0] and value_format(upd.operands[0]) != "dense"
            and upd.operands[0].defining_op is None):
        return _bound_param(upd.operands[0], args)
    return None


def _takes_encoded(result: Value, w: Value) -> bool:
    """Whether every use of ``result`` (dense) may read the sparse-encoded ``w`` instead:
    GEMM operands (not an ``sddmm``'s sampling operand) and the function's results."""
    if value_format(w) == "dense":
        return False
    return all(user.name in ("graph.linear", "graph.matmul", "graph.return")
               or user.name == "graph.sddmm" and i < 2 for user, i in result.uses())


def is_sampled_conv_wgrad(op: Operation) -> bool:
    """A conv weight gradient computed only at its mask's non-zeros (the conv SDDMM)."""
    return op.name == "graph.conv2d_backward_weight" and len(op.operands) == 3


def compress_with_weights(func: FuncOp, masks: dict[str, str],
                          state_formats: dict[str, str] | None = None) -> int:
    """Store in a compressed masked weight's format what only its update reads or writes
    besides the weight: its sampled gradient (an ``sddmm`` result), its optimizer state
    (momentum; Adam's moments) and its mask. A masked weight stored dense (a conv kernel,
    whose kernels read it dense) gets its optimizer state alone in ``state_formats[param]``.
    Returns how many values were re-encoded.

    Lossless: an encoding keeps every non-zero (a momentum left at a newly pruned position
    just adds entries), so the step computes the same values, and each such tensor then
    crosses the memory ports as its non-zeros: the update of a 10 %-dense weight moves about
    a seventh of the bytes a dense-stored state would. A value is left dense if anything
    but the update, the function's return or an ``sddmm``'s sampling operand reads it.

    An N:M weight gives its N:M format to its mask only (an argument: the bound mask is the
    weight's pattern). Its sampled gradient and optimizer state are results no op makes N:M
    (the verifier accepts an N:M result only from an update of an N:M parameter or a
    ``mask_apply`` under an N:M mask, ``dialect._check_nm_result``), and the state
    arguments carry those results: they are stored ``bitmap``, which like N:M marks the
    kept positions with bits and holds any pattern (a 2:4 40x64 layer's step: acf-base
    6.59k cycles with them dense, 6.36k csr, 6.06k bitmap; acf-small 9.70k, 9.90k, 9.69k)."""
    args = {v.name_hint: v for v in func.arguments if v.name_hint}
    count = 0
    for op in func.body.ops:
        if op.name not in OPTIMIZERS or op.operands[0].defining_op is not None:
            continue
        param = op.operands[0]
        if param.name_hint not in masks:
            continue
        fmt = value_format(param)
        state_only = fmt == "dense"
        if state_only:
            fmt = (state_formats or {}).get(param.name_hint, "dense")
            if fmt == "dense":
                continue
        n_state = 1 if op.name == "graph.sgd_update" else 2
        grad = op.operands[1]
        values = [v for v in op.operands[2:2 + n_state] if v.defining_op is None]
        values += op.results[1:1 + n_state]
        if not state_only and grad.defining_op is not None and grad.defining_op.name == "graph.sddmm":
            values.append(grad)
        mask = args.get(masks[param.name_hint])
        if mask is not None and not state_only:
            values.append(mask)
        for v in values:
            if value_format(v) == "dense" and _reads_encoded(v):
                _set_format(v, UNSTRUCTURED_OF_NM if _is_nm(fmt) and v is not mask else fmt)
                count += 1
    ret = func.return_op
    if count and ret is not None:
        func.function_result_types = [v.type for v in ret.operands]
    return count


#: the format of what an N:M weight's update reads or writes that cannot be N:M itself
UNSTRUCTURED_OF_NM = "bitmap"


def _is_nm(fmt: str) -> bool:
    enc = format_to_encoding(fmt)
    return enc is not None and any(lvl.kind == "structured" for _, lvl in enc.levels)


def _reads_encoded(value: Value) -> bool:
    """Whether every reader of ``value`` takes it sparse-encoded."""
    return all(user.name in OPTIMIZERS or user.name == "graph.return"
               or user.name == "graph.sddmm" and i == 2 for user, i in value.uses())


def _is_weight_gradient(op: Operation) -> bool:
    """A backward GEMM that contracts over the batch (``transpose_a``) or whose result
    reaches an optimizer's gradient operand."""
    return bool(_attr(op, "transpose_a")) or _feeds_optimizer_grad(op.results[0])


def is_sampled_weight_gradient(op: Operation) -> bool:
    """An ``sddmm`` that is a weight gradient (see :func:`_is_weight_gradient`)."""
    return op.name == "graph.sddmm" and _is_weight_gradient(op)


def dense_weight_gradients(func: FuncOp) -> int:
    """Rewrite every sampled weight gradient (``graph.sddmm``, conv) to the dense one (see
    the module doc); returns how many were rewritten."""
    count = 0
    for op in list(func.body.ops):
        if not is_sampled_weight_gradient(op) and not is_sampled_conv_wgrad(op):
            continue
        a, b, mask = op.operands
        attrs = {k: v for k, v in op.attributes.items() if k != "sparsity"}
        out_t = op.result.type
        assert isinstance(out_t, TensorType)
        dense_name = "graph.matmul" if op.name == "graph.sddmm" else op.name
        mm = new_op_before(op, dense_name, [a, b], [out_t.dense()], attrs)
        mm.loc = op.loc
        masked: Value | None = None
        for user, i in list(op.result.uses()):
            # an update that keeps its parameter's pattern never reads the other entries
            if user.name == "graph.return" or (user.name in OPTIMIZERS and i == 1 and keeps_pattern(user)):
                user.operands[i] = mm.result
                continue
            if masked is None:
                if value_format(mask) != "dense":
                    raise ValueError(
                        f"dense weight gradient: a sparse-encoded mask feeding "
                        f"'{user.name}' is not supported")
                ma = new_op_before(op, "graph.mask_apply", [mm.result, mask], [out_t.dense()])
                ma.loc = op.loc
                masked = ma.result
            user.operands[i] = masked
        op.erase()
        count += 1
    ret = func.return_op
    if ret is not None:
        func.function_result_types = [v.type for v in ret.operands]
    return count


def gemm_kind(func: FuncOp, op: Operation) -> str:
    """``forward``, ``backward_data``, ``wgrad_sddmm``, ``wgrad_dense``, ``optimizer`` or
    ``other`` for one op of a training step.

    Ops before the first ``*_backward`` op are the forward pass. After it, a matmul or
    ``sddmm`` is a weight gradient when it contracts over the batch (``transpose_a``) or its
    result reaches an optimizer's gradient operand (an ``sddmm`` one is sampled); any other
    is a backward-data GEMM (an ``sddmm`` one: an input gradient needed only where a ReLU
    passed).
    """
    if op.name in OPTIMIZERS:
        return "optimizer"
    if op.name not in GEMMS:
        return "other"
    if op.name == "graph.sddmm":
        return "wgrad_sddmm" if is_sampled_weight_gradient(op) else "backward_data"
    if is_sampled_conv_wgrad(op):
        return "wgrad_sddmm"
    if op.name == "graph.conv2d_backward_weight":
        return "wgrad_dense"
    if op.name == "graph.conv2d_backward_input":
        return "backward_data"
    if is_layout_matmul(op):
        return "other"
    ops = func.body.ops
    first_bwd = next((i for i, o in enumerate(ops) if o.name.endswith("_backward")), len(ops))
    if ops.index(op) < first_bwd:
        return "forward"
    return "wgrad_dense" if _is_weight_gradient(op) else "backward_data"


def _attr(op: Operation, name: str) -> object:
    v = op.attributes.get(name)
    return getattr(v, "value", v)


def _feeds_optimizer_grad(value: Value, depth: int = 0) -> bool:
    if depth > 4:
        return False
    for user, i in value.uses():
        if user.name in OPTIMIZERS and i == 1:
            return True
        if user.name in ("graph.mask_apply", "graph.reshape") and _feeds_optimizer_grad(
                user.results[0], depth + 1):
            return True
    return False


def lower_transposes(func: FuncOp) -> int:
    """Stand-in for a missing ``graph.transpose`` kernel: a 2-D transpose becomes
    ``matmul(x, I, transpose_a)`` (xᵀ·I, exact in fp32). Used only when codegen has no
    transpose kernel; reported as ``other`` (layout) work, not as a GEMM."""
    from acf.compiler.ir import DenseElements

    count = 0
    for op in list(func.body.ops):
        if op.name != "graph.transpose":
            continue
        x = op.operands[0]
        t = x.type
        if not isinstance(t, TensorType) or t.rank != 2 or t.encoding is not None:
            continue
        n = t.shape[0]
        eye = np.eye(n, dtype=np.float32)
        const = new_op_before(op, "graph.constant", [], [TensorType((n, n))],
                              {"value": DenseElements(eye, TensorType((n, n)))})
        mm = new_op_before(op, "graph.matmul", [x, const.result], [op.result.type],
                           {"transpose_a": True})
        mm.loc = op.loc
        op.result.replace_all_uses_with(mm.result)
        op.erase()
        count += 1
    return count


#: the graph dialect's elementwise ops of two operands (every op whose shape rule is numpy
#: broadcasting, and the select-like ops of one shape)
ELEMENTWISE_BINARY = ("graph.add", "graph.sub", "graph.mul", "graph.div", "graph.maximum",
                      "graph.minimum", "graph.relu_backward", "graph.gelu_backward",
                      "graph.mask_apply")


def materialize_broadcasts(func: FuncOp) -> int:
    """Stand-in for broadcasts the elementwise kernels do not lower (e.g. a per-image and
    channel ``[N, C, 1, 1]`` operand against ``[N, C, H, W]``): the operand is first expanded
    with ``graph.broadcast_to`` (exact). Returns how many operands were expanded."""
    count = 0
    for op in list(func.body.ops):
        if op.name not in ELEMENTWISE_BINARY:
            continue
        out_t = op.results[0].type
        if not isinstance(out_t, TensorType) or out_t.encoding is not None:
            continue
        for i, x in enumerate(op.operands):
            t = x.type
            if (not isinstance(t, TensorType) or t.encoding is not None
                    or broadcast_role(tuple(t.shape), tuple(out_t.shape)) != "other"):
                continue
            bc = new_op_before(op, "graph.broadcast_to", [x],
                               [TensorType(tuple(out_t.shape), t.element)],
                               {"shape": list(out_t.shape)})
            bc.loc = op.loc
            op.operands[i] = bc.result
            count += 1
    return count


def is_layout_matmul(op: Operation) -> bool:
    b = op.operands[1].defining_op if len(op.operands) > 1 else None
    return op.name == "graph.matmul" and b is not None and b.name == "graph.constant"
