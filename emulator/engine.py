"""Dispatcher and event-driven timing engine (docs/timing.md sections 1-2, 7b).

Events are processed in ``(cycle, phase, queue id, sequence)`` order, the phases of one cycle
being: 0 retire (writes commit, tokens signal), 1 queue-head starts (queue-id order, so
tokens go to waiters in that order), 2 shared-resource requests (so DRAM, global buffer and
NoC see requests first-come-first-served by request cycle, ties by queue id). The dispatcher
runs ahead of the event clock until it blocks (full queue, barrier, halt); an instruction
dispatched at ``D`` cannot start before ``D + 1``, so running ahead changes nothing.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from acf.emulator import timing_compute as tc
from acf.emulator.durations import Durations
from acf.emulator.energy import event_counts
from acf.emulator.interconnect import Interconnect, RoutingError
from acf.emulator.races import RaceDetector
from acf.emulator.state import State
from acf.emulator.traps import EmulatorTrap, Where, label_of
from acf.isa.fields import MemRef
from acf.isa.program import Program
from acf.isa.semantics import SEMANTICS, SemanticError, advance_loops
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS

RETIRE, START, REQUEST = 0, 1, 2
MAX_LOOP_DEPTH = 4
#: Timing classes the engine implements (the completeness test checks every ISA row).
TIMING_CLASSES = frozenset({"dma", "load", "gather", "store", "matmul", "sddmm", "vector", "reduce",
                            "optimizer", "scalar", "codec", "noc_config", "noc_send", "noc_recv",
                            "noc_bcast", "noc_reduce", "sync", "ctl"})


@dataclass
class Pending:
    """A dispatched instruction instance waiting in its queue."""

    seq: int
    index: int
    ins: Any
    ea: dict[str, int]
    D: int
    q: int
    where: Where
    match: tuple | None = None  # send/recv pairing key


@dataclass
class Record:
    """What happened to one instruction instance."""

    index: int
    mnemonic: str
    unit: str
    cluster: int
    dispatch: int
    start: int
    end: int
    issued_macs: int = 0
    effectual_macs: int = 0
    bytes: int = 0
    energy_pj: float = 0.0
    token_wait_cycles: int = 0
    resource_stall_cycles: int = 0


@dataclass
class Inflight:
    p: Pending
    start: int
    effect: Any
    clock: Any
    end: int = 0
    parts: int = 0
    counts: Counter = field(default_factory=Counter)
    record: Record | None = None


class Engine(Durations):
    """Runs a program on a target: ``run()`` to the end, or ``step()`` one retirement."""

    def __init__(self, program: Program, target, state: State, ic: Interconnect):
        self.prog, self.t, self.state, self.ic = program, target, state, ic
        self.cfg = tc.ClusterTiming.of(target)
        self.ncl = target.num_clusters
        self.nq = self.ncl * len(CLUSTER_UNITS) + len(GLOBAL_UNITS)
        self.depth = int(target.cluster.queue_depth)
        self.X = int(target.fabric.grid[0])
        self.lat = {"dram": int(target.dram.latency_cycles), "gb": int(target.gbuf.latency_cycles)}
        self.reconfig = int(target.noc.reconfig_cycles)
        self.queues = [deque() for _ in range(self.nq)]
        self.busy = [False] * self.nq
        self.tokens: Counter = Counter()
        self.waiters: dict[int, set[int]] = {}
        self.send_end: dict[tuple, int] = {}
        self.send_waiters: dict[tuple, int] = {}
        self.pair_count: Counter = Counter()
        self.heap: list = []
        self.seq = 0
        self.races = RaceDetector(self.nq)
        self.records: list[Record] = []
        self.live = 0
        self.last_end = 0
        self.now = 0
        # dispatcher
        self.pc = 0
        self.D = 0
        self.loops: list[list[int]] = []
        self.halted = False
        self.halt_cycle = 0
        self.blocked: tuple | None = None
        self.ready_at: dict[int, int] = {}  # queue -> cycle its head became ready (stall stats)
        self._memfields = [[f.name for f in ins.op.fields if f.kind.name == "mem"]
                           for ins in program.instructions]
        self._labels = {}
        self._dispatch(0)

    # ---- helpers ---------------------------------------------------------------------------
    def qid(self, unit: str, cl: int) -> int:
        if unit in CLUSTER_UNITS:
            return cl * len(CLUSTER_UNITS) + CLUSTER_UNITS.index(unit)
        return self.ncl * len(CLUSTER_UNITS) + GLOBAL_UNITS.index(unit)

    def where(self, index: int) -> Where:
        w = self._labels.get(index)
        if w is None:
            ins = self.prog.instructions[index]
            w = self._labels[index] = Where(index, ins.mnemonic, ins.unit, ins.cluster,
                                            label_of(self.prog.labels, index))
        return w

    def push(self, cycle: int, phase: int, q: int, fn: Callable, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (cycle, phase, q, self.seq, fn, arg))

    def trap(self, msg: str, cycle: int, where: Where | None = None, kind: str = "trap",
             address: str = "", other: Where | None = None) -> EmulatorTrap:
        return EmulatorTrap(msg, cycle, where, kind, address, other)

    # ---- dispatcher ------------------------------------------------------------------------
    def _dispatch(self, D: int) -> None:
        """Dispatch from cycle D until something blocks the dispatcher."""
        ins_list, n = self.prog.instructions, len(self.prog.instructions)
        self.blocked = None
        while True:
            if self.pc >= n:
                self.halted, self.halt_cycle = True, D
                return
            index = self.pc
            ins = ins_list[index]
            op = ins.op
            nxt = index + 1
            if op.queued:
                q = self.qid(ins.unit, ins.cluster)
                queue = self.queues[q]
                if len(queue) >= self.depth:
                    self.blocked = ("full", q, D)
                    return
                ar = self.state.ar
                ea = {}
                for name in self._memfields[index]:
                    ref: MemRef = ins.args[name]
                    ea[name] = ref.offset + ar[ref.areg]
                p = Pending(self.seq, index, ins, ea, D, q, self.where(index))
                m = ins.mnemonic
                if m == "send":
                    p.match = ("s", ins.cluster, ins["to"], self.pair_count[("s", ins.cluster, ins["to"])])
                    self.pair_count[("s", ins.cluster, ins["to"])] += 1
                elif m == "recv":
                    p.match = ("s", ins["frm"], ins.cluster, self.pair_count[("r", ins["frm"], ins.cluster)])
                    self.pair_count[("r", ins["frm"], ins.cluster)] += 1
                queue.append(p)
                self.live += 1
                if len(queue) == 1 and not self.busy[q]:
                    self.push(D + 1, START, q, self._try_start, q)
            else:
                m = ins.mnemonic
                if m == "halt":
                    self.halted, self.halt_cycle = True, D + 1
                    return
                if m == "barrier":
                    self.pc = advance_loops(nxt, self.loops)
                    if self.live:
                        self.blocked = ("barrier", D)
                        return
                    self.races.barrier()
                    D += 1
                    continue
                if m in ("setar", "addar"):
                    r = ins["ar"]
                    if r:
                        self.state.ar[r] = ins["value"] if m == "setar" else self.state.ar[r] + ins["value"]
                elif m == "loop":
                    if ins["count"] == 0 or ins["end"] == 0:
                        nxt = index + 1 + ins["end"]
                    else:
                        if len(self.loops) >= MAX_LOOP_DEPTH:
                            raise self.trap(f"hardware loops nest deeper than {MAX_LOOP_DEPTH}", D,
                                            self.where(index), "loop")
                        self.loops.append([index + 1, index + 1 + ins["end"], ins["count"]])
            self.pc = advance_loops(nxt, self.loops)
            D += 1

    # ---- queues ----------------------------------------------------------------------------
    def _try_start(self, q: int, t: int) -> None:
        queue = self.queues[q]
        if self.busy[q] or not queue:
            return
        p = queue[0]
        if t < p.D + 1:
            self.push(p.D + 1, START, q, self._try_start, q)
            return
        self.ready_at.setdefault(q, t)
        need = Counter(p.ins.waits)
        missing = [tok for tok, k in need.items() if self.tokens[tok] < k]
        if missing:
            for tok in missing:
                self.waiters.setdefault(tok, set()).add(q)
            return
        if p.match is not None and p.ins.mnemonic == "recv":
            end = self.send_end.get(p.match)
            if end is None or end > t:
                self.send_waiters[p.match] = q
                return
        queue.popleft()
        for tok, k in need.items():
            self.tokens[tok] -= k
        self.busy[q] = True
        ready = self.ready_at.pop(q)
        if self.blocked is not None and self.blocked[0] == "full" and self.blocked[1] == q:
            self._dispatch(max(self.blocked[2], t + 1))
        self._execute(p, t, ready)

    def _execute(self, p: Pending, s: int, ready: int) -> None:
        ins = p.ins
        try:
            eff = SEMANTICS[ins.mnemonic](ins, p.ea, self.state)
        except SemanticError as exc:
            raise self.trap(str(exc), s, p.where, exc.kind, exc.address) from None
        except RoutingError as exc:
            raise self.trap(exc.reason, s, p.where, "routing") from None
        send_key = p.match if ins.mnemonic in ("send", "recv") else None
        clock, race = self.races.start(p.q, p.where, ins.waits, eff.accesses, send_key)
        if race is not None:
            a, b = race
            raise self.trap(f"race: {a} and {b} access overlapping bytes with no token, send/recv "
                            "or barrier ordering them", s, p.where, "race", other=a)
        ex = Inflight(p, s, eff, clock)
        ex.record = Record(p.index, ins.mnemonic, ins.unit, ins.cluster, p.D, s, s,
                           token_wait_cycles=s - ready)
        self._time(ex, s)

    # ---- retirement ------------------------------------------------------------------------
    def _retire(self, ex: Inflight, e: int) -> None:
        p, eff, st = ex.p, ex.effect, self.state
        for space, cl, addr, data, pitch in eff.writes:
            st.write(space, cl, addr, data, pitch)
        for cl, i, v in eff.freg:
            st.fregs[cl, i] = v
        cfg = eff.info.get("config")
        if cfg is not None:
            self._configure(ex, cfg, e)
        ins = p.ins
        for tok in ins.signals:
            self.tokens[tok] += 1
            for q in sorted(self.waiters.pop(tok, ())):
                self.push(e, START, q, self._try_start, q)
        send_key = p.match if ins.mnemonic == "send" else None
        self.races.end(ex.clock, ins.signals, send_key)
        if send_key is not None:
            self.send_end[send_key] = e
            q = self.send_waiters.pop(send_key, None)
            if q is not None:
                self.push(e, START, q, self._try_start, q)
        self.busy[p.q] = False
        if self.queues[p.q]:
            self.push(e, START, p.q, self._try_start, p.q)
        self.live -= 1
        self.last_end = max(self.last_end, e)
        rec = ex.record
        rec.end = e
        rec.energy_pj = event_counts(self, ex)
        self.records.append(rec)
        if self.blocked is not None and self.blocked[0] == "barrier" and self.live == 0:
            self.races.barrier()
            self._dispatch(max(self.blocked[1] + 1, e))

    def _configure(self, ex: Inflight, cfg: tuple, e: int) -> None:
        m, a = cfg
        try:
            ic = self.ic
            if m == "noc.topo":
                ic.set_topology(a["topology"])
            elif m == "noc.route":
                ic.set_routing(a["routing"])
            elif m == "noc.mcast":
                ic.set_group(a["grp"], a["x0"], a["y0"], a["x1"], a["y1"])
            elif m == "noc.pin":
                if a["src"] != a["dst"]:  # a cluster never routes to itself: nothing to pin
                    ic.pin(a["src"], a["dst"], a["via"])
            else:
                ic.clear_pins()
        except RoutingError as exc:
            raise self.trap(f"routing deadlock: {exc.reason}" if exc.cycle else exc.reason, e,
                            ex.p.where, "routing") from None

    # ---- driving ---------------------------------------------------------------------------
    def step(self) -> Record | None:
        """Process events until one instruction retires; None once the program is over."""
        n = len(self.records)
        heap = self.heap
        while heap:
            cycle, _, _, _, fn, arg = heapq.heappop(heap)
            self.now = cycle
            fn(arg, cycle)
            if len(self.records) > n:
                return self.records[-1]
        self._check_deadlock()
        return None

    def run(self) -> None:
        heap, pop = self.heap, heapq.heappop
        while heap:
            cycle, _, _, _, fn, arg = pop(heap)
            self.now = cycle
            fn(arg, cycle)
        self._check_deadlock()

    @property
    def done(self) -> bool:
        return not self.heap and self.live == 0 and self.halted

    @property
    def total_cycles(self) -> int:
        return max(self.last_end, self.halt_cycle)

    def _check_deadlock(self) -> None:
        if self.live == 0 and self.halted:
            return
        heads = []
        for q, queue in enumerate(self.queues):
            if queue:
                p = queue[0]
                need = Counter(p.ins.waits)
                toks = [f"t{tok}" for tok, k in sorted(need.items()) if self.tokens[tok] < k]
                why = f"waits for token {', '.join(toks)}" if toks else (
                    f"waits for a send from c{p.ins['frm']}" if p.ins.mnemonic == "recv" else "blocked")
                heads.append(f"{p.where} {why}")
        raise self.trap("token deadlock: nothing can progress; " + "; ".join(heads), self.now,
                        None, "deadlock")
