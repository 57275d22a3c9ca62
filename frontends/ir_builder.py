"""A small builder of ``graph.func`` bodies that infers result types from the dialect.

The compiler's IR has no builder API yet; this one constructs :class:`Operation` objects
directly and asks each op's registered shape rule for its result types, so every emitted op
is well-typed by construction (the verifier still runs on the finished module)::

    b = FuncBuilder("train_step", [TensorType((4, 8))], ["x"])
    (y,) = b.op("graph.relu", [b.args[0]])
    func = b.finish([y])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..compiler.dialect import AttrView, lookup_op, verify_op
from ..compiler.ir import (
    Attribute,
    DenseElements,
    FuncOp,
    Location,
    Operation,
    TensorType,
    Type,
    Value,
)

NP_ELEMENT = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64", np.dtype(np.bool_): "i1"}


@dataclass(frozen=True)
class DropoutNode:
    """A training-mode ``native_dropout`` of an FX graph: its keep-mask is a step input."""

    name: str                    # the FX node
    shape: tuple[int, ...]
    p: float                     # drop probability
    stride: tuple[int, ...]      # of its input, in torch's eager run

    def draw(self) -> np.ndarray:
        """A keep-mask drawn as eager dropout draws it: ``bernoulli_(1 - p)`` on torch's
        generator over a tensor laid out like the input (torch fills it in memory order,
        so a transposed input gets its numbers in another element order)."""
        import torch

        keep = torch.empty_strided(self.shape, self.stride).bernoulli_(1.0 - self.p)
        return np.ascontiguousarray(keep.numpy())


def dropout_nodes(gm) -> list[DropoutNode]:
    """Each training-mode ``native_dropout`` of an FX graph, in graph order."""
    import torch

    out = []
    for n in gm.graph.nodes:
        if n.op == "call_function" and n.target is torch.ops.aten.native_dropout.default:
            p, train = float(n.args[1]), n.args[2]
            if train is not False and 0.0 < p < 1.0:
                val = n.args[0].meta["val"]
                out.append(DropoutNode(n.name, tuple(int(d) for d in val.shape), p,
                                       tuple(int(s) for s in val.stride())))
    return out


class FuncBuilder:
    """Appends ops to one new function; ``loc`` is stamped on every op emitted."""

    def __init__(self, name: str, arg_types: Sequence[Type], arg_names: Sequence[str]) -> None:
        self.func = FuncOp(name, list(arg_types), [], list(arg_names))
        self.loc: Location | None = None
        #: value -> its source, for values that swap the last two dims of a rank-2/3 tensor
        #: (so matmuls can fold them into transpose flags, across forward and backward)
        self.transposed_from: dict[Value, Value] = {}
        #: FX dropout node name -> the argument holding its 0/1 keep-mask (see
        #: ``dropout_nodes``): dropout's randomness is a step input, not a fabric op
        self.dropout_masks: dict[str, Value] = {}

    @property
    def args(self) -> list[Value]:
        return self.func.arguments

    def op(self, name: str, operands: Sequence[Value], name_hint: str | None = None,
           **attributes: Attribute) -> list[Value]:
        """Emit ``name``; attributes equal to their default are left out of the IR. Raises
        ``ShapeError`` or ``VerifyError`` for operands the op does not take."""
        spec = lookup_op(name)
        if spec is None:
            raise KeyError(f"internal error: unknown op {name}")
        attrs = {k: v for k, v in attributes.items()
                 if k not in spec.attributes or spec.attributes[k].required
                 or spec.attributes[k].default != v
                 or type(spec.attributes[k].default) is not type(v)}
        probe = Operation(name, list(operands), [], attrs)
        result_types = spec.infer([v.type for v in operands], AttrView(probe, spec))
        op = Operation(name, list(operands), result_types, attrs, loc=self.loc)
        verify_op(op)  # now, where the converter that emits it can name the user's line
        self.func.body.append(op)
        if name_hint:
            for i, r in enumerate(op.results):
                r.name_hint = name_hint if len(op.results) == 1 else f"{name_hint}_{i}"
        return op.results

    def one(self, name: str, operands: Sequence[Value], **attributes: Attribute) -> Value:
        return self.op(name, operands, **attributes)[0]

    def constant(self, array: np.ndarray | float, element: str = "f32") -> Value:
        """``graph.constant`` of a numpy array (or a scalar: a rank-0 tensor)."""
        dtype = {"f32": np.float32, "i64": np.int64, "i1": np.bool_}[element]
        arr = np.asarray(array, dtype=dtype)
        value = DenseElements(arr, TensorType(tuple(arr.shape), element))
        return self.one("graph.constant", [], value=value)

    def use_dropout_masks(self, nodes: Sequence[DropoutNode], first: int) -> None:
        """Arguments ``first``, ``first + 1``... are the keep-masks of ``nodes`` (from
        :func:`dropout_nodes`): each gets its drop probability as a ``dropout`` attribute,
        which tells the runtime to draw it every step."""
        for i, node in enumerate(nodes):
            self.func.body.arg_attributes[first + i]["dropout"] = node.p
            self.dropout_masks[node.name] = self.func.arguments[first + i]

    def finish(self, results: Sequence[Value]) -> FuncOp:
        """Append ``graph.return`` and fix the signature's result types."""
        self.loc = None
        self.func.body.append(Operation("graph.return", list(results), []))
        self.func.function_result_types = [v.type for v in results]
        return self.func

    def select_positive(self, a: Value, b: Value, z: Value) -> Value:
        """``a`` where ``z > 0``, else ``b`` (also where z is NaN; all three of one shape).
        The frontends' piecewise selects are this with ``z`` a difference, which is > 0
        exactly when the comparison it stands for holds."""
        return self.select(self.positive_mask(z), a, b)

    def positive_mask(self, z: Value) -> Value:
        """1 where ``z > 0``, else 0 (NaN included): a 0/1 condition for :meth:`select`."""
        ones = self.one("graph.broadcast_to", [self.constant(1.0)], shape=list(z.type.shape))  # type: ignore[union-attr]
        return self.one("graph.relu_backward", [ones, z])

    def select(self, cond: Value, a: Value, b: Value) -> Value:
        """``a`` where ``cond`` (exactly 0 or 1; all three of one shape) is 1, else ``b``:
        ``relu_backward(a, cond) + relu_backward(b, 1 - cond)``. relu_backward is a select,
        so the side not taken adds an exact 0: an infinite or NaN operand where it is not
        taken leaves no trace (``b - relu_backward(b, cond)`` would make inf - inf = NaN)."""
        array = constant_array(cond)
        if array is not None and array.size and np.all(array == array.flat[0]):
            # a constant condition the same everywhere picks a side
            return a if array.flat[0] != 0 else b
        kept_a = self.one("graph.relu_backward", [a, cond])
        kept_b = self.one("graph.relu_backward", [b, self.complement(cond)])
        return self.one("graph.add", [kept_a, kept_b])

    def complement(self, cond: Value) -> Value:
        """``1 - cond`` of a 0/1 condition (on the host when it is a constant: a mask built
        from literals)."""
        op = cond.defining_op
        if op is not None and op.name == "graph.broadcast_to":
            # complemented before the broadcast: fewer elements, and a constant stays one
            inner = self.complement(op.operands[0])
            return self.one("graph.broadcast_to", [inner], shape=list(cond.type.shape))  # type: ignore[union-attr]
        array = constant_array(cond)
        if array is not None:
            return self.constant(np.float32(1.0) - np.asarray(array, np.float32))
        return self.one("graph.sub", [self.constant(1.0), cond])


def constant_array(v: Value, *, through_broadcasts: bool = True) -> np.ndarray | None:
    """The array of the ``graph.constant`` that ``v`` is, else None; with
    ``through_broadcasts``, also of the one at the root of a chain of ``graph.broadcast_to``
    ops ``v`` is the result of. The array has the constant's own shape, which broadcasts
    to ``v``'s; it is the op's attribute itself, not a copy, so it is not to be written."""
    op = v.defining_op
    while through_broadcasts and op is not None and op.name == "graph.broadcast_to":
        op = op.operands[0].defining_op
    if op is None or op.name != "graph.constant":
        return None
    return np.asarray(op.attributes["value"].array)  # type: ignore[union-attr]
