"""Synchronization: per-cluster instruction streams with dependency tokens, and barriers.

A kernel emits, per cluster, instructions that name the on-chip *slots* they read and write
(:class:`Slot`: a fixed scratchpad or accumulator range). :class:`ClusterStream` derives the
dependencies from those accesses (read-after-write, write-after-read, write-after-write) and
turns every dependency between two different units of the cluster into a token, VTA style:
one token id per (cluster, producer unit, consumer unit), a counting semaphore whose k-th
signal pairs with its k-th wait because both queues run in order. Only the latest producer
per unit is waited on, and a wait already implied by an earlier wait of the same queue is
dropped, so every signal has exactly one wait (counts balance at the next ``barrier``, where
token ids are reused; ids are the cluster's local tokens) and every signal precedes its wait in program order. An instruction
needing more than two waits or signals gets a ``sync`` on its queue carrying the rest::

    ld  c0, sp[0x0], dram[0x1000], fmt=dense, rows=32, cols=32 sig(t1)
    ld  c0, sp[0x2000], dram[0x2000], fmt=csr, rows=32, cols=32 sig(t1)
    mm  c0, acc[0x0], sp[0x0], sp[0x2000], m=32, n=32, k=32 wait(t1, t1) sig(t2)
    st  c0, dram[0x3000], acc[0x0], fmt=dense, rows=32, cols=32 wait(t2)

:func:`merge` interleaves the streams of all clusters round-robin (each keeps its order), so
the dispatcher feeds every cluster while one waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from acf.isa.fields import MemRef
from acf.isa.program import Instruction, SourceLoc, make, make_op
from acf.isa.spec import BY_MNEMONIC, SHARED_TOKENS, unit_of

from ..diagnostics import InternalError

MAX_LOCAL_TOKEN = SHARED_TOKENS - 1


@dataclass(frozen=True)
class Slot:
    """A fixed on-chip buffer range used by a kernel: ``sp[addr .. addr+nbytes)``."""

    space: str
    addr: int
    nbytes: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.space, self.addr, self.nbytes)))

    def __hash__(self) -> int:  # slots key every dependency map: hashed once
        return self._hash  # type: ignore[attr-defined,no-any-return]

    def ref(self, offset: int = 0) -> MemRef:
        return MemRef(self.space, self.addr + offset)


@dataclass
class _Pending:
    mnemonic: str
    unit: str
    args: dict[str, Any]
    loc: SourceLoc
    deps: list[int] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)
    sigs: list[int] = field(default_factory=list)


class TokenPool:
    """Token ids of one barrier interval, one per (cluster, producer, consumer) pair. The
    pairs are within one cluster, so the ids are the cluster's local tokens (isa.spec:
    ``t1`` .. ``t127`` on every cluster), numbered per cluster: a fabric of any size fits."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str, str], int] = {}
        self.used: dict[int, int] = {}  # cluster -> local ids handed out

    def token(self, cl: int, producer: str, consumer: str) -> int:
        key = (cl, producer, consumer)
        if key not in self.ids:
            n = self.used.get(cl, 0)
            if n >= MAX_LOCAL_TOKEN:
                raise InternalError(f"more than {MAX_LOCAL_TOKEN} dependency tokens on cluster "
                                    f"{cl} in one barrier interval")
            self.used[cl] = n + 1
            self.ids[key] = n + 1
        return self.ids[key]


class ClusterStream:
    """The instructions of one kernel on one cluster, with slot-derived dependencies."""

    def __init__(self, cl: int) -> None:
        self.cl = cl
        self.items: list[_Pending] = []
        self.last_writer: dict[Slot, int] = {}
        self.readers: dict[Slot, list[int]] = {}

    def emit(self, mnemonic: str, loc: SourceLoc, reads: tuple[Slot, ...],
             writes: tuple[Slot, ...], args: dict[str, Any]) -> int:
        """Queue one instruction on this cluster (its operand fields ``args``, a dict the
        stream keeps); returns its index in the stream."""
        row = BY_MNEMONIC[mnemonic]
        if row.queued:
            args["cl"] = self.cl
        index = len(self.items)
        deps: set[int] = set()
        for slot in reads:
            if slot in self.last_writer:
                deps.add(self.last_writer[slot])
        for slot in writes:
            deps.update(self.readers.get(slot, ()))
            if slot in self.last_writer:
                deps.add(self.last_writer[slot])
        for slot in reads:
            self.readers.setdefault(slot, []).append(index)
        for slot in writes:
            self.last_writer[slot] = index
            self.readers[slot] = []
        self.items.append(_Pending(mnemonic, unit_of(row, args), args, loc, sorted(deps)))
        return index

    def resolve(self, pool: TokenPool) -> list[list[tuple[Instruction, SourceLoc]]]:
        """Assign tokens; returns the instructions as groups (one per emitted instruction,
        with any helper ``sync`` next to it), in stream order."""
        implied: dict[tuple[str, str], int] = {}  # (consumer, producer unit) -> latest waited
        for item in self.items:
            latest: dict[str, int] = {}
            for d in item.deps:
                unit = self.items[d].unit
                if unit != item.unit:
                    latest[unit] = max(latest.get(unit, -1), d)
            for unit, d in sorted(latest.items()):
                if implied.get((item.unit, unit), -1) >= d:
                    continue
                implied[(item.unit, unit)] = d
                token = pool.token(self.cl, unit, item.unit)
                item.waits.append(token)
                self.items[d].sigs.append(token)
        groups = []
        for item in self.items:
            group: list[tuple[Instruction, SourceLoc]] = []
            waits, sigs = list(item.waits), list(item.sigs)
            while len(waits) > 2:
                group.append((self._sync(item.unit, waits[:2], []), item.loc))
                waits = waits[2:]
            extra_sigs = sigs[2:]
            args = item.args  # the stream's own dict: resolve runs once
            for k, t in zip(("wait0", "wait1"), waits):
                args[k] = t
            for k, t in zip(("sig0", "sig1"), sigs[:2]):
                args[k] = t
            group.append((make_op(BY_MNEMONIC[item.mnemonic], args), item.loc))
            while extra_sigs:
                group.append((self._sync(item.unit, [], extra_sigs[:2]), item.loc))
                extra_sigs = extra_sigs[2:]
            groups.append(group)
        return groups

    def _sync(self, unit: str, waits: list[int], sigs: list[int]) -> Instruction:
        args: dict[str, Any] = {"cl": self.cl, "unit": unit}
        for k, t in zip(("wait0", "wait1"), waits):
            args[k] = t
        for k, t in zip(("sig0", "sig1"), sigs):
            args[k] = t
        return make("sync", **args)


def merge(streams: list[ClusterStream]) -> list[tuple[Instruction, SourceLoc]]:
    """Resolve tokens of one barrier interval and interleave the clusters round-robin."""
    pool = TokenPool()
    resolved = [s.resolve(pool) for s in streams if s.items]
    out: list[tuple[Instruction, SourceLoc]] = []
    position = [0] * len(resolved)
    remaining = sum(len(r) for r in resolved)
    while remaining:
        for i, groups in enumerate(resolved):
            if position[i] < len(groups):
                out.extend(groups[position[i]])
                position[i] += 1
                remaining -= 1
    return out
