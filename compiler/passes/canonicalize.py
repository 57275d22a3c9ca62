"""``canonicalize``: small local simplifications, then removal of dead ops.

Patterns: ``x * 1 -> x``, ``x + 0 -> x``, ``x - 0 -> x``, ``x / 1 -> x`` (when ``x``
already has the result type, encoding included; an add with a fused ReLU, ``{activation =
"relu"}`` from ``fuse-activations``, becomes ``relu(x)``), ``transpose(transpose(x))`` -> one
transpose (or ``x``),
``reshape(reshape(x))`` -> one reshape, reshape/broadcast_to to the same shape -> ``x``,
``add(x, broadcast_to(v))`` -> ``add(x, v)`` when ``v`` is a scalar, row, column or
per-channel vector (elementwise ops broadcast those themselves).

Before::

    %one = graph.constant {value = dense<1.0> : tensor<4xf32>} : () -> tensor<4xf32>
    %y = graph.mul %x, %one : tensor<4xf32>, tensor<4xf32> -> tensor<4xf32>
    %t = graph.transpose %w {perm = [1, 0]} : tensor<2x3xf32> -> tensor<3x2xf32>
    %u = graph.transpose %t {perm = [1, 0]} : tensor<3x2xf32> -> tensor<2x3xf32>
    graph.return %y, %u : tensor<4xf32>, tensor<2x3xf32>

After::

    graph.return %x, %w : tensor<4xf32>, tensor<2x3xf32>
"""

from __future__ import annotations

import numpy as np

from ..ir import DenseElements, Module, Operation, Value
from ..shape_rules import broadcast_role
from .base import ModulePass, Pattern, apply_patterns, new_op_before


def _splat_value(value: Value) -> float | None:
    """The single number a ``graph.constant`` holds everywhere, if it is one."""
    op = value.defining_op
    if op is None or op.name != "graph.constant":
        return None
    dense = op.attributes.get("value")
    if not isinstance(dense, DenseElements) or dense.array.size == 0:
        return None
    flat = dense.array.reshape(-1)
    return float(flat[0]) if np.all(flat == flat[0]) else None


def _same_type(value: Value, op: Operation) -> bool:
    """``value`` can stand in for ``op``'s result: same shape, element type and encoding."""
    return value.type == op.result.type


def fold_identity_operand(op: Operation) -> list[Value] | None:
    """``x * 1``, ``1 * x``, ``x + 0``, ``0 + x``, ``x - 0``, ``x / 1`` -> ``x``."""
    identities = {
        "graph.mul": (1.0, True),
        "graph.add": (0.0, True),
        "graph.sub": (0.0, False),
        "graph.div": (1.0, False),
    }
    if op.name not in identities:
        return None
    neutral, commutative = identities[op.name]
    x, y = op.operands
    if _splat_value(y) == neutral and _same_type(x, op):
        return _with_activation(op, x)
    if commutative and _splat_value(x) == neutral and _same_type(y, op):
        return _with_activation(op, y)
    return None


def _with_activation(op: Operation, x: Value) -> list[Value]:
    """``x`` for ``op``'s result, through ``op``'s fused activation (``fuse-activations``
    puts ``{activation = "relu"}`` on an add): dropping it would drop the ReLU."""
    activation = op.attributes.get("activation", "none")
    if activation == "none":
        return [x]
    assert activation == "relu", activation  # the verifier allows no other
    relu = new_op_before(op, "graph.relu", [x], [op.result.type], {})
    relu.loc = op.loc
    return [relu.result]


def fold_transpose_pair(op: Operation) -> list[Value] | None:
    """``transpose(transpose(x, p1), p2)`` -> ``transpose(x, p1[p2])``; identity -> ``x``."""
    if op.name != "graph.transpose":
        return None
    perm = list(op.attributes["perm"])  # type: ignore[arg-type]
    source = op.operands[0]
    inner = source.defining_op
    if inner is not None and inner.name == "graph.transpose":
        first = list(inner.attributes["perm"])  # type: ignore[arg-type]
        perm = [first[p] for p in perm]
        source = inner.operands[0]
    elif perm != list(range(len(perm))):
        return None
    if perm == list(range(len(perm))):
        return [source] if source.type == op.result.type else None  # else a format change
    fused = new_op_before(op, "graph.transpose", [source], [op.result.type], {"perm": perm})
    return [fused.result]


def fold_reshape(op: Operation) -> list[Value] | None:
    """``reshape(reshape(x))`` -> ``reshape(x)``; reshape/broadcast_to to its own shape -> x."""
    if op.name not in ("graph.reshape", "graph.broadcast_to"):
        return None
    source = op.operands[0]
    if _same_type(source, op):
        return [source]
    inner = source.defining_op
    if op.name == "graph.reshape" and inner is not None and inner.name == "graph.reshape":
        fused = new_op_before(
            op,
            "graph.reshape",
            [inner.operands[0]],
            [op.result.type],
            {"shape": op.attributes["shape"]},
        )
        return [fused.result]
    return None


BROADCASTING = ("graph.add", "graph.sub", "graph.mul", "graph.div")


def fold_broadcast_operand(op: Operation) -> list[Value] | None:
    """``add(x, broadcast_to(v))`` -> ``add(x, v)`` when the op broadcasts ``v`` itself (a
    scalar, row, column or per-channel vector): the broadcast is never materialized."""
    if op.name not in BROADCASTING or len(op.operands) != 2:
        return None
    out = tuple(op.result.type.shape)  # type: ignore[union-attr]
    for i, v in enumerate(op.operands):
        b = v.defining_op
        other = op.operands[1 - i]
        if b is None or b.name != "graph.broadcast_to" or tuple(other.type.shape) != out:  # type: ignore[union-attr]
            continue
        src = b.operands[0]
        role = broadcast_role(tuple(src.type.shape), out)  # type: ignore[union-attr]
        if src.type.encoding is None and role not in ("tile", "other"):
            op.operands[i] = src
    return None  # rewritten in place


PATTERNS: list[Pattern] = [fold_identity_operand, fold_transpose_pair, fold_reshape,
                           fold_broadcast_operand]


class Canonicalize(ModulePass):
    """Apply the canonicalization patterns to a fixed point and drop dead ops."""

    name = "canonicalize"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            apply_patterns(func, PATTERNS)
