"""Index selections both frontends lower the same way, as GEMMs with constant 0/1 (or
averaging) matrices: the PEs skip the zeros, so a one-hot GEMM costs what the selection
moves. Torch-free, so the Relax frontend can use it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..compiler.ir import Value

Emit = Callable[..., Value]  # a context's emit(name, operands, **attrs)


def along(emit: Emit, x: Value, dim: int, select: Value, gather: bool = True) -> Value:
    """``x`` with dim ``dim`` replaced through ``select`` (len x size): gathered, out[..., i,
    ...] = sum_j select[i, j] x[..., j, ...] (size -> len), or scattered with sums (len ->
    size), as one GEMM of ``x`` moved to a ``[rest, dim]`` matrix."""
    shape = list(x.type.shape)  # type: ignore[union-attr]
    rank = len(shape)
    perm = [d for d in range(rank) if d != dim] + [dim]
    moved = emit("graph.transpose", [x], perm=perm) if dim != rank - 1 else x
    lead = [shape[d] for d in perm[:-1]]
    flat = _reshape(emit, moved, (int(np.prod(lead, dtype=np.int64)), shape[dim]))
    out = emit("graph.matmul", [flat, select], transpose_b=gather)
    width = select.type.shape[0 if gather else 1]  # type: ignore[union-attr]
    moved = _reshape(emit, out, (*lead, width))
    if dim == rank - 1:
        return moved
    return emit("graph.transpose", [moved], perm=[perm.index(d) for d in range(rank)])


def adaptive_bins(size: int, out: int) -> np.ndarray:
    """(out, size): row i averages adaptive-pooling bin i, ``[floor(i*size/out),
    ceil((i+1)*size/out))`` (PyTorch's and TVM's bins: unequal, overlapping where out does
    not divide size)."""
    m = np.zeros((out, size), np.float32)
    for i in range(out):
        lo, hi = (i * size) // out, -(-((i + 1) * size) // out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def _reshape(emit: Emit, x: Value, shape: Sequence[Any]) -> Value:
    if tuple(x.type.shape) == tuple(shape):  # type: ignore[union-attr]
        return x
    return emit("graph.reshape", [x], shape=list(shape))
