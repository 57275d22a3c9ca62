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

Across clusters: a ``bcast`` on one cluster writes slots of others. Each receiving stream
records that write (:meth:`ClusterStream.remote_write`, no instruction of its own) at the
point of its program where it happens, so its dependencies come out of the same slot
bookkeeping: the receiver's earlier readers of the slot signal a *shared* token (``t128``
and up, one per (sender cluster and unit, receiver cluster and unit)) that the ``bcast``
waits for, and its later readers wait for one the ``bcast`` signals. :func:`merge` then
keeps every shared token's signal ahead of its wait in program order (a stream whose next
instruction waits on one not yet placed gives way), so the dispatcher never fills a
queue with instructions that wait on one it has not dispatched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from acf.isa.fields import MemRef
from acf.isa.program import Instruction, SourceLoc, make, make_op
from acf.isa.spec import BY_MNEMONIC, SHARED_TOKENS, unit_of

from ..diagnostics import InternalError

MAX_LOCAL_TOKEN = SHARED_TOKENS - 1
MAX_TOKEN = 255


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
    #: (cluster, stream index) of the instruction that performs this write (a placeholder
    #: for another cluster's bcast: no instruction here), else None
    remote: tuple[int, int] | None = None
    #: (cluster, stream index) of instructions on other clusters this one waits for
    after: list[tuple[int, int]] = field(default_factory=list)


class TokensExhausted(InternalError):
    """A barrier interval needs more shared tokens than ``t128``-``t255``."""


