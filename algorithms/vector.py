"""Lane-aligned vector sparsity: the pruning granule is the vector of weights one fold of
the MAC array consumes together, so its length comes from the target (``isa/target.py``).

Why (``docs/timing.md`` section 3, dataflow ``os``): an ``mm`` cuts its output into folds
of ``R x C`` PEs (``R = pe_rows``, ``C = pe_cols``) and a fold lasts as long as its *slowest*
PE. In the forward GEMM ``Y = X W^T`` the weight is the B operand: PE ``(i, j)`` of a fold
reads ``W[j, k]`` for its output column ``j``. A single zero ``W[j, k]`` shortens only PE
column ``j``, and the fold still waits for the others, so unstructured zeros mostly save
energy, not cycles. If instead ``W[j0:j0+C, k]`` is zero for the fold's ``C`` columns, pair
``k`` is ineffectual for every PE of the fold (all ``R`` rows share the B column) and the
fold finishes one cycle earlier: every skipped pair saves a cycle. So ``vector_from =
"pe_cols"`` (default) prunes vectors of ``C`` weights along the output dimension, aligned to
multiples of ``C``. ``"pe_rows"`` suits a GEMM that takes the weight as the A operand (rows
of the fold share it). ``"lookahead"`` makes vectors of ``d = lookahead`` weights along the
input dimension, aligned to the PE's skip windows: an all-zero window costs 1 cycle instead
of ``d`` (the window floor ``max(1, .)``), which saves ``d - 1`` cycles per window and only
where the PEs of a fold agree, so it is the weaker choice; it is kept for ablations. (The
other balanced pattern is ``nm`` with ``m = lookahead``: every window then holds exactly
``n`` effectual pairs on every PE.)
An explicit ``vector_length`` with ``axis="out"|"in"`` overrides the target.

A Conv2d runs one GEMM per kernel tap, ``W[:, :, kh, kw]`` (Cout x Cin) times the tap's
window, reducing over the input channels (``compiler/codegen/kernels/conv.py``), so vectors
are taken inside one tap (``structure.as_taps``): ``"out"`` vectors are consecutive output
channels at a fixed (input channel, tap), ``"in"`` (lookahead) vectors consecutive input
channels at a fixed (output channel, tap), the order the PEs walk the reduction. The conv
kernel takes the weight as the A operand, whose fold dimension is ``pe_rows``; the shipped
targets have ``pe_rows == pe_cols``, so the default length fits both.
"""

from __future__ import annotations

from acf.algorithms.base import check_count
from acf.algorithms.block import GroupMagnitude

VECTOR_FROM = ("pe_cols", "pe_rows", "lookahead")
AXES = ("out", "in")


def vector_shape(target=None, vector_from: str = "pe_cols", vector_length=None, axis=None):
    """``(rows, cols)`` of the pruning granule on a GEMM's ``(out, in)`` weight operand."""
    if vector_length is None:
        if vector_from not in VECTOR_FROM:
            raise ValueError(f"unknown vector_from {vector_from!r}; choose one of {VECTOR_FROM}")
        if target is None or isinstance(target, str):
            from acf.isa.target import load_target

            target = load_target(target or "acf-base")
        vector_length = {
            "pe_cols": target.cluster.pe_cols,
            "pe_rows": target.cluster.pe_rows,
            "lookahead": target.cluster.lookahead,
        }[vector_from]
        axis = axis or ("in" if vector_from == "lookahead" else "out")
    axis = axis or "out"
    if axis not in AXES:
        raise ValueError(f"unknown axis {axis!r}; choose one of {AXES}")
    length = check_count("vector_length", vector_length, 1)
    return (length, 1) if axis == "out" else (1, length)


class Vector(GroupMagnitude):
    """Magnitude pruning of whole vectors (see the module docstring); options ``target``
    (name or Target, default ``"acf-base"``), ``vector_from``, ``vector_length``, ``axis``,
    and ``schedule`` as for ``block``."""

    name = "vector"

    def __init__(
        self, *args, target=None, vector_from="pe_cols", vector_length=None, axis=None, **kwargs
    ):
        shape = vector_shape(target, vector_from, vector_length, axis)
        self.vector_length = max(shape)
        self.axis = "in" if shape[0] == 1 and shape[1] > 1 else "out"
        super().__init__(*args, group=shape, **kwargs)
