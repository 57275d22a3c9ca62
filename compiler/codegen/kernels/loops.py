"""The k-loop of the tap GEMMs (conv kernels): per step, gather the ``a`` and ``b`` tiles
into double-buffered slots and accumulate one ``mm`` into the output tile::

    ldg sp[A k%2] <- a view     ldg sp[B k%2] <- b view     mm acc[C] (+)= A . B

Steps are emitted unrolled; tokens come from the slot accesses (``schedule``).
"""

from __future__ import annotations

from ..context import KernelContext
from ..schedule import Slot

Step = tuple  # (k, a_addr, a_dims, a_strides, b_addr, b_dims, b_strides)


class KLoop:
    """Per-cluster counters of output tiles and k-steps (slot parity) of one kernel."""

    def __init__(self, ctx: KernelContext) -> None:
        self.ctx = ctx
        self.tiles = [0] * len(ctx.streams)
        self.kiter = [0] * len(ctx.streams)

    def tile(self, cl: int) -> int:
        self.tiles[cl] += 1
        return self.tiles[cl] - 1

    def run(self, cl: int, steps: list[Step], a_slots: list[Slot], b_slots: list[Slot], c: Slot,
            m: int, n: int, ta: bool, tb: bool) -> None:
        ctx = self.ctx
        for i, (k, a_addr, a_dims, a_str, b_addr, b_dims, b_str) in enumerate(steps):
            a, b = a_slots[self.kiter[cl] % 2], b_slots[self.kiter[cl] % 2]
            self.kiter[cl] += 1
            ctx.ldg(cl, a, a_addr, a_dims, a_str)
            ctx.ldg(cl, b, b_addr, b_dims, b_str)
            reads = (a, b, c) if i else (a, b)
            ctx.emit(cl, "mm", reads=reads, writes=(c,), dst=c.ref(), a=a.ref(), b=b.ref(),
                     m=m, n=n, k=k, accum=int(i > 0), ta=int(ta), tb=int(tb))
