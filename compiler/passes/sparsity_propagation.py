"""``sparsity-propagation``: record where zeros come from, and turn masked weight
gradients into SDDMM.

Every value gets a ``sparsity`` annotation (a function argument in its attribute dict, an
op result in the op's attributes, one string per result; a list for multi-result ops):

* ``weight:<format>`` - a function argument with a sparse encoding (``weight:csr``),
* ``mask`` - the output of ``graph.mask_apply`` (a masked weight),
* ``relu`` / ``relu-grad`` - zeros made by ``relu`` / ``relu_backward``,
* sources joined with ``+`` when zeros of several kinds survive (``mul``, ``sddmm``),
* ``dense`` - no known zeros.

Shape ops (reshape, transpose, broadcast_to) keep their input's annotation; ``mul`` and
``mask_apply`` union their operands' zeros; ``add``/``sub`` keep only a source common to
both. Rewrites first (each result of the ``matmul`` must have no other use):

* ``mask_apply(matmul(a, b), m)`` -> ``sddmm(a, b, m)`` (of the ``mask_apply``'s result
  type, a sparse encoding included, but for N:M, which only a ``mask_apply`` may declare);
  likewise ``relu_backward(matmul(a, b), y)`` of a ReLU's output ``y`` -> ``sddmm(a, b, y)`` (the
  input gradient of a linear layer before a ReLU is needed only where the ReLU passed);
* ``mask_apply(conv2d_backward_weight(g, x), m)`` -> ``conv2d_backward_weight(g, x, m)`` (the
  sampled conv weight gradient: only the mask's non-zeros are computed);
* ``mask_apply(sgd_update(w, ...)#0, m)`` (likewise ``adam_update``) of a dense ``w`` ->
  the update with ``m`` as its trailing mask operand (the new weight is masked as it is
  written, not re-read and rewritten). Not for a sparse-encoded ``w``: without a mask
  operand its update keeps ``w``'s zero pattern (``w`` and the momentum stay where
  ``w == 0``), with one the mask would decide instead, which changes the results;
* ``sgd_update(w, matmul(a, b), buf)`` / ``adam_update(w, matmul(a, b), ...)`` with a
  sparse-encoded ``w`` -> the gradient becomes ``sddmm(a, b, w)`` (only ``w``'s non-zeros are
  updated, so the other gradient entries were never needed).

Before::

    graph.func @step(%x: tensor<4x8xf32>, %dy: tensor<4x16xf32>, %w: tensor<16x8xf32, #csr>, %buf: tensor<16x8xf32>) -> (tensor<16x8xf32, #csr>, tensor<16x8xf32>) {
      %gw = graph.matmul %dy, %x {transpose_a = true} : tensor<4x16xf32>, tensor<4x8xf32> -> tensor<16x8xf32>
      %w2, %b2 = graph.sgd_update %w, %gw, %buf {lr = 0.1} : ...

After::

    graph.func @step(..., %w: tensor<16x8xf32, #csr> {sparsity = "weight:csr"}, ...) ... {
      %0 = graph.sddmm %dy, %x, %w {transpose_a = true, sparsity = "weight:csr"} : ...
      %w2, %b2 = graph.sgd_update %w, %0, %buf {lr = 0.1, sparsity = ["weight:csr", "dense"]} : ...
"""

from __future__ import annotations

from ..graph_nn_ops import keeps_pattern, update_mask
from ..ir import FuncOp, Module, Operation, TensorType, Value
from ..sparse_encoding import encoding_to_format
from .base import ModulePass, apply_patterns, new_op_before, use_counts

DENSE = "dense"
KEEPS_INPUT = ("graph.reshape", "graph.transpose", "graph.broadcast_to", "graph.neg")
UNION = ("graph.mul", "graph.mask_apply", "graph.sddmm")
COMMON = ("graph.add", "graph.sub")


