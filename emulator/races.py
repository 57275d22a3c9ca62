"""Race detection with vector clocks (happens-before, not timing).

Happens-before edges: program order within a queue, a token's k-th signal before its k-th
consumption (FIFO per token), a ``send`` before its matching ``recv``, and a ``barrier``
(everything dispatched before it, before everything after). Two accesses to overlapping
bytes of one buffer, at least one a write, from different queues and unordered by these
edges are a race. History entries every active queue has already passed are pruned, so the
check stays cheap on long programs.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from acf.emulator.traps import Where
from acf.isa.semantics import Access

_PRUNE_EVERY = 512


def _contiguous(a: Access) -> bool:
    return a.rows <= 1 or a.pitch <= a.rowbytes


def _overlap(a: Access, b: Access) -> bool:
    if a.end <= b.addr or b.end <= a.addr or a.rowbytes == 0 or b.rowbytes == 0:
        return False
    if _contiguous(a) and _contiguous(b):
        return True
    sa, ea = _intervals(a)
    sb, eb = _intervals(b)
    i = np.searchsorted(eb, sa, side="right")
    ok = i < sb.size
    return bool(np.any(sb[i[ok]] < ea[ok]))


def _intervals(a: Access) -> tuple[np.ndarray, np.ndarray]:
    if _contiguous(a):
        return np.array([a.addr]), np.array([a.end])
    s = a.addr + a.pitch * np.arange(a.rows, dtype=np.int64)
    return s, s + a.rowbytes


class RaceDetector:
    """Vector clocks per queue; ``start`` checks an instruction's accesses."""

    def __init__(self, nqueues: int):
        self.nq = nqueues
        self.Q = np.zeros((nqueues, nqueues), np.int64)
        self.active = np.zeros(nqueues, bool)
        self.tokens: dict[int, deque] = {}
        self.sends: dict[tuple, np.ndarray] = {}
        self.history: dict[tuple[str, int], list[tuple[Access, int, int, Where]]] = {}
        self._added = 0

    def start(self, q: int, where: Where, waits: tuple[int, ...], accesses: list[Access],
              send_key: tuple | None = None) -> tuple[np.ndarray, tuple[Where, Where] | None]:
        """Clock of an instruction starting on queue q; the first race found, if any."""
        clock = self.Q[q].copy()
        for t in waits:
            fifo = self.tokens.get(t)
            if fifo:
                np.maximum(clock, fifo.popleft(), out=clock)
        if send_key is not None and send_key in self.sends:
            np.maximum(clock, self.sends.pop(send_key), out=clock)
        clock[q] += 1
        self.Q[q] = clock
        self.active[q] = True
        race = None
        epoch = int(clock[q])
        for acc in accesses:
            hist = self.history.setdefault((acc.space, acc.cluster), [])
            if race is None:
                for prev, pq, pe, pwhere in hist:
                    if pq != q and (prev.write or acc.write) and clock[pq] < pe and _overlap(prev, acc):
                        race = (pwhere, where)
                        break
            hist.append((acc, q, epoch, where))
            self._added += 1
        if self._added >= _PRUNE_EVERY:
            self._prune()
        return clock, race

    def end(self, clock: np.ndarray, signals: tuple[int, ...], send_key: tuple | None = None) -> None:
        for t in signals:
            self.tokens.setdefault(t, deque()).append(clock)
        if send_key is not None:
            self.sends[send_key] = clock

    def barrier(self) -> None:
        """Every queue's clock joins every other's: all before happens-before all after."""
        self.Q[:] = self.Q.max(axis=0)

    def _prune(self) -> None:
        self._added = 0
        floor = self.Q[self.active].min(axis=0) if self.active.any() else np.zeros(self.nq, np.int64)
        for key, hist in self.history.items():
            self.history[key] = [h for h in hist if floor[h[1]] < h[2]]
