"""Kernel emitters, one module per family, registered by graph op name.

A kernel is ``fn(ctx: KernelContext) -> None``: it emits the per-cluster instructions of
one graph op into ``ctx.streams``. :data:`KERNELS` maps op names to kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from ...ir import Operation
from ..context import KernelContext

Kernel = Callable[[KernelContext], None]
KERNELS: dict[str, Kernel] = {}
ScratchFn = Callable[[Operation], list[tuple[int, ...]]]
SCRATCH: dict[str, ScratchFn] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register ``fn`` as the kernel of the named graph ops."""
    def wrap(fn: Kernel) -> Kernel:
        for name in names:
            KERNELS[name] = fn
        return fn
    return wrap


def scratch(*names: str) -> Callable[[ScratchFn], ScratchFn]:
    """Register ``fn(op) -> [shape, ...]``: dense DRAM scratch the named ops' kernels use
    (``ctx.scratch`` in the kernel, in that order)."""
    def wrap(fn: ScratchFn) -> ScratchFn:
        for name in names:
            SCRATCH[name] = fn
        return fn
    return wrap


def scratch_shapes(op: Operation) -> list[tuple[int, ...]]:
    fn = SCRATCH.get(op.name)
    return fn(op) if fn is not None else []


def load_all() -> dict[str, Kernel]:
    from . import conv, elementwise, layout, matmul, norm, optim, pool, reduce, rowwise  # noqa: F401

    return KERNELS
