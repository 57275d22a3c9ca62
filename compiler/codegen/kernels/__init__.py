"""Kernel emitters, one module per family, registered by graph op name.

A kernel is ``fn(ctx: KernelContext) -> None``: it emits the per-cluster instructions of
one graph op into ``ctx.streams``. :data:`KERNELS` maps op names to kernels.
"""

from __future__ import annotations

from collections.abc import Callable

from ..context import KernelContext

Kernel = Callable[[KernelContext], None]
KERNELS: dict[str, Kernel] = {}


def kernel(*names: str) -> Callable[[Kernel], Kernel]:
    """Register ``fn`` as the kernel of the named graph ops."""
    def wrap(fn: Kernel) -> Kernel:
        for name in names:
            KERNELS[name] = fn
        return fn
    return wrap


def load_all() -> dict[str, Kernel]:
    from . import elementwise, matmul, optim, reduce, rowwise  # noqa: F401

    return KERNELS
