"""The reference's clock: dispatcher, unit queues, tokens and the per-cycle main loop.

Each cycle ``t`` runs these phases in order:

1. instructions whose end is ``t`` retire: writes commit, tokens are signalled (usable by
   starts at ``>= t``), their queue frees;
2. the dispatcher dispatches at most one instruction (or stays stalled);
3. queue heads start, in queue-id order (cluster queues by (cluster, unit), then dma, cfg),
   consuming tokens as they go;
4. resource requests made for cycle ``t`` are granted, ordered by queue id;
5. DRAM channels and the global buffer serve one cycle;
6. every active unit machine (MAC array, vector lanes and bank arbiters, codec) steps once.

A request or a server may find in phase 4 or 5 that an instruction ends at ``t`` itself (a
memory part with no bytes to move and no latency ends at its request, so a store of nothing
to DRAM ends with its NoC part). It retires at once, and the heads it unblocks start in
cycle ``t`` (a barrier it releases resumes dispatch at ``t``), as they would after an end
retired in phase 1.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from acf.isa import formats
from acf.isa.fields import MemRef
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS

from . import units as U
from .memsys import MemorySystem
from .noc import Noc
from .state import SPECIAL, UNARY, Memories, codec_counts, fmt_spec, tile_addrs, vfn


class RefError(RuntimeError):
    """A program the reference cannot run (trap, deadlock, out-of-bounds...)."""


@dataclass(frozen=True)
class Record:
    index: int
    mnemonic: str
    unit: str
    cluster: int
    start: int
    end: int


@dataclass
class RefResult:
    records: list[Record]
    total_cycles: int
    stats: dict[str, Any] = field(default_factory=dict)


def qkey(unit: str, cl: int) -> tuple[int, int, int]:
    if unit in CLUSTER_UNITS:
        return (0, cl, CLUSTER_UNITS.index(unit))
    return (1, 0, GLOBAL_UNITS.index(unit))


@dataclass
class Pending:
    """A dispatched instruction waiting in its queue."""

    index: int
    inst: Any
    args: dict  # effective operands (memrefs resolved to (space, address))
    D: int
    seq: int  # dispatch sequence number
    match: int = -1  # send/recv pairing number
    waits: tuple = ()  # token counters it consumes / signals (read once: heads are polled
    signals: tuple = ()  # every cycle)

    def __post_init__(self) -> None:
        self.waits, self.signals = self.inst.wait_counters, self.inst.signal_counters


class Exec:
    """A started instruction: components report their finish cycles; the end is the latest."""

    def __init__(self, sim: Sim, p: Pending, start: int):
        self.sim, self.p, self.start = sim, p, start
        self.qk = qkey(p.inst.unit, p.inst.cluster)
        self.open = 0
        self.finishes: list[int] = []
        self.end: int | None = None
        self.writes: list[Callable[[], None]] = []
        self.sealed = False

    def expect(self) -> Callable[[int], None]:
        self.open += 1
        return self._done

    def _done(self, t: int) -> None:
        self.open -= 1
        self.finishes.append(t)
        self._check()

    def seal(self) -> None:
        self.sealed = True
        self._check()

    def _check(self) -> None:
        if self.sealed and self.open == 0 and self.end is None:
            self.end = max(self.finishes) if self.finishes else self.start
            if self.end <= self.start:
                raise RefError(f"instruction {self.p.index} ({self.p.inst.mnemonic}) takes no cycles")
            self.sim.ending.setdefault(self.end, []).append(self)

    # helpers for behaviours
    def machine(self, start: int, m) -> None:
        self.sim.add_machine(start, self, m, self.expect())

    def at(self, cycle: int, fn: Callable[[], None]) -> None:
        self.sim.at(cycle, self, fn)


class Sim:
    def __init__(self, program, target, inputs=None, max_cycles: int = 2_000_000):
        if target.cluster.issue_cycles < 1:
            raise RefError("the reference needs cluster.issue_cycles >= 1")
        self.prog, self.tg = program, target
        self.c = target.cluster
        self.I = target.cluster.issue_cycles
        self.mem = Memories(target)
        self.mem.place_inputs(program, inputs)
        self.ms = MemorySystem(target)
        self.noc = Noc(target)
        self.max_cycles = max_cycles
        # dispatcher
        self.pc = 0
        self.ar = [0] * 16
        self.loops: list[list[int]] = []  # [body start, body end, iterations left]
        self.halted = False
        self.halt_cycle = 0
        self.barrier = False
        self.barrier_cycle = 0  # dispatch cycle of the barrier being waited on
        self.seq = 0
        # queues
        self.queues: dict[tuple, list[Pending]] = {}
        self.busy: dict[tuple, Exec] = {}
        self.tokens: dict[int, int] = {}  # token counter (isa token_counter) -> count
        self.send_count: dict[tuple[int, int], int] = {}
        self.recv_count: dict[tuple[int, int], int] = {}
        self.send_end: dict[tuple[int, int, int], int] = {}
        self.fr = [0.0] * 16
        self.views: dict[tuple[int, int], tuple[int, ...]] = {}  # (cluster, vr) -> view
        # time-keeping
        self.actions: list = []
        self.aseq = 0
        self.machines: list = []
        self.ending: dict[int, list[Exec]] = {}
        self.live = 0  # dispatched, not yet ended
        self.last_end = 0
        self.records: list[Record] = []
        self.stats = {"issued_macs": 0, "effectual_macs": 0}

    # ---- scheduling helpers -------------------------------------------------------------
    def at(self, cycle: int, ex: Exec, fn) -> None:
        ex.open += 1

        def run():
            fn()
            ex.open -= 1
            ex._check()

        heapq.heappush(self.actions, (cycle, ex.qk, self.aseq, run))
        self.aseq += 1

    def add_machine(self, start: int, ex: Exec, m, done_cb) -> None:
        if m.done:
            done_cb(start)
            return
        self.machines.append([start, ex.qk, m, done_cb])
        self.machines.sort(key=lambda e: (e[0], e[1]))

    # ---- main loop ------------------------------------------------------------------------
    def run(self) -> RefResult:
        t = 0
        while True:
            self.now = t
            # 1. retire
            self.retire_due(t)
            # 2. dispatch
            self.dispatch(t)
            # 3. starts
            self.start_heads(t)
            # 4. requests
            while self.actions and self.actions[0][0] == t:
                heapq.heappop(self.actions)[3]()
                self.settle_late_ends(t)
            if self.actions and self.actions[0][0] < t:
                raise RefError("internal: an action was scheduled in the past")
            # 5. memory servers
            self.ms.tick(t)
            self.settle_late_ends(t)
            # 6. unit machines
            keep = []
            for entry in self.machines:
                start, _, m, cb = entry
                if start > t:
                    keep.append(entry)
                    continue
                m.step()
                if m.done:
                    cb(t + 1)
                else:
                    keep.append(entry)
            self.machines = keep
            if self.halted_and_drained():
                break
            t += 1
            if t > self.max_cycles:
                raise RefError(f"no end after {self.max_cycles} cycles")
            if (self.live and not self.busy and not self.actions and not self.machines
                    and not self.ending and self.ms.idle and self._dispatch_blocked(t)
                    and not any(self.can_start(k, t) for k, q in self.queues.items() if q)):
                raise RefError(f"deadlock at cycle {t}: nothing can start")
        total = max(self.last_end, self.halt_cycle)
        self.stats["noc_flit_hops"] = self.noc.flits
        return RefResult(sorted(self.records, key=lambda r: (r.start, r.index)), total, self.stats)

    def retire_due(self, t: int) -> None:
        for ex in sorted(self.ending.pop(t, []), key=lambda e: e.qk):
            self.retire(ex, t)
            self.last_end = max(self.last_end, t)

    def start_heads(self, t: int) -> None:
        for qk in sorted(k for k, q in self.queues.items() if q and k not in self.busy):
            self.try_start(qk, t)

    def settle_late_ends(self, t: int) -> None:
        """Retire instructions found, by a request of cycle ``t`` or by the servers, to end at
        ``t`` itself (a part that moves no bytes and waits for no latency ends at its
        request): their tokens are usable by starts at ``t``, as any end's, and a barrier they
        release resumes dispatch at ``t``."""
        if t not in self.ending:
            return
        self.retire_due(t)
        if self.barrier and not self.live and self.barrier_cycle < t:
            self.dispatch(t)
        self.start_heads(t)

    def halted_and_drained(self) -> bool:
        return self.halted and self.live == 0

    def _dispatch_blocked(self, t: int) -> bool:
        return self.halted or self.barrier or self._queue_full() is not None

    # ---- dispatcher -----------------------------------------------------------------------
    def _queue_full(self):
        if self.pc >= len(self.prog.instructions):
            return None
        inst = self.prog.instructions[self.pc]
        if not inst.op.queued:
            return None
        qk = qkey(inst.unit, inst.cluster)
        if len(self.queues.get(qk, ())) >= self.c.queue_depth:
            return qk
        return None

    def dispatch(self, t: int) -> None:
        if self.halted:
            return
        if self.barrier:
            if self.live:
                return
            self.barrier = False
        if self.pc >= len(self.prog.instructions):
            self.halted, self.halt_cycle = True, t
            return
        if self._queue_full() is not None:
            return
        index = self.pc
        inst = self.prog.instructions[index]
        m = inst.mnemonic
        nxt = index + 1
        if m == "halt":
            self.halted, self.halt_cycle = True, t + 1
            return
        if m == "barrier":
            self.barrier, self.barrier_cycle = True, t
        elif m == "setar":
            if inst["ar"]:
                self.ar[inst["ar"]] = inst["value"]
        elif m == "addar":
            if inst["ar"]:
                self.ar[inst["ar"]] += inst["value"]
        elif m == "loop":
            if inst["count"] == 0:
                nxt = index + 1 + inst["end"]
            else:
                self.loops.append([index + 1, index + 1 + inst["end"], inst["count"]])
        else:
            args = {}
            for k, v in inst.args.items():
                args[k] = (v.space, v.offset + self.ar[v.areg]) if isinstance(v, MemRef) else v
            p = Pending(index, inst, args, t, self.seq)
            self.seq += 1
            if m == "send":
                key = (inst.cluster, args["to"])
                p.match = self.send_count.get(key, 0)
                self.send_count[key] = p.match + 1
            elif m == "recv":
                key = (args["frm"], inst.cluster)
                p.match = self.recv_count.get(key, 0)
                self.recv_count[key] = p.match + 1
            self.queues.setdefault(qkey(inst.unit, inst.cluster), []).append(p)
            self.live += 1
        self.pc = nxt
        while self.loops and self.pc == self.loops[-1][1]:
            if self.loops[-1][2] > 1:
                self.loops[-1][2] -= 1
                self.pc = self.loops[-1][0]
                break
            self.loops.pop()

    # ---- queues -------------------------------------------------------------------------
    def can_start(self, qk, t: int) -> bool:
        if qk in self.busy:
            return False
        p = self.queues[qk][0]
        if t < p.D + 1:
            return False
        need: dict[int, int] = {}
        for tok in p.waits:
            need[tok] = need.get(tok, 0) + 1
        if any(self.tokens.get(k, 0) < n for k, n in need.items()):
            return False
        if p.inst.mnemonic == "recv":
            end = self.send_end.get((p.args["frm"], p.inst.cluster, p.match))
            if end is None or end > t:
                return False
        return True

    def try_start(self, qk, t: int) -> None:
        if not self.can_start(qk, t):
            return
        p = self.queues[qk].pop(0)
        for tok in p.waits:
            self.tokens[tok] -= 1
        ex = Exec(self, p, t)
        self.busy[qk] = ex
        try:
            getattr(self, "x_" + p.inst.mnemonic.replace(".", "_"))(ex, p.args, t)
        except (formats.FormatError, KeyError, ValueError, IndexError) as e:
            raise RefError(f"instruction {p.index} ({p.inst.mnemonic}) traps: {e}") from e
        ex.seal()

    def retire(self, ex: Exec, t: int) -> None:
        for w in ex.writes:
            w()
        for tok in ex.p.signals:
            self.tokens[tok] = self.tokens.get(tok, 0) + 1
        p = ex.p
        if p.inst.mnemonic == "send":
            self.send_end[(p.inst.cluster, p.args["to"], p.match)] = t
        del self.busy[ex.qk]
        self.live -= 1
        self.records.append(Record(p.index, p.inst.mnemonic, p.inst.unit, p.inst.cluster, ex.start, t))

    # ---- behaviours (one per mnemonic) ------------------------------------------------------
    def _write_f32(self, ex: Exec, space, cl, addr, arr) -> None:
        data = np.ascontiguousarray(arr, np.float32).tobytes()
        ex.writes.append(lambda: self.mem.write(space, cl, addr, data))

    def _write_tile(self, ex: Exec, space, cl, addr, tile, pitch=0) -> None:
        rows, cols = tile.shape
        pitch = pitch or cols
        for r in range(rows):
            self._write_f32(ex, space, cl, addr + 4 * r * pitch, tile[r])

    def _banks(self, operands):
        return U.bank_machine(operands, self.c.spad_bank_bytes, self.c.spad_banks)

    def _fixed(self, ex: Exec, t: int, cycles: int) -> None:
        ex.machine(t, U.Countdown(cycles))

    def _read_tile_src(self, space, addr, fmt, rows, cols, stride, cl):
        """(tile, runs, bytes moved, spec) of a tile at ``space[addr]``."""
        spec = fmt_spec(fmt)
        if spec.format == formats.Format.DENSE:
            pitch = stride or cols
            tile = self.mem.tile(space, cl, addr, rows, cols, pitch)
            runs = [(addr + 4 * r * pitch, 4 * cols) for r in range(rows)]
            return tile, runs, 4 * rows * cols, spec
        h = formats.header(self.mem.read(space, cl, addr, formats.HEADER_BYTES))
        size = h.encoded_size
        tile = formats.unpack(self.mem.read(space, cl, addr, size))
        if tile.shape != (rows, cols) or h.format_spec != spec:
            raise RefError(f"tile at {space}[{addr:#x}] is {h.format_spec} {tile.shape}, "
                           f"instruction says {spec} {(rows, cols)}")
        return tile, [(addr, size)], size, spec

    def x_ld(self, ex, a, t):
        cl = ex.p.inst.cluster
        sspace, saddr = a["src"]
        _, daddr = a["dst"]
        rows, cols = a["rows"], a["cols"]
        tile, runs, nbytes, spec = self._read_tile_src(sspace, saddr, a["fmt"], rows, cols, a["stride"], cl)
        self._ld_common(ex, t, cl, sspace, runs, nbytes, codec_counts(tile, spec),
                        tile_addrs(daddr, rows, cols))
        self._write_tile(ex, "sp", cl, daddr, tile)

    def _ld_common(self, ex, t, cl, sspace, runs, nbytes, vx, dst_addrs):
        s1 = t + self.I
        _, y = self.noc.xy(cl)
        ex.at(s1, lambda: self.ms.source(sspace, s1, runs, ex.expect()))
        ex.at(s1 + self.ms.latency(sspace),
              lambda: ex.expect()(self.noc.unicast(ex_now(self), self.noc.from_port(y, cl), nbytes)))
        V, X = vx
        if V or X:
            ex.machine(s1, U.Codec(V, X, self.c.codec_values_per_cycle, self.c.codec_index_per_cycle))
        ex.machine(s1, self._banks([("sp", dst_addrs)]))

    def x_ldg(self, ex, a, t):
        cl = ex.p.inst.cluster
        sspace, saddr = a["src"]
        _, daddr = a["dst"]
        d0, d1, d2, s0, s1_, s2 = (a[k] for k in ("d0", "d1", "d2", "s0", "s1", "s2"))
        vals = np.zeros((d0, d1, d2), np.float32)
        runs = []
        for i0 in range(d0):
            for i1 in range(d1):
                base = saddr + 4 * (i0 * s0 + i1 * s1_)
                for i2 in range(d2):
                    vals[i0, i1, i2] = self.mem.f32(sspace, cl, base + 4 * i2 * s2, 1)[0]
                if s2 == 1:
                    runs.append((base, 4 * d2))
                else:
                    runs.extend((base + 4 * i2 * s2, 4) for i2 in range(d2))
        n = d0 * d1 * d2
        if sspace == "sp":  # on-chip gather: the scratchpad banks, no DRAM/GB/NoC
            src = [saddr + 4 * (i0 * s0 + i1 * s1_ + i2 * s2)
                   for i0 in range(d0) for i1 in range(d1) for i2 in range(d2)]
            ex.machine(t + self.I, self._banks([("sp", src), ("sp", tile_addrs(daddr, 1, n))]))
        else:
            self._ld_common(ex, t, cl, sspace, runs, 4 * n, (0, 0), tile_addrs(daddr, 1, n))
        self._write_f32(ex, "sp", cl, daddr, vals.reshape(-1))

    def x_st(self, ex, a, t):
        cl = ex.p.inst.cluster
        sspace, saddr = a["src"]
        dspace, daddr = a["dst"]
        rows, cols = a["rows"], a["cols"]
        tile = self.mem.tile(sspace, cl, saddr, rows, cols)
        spec = fmt_spec(a["fmt"])
        V, X = codec_counts(tile, spec)
        if spec.format == formats.Format.DENSE:
            pitch = a["stride"] or cols
            runs = [(daddr + 4 * r * pitch, 4 * cols) for r in range(rows)]
            nbytes = 4 * rows * cols
            self._write_tile(ex, dspace, cl, daddr, tile, pitch)
        else:
            blob = formats.pack(tile, spec)
            if a["cap"] and len(blob) > a["cap"]:
                raise RefError(f"st: encoding of {len(blob)} bytes exceeds cap {a['cap']}")
            runs, nbytes = [(daddr, len(blob))], len(blob)
            ex.writes.append(lambda: self.mem.write(dspace, cl, daddr, blob))
        s1 = t + self.I
        done = ex.expect()

        def noc():
            end = self.noc.unicast(ex_now(self), self.noc.to_port(cl), nbytes)
            ex.at(end, lambda: self.ms.source(dspace, end, runs, done))

        if V or X:
            codec = U.Codec(V, X, self.c.codec_values_per_cycle, self.c.codec_index_per_cycle)
            self.add_machine(s1, ex, codec, lambda f: ex.at(f, noc))
        else:
            ex.at(s1, noc)

    def _dma(self, ex, a, t, dram_key, gb_key):
        _, daddr = a[dram_key]
        _, gaddr = a[gb_key]
        rows, rb = a["rows"], a["rowbytes"]
        pitch = a["stride"] or rb
        runs = [(daddr + r * pitch, rb) for r in range(rows)]
        s1 = t + self.I
        ex.at(s1, lambda: self.ms.dram(s1, runs, ex.expect()))
        ex.at(s1, lambda: self.ms.gb(rows * rb, ex.expect()))
        return runs, gaddr

    def x_dma_ld(self, ex, a, t):
        runs, gaddr = self._dma(ex, a, t, "src", "dst")
        data = b"".join(self.mem.read("dram", 0, ad, n).tobytes() for ad, n in runs)
        ex.writes.append(lambda: self.mem.write("gb", 0, gaddr, data))

    def x_dma_st(self, ex, a, t):
        runs, gaddr = self._dma(ex, a, t, "dst", "src")
        data = self.mem.read("gb", 0, gaddr, a["rows"] * a["rowbytes"]).tobytes()
        rb = a["rowbytes"]
        for r, (ad, n) in enumerate(runs):
            chunk = data[r * rb:(r + 1) * rb]
            ex.writes.append(lambda ad=ad, chunk=chunk: self.mem.write("dram", 0, ad, chunk))

    def _view_addrs(self, cl, vr, addr, rows, cols):
        d1, d2, s0, s1_, s2, s3 = self.views[(cl, vr)]
        addrs = []
        for r in range(rows):
            for c in range(cols):
                run, q = divmod(c, d2)
                block, u = divmod(run, d1) if d1 else (0, run)
                addrs.append(addr + 4 * (r * s0 + block * s3 + u * s1_ + q * s2))
        return addrs

    def _operand(self, cl, a, which, rows, cols, viewed):
        """The stored rows x cols matrix of operand ``which``, element by element through its
        view register when it names one (the addresses then join ``viewed``)."""
        addr = a[which][1]
        vr = a["v" + which]
        if not vr:
            return self.mem.tile("sp", cl, addr, rows, cols)
        addrs = self._view_addrs(cl, vr, addr, rows, cols)
        viewed.append(("sp", addrs))
        return np.array([self.mem.f32("sp", cl, ad, 1)[0] for ad in addrs], np.float32).reshape(rows, cols)

    def _store_c(self, ex, a, cl, C, viewed):
        """C (+ the destination when accumulating) written to dst, element by element through
        the destination view when ``vd`` names one (its addresses join ``viewed``)."""
        dspace, daddr = a["dst"]
        if not a["vd"]:
            if a["accum"]:
                C = C + self.mem.tile(dspace, cl, daddr, a["m"], a["n"])
            self._write_tile(ex, dspace, cl, daddr, C)
            return
        addrs = self._view_addrs(cl, a["vd"], daddr, a["m"], a["n"])
        viewed.append((dspace, addrs))
        values = C.reshape(-1)
        if a["accum"]:
            values = values + np.array([self.mem.f32(dspace, cl, ad, 1)[0] for ad in addrs], np.float32)
        for ad, val in zip(addrs, values):
            self._write_f32(ex, dspace, cl, ad, np.array([val], np.float32))

    def _mm_operands(self, ex, a, viewed):
        cl = ex.p.inst.cluster
        m, n, k = a["m"], a["n"], a["k"]
        A = self._operand(cl, a, "a", k, m, viewed).T if a["ta"] else self._operand(cl, a, "a", m, k, viewed)
        B = self._operand(cl, a, "b", n, k, viewed).T if a["tb"] else self._operand(cl, a, "b", k, n, viewed)
        return cl, np.ascontiguousarray(A), np.ascontiguousarray(B)

    def _mac(self, ex, t, machine, viewed):
        """Issue, then the MAC array; operands read through views stream from the scratchpad
        banks alongside it."""
        if viewed:
            machine = U.Par(machine, self._banks(viewed))
        ex.machine(t, U.Seq(U.Countdown(self.I), machine))

    def x_mview(self, ex, a, t):
        key, v = (ex.p.inst.cluster, a["vr"]), tuple(a[f] for f in ("d1", "d2", "s0", "s1", "s2", "s3"))
        ex.writes.append(lambda: self.views.__setitem__(key, v))
        self._fixed(ex, t, self.I + 1)

    def x_mm(self, ex, a, t):
        viewed = []
        cl, A, B = self._mm_operands(ex, a, viewed)
        C = (A.astype(np.float64) @ B.astype(np.float64)).astype(np.float32)
        self._store_c(ex, a, cl, C, viewed)
        eff = U.effectual(A, B, a["skip"], self.c.skip)
        self.stats["issued_macs"] += A.shape[0] * A.shape[1] * B.shape[1]
        self.stats["effectual_macs"] += int(eff.sum())
        self._mac(ex, t, U.mac_machine(self.c, A, B, a["skip"], None, False), viewed)

    def x_sddmm(self, ex, a, t):
        viewed = []
        cl, A, B = self._mm_operands(ex, a, viewed)
        S = self.mem.tile("sp", cl, a["s"][1], a["m"], a["n"])
        mask = S != 0
        C = np.where(mask, (A.astype(np.float64) @ B.astype(np.float64)), 0).astype(np.float32)
        self._store_c(ex, a, cl, C, viewed)
        outputs = [(int(i), int(j)) for i, j in zip(*np.nonzero(mask))]
        self._mac(ex, t, U.mac_machine(self.c, A, B, a["skip"], outputs, True), viewed)

    def _vec(self, ex, t, elements, work, operands):
        ex.machine(t, U.Seq(U.Countdown(self.I),
                            U.Par(U.Lanes(elements, self.c.vec_lanes, work), self._banks(operands))))

    def x_vop(self, ex, a, t):
        cl = ex.p.inst.cluster
        fn, rows, cols, bmode = a["fn"], a["rows"], a["cols"], a["bmode"]
        pitch = a["pitch"] or cols
        aspace, aaddr = a["a"]
        bspace, baddr = a["b"]
        dspace, daddr = a["dst"]
        A = self.mem.tile(aspace, cl, aaddr, rows, cols, pitch)
        ops = [(dspace, tile_addrs(daddr, rows, cols, pitch)), (aspace, tile_addrs(aaddr, rows, cols, pitch))]
        if bmode == "tile":
            Bv = self.mem.tile(bspace, cl, baddr, rows, cols, pitch)
            baddrs = tile_addrs(baddr, rows, cols, pitch)
        elif bmode == "row":
            Bv = np.broadcast_to(self.mem.tile(bspace, cl, baddr, 1, cols), (rows, cols))
            baddrs = tile_addrs(baddr, 1, cols)
        elif bmode == "col":
            Bv = np.broadcast_to(self.mem.tile(bspace, cl, baddr, rows, 1), (rows, cols))
            baddrs = tile_addrs(baddr, rows, 1)
        elif bmode == "imm":
            Bv, baddrs = np.full((rows, cols), a["imm"], np.float32), None
        else:
            Bv, baddrs = np.full((rows, cols), self.fr[int(a["imm"]) % 16], np.float32), None
        if baddrs is not None and fn not in UNARY:
            ops.append((bspace, baddrs))
        self._write_tile(ex, dspace, cl, daddr, vfn(fn, A, Bv), pitch)
        work = 1 + self.c.vec_special_cycles if fn in SPECIAL else 1
        self._vec(ex, t, rows * cols, work, ops)

    def x_vred(self, ex, a, t):
        cl = ex.p.inst.cluster
        fn, rows, cols, axis = a["fn"], a["rows"], a["cols"], a["axis"]
        aspace, aaddr = a["a"]
        dspace, daddr = a["dst"]
        A = self.mem.tile(aspace, cl, aaddr, rows, cols, a["pitch"]).astype(np.float64)
        red = {"sum": np.sum, "max": np.max, "min": np.min,
               "sumsq": lambda x, axis: np.sum(x * x, axis=axis), "mean": np.mean}[fn]
        out = red(A, axis=axis) if A.size else np.zeros(cols if axis == 0 else rows)
        shape = (1, cols) if axis == 0 else (rows, 1)
        out = np.asarray(out).reshape(shape)
        if a["accum"]:
            old = self.mem.tile(dspace, cl, daddr, *shape).astype(np.float64)
            out = {"max": np.maximum, "min": np.minimum}.get(fn, np.add)(old, out)
        self._write_f32(ex, dspace, cl, daddr, out.reshape(-1))
        ops = [(dspace, tile_addrs(daddr, *shape)), (aspace, tile_addrs(aaddr, rows, cols, a["pitch"]))]
        self._vec(ex, t, rows * cols, 1, ops)

    def x_sgd(self, ex, a, t):
        n = a["n"]
        ops = [("sp", tile_addrs(a[k][1], 1, n)) for k in ("w", "g", "mom")]
        self._vec(ex, t, n, 3 + a["nesterov"], ops)

    def x_adam(self, ex, a, t):
        n = a["n"]
        ops = [("sp", tile_addrs(a[k][1], 1, n)) for k in ("w", "g", "m1", "m2")]
        self._vec(ex, t, n, 6 + self.c.vec_special_cycles, ops)

    def x_fset(self, ex, a, t):
        fd, v = a["fd"], a["imm"]
        ex.writes.append(lambda: self.fr.__setitem__(fd, v))
        self._fixed(ex, t, self.I + 1)

    def x_fld(self, ex, a, t):
        v = float(self.mem.f32("sp", ex.p.inst.cluster, a["src"][1], 1)[0])
        fd = a["fd"]
        ex.writes.append(lambda: self.fr.__setitem__(fd, v))
        self._fixed(ex, t, self.I + 1)

    def x_sync(self, ex, a, t):
        self._fixed(ex, t, self.I + 1)

    def _codec(self, ex, t, V, X):
        ex.machine(t, U.Seq(U.Countdown(self.I),
                            U.Codec(V, X, self.c.codec_values_per_cycle, self.c.codec_index_per_cycle)))

    def x_enc(self, ex, a, t):
        cl = ex.p.inst.cluster
        sspace, saddr = a["src"]
        tile = self.mem.tile(sspace, cl, saddr, a["rows"], a["cols"])
        spec = fmt_spec(a["fmt"])
        blob = formats.pack(tile, spec)
        if len(blob) > a["cap"]:
            raise RefError(f"enc: encoding of {len(blob)} bytes exceeds cap {a['cap']}")
        daddr = a["dst"][1]
        ex.writes.append(lambda: self.mem.write("sp", cl, daddr, blob))
        self._codec(ex, t, *codec_counts(tile, spec))

    def x_dec(self, ex, a, t):
        cl = ex.p.inst.cluster
        tile, _, _, spec = self._read_tile_src("sp", a["src"][1], a["fmt"], a["rows"], a["cols"], 0, cl)
        self._write_tile(ex, "sp", cl, a["dst"][1], tile)
        self._codec(ex, t, *codec_counts(tile, spec))

    # NoC configuration: applies at the end
    def _cfg(self, ex, t, apply):
        ex.writes.append(apply)
        self._fixed(ex, t, self.I + self.tg.noc.reconfig_cycles)

    def x_noc_topo(self, ex, a, t):
        self._cfg(ex, t, lambda: setattr(self.noc, "topology", a["topology"]))

    def x_noc_route(self, ex, a, t):
        self._cfg(ex, t, lambda: setattr(self.noc, "routing", a["routing"]))

    def x_noc_mcast(self, ex, a, t):
        members = [self.noc.cid(x, y) for y in range(a["y0"], a["y1"] + 1)
                   for x in range(a["x0"], a["x1"] + 1)]
        self._cfg(ex, t, lambda: self.noc.groups.__setitem__(a["grp"], members))

    def x_noc_pin(self, ex, a, t):
        self._cfg(ex, t, lambda: self.noc.pins.__setitem__((a["src"], a["dst"]), a["via"]))

    def x_noc_clear(self, ex, a, t):
        self._cfg(ex, t, self.noc.pins.clear)

    # NoC transfers
    def x_send(self, ex, a, t):
        cl, to, n = ex.p.inst.cluster, a["to"], a["bytes"]
        sspace, saddr = a["src"]
        data = self.mem.read(sspace, cl, saddr, n).tobytes()
        daddr = a["dst"][1]
        ex.writes.append(lambda: self.mem.write("sp", to, daddr, data))
        ex.at(t + self.I, lambda: ex.expect()(self.noc.unicast(ex_now(self), self.noc.unicast_route(cl, to), n)))

    def x_recv(self, ex, a, t):
        self._fixed(ex, t, self.I)

    def _group(self, grp):
        if grp not in self.noc.groups:
            raise RefError(f"multicast group {grp} is not defined")
        return self.noc.groups[grp]

    def x_bcast(self, ex, a, t):
        cl, n = ex.p.inst.cluster, a["bytes"]
        sspace, saddr = a["src"]
        data = self.mem.read(sspace, cl, saddr, n).tobytes()
        daddr = a["dst"][1]
        # the group binds at the start, as reduce's: a noc.mcast ending before the multicast's
        # request does not change who receives; the routes to the members bind at the request
        members = self._group(a["grp"])
        for mbr in members:
            ex.writes.append(lambda mbr=mbr: self.mem.write("sp", mbr, daddr, data))
        s1 = t + self.I

        def go(request, routes_of):
            ex.expect()(self.noc.multicast(request, [routes_of(mbr) for mbr in members], n))

        if sspace == "sp":
            ex.at(s1, lambda: go(s1, lambda mbr: self.noc.cluster_route(cl, mbr)))
        else:
            _, y = self.noc.xy(cl)
            ex.at(s1, lambda: self.ms.source(sspace, s1, [(saddr, n)], ex.expect()))
            s2 = s1 + self.ms.latency(sspace)
            ex.at(s2, lambda: go(s2, lambda mbr: self.noc.from_port(y, mbr)))

    def x_reduce(self, ex, a, t):
        cl, n = ex.p.inst.cluster, a["n"]
        sspace, saddr = a["src"]
        members = self._group(a["grp"])
        total = np.zeros(n, np.float64)
        for mbr in members:
            total += self.mem.f32(sspace, mbr, saddr, n)
        self._write_f32(ex, "sp", cl, a["dst"][1], total)
        s1 = t + self.I
        ex.at(s1, lambda: ex.expect()(self.noc.reduction(
            s1, [self.noc.cluster_route(cl, mbr) for mbr in members], 4 * n)))


def ex_now(sim: Sim) -> int:
    """The cycle being simulated (requests are granted in the cycle they are made)."""
    return sim.now


def simulate(program, target, inputs=None, max_cycles: int = 2_000_000) -> RefResult:
    sim = Sim(program, target, inputs, max_cycles)
    return sim.run()