def _is_masked_weight(value: Value) -> bool:
    return isinstance(value.type, TensorType) and value.type.encoding is not None


def _sole_matmul(value: Value, counts: dict[Value, int]) -> Operation | None:
    op = value.defining_op
    if (op is not None and op.name == "graph.matmul" and counts.get(value, 0) == 1
            and op.attributes.get("activation", "none") == "none"):
        return op
    return None


def _non_negative(value: Value) -> bool:
    """A ReLU's output (by ``graph.relu`` or an op's fused ReLU): zero or positive."""
    op = value.defining_op
    return op is not None and value.index == 0 and (
        op.name == "graph.relu" or op.attributes.get("activation", "none") == "relu")


def _sddmm_before(anchor: Operation, matmul: Operation, mask: Value,
                  result_type: TensorType | None = None) -> Value:
    attrs = {k: v for k, v in matmul.attributes.items() if k != "sparsity"}
    op = new_op_before(anchor, "graph.sddmm", [*matmul.operands, mask],
                       [result_type or matmul.result.type], attrs)
    op.loc = matmul.loc
    return op.result


def _declared_type(mask_apply: Operation) -> TensorType | None:
    """The ``mask_apply``'s result type for the sddmm replacing it (a sparse encoding it
    declares is kept: the result is stored as declared), unless N:M, which an sddmm may not
    declare (``dialect._check_nm_result``): then None, the matmul's dense type."""
    t = mask_apply.result.type
    enc = getattr(t, "encoding", None)
    if enc is not None and any(lvl.kind == "structured" for _, lvl in enc.levels):
        return None
    return t  # type: ignore[return-value]


def rewrite_masked_gradients(func: FuncOp) -> None:
    """Turn matmuls whose only consumer keeps just masked entries into ``graph.sddmm``."""
    counts = use_counts(func)

    def masked_matmul(op: Operation) -> list[Value] | None:
        if op.name == "graph.relu_backward" and len(op.operands) == 2 and _non_negative(op.operands[1]):
            # g where y > 0 is g where y != 0 for a ReLU's output y: a matmul's g is
            # then only needed at y's non-zeros
            matmul = _sole_matmul(op.operands[0], counts)
            if matmul is not None:
                return [_sddmm_before(op, matmul, op.operands[1])]
        if op.name == "graph.mask_apply":
            matmul = _sole_matmul(op.operands[0], counts)
            if matmul is not None:
                return [_sddmm_before(op, matmul, op.operands[1], _declared_type(op))]
            conv = op.operands[0].defining_op
            if (conv is not None and conv.name == "graph.conv2d_backward_weight"
                    and len(conv.operands) == 2 and counts.get(op.operands[0], 0) == 1
                    and op.operands[1].type == conv.result.type):
                sampled = new_op_before(op, conv.name, [*conv.operands, op.operands[1]],
                                        [conv.result.type], dict(conv.attributes))
                sampled.loc = conv.loc
                return [sampled.result]
        return None

    def masked_update(op: Operation) -> list[Value] | None:
        # only an update that keeps its weight's pattern: with a mask operand the mask
        # decides, and the momentum takes every gradient entry
        if op.name in ("graph.sgd_update", "graph.adam_update") and keeps_pattern(op):
            matmul = _sole_matmul(op.operands[1], counts)
            if matmul is not None:
                op.operands[1] = _sddmm_before(op, matmul, op.operands[0])
                counts[op.operands[1]] = 1
        return None  # rewritten in place

    apply_patterns(func, [masked_matmul], max_rounds=1)
    fold_update_masks(func)
    apply_patterns(func, [masked_update], max_rounds=1)