class TokenPool:
    """Token ids of one barrier interval, one per (cluster, producer, consumer) pair. The
    pairs are within one cluster, so the ids are the cluster's local tokens (isa.spec:
    ``t1`` .. ``t127`` on every cluster), numbered per cluster: a fabric of any size fits."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int, str, str], int] = {}
        self.used: dict[int, int] = {}  # cluster -> local ids handed out
        self.shared_ids: dict[tuple[int, str, int, str], int] = {}

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

    def shared(self, src_cl: int, producer: str, dst_cl: int, consumer: str) -> int:
        """A fabric-wide token (``t128`` and up) from one cluster's unit to another's."""
        key = (src_cl, producer, dst_cl, consumer)
        if key not in self.shared_ids:
            n = len(self.shared_ids)
            if n >= MAX_TOKEN - MAX_LOCAL_TOKEN:
                raise TokensExhausted(f"more than {n} cross-cluster dependency tokens in one "
                                      "barrier interval")
            self.shared_ids[key] = SHARED_TOKENS + n
        return self.shared_ids[key]


def shared_tokens_free() -> int:
    """How many (sender, receiver) unit pairs one barrier interval can order."""
    return MAX_TOKEN - MAX_LOCAL_TOKEN


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

    def remote_write(self, slots: tuple[Slot, ...], by: tuple[int, int], loc: SourceLoc) -> int:
        """Record that instruction ``by`` (cluster, stream index) of another cluster writes
        ``slots`` of this one here (a ``bcast``): ordered after this stream's earlier
        accesses to them and before its later ones, as a write of this stream would be."""
        index = len(self.items)
        deps: set[int] = set()
        for slot in slots:
            deps.update(self.readers.get(slot, ()))
            if slot in self.last_writer:
                deps.add(self.last_writer[slot])
            self.last_writer[slot] = index
            self.readers[slot] = []
        self.items.append(_Pending("", "remote", {}, loc, sorted(deps), remote=by))
        return index

    def resolve(self, pool: TokenPool, streams: dict[int, ClusterStream] | None = None) -> None:
        """Assign tokens: local ones within the stream, shared ones with the senders of its
        remote writes (``streams``: every stream of the interval, by cluster)."""
        implied: dict[tuple[str, Any], int] = {}  # (consumer, producer) -> latest waited
        items = self.items
        for item in items:
            if item.remote is not None:
                self._sender_waits(item, pool, streams or {}, implied)
                continue
            latest: dict[str, int] = {}
            senders: dict[int, int] = {}  # sender cluster -> latest of its writes waited on
            for d in item.deps:
                dep = items[d]
                if dep.remote is not None:
                    s_cl, s_index = dep.remote
                    senders[s_cl] = max(senders.get(s_cl, -1), s_index)
                elif dep.unit != item.unit:
                    latest[dep.unit] = max(latest.get(dep.unit, -1), d)
            for unit, d in sorted(latest.items()):
                if implied.get((item.unit, unit), -1) >= d:
                    continue
                implied[(item.unit, unit)] = d
                token = pool.token(self.cl, unit, item.unit)
                item.waits.append(token)
                items[d].sigs.append(token)
            for s_cl, s_index in sorted(senders.items()):
                sender = (streams or {})[s_cl].items[s_index]
                key = (item.unit, ("remote", s_cl, sender.unit))
                if implied.get(key, -1) >= s_index:
                    continue
                implied[key] = s_index
                token = pool.shared(s_cl, sender.unit, self.cl, item.unit)
                item.waits.append(token)
                item.after.append((s_cl, s_index))
                sender.sigs.append(token)

    def _sender_waits(self, write: _Pending, pool: TokenPool, streams: dict[int, ClusterStream],
                      implied: dict[tuple[str, Any], int]) -> None:
        """The sender of remote write ``write`` waits for this stream's accesses before it."""
        s_cl, s_index = write.remote  # type: ignore[misc]
        sender = streams[s_cl].items[s_index]
        latest: dict[str, int] = {}
        for d in write.deps:
            dep = self.items[d]
            if dep.remote is not None:
                if dep.remote[0] != s_cl:
                    raise InternalError(f"cluster {self.cl}: slots written by two senders "
                                        "with nothing ordering them")
                continue  # the same sender's queue runs its writes in order
            latest[dep.unit] = max(latest.get(dep.unit, -1), d)
        for unit, d in sorted(latest.items()):
            key = (f"remote {s_cl} {sender.unit}", unit)
            if implied.get(key, -1) >= d:
                continue
            implied[key] = d
            token = pool.shared(self.cl, unit, s_cl, sender.unit)
            self.items[d].sigs.append(token)
            sender.waits.append(token)
            sender.after.append((self.cl, d))

    def groups(self) -> list[list[tuple[Instruction, SourceLoc]]]:
        """The instructions as groups (one per stream item, with any helper ``sync`` next
        to it; a remote write's group is empty), in stream order."""
        groups = []
        for item in self.items:
            group: list[tuple[Instruction, SourceLoc]] = []
            if item.remote is not None:
                groups.append(group)
                continue
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
    """Resolve tokens of one barrier interval and interleave the clusters round-robin; a
    stream whose next instruction waits on another cluster's not yet placed gives way."""
    live = resolve_all(streams)
    resolved = [s.groups() for s in live]
    out: list[tuple[Instruction, SourceLoc]] = []
    for k, i in merge_order(live):
        out.extend(resolved[k][i])
    return out


def resolve_all(streams: list[ClusterStream]) -> list[ClusterStream]:
    """The streams that hold items, their tokens assigned from one pool (one interval)."""
    pool = TokenPool()
    live = [s for s in streams if s.items]
    by_cl = {s.cl: s for s in live}
    for s in live:
        s.resolve(pool, by_cl)
    return live


def merge_order(live: list[ClusterStream]) -> Iterator[tuple[int, int]]:
    """(stream, item) index pairs in the order :func:`merge` places the items (tokens
    resolved): round-robin, a stream whose next item waits on another cluster's item not
    yet placed giving way. The cost model replays kernels in this order too."""
    position = {s.cl: 0 for s in live}
    remaining = sum(len(s.items) for s in live)
    while remaining:
        moved = False
        for k, s in enumerate(live):
            i = position[s.cl]
            if i < len(s.items) and all(position[c] > j for c, j in s.items[i].after):
                position[s.cl] = i + 1
                remaining -= 1
                moved = True
                yield k, i
        if not moved:
            raise InternalError("cross-cluster dependencies form a cycle")
