"""Dispatcher and event-driven timing engine (docs/timing.md sections 1-2, 7b).

Events are processed in ``(cycle, phase, queue id, sequence)`` order, the phases of one cycle
being: 0 retire (writes commit, tokens signal), 1 queue-head starts (queue-id order, so
tokens go to waiters in that order), 2 shared-resource requests (so DRAM, global buffer and
NoC see requests first-come-first-served by request cycle, ties by queue id). The dispatcher
runs ahead of the event clock until it blocks (full queue, barrier, halt); an instruction
dispatched at ``D`` cannot start before ``D + 1``, so running ahead changes nothing.

Everything the engine needs to know about an instruction that does not depend on the
machine state (its queue, memory operands, tokens, timing class) is read once per program
(:class:`ProgramInfo`): a training step runs hundreds of thousands of instructions, and
per-instruction Python overhead is what bounds the emulator's speed there.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from acf.emulator import timing_compute as tc
from acf.emulator.durations import Durations
from acf.emulator.energy import event_counts
from acf.emulator.interconnect import Interconnect, RoutingError
from acf.emulator.races import RaceDetector
from acf.emulator.state import State
from acf.emulator.traps import EmulatorTrap, Where, label_of
from acf.isa.program import Program, gc_paused
from acf.isa.semantics import SEMANTICS, SemanticError, advance_loops
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS, token_counter, token_name, unit_of

RETIRE, START, REQUEST = 0, 1, 2
MAX_LOOP_DEPTH = 4
#: Instructions one run may dispatch before it stops with a trap: hardware loops nest, so a
#: few lines can ask for 2^96 iterations, which would run (and grow the records) without end.
#: Compiled training steps run a few hundred thousand (ResNet-18: about 230,000); ten
#: million is 40 times that, and a runaway loop reaches it in minutes and a few GB of
#: records rather than exhausting memory first.
DEFAULT_MAX_INSTRUCTIONS = 10_000_000
#: Timing classes the engine implements (the completeness test checks every ISA row).
TIMING_CLASSES = frozenset({"dma", "load", "gather", "store", "matmul", "sddmm", "vector", "reduce",
                            "optimizer", "scalar", "codec", "noc_config", "noc_send", "noc_recv",
                            "noc_bcast", "noc_reduce", "sync", "ctl"})

# Dispatcher actions of ProgramInfo.kind
_QUEUED, _HALT, _BARRIER, _SETAR, _ADDAR, _LOOP, _OTHER = range(7)
_CTL_KIND = {"halt": _HALT, "barrier": _BARRIER, "setar": _SETAR, "addar": _ADDAR, "loop": _LOOP}


class ProgramInfo:
    """Per-instruction facts of a program that the machine state cannot change, as parallel
    lists indexed by instruction: ``kind`` (queued or which dispatcher action), ``q`` (queue
    id; -1 for dispatcher rows), ``mem`` (``(field, offset, areg)`` of each memory operand),
    ``waits``/``signals`` (token tuples), ``need`` (``(token, count)`` pairs in first-wait
    order), ``mnemonic``, ``timing`` and ``semantic`` (the ISA function). Shared, never
    copied: a deep copy of an engine (the debugger's checkpoints) keeps the same object."""

    def __init__(self, program: Program, ncl: int):
        ins_list = program.instructions
        n = len(ins_list)
        self.n = n
        self.kind = [0] * n
        self.q = [-1] * n
        self.mem: list[tuple[tuple[str, int, int], ...]] = [()] * n
        self.waits: list[tuple[int, ...]] = [()] * n
        self.signals: list[tuple[int, ...]] = [()] * n
        self.need: list[tuple[tuple[int, int], ...]] = [()] * n
        self.mnemonic = [""] * n
        self.timing = [""] * n
        self.unit = [""] * n
        self.cluster = [0] * n
        self.semantic: list[Any] = [None] * n
        nu = len(CLUSTER_UNITS)
        mem_fields: dict[str, tuple[str, ...]] = {}
        for i, ins in enumerate(ins_list):
            op, args = ins.op, ins.args
            m = op.mnemonic
            self.mnemonic[i] = m
            self.timing[i] = op.timing
            if not op.queued:
                self.kind[i] = _CTL_KIND.get(m, _OTHER)
                continue
            self.kind[i] = _QUEUED
            unit, cl = unit_of(op, args), int(args.get("cl", 0))
            if unit in CLUSTER_UNITS and not 0 <= cl < ncl:
                raise EmulatorTrap(f"cluster c{cl} does not exist ({ncl} clusters)", 0,
                                   Where(i, m, unit, cl, label_of(program.labels, i)), "out-of-bounds",
                                   f"c{cl}")
            self.unit[i], self.cluster[i] = unit, cl
            self.q[i] = cl * nu + CLUSTER_UNITS.index(unit) if unit in CLUSTER_UNITS else \
                ncl * nu + GLOBAL_UNITS.index(unit)
            names = mem_fields.get(m)
            if names is None:
                names = mem_fields[m] = tuple(f.name for f in op.fields if f.kind.name == "mem")
            self.mem[i] = tuple((name, args[name].offset, args[name].areg) for name in names)
            # token ids become counters (local ids scoped to the cluster, isa.spec.token_counter;
            # Instruction.wait_counters and signal_counters, without finding the unit again)
            owner = cl if unit in CLUSTER_UNITS else None
            waits = tuple(token_counter(t, owner) for t in (args.get("wait0", 0), args.get("wait1", 0)) if t)
            if len(waits) == 2:
                w0, w1 = waits
                self.waits[i] = waits
                self.need[i] = ((w0, 2),) if w0 == w1 else ((w0, 1), (w1, 1))
            elif waits:
                self.waits[i] = waits
                self.need[i] = ((waits[0], 1),)
            self.signals[i] = tuple(token_counter(t, owner) for t in (args.get("sig0", 0), args.get("sig1", 0)) if t)
            self.semantic[i] = SEMANTICS.get(m)
        # nearest label at or before each index (ties: the smallest name), as acf.emulator.traps.label_of
        first: dict[int, str] = {}
        for name, at in program.labels.items():
            if at not in first or name < first[at]:
                first[at] = name
        self._label_at = sorted(first)
        self._label_name = [first[a] for a in self._label_at]

    def label(self, index: int) -> str:
        k = bisect_right(self._label_at, index) - 1
        if k < 0:
            return ""
        at, name = self._label_at[k], self._label_name[k]
        return name if at == index else f"{name}+{index - at}"

    def __deepcopy__(self, memo: dict) -> ProgramInfo:
        return self


def _where_of(program: Program, info: ProgramInfo, cache: dict[int, Where]) -> Callable[[int], Where]:
    """Instruction index -> its Where (made once per index; a closure over the program, not
    the engine, so that handing it to the race detector makes no reference cycle)."""
    def where(index: int) -> Where:
        w = cache.get(index)
        if w is None:
            ins = program.instructions[index]
            w = cache[index] = Where(index, ins.mnemonic, ins.unit, ins.cluster, info.label(index))
        return w
    return where


class Pending:
    """A dispatched instruction instance waiting in its queue."""

    __slots__ = ("D", "_engine", "ea", "index", "ins", "match", "q", "seq")

    def __init__(self, seq: int, index: int, ins: Any, ea: dict[str, int], D: int, q: int,
                 match: tuple | None, engine: Engine):
        self.seq, self.index, self.ins, self.ea, self.D, self.q = seq, index, ins, ea, D, q
        self.match = match  # send/recv pairing key
        self._engine = engine

    @property
    def where(self) -> Where:
        return self._engine.where(self.index)

    def __repr__(self) -> str:
        return f"Pending(#{self.index} {self.ins.mnemonic}, D={self.D}, q={self.q})"


@dataclass(slots=True)
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


class Inflight:
    """A started instruction: its effect, race clock, end so far and outstanding requests
    (``parts``), event counts and record."""

    __slots__ = ("clock", "counts", "effect", "end", "p", "parts", "record", "start")

    def __init__(self, p: Pending, start: int, effect: Any, clock: Any, record: Record):
        self.p, self.start, self.effect, self.clock, self.record = p, start, effect, clock, record
        self.end = 0
        self.parts = 0
        self.counts: dict[str, int] = {}  # energy events (acf.emulator.energy)

    def __repr__(self) -> str:
        return f"Inflight(#{self.p.index} {self.p.ins.mnemonic}, start={self.start}, end={self.end})"


class Engine(Durations):
    """Runs a program on a target: ``run()`` to the end, or ``step()`` one retirement."""

    def __init__(self, program: Program, target, state: State, ic: Interconnect,
                 max_instructions: int = DEFAULT_MAX_INSTRUCTIONS):
        self.prog, self.t, self.state, self.ic = program, target, state, ic
        if isinstance(max_instructions, bool) or not isinstance(max_instructions, int) or max_instructions < 1:
            raise ValueError(f"max_instructions must be a positive integer, got {max_instructions!r}")
        self.max_instructions = max_instructions
        self.dispatched = 0  # instructions dispatched to a queue or executed by the dispatcher
        self.cfg = tc.ClusterTiming.of(target)
        self.ncl = target.num_clusters
        self.nq = self.ncl * len(CLUSTER_UNITS) + len(GLOBAL_UNITS)
        self.depth = int(target.cluster.queue_depth)
        self.X = int(target.fabric.grid[0])
        self.lat = {"dram": int(target.dram.latency_cycles), "gb": int(target.gbuf.latency_cycles)}
        self.reconfig = int(target.noc.reconfig_cycles)
        self.gather_cache: dict[tuple, int] = {}  # on-chip gather bank cycles by addresses
        self.bank_cache: dict[tuple, int] = {}  # vector bank cycles by operand placement
        with gc_paused():  # a few tuples per instruction: see the first dispatch below
            self.info = ProgramInfo(program, self.ncl)
        self.queues: list[deque] = [deque() for _ in range(self.nq)]
        self.busy = [False] * self.nq
        self.tokens: Counter = Counter()
        self.waiters: dict[int, set[int]] = {}
        self.send_end: dict[tuple, int] = {}
        self.send_waiters: dict[tuple, int] = {}
        self.pair_count: Counter = Counter()
        self.heap: list = []
        self.seq = 0
        self._labels: dict[int, Where] = {}
        self._where = _where_of(program, self.info, self._labels)
        self.races = RaceDetector(self.nq, self._where)
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
        # the first dispatch allocates a record per queued instruction: on a 512^3 GEMM the
        # collections it set off cost ~1 ms of ~12 (run() pauses the collector likewise)
        with gc_paused():
            self._dispatch(0)

    # ---- helpers ---------------------------------------------------------------------------
    def qid(self, unit: str, cl: int) -> int:
        if unit in CLUSTER_UNITS:
            return cl * len(CLUSTER_UNITS) + CLUSTER_UNITS.index(unit)
        return self.ncl * len(CLUSTER_UNITS) + GLOBAL_UNITS.index(unit)

    def where(self, index: int) -> Where:
        return self._where(index)

    def push(self, cycle: int, phase: int, q: int, fn: Callable, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (cycle, phase, q, self.seq, fn, arg))

    def trap(self, msg: str, cycle: int, where: Where | None = None, kind: str = "trap",
             address: str = "", other: Where | None = None, blocked: tuple[Where, ...] = ()
             ) -> EmulatorTrap:
        return EmulatorTrap(msg, cycle, where, kind, address, other, blocked)

    # ---- dispatcher ------------------------------------------------------------------------
    def _dispatch(self, D: int) -> None:
        """Dispatch from cycle D until something blocks the dispatcher."""
        info = self.info
        ins_list, n = self.prog.instructions, info.n
        kinds, qs, mems = info.kind, info.q, info.mem
        queues, busy, loops = self.queues, self.busy, self.loops
        ar = self.state.ar
        depth = self.depth
        self.blocked = None
        # counted in a local (this loop is the hot path), stored back before each return
        count, limit = self.dispatched, self.max_instructions
        while True:
            index = self.pc
            if index >= n:
                self.halted, self.halt_cycle = True, D
                self.dispatched = count
                return
            kind = kinds[index]
            nxt = index + 1
            if count >= limit and kind != _HALT:
                raise self.trap(f"instruction limit of {limit} reached (the program had not ended: "
                                "a hardware loop that runs too long? a longer program needs "
                                "a larger max_instructions)", D, self.where(index), "limit")
            if kind == _QUEUED:
                q = qs[index]
                queue = queues[q]
                if len(queue) >= depth:
                    self.blocked = ("full", q, D)
                    self.dispatched = count
                    return
                ins = ins_list[index]
                ea = {}
                for name, off, areg in mems[index]:
                    ea[name] = off + ar[areg]
                match = None
                m = info.mnemonic[index]
                if m == "send":
                    key = ("s", ins.cluster, ins["to"])
                    match = ("s", ins.cluster, ins["to"], self.pair_count[key])
                    self.pair_count[key] += 1
                elif m == "recv":
                    key = ("r", ins["frm"], ins.cluster)
                    match = ("s", ins["frm"], ins.cluster, self.pair_count[key])
                    self.pair_count[key] += 1
                queue.append(Pending(self.seq, index, ins, ea, D, q, match, self))
                self.live += 1
                if len(queue) == 1 and not busy[q]:
                    self.seq += 1
                    heapq.heappush(self.heap, (D + 1, START, q, self.seq, self._try_start, q))
            elif kind == _HALT:
                self.halted, self.halt_cycle = True, D + 1
                self.dispatched = count + 1
                return
            elif kind == _BARRIER:
                count += 1
                self.pc = advance_loops(nxt, loops) if loops else nxt
                if self.live:
                    self.blocked = ("barrier", D)
                    self.dispatched = count
                    return
                self.races.barrier()
                D += 1
                continue
            elif kind == _SETAR or kind == _ADDAR:
                ins = ins_list[index]
                r = ins["ar"]
                if r:
                    ar[r] = ins["value"] if kind == _SETAR else ar[r] + ins["value"]
            elif kind == _LOOP:
                ins = ins_list[index]
                if ins["count"] == 0 or ins["end"] == 0:
                    nxt = index + 1 + ins["end"]
                else:
                    if len(loops) >= MAX_LOOP_DEPTH:
                        raise self.trap(f"hardware loops nest deeper than {MAX_LOOP_DEPTH}", D,
                                        self.where(index), "loop")
                    end = index + 1 + ins["end"]
                    if loops and end > loops[-1][1]:
                        raise self.trap(f"the loop's body ends at #{end}, past the end (#"
                                        f"{loops[-1][1]}) of the loop at #{loops[-1][0] - 1} "
                                        "that encloses it (loops must nest)", D,
                                        self.where(index), "loop")
                    loops.append([index + 1, end, ins["count"]])
            count += 1
            self.pc = advance_loops(nxt, loops) if loops else nxt
            D += 1

    # ---- queues ----------------------------------------------------------------------------
    def _try_start(self, q: int, t: int) -> None:
        queue = self.queues[q]
        if self.busy[q] or not queue:
            return
        p = queue[0]
        if t < p.D + 1:
            self.seq += 1
            heapq.heappush(self.heap, (p.D + 1, START, q, self.seq, self._try_start, q))
            return
        ready_at = self.ready_at
        if q not in ready_at:
            ready_at[q] = t
        need = self.info.need[p.index]
        tokens = self.tokens
        if need:
            missing = [tok for tok, k in need if tokens[tok] < k]
            if missing:
                for tok in missing:
                    self.waiters.setdefault(tok, set()).add(q)
                return
        if p.match is not None and self.info.mnemonic[p.index] == "recv":
            end = self.send_end.get(p.match)
            if end is None or end > t:
                self.send_waiters[p.match] = q
                return
        queue.popleft()
        for tok, k in need:
            tokens[tok] -= k
        self.busy[q] = True
        ready = ready_at.pop(q)
        blocked = self.blocked
        if blocked is not None and blocked[0] == "full" and blocked[1] == q:
            self._dispatch(max(blocked[2], t + 1))
        self._execute(p, t, ready)

    def _execute(self, p: Pending, s: int, ready: int) -> None:
        ins, index, info = p.ins, p.index, self.info
        try:
            eff = info.semantic[index](ins, p.ea, self.state)
        except SemanticError as exc:
            raise self.trap(str(exc), s, self.where(index), exc.kind, exc.address) from None
        except RoutingError as exc:
            raise self.trap(exc.reason, s, self.where(index), "routing") from None
        except (ArithmeticError, ValueError, IndexError, MemoryError) as exc:
            # no instruction may end the run with a Python error: what the semantics did
            # not foresee still stops it at the instruction, unit and cycle
            raise self.trap(f"{info.mnemonic[index]} cannot execute: {type(exc).__name__}: {exc}",
                            s, self.where(index), "fault") from None
        m = info.mnemonic[index]
        send_key = p.match if m == "send" or m == "recv" else None
        clock, race = self.races.start(p.q, index, info.waits[index], eff.accesses, send_key)
        if race is not None:
            a, b = race
            raise self.trap(f"race: {a} and {b} access overlapping bytes with no token, send/recv "
                            "or barrier ordering them", s, b, "race", other=a)
        rec = Record(index, m, info.unit[index], info.cluster[index], p.D, s, s, token_wait_cycles=s - ready)
        self._time(Inflight(p, s, eff, clock, rec), s)

    # ---- retirement ------------------------------------------------------------------------
    def _retire(self, ex: Inflight, e: int) -> None:
        p, eff, st = ex.p, ex.effect, self.state
        for space, cl, addr, data, pitch in eff.writes:
            st.write(space, cl, addr, data, pitch)
        for cl, i, v in eff.freg:
            st.fregs[cl, i] = v
        for cl, i, v in eff.view:
            st.views[cl][i] = v
        if eff.info:
            cfg = eff.info.get("config")
            if cfg is not None:
                self._configure(ex, cfg, e)
        index = p.index
        signals = self.info.signals[index]
        if signals:
            tokens, waiters, heap = self.tokens, self.waiters, self.heap
            for tok in signals:
                tokens[tok] += 1
                if tok in waiters:
                    for q in sorted(waiters.pop(tok)):
                        self.seq += 1
                        heapq.heappush(heap, (e, START, q, self.seq, self._try_start, q))
        send_key = p.match if self.info.mnemonic[index] == "send" else None
        self.races.end(ex.clock, signals, send_key)
        if send_key is not None:
            self.send_end[send_key] = e
            q = self.send_waiters.pop(send_key, None)
            if q is not None:
                self.push(e, START, q, self._try_start, q)
        q = p.q
        self.busy[q] = False
        if self.queues[q]:
            self.seq += 1
            heapq.heappush(self.heap, (e, START, q, self.seq, self._try_start, q))
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
        with gc_paused():
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
        heads, blocked = [], []
        for queue in self.queues:
            if queue:
                p = queue[0]
                need = Counter(p.ins.wait_counters)
                toks = [token_name(tok) for tok, k in sorted(need.items()) if self.tokens[tok] < k]
                why = f"waits for token {', '.join(toks)}" if toks else (
                    f"waits for a send from c{p.ins['frm']}" if p.ins.mnemonic == "recv" else "blocked")
                heads.append(f"{p.where} {why}")
                blocked.append(p)
        first = min(blocked, key=lambda p: p.seq).where if blocked else None
        raise self.trap("token deadlock: nothing can progress; " + "; ".join(heads), self.now,
                        first, "deadlock", blocked=tuple(p.where for p in blocked))