def fold_update_masks(func: FuncOp) -> None:
    """Give an optimizer update of a dense param the mask that a ``mask_apply`` applies to
    its new param (see the module docstring for why a sparse-encoded param keeps it)."""
    counts = use_counts(func)
    index = {op: i for i, op in enumerate(func.body.ops)}
    for op in list(func.body.ops):
        if op.name != "graph.mask_apply":
            continue
        upd = op.operands[0].defining_op
        mask = op.operands[1]
        if (upd is None or upd.name not in ("graph.sgd_update", "graph.adam_update")
                or op.operands[0] is not upd.results[0] or counts.get(upd.results[0], 0) != 1
                or update_mask(upd) is not None  # it has one already
                # a sparse-encoded param's update keeps its zero pattern (param and
                # momentum untouched where it is zero); a mask operand would decide instead
                or keeps_pattern(upd)
                or not (isinstance(mask.type, TensorType)
                        and mask.type.same_shape_and_element(upd.operands[0].type))
                or mask.defining_op is not None and index[mask.defining_op] > index[upd]):
            continue
        fused = new_op_before(upd, upd.name, [*upd.operands, mask],
                              [r.type for r in upd.results], dict(upd.attributes))
        fused.loc = upd.loc
        op.result.replace_all_uses_with(fused.results[0])
        for old, new in zip(upd.results[1:], fused.results[1:]):
            old.replace_all_uses_with(new)
        op.erase()
        upd.erase()
    ret = func.return_op
    if ret is not None:  # the update's result replaces the mask_apply's (which may declare N:M)
        func.function_result_types = [v.type for v in ret.operands]


def _join(sources: list[str]) -> str:
    parts = sorted({p for s in sources for p in s.split("+") if p != DENSE})
    return "+".join(parts) if parts else DENSE


def _common(a: str, b: str) -> str:
    """The zero patterns two operands share (an elementwise sum is zero where both are)."""
    return _join(sorted(set(a.split("+")) & set(b.split("+"))))


def _result_sparsity(op: Operation, inputs: list[str]) -> list[str]:
    if op.name == "graph.relu":
        return ["relu"]
    if op.name == "graph.relu_backward":  # with an addend: the zeros both summands share
        base = inputs[0] if len(inputs) < 3 else _common(inputs[0], inputs[2])
        return [_join([base, "relu-grad"])]
    if op.name == "graph.mask_apply":
        return [_join([inputs[0], "mask" if inputs[1] == DENSE else inputs[1]])]
    if op.name == "graph.sddmm":
        return [_join([inputs[2]]) if inputs[2] != DENSE else "mask"]
    if op.name == "graph.conv2d_backward_weight" and len(inputs) == 3:
        return [_join([inputs[2]]) if inputs[2] != DENSE else "mask"]
    if op.name in KEEPS_INPUT or op.name in UNION:
        return [_join(inputs)]
    if op.name in COMMON:
        return [_common(inputs[0], inputs[1])]
    if op.name in ("graph.sgd_update", "graph.adam_update"):
        return [inputs[0]] + [DENSE] * (len(op.results) - 1)
    return [DENSE] * len(op.results)


def annotate(func: FuncOp) -> None:
    """Set the ``sparsity`` annotation of every argument and op result."""
    known: dict[Value, str] = {}
    for arg, attrs in zip(func.arguments, func.body.arg_attributes):
        known[arg] = f"weight:{_format_name(arg)}" if _is_masked_weight(arg) else DENSE
        attrs["sparsity"] = known[arg]
    for op in func.body.ops:
        if not op.results:
            continue
        found = _result_sparsity(op, [known.get(v, DENSE) for v in op.operands])
        known.update(zip(op.results, found))
        op.attributes["sparsity"] = found[0] if len(found) == 1 else list(found)


def _format_name(value: Value) -> str:
    try:
        return encoding_to_format(value.type.encoding)  # type: ignore[union-attr]
    except ValueError:
        return "sparse"


class SparsityPropagation(ModulePass):
    """Rewrite masked weight gradients into SDDMM, then annotate where zeros come from."""

    name = "sparsity-propagation"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            rewrite_masked_gradients(func)
            annotate(func)
