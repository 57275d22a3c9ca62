"""Cluster units of the reference, each a small machine advanced one cycle per ``step()``
(docs/timing.md sections 3-5). ``done`` is True once the work is over; a unit that is
stepped in cycle ``c`` and becomes done finishes at ``c + 1``."""

from __future__ import annotations

from collections import deque

import numpy as np


class Countdown:
    """A fixed number of busy cycles (issue overhead, fold drain, reconfiguration...)."""

    def __init__(self, cycles: int):
        self.left = cycles

    @property
    def done(self) -> bool:
        return self.left <= 0

    def step(self) -> None:
        self.left -= 1


class Seq:
    """Machines run one after another."""

    def __init__(self, *parts):
        self.parts = deque(p for p in parts)
        self._skip()

    def _skip(self):
        while self.parts and self.parts[0].done:
            self.parts.popleft()

    @property
    def done(self) -> bool:
        self._skip()
        return not self.parts

    def step(self) -> None:
        self._skip()
        self.parts[0].step()
        self._skip()


class Par:
    """Machines run side by side; done when all are."""

    def __init__(self, *parts):
        self.parts = list(parts)

    @property
    def done(self) -> bool:
        return all(p.done for p in self.parts)

    def step(self) -> None:
        for p in self.parts:
            if not p.done:
                p.step()


# ---- MAC array --------------------------------------------------------------------------


class PE:
    """One processing element: a queue of (a, b) pairs, flags = effectual. Each cycle it looks
    at a window of ``d`` pairs; it spends one cycle per effectual pair of the window (one
    cycle if the window holds none), then moves to the next window."""

    def __init__(self, eff: np.ndarray, d: int):
        self.pairs = deque(bool(e) for e in eff)
        self.d = d
        self.window: list[bool] | None = None

    @property
    def done(self) -> bool:
        return self.window is None and not self.pairs

    def step(self) -> None:
        if self.window is None:
            self.window = [self.pairs.popleft() for _ in range(min(self.d, len(self.pairs)))]
        if True in self.window:
            self.window.remove(True)  # one multiply-accumulate
            if True not in self.window:
                self.window = None
        else:
            self.window = None  # an empty window still costs its cycle


class Fold:
    """One fold of the output-stationary array: every PE streams its own pairs; the fold is
    over when all PEs are done, then the accumulators drain for ``Fo`` cycles."""

    def __init__(self, pes: list[PE], drain: int):
        self.pes = pes
        self.drain = Countdown(drain)

    @property
    def done(self) -> bool:
        return all(p.done for p in self.pes) and self.drain.done

    def step(self) -> None:
        if any(not p.done for p in self.pes):
            for p in self.pes:
                if not p.done:
                    p.step()
        else:
            self.drain.step()


class Systolic:
    """A dense output-stationary systolic fold: operand k reaches PE (i, j) at cycle
    i + j + k; the fold is over when PE (R-1, C-1) has consumed pair K-1, then drains."""

    def __init__(self, R: int, C: int, K: int, drain: int):
        self.R, self.C, self.K = R, C, K
        self.cycle = 0
        self.fill_total = K + R + C - 2
        self.drain = Countdown(drain)

    @property
    def done(self) -> bool:
        return self.cycle >= self.fill_total and self.drain.done

    def step(self) -> None:
        if self.cycle < self.fill_total:
            # wavefront: PEs (i, j) with 0 <= cycle - i - j < K are busy this cycle
            self.cycle += 1
        else:
            self.drain.step()


class Distributor:
    """Flexible dataflow: a distribution network hands up to R*C effectual pairs per cycle
    to the PEs (at least one cycle), then the reduction tree and the drain."""

    def __init__(self, effectual: int, lanes: int, reduce_cycles: int, drain: int):
        self.pool = effectual
        self.lanes = lanes
        self.started = False
        self.tail = Seq(Countdown(reduce_cycles), Countdown(drain))

    @property
    def done(self) -> bool:
        return self.started and self.pool <= 0 and self.tail.done

    def step(self) -> None:
        if not self.started or self.pool > 0:
            self.started = True
            self.pool -= self.lanes
        else:
            self.tail.step()


