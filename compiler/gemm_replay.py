"""A GEMM's modelled cycles from the kernel's own instructions (``cost_model.gemm_cost``).

The matmul kernel (``codegen.kernels.matmul.emit_gemm``; with a ``sample``, the
``graph.sddmm`` kernel: the sample's tile loaded per output tile, each ``mm`` an ``sddmm``
timed by ``cost_model.sddmm_cycles``) emits into per-cluster streams exactly as it does when
compiling: the same output tiles, placement, operand reuse and, under the default
placement, the same multicast layout (one cluster of a row loads a shared tile
and ``bcast``s it; ragged turns where a packed operand pins the grid). A recording kernel
context notes which operand tile each ``ld``/``st`` moves and which tiles each ``mm``
multiplies. The replay then times every instruction with the cost model's closed forms
(``tile_cost``, ``mm_cycles``, the section 7 link and section 6 DRAM reservations) in
dependency order over in-order unit queues (docs/timing.md section 2: an instruction starts
once its queue is free and the instructions it depends on have ended; shared links and DRAM
channels are granted in the order of their requests, an event simulation like the
emulator's), none before the dispatcher reaches it (one instruction per cycle in the order
``schedule.merge`` gives the program, tokens paired as the emulator pairs them, the ``sync``
instructions that carry an instruction's third and later tokens included). What it leaves
out: dispatch stalls on full queues and torus wrap links (multicast trees follow the mesh
routes); on the cost-model test layers (a linear layer and its sampled weight gradient) it
gives the emulator's cycle counts exactly. The recording depends only on which operands are
packed, so the formats ``select-formats`` compares share it (``_record``).

Modelling the kernel's instruction list rather than a hand-written copy of its loop keeps
the model honest when the kernel changes: a multicast layout halves a dense operand's port
traffic, which a round-robin copy of the loop did not see (a 256 x 512 x 512 layer at 90 %
weight density: dense 33.8k cycles, bitmap 44.7k; the copy ranked bitmap first).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from acf.isa.program import SourceLoc
from acf.isa.spec import SHARED_TOKENS
from acf.isa.target import Target

from . import cost_model as cm
from .codegen.context import HyperTable, KernelContext
from .codegen.kernels.matmul import Gemm, emit_gemm
from .codegen.memory import Buffer
from .codegen.placement import row_spread
from .codegen.schedule import Slot, TokensExhausted, merge_order, resolve_all
from .codegen.tiling import choose_tiling

#: queue order for same-cycle ties (docs/timing.md section 2)
UNITS = ("ld", "st", "mac", "vec", "codec", "noc")
Tile = tuple[str, int, int, int, int]  # (operand, r0, c0, rows, cols)


class _Recorder(KernelContext):
    """A kernel context that notes, per instruction, the operand tiles it moves or uses."""

    def __init__(self, target: Target, t: int, placement: Callable) -> None:
        op = SimpleNamespace(name="graph.matmul", pos=None, loc=None)  # only named in errors
        super().__init__(op, 0, SourceLoc("<cost model>"), target, choose_tiling(target, t),  # type: ignore[arg-type]
                         {}, HyperTable(), placement)
        self.held: dict[tuple[int, Slot], Tile] = {}
        self.notes: dict[tuple[int, int], Any] = {}
        self.program: list[ProgramEntry] = []  # set by _record

    def load(self, cl: int, buf: Buffer, r0: int, c0: int, rows: int, cols: int, slot: Slot,
             base: int = 0) -> int:
        i = super().load(cl, buf, r0, c0, rows, cols, slot, base)
        self.held[cl, slot] = self.notes[cl, i] = (buf.name, r0, c0, rows, cols)
        return i

    def store(self, cl: int, buf: Buffer, r0: int, c0: int, rows: int, cols: int, slot: Slot,
              base: int = 0) -> int:
        i = super().store(cl, buf, r0, c0, rows, cols, slot, base)
        self.notes[cl, i] = (buf.name, r0, c0, rows, cols)
        return i

    def bcast(self, cl: int, grp: int, slot: Slot, nbytes: int, receivers: list[int]) -> int:
        i = super().bcast(cl, grp, slot, nbytes, receivers)
        self.notes[cl, i] = [cl, *receivers]
        for r in receivers:
            self.held[r, slot] = self.held[cl, slot]
        return i

    def emit(self, cl: int, mnemonic: str, reads: tuple[Slot, ...] = (),
             writes: tuple[Slot, ...] = (), **args: Any) -> int:
        i = super().emit(cl, mnemonic, reads, writes, **args)
        if mnemonic == "mm":
            self.notes[cl, i] = (self.held[cl, reads[0]], self.held[cl, reads[1]])
        elif mnemonic == "sddmm":  # and the sample tile it is sampled at
            self.notes[cl, i] = tuple(self.held[cl, r] for r in reads[:3])
        return i


def _tree(target: Target, src: int, members: list[int]) -> dict[tuple, int]:
    """Links of a multicast from cluster ``src`` to ``members`` (the union of the default
    mesh routes, docs/timing.md section 7) with their depth from the source."""
    X = int(target.fabric.grid[0])
    yx = str(target.noc.routing) == "yx"
    links: dict[tuple, int] = {}
    sx, sy = src % X, src // X
    for m in members:
        x, y, h = sx, sy, 0
        for axis in ("y", "x") if yx else ("x", "y"):
            goal = (m % X) if axis == "x" else (m // X)
            while (x if axis == "x" else y) != goal:
                nx, ny = x, y
                step = 1 if goal > (x if axis == "x" else y) else -1
                if axis == "x":
                    nx += step
                else:
                    ny += step
                links.setdefault((("c", x, y), ("c", nx, ny)), h)
                x, y, h = nx, ny, h + 1
    return links


#: recorded kernels by what shapes their instructions (see :func:`_record`), least recently
#: used last
_RECORDED: OrderedDict[tuple, _Recorder] = OrderedDict()
_RECORDED_MAX = 64


#: one instruction of the kernel's program: (node, cluster, unit, stream item or None for a
#: ``sync``, tokens waited on, tokens signalled)
ProgramEntry = tuple[tuple, int, str, Any, list[int], list[int]]


def _program(ctx: _Recorder) -> list[ProgramEntry]:
    """The kernel's program as the compile lays it out: tokens assigned
    (``ClusterStream.resolve``), every instruction with the ``sync`` instructions that carry
    its waits and signals beyond two (``ClusterStream.groups``), the clusters interleaved
    round-robin (``schedule.merge``). Node ``(cl, i)`` is stream item ``i`` of cluster
    ``cl``; ``(cl, i, j)`` the ``sync`` at place ``j`` of its group."""
    live = resolve_all(ctx.streams)
    out: list[ProgramEntry] = []
    for k, i in merge_order(live):
        s = live[k]
        if s.items[i].remote is None:  # a remote write is no instruction here
            out.extend(_group(s.cl, i, s.items[i]))
    return out


def _group(cl: int, i: int, item: Any) -> list[ProgramEntry]:
    """Item ``i``'s instructions, as ``ClusterStream.groups`` emits them: ``sync``s with its
    first waits, the instruction (its last two waits, first two signals), ``sync``s with
    the other signals."""
    waits, sigs = list(item.waits), list(item.sigs)
    group: list[ProgramEntry] = []
    while len(waits) > 2:
        group.append(((cl, i, len(group)), cl, item.unit, None, waits[:2], []))
        waits = waits[2:]
    group.append(((cl, i), cl, item.unit, item, waits, sigs[:2]))
    extra = sigs[2:]
    while extra:
        group.append(((cl, i, len(group)), cl, item.unit, None, [], extra[:2]))
        extra = extra[2:]
    return group


def _record(target: Target, m: int, n: int, k: int, a: cm.Operand, b: cm.Operand, t: int,
            placement: Callable, out_fmt: str, sample: cm.Operand | None = None) -> _Recorder:
    """The kernel's instructions for these shapes. They depend on which operands are packed,
    not on their formats or masks (a packed tile is one ``ld`` in any format), so the
    formats ``select-formats`` compares share two or three recordings. With a ``sample``
    (the ``(m, n)`` mask S) it is the ``sddmm`` kernel: S's tile is loaded per output tile
    and the ``mm``s are ``sddmm``s sampled at it."""
    key = (target.config_hash(), m, n, k, a.rows, a.cols, a.fmt != "dense", a.transposed,
           b.rows, b.cols, b.fmt != "dense", b.transposed, out_fmt != "dense", t, placement,
           None if sample is None else sample.fmt != "dense")
    ctx = _RECORDED.get(key)
    if ctx is not None:
        _RECORDED.move_to_end(key)
        return ctx
    shapes = {"a": a, "b": b, "out": cm.Operand(m, n, out_fmt)}
    if sample is not None:
        shapes["s"] = sample

    def buffer(name: str) -> Buffer:
        op = shapes[name]
        return Buffer(0, (op.rows, op.cols), op.fmt, (t, t) if op.fmt != "dense" else (0, 0), name)

    for multicast in (True, False):  # as codegen.lower does when the tokens run out
        ctx = _Recorder(target, t, placement)
        ctx.multicast = multicast
        emit_gemm(ctx, Gemm(buffer("a"), buffer("b"), buffer("out"), m, n, k, ta=a.transposed,
                            tb=b.transposed, sample=buffer("s") if sample is not None else None))
        try:
            ctx.program = _program(ctx)
            break
        except TokensExhausted:
            if not multicast:
                raise
    _RECORDED[key] = ctx
    if len(_RECORDED) > _RECORDED_MAX:
        _RECORDED.popitem(last=False)
    return ctx


def replay(target: Target, m: int, n: int, k: int, a: cm.Operand, b: cm.Operand, *, t: int,
           placement: Callable | None, out_fmt: str, skip: str,
           sample: cm.Operand | None = None) -> cm.GemmCost:
    """``cost_model.gemm_cost``: see the module docstring."""
    if sample is not None and (sample.rows, sample.cols) != (m, n):
        raise ValueError(f"an sddmm sample is the {m}x{n} output's shape, not "
                         f"{sample.rows}x{sample.cols}")
    ctx = _record(target, m, n, k, a, b, t, placement or row_spread, out_fmt, sample)
    operands = {"a": a, "b": b, "out": cm.Operand(m, n, out_fmt)}
    if sample is not None:
        operands["s"] = sample
    return _Replay(target, t, operands, skip, ctx).run()


#: event phases within a cycle, as the emulator orders them: ends, then starts, then requests
_RETIRE, _START, _REQUEST = 0, 1, 2


class _Replay:
    """Times the recorded streams (see the module docstring): an event simulation in which
    an instruction starts once its queue is free and its dependencies have ended, and the
    DRAM channels and NoC links are granted in the order of their requests' cycles (ties in
    queue order), as ``docs/timing.md`` sections 2, 6 and 7 have it."""

    def __init__(self, target: Target, t: int, operands: dict[str, cm.Operand], skip: str,
                 ctx: _Recorder) -> None:
        self.target, self.t, self.operands, self.skip = target, t, operands, skip
        self.notes = ctx.notes
        self.X = int(target.fabric.grid[0])
        self.I = int(target.cluster.issue_cycles)
        self.lat = int(target.dram.latency_cycles)
        self.links = cm._Links(int(target.noc.router_latency))
        self.dram = cm._Dram(target)
        self.ld_costs: dict[tuple, cm.TileCost] = {}
        self.runs: dict[tuple, dict[int, int]] = {}
        self.load_cycles = self.mac_cycles = self.dram_bytes = 0
        # the kernel's multicast groups are configured (noc.mcast, one after another on the
        # cfg queue) before it starts
        self.start = len(ctx.new_groups) * (self.I + int(target.noc.reconfig_cycles))
        # dispatch: one instruction per cycle, the kernel's first after the configuration's
        # barrier; an instruction waits for the signals its tokens pair with (the k-th
        # wait on a token takes its k-th signal: one producer queue, one consumer queue)
        self.first = self.start + 1 if ctx.new_groups else 0
        self.items: dict[tuple, Any] = {}
        self.dispatch: dict[tuple, int] = {}
        self.deps: dict[tuple, list[tuple]] = {}
        self.queues: dict[int, list[tuple]] = {}  # queue id -> its instructions
        signals: dict[Any, list[tuple]] = {}
        waits: dict[Any, list[tuple]] = {}
        for pos, (node, cl, unit, it, waited, signalled) in enumerate(ctx.program):
            self.items[node] = it
            self.dispatch[node] = pos
            self.deps[node] = []
            self.queues.setdefault(cl * len(UNITS) + UNITS.index(unit), []).append(node)
            for tok in waited:
                waits.setdefault((cl, tok) if tok < SHARED_TOKENS else tok, []).append(node)
            for tok in signalled:
                signals.setdefault((cl, tok) if tok < SHARED_TOKENS else tok, []).append(node)
        for tok, consumers in waits.items():
            producers = signals.get(tok, [])
            if len(producers) < len(consumers):
                raise AssertionError(f"cost model: token {tok} waited on more than signalled")
            for consumer, producer in zip(consumers, producers):
                self.deps[consumer].append(producer)
        self.heap: list[tuple] = []
        self.seq = 0
        self.end: dict[tuple, int] = {}
        self.free = dict.fromkeys(self.queues, 0)  # dispatch orders the first starts
        self.pos = dict.fromkeys(self.queues, 0)
        self.busy: set[int] = set()  # queues whose head has started (or is about to)
        self.waiting: dict[tuple, list[int]] = {}  # unfinished node -> queues

    def _push(self, cycle: int, phase: int, q: int, fn: Callable, arg: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (cycle, phase, q, self.seq, fn, arg))

    def run(self) -> cm.GemmCost:
        for q in self.queues:
            self._try_start(q)
        while self.heap:
            cycle, _, _, _, fn, arg = heapq.heappop(self.heap)
            fn(cycle, arg)
        if any(self.pos[q] < len(v) for q, v in self.queues.items()):
            raise AssertionError("cost model: the kernel's streams wait on each other")
        ends: dict[int, int] = {}
        for node, e in self.end.items():
            ends[node[0]] = max(ends.get(node[0], 0), e)
        port: dict[int, int] = {}
        for link, f in self.links.flits.items():
            if link[0][0] == "p" or link[1][0] == "p":
                y = link[0][1] if link[0][0] == "p" else link[1][1]
                port[y] = port.get(y, 0) + f
        return cm.GemmCost(max(ends.values(), default=0), self.load_cycles, self.mac_cycles,
                           port, self.dram_bytes, ends)

    def _try_start(self, q: int) -> None:
        """Schedule queue ``q``'s next instruction once its dependencies have ended."""
        if q in self.busy or self.pos[q] >= len(self.queues[q]):
            return
        node = self.queues[q][self.pos[q]]
        ready = max(self.free[q], self.first + self.dispatch[node] + 1)
        for d in self.deps[node]:
            e = self.end.get(d)
            if e is None:  # retried when d ends
                self.waiting.setdefault(d, []).append(q)
                return
            ready = max(ready, e)
        self.busy.add(q)
        self._push(ready, _START, q, self._start, (q, node))

    def _start(self, s: int, arg: tuple[int, tuple]) -> None:
        q, node = arg
        it = self.items[node]
        cl, note = node[0], self.notes.get(node)
        if it is None:  # a sync carrying tokens: I + 1 (docs/timing.md section 4)
            self._finish(q, node, s + self.I + 1)
        elif it.mnemonic == "ld":
            self._load(q, node, note, s)
        elif it.mnemonic == "st":
            self._store(q, node, note, s)
        elif it.mnemonic == "bcast":
            flits = max(1, cm._cdiv(int(it.args["bytes"]), int(self.target.noc.link_bytes)))
            tree = _tree(self.target, cl, note)
            self._push(s + self.I, _REQUEST, q,
                       lambda c, _: self._finish(q, node, self.links.reserve_tree(c, tree, flits)), None)
        elif it.mnemonic in ("mm", "sddmm"):
            e = s + round(self._mm(it.args, *note))  # an sddmm's note has its sample tile too
            self.mac_cycles += e - s
            self._finish(q, node, e)
        elif it.mnemonic == "vop":
            lanes = int(self.target.cluster.vec_lanes)
            self._finish(q, node, s + self.I + cm._cdiv(int(it.args["rows"]) * int(it.args["cols"]), lanes))
        else:
            self._finish(q, node, s + self.I)

    def _finish(self, q: int, node: tuple, e: int) -> None:
        self._push(e, _RETIRE, q, self._retire, (q, node))

    def _retire(self, e: int, arg: tuple[int, tuple]) -> None:
        q, node = arg
        self.end[node] = self.free[q] = e
        self.busy.discard(q)
        self.pos[q] += 1
        self._try_start(q)
        for q2 in self.waiting.pop(node, ()):
            self._try_start(q2)

    # ---- instruction costs ----------------------------------------------------------------
    def _tile_mask(self, tile: Tile) -> np.ndarray | None:
        name, r0, c0, h, w = tile
        op = self.operands[name]
        mask = op.tile_mask(r0, c0, h, w)
        return mask.T if mask is not None and op.transposed else mask

    def _mm(self, args: dict, a: Tile, b: Tile, s: Tile | None = None) -> float:
        pa, pb = self.operands[a[0]], self.operands[b[0]]
        m, n, k = int(args["m"]), int(args["n"]), int(args["k"])
        if s is not None:  # sddmm: outputs sampled at the sample tile's non-zeros
            ps = self.operands[s[0]]
            return cm.sddmm_cycles(self.target, m, n, k, s_mask=self._tile_mask(s),
                                   s_density=ps.density, a_mask=self._tile_mask(a),
                                   b_mask=self._tile_mask(b), a_density=pa.density,
                                   b_density=pb.density, skip=self.skip)
        return cm.mm_cycles(self.target, m, n, k, a_mask=self._tile_mask(a),
                            b_mask=self._tile_mask(b), a_density=pa.density,
                            b_density=pb.density, skip=self.skip)

    def _load(self, q: int, node: tuple, tile: Tile, s: int) -> None:
        """``ld`` (section 7b): DRAM runs requested at ``s + I``, the row port's links at
        ``s + I + latency``; it ends when both are done (and its codec and banks)."""
        name, r0, c0, h, w = tile
        op = self.operands[name]
        x, y = node[0] % self.X, node[0] // self.X
        key = (tile, x)
        tc = self.ld_costs.get(key)
        if tc is None:
            mask = op.tile_mask(r0, c0, h, w)
            dens = None if mask is not None else (op.density if op.fmt != "dense" else None)
            tc = self.ld_costs[key] = cm.tile_cost(self.target, op.fmt, h, w, mask=mask,
                                                   density=dens, hops=x + 1)
        if tile not in self.runs:
            self.runs[tile] = self.dram.bursts(cm.tile_runs(op, r0, c0, h, w, self.t, tc.bytes))
        s1 = s + self.I
        self.dram_bytes += tc.bytes
        parts = [max(s1 + tc.codec_cycles, s1 + tc.bank_cycles)]

        def done(end: int) -> None:
            parts.append(end)
            if len(parts) == 3:
                e = max(parts)
                self.load_cycles += e - s
                self._finish(q, node, e)

        self._push(s1, _REQUEST, q, lambda c, _: done(self.dram.access(c, self.runs[tile])), None)
        self._push(s1 + self.lat, _REQUEST, q,
                   lambda c, _: done(self.links.reserve(c, cm.memory_route(x, y), tc.flits)), None)

    def _store(self, q: int, node: tuple, tile: Tile, s: int) -> None:
        """``st``: the codec, then the links to the row port, then the DRAM runs."""
        name, r0, c0, h, w = tile
        out = self.operands[name]
        x, y = node[0] % self.X, node[0] // self.X
        nbytes, values, indices, _ = cm.tile_counts(out.fmt, h, w, None, 1.0)
        self.dram_bytes += nbytes
        flits = max(1, cm._cdiv(nbytes, int(self.target.noc.link_bytes)))
        runs = self.dram.bursts(cm.tile_runs(out, r0, c0, h, w, self.t, nbytes))

        def to_dram(c: int, _: Any) -> None:
            self._finish(q, node, self.dram.access(c, runs))

        def to_port(c: int, _: Any) -> None:
            noc_end = self.links.reserve(c, cm.memory_route(x, y, inbound=False), flits)
            self._push(noc_end, _REQUEST, q, to_dram, None)

        self._push(s + self.I + cm.codec_cycles(self.target, values, indices), _REQUEST, q, to_port, None)