def effectual(A: np.ndarray, B: np.ndarray, skip: str, hw: str) -> np.ndarray:
    """eff[i, j, k] as 0/1."""
    m, k = A.shape
    n = B.shape[1]
    za = (A != 0) if ("a" in skip and hw in ("a", "ab")) else np.ones((m, k), bool)
    zb = (B != 0) if ("b" in skip and hw == "ab") else np.ones((k, n), bool)
    return za[:, None, :] & zb.T[None, :, :]  # (m, n, k)


def mac_machine(c, A, B, skip: str, outputs: list[tuple[int, int]] | None, sddmm: bool):
    """The MAC array's work for one mm/sddmm after issue. ``outputs``: sampled outputs of
    sddmm in row-major order (None for mm)."""
    R, C, d, Fo = c.pe_rows, c.pe_cols, c.lookahead, c.fold_cycles
    m, K = A.shape
    n = B.shape[1]
    eff = effectual(A, B, skip, c.skip)
    if sddmm and not outputs:
        return Countdown(0)
    if c.dataflow == "systolic":
        folds = [Systolic(R, C, K, Fo) for _ in range(-(-m // R) * -(-n // C))]
        return Seq(*folds)
    if c.dataflow == "flexible":
        if sddmm:
            E = int(sum(eff[i, j].sum() for i, j in outputs))
        else:
            E = int(eff.sum())
        return Distributor(E, R * C, c.reduce_cycles, Fo)
    # output stationary
    if sddmm:
        groups = [outputs[p:p + R * C] for p in range(0, len(outputs), R * C)]
    else:
        groups = []
        for i0 in range(0, m, R):  # folds: rows first
            for j0 in range(0, n, C):
                groups.append([(i, j) for i in range(i0, min(m, i0 + R))
                               for j in range(j0, min(n, j0 + C))])
    return Seq(*[Fold([PE(eff[i, j], d) for i, j in g], Fo) for g in groups])


# ---- vector unit ------------------------------------------------------------------------


class BankArbiter:
    """One scratchpad/accumulator bank: a queue of word accesses, one served per cycle."""

    def __init__(self):
        self.queue: deque = deque()

    @property
    def done(self) -> bool:
        return not self.queue

    def step(self) -> None:
        self.queue.popleft()


def bank_machine(operands: list[tuple[str, list[int]]], bank_bytes: int, banks: int) -> Par:
    """``operands``: (buffer, byte addresses of its fp32 elements). Each distinct word any
    byte of an operand lies in is one access to bank ``word mod banks`` of its buffer."""
    arb: dict[tuple[str, int], BankArbiter] = {}
    for buf, addrs in operands:
        words = {w for a in addrs for w in range(a // bank_bytes, (a + 3) // bank_bytes + 1)}
        for w in sorted(words):
            arb.setdefault((buf, w % banks), BankArbiter()).queue.append(w)
    return Par(*arb.values())


class Lanes:
    """L lanes: each group of L elements takes ``work`` cycles."""

    def __init__(self, elements: int, lanes: int, work: int):
        self.groups = -(-elements // lanes)
        self.work = work
        self.cur = 0

    @property
    def done(self) -> bool:
        return self.groups <= 0

    def step(self) -> None:
        self.cur += 1
        if self.cur == self.work:
            self.cur = 0
            self.groups -= 1


class Codec:
    """Value and index counters, each draining its per-cycle rate."""

    def __init__(self, values: int, indices: int, vpc: int, ipc: int):
        self.v, self.x, self.vpc, self.ipc = values, indices, vpc, ipc

    @property
    def done(self) -> bool:
        return self.v <= 0 and self.x <= 0

    def step(self) -> None:
        self.v -= self.vpc
        self.x -= self.ipc
