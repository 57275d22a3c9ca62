"""A GEMM's modelled cycles from the kernel's own instructions (``cost_model.gemm_cost``).

The matmul kernel (``codegen.kernels.matmul.emit_gemm``) emits into per-cluster streams
exactly as it does when compiling: the same output tiles, placement, operand reuse and, under
the default placement, the same multicast layout (one cluster of a row loads a shared tile
and ``bcast``s it; ragged turns where a packed operand pins the grid). A recording kernel
context notes which operand tile each ``ld``/``st`` moves and which tiles each ``mm``
multiplies. The replay then times every instruction with the cost model's closed forms
(``tile_cost``, ``mm_cycles``, the section 7 link and section 6 DRAM reservations) in
dependency order over in-order unit queues (docs/timing.md section 2: an instruction starts
once its queue is free and the instructions it depends on have ended; shared links and DRAM
channels are granted in request order). What it leaves out: dispatch (one instruction per
cycle, queue depth), scratchpad bank conflicts between units, and ``sync`` instructions.

Modelling the kernel's instruction list rather than a hand-written copy of its loop keeps
the model honest when the kernel changes: a multicast layout halves a dense operand's port
traffic, which a round-robin copy of the loop did not see (a 256 x 512 x 512 layer at 90 %
weight density: dense 33.8k cycles, bitmap 44.7k; the copy ranked bitmap first).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from acf.isa.program import SourceLoc
from acf.isa.target import Target

from . import cost_model as cm
from .codegen.context import HyperTable, KernelContext
from .codegen.kernels.matmul import Gemm, emit_gemm
from .codegen.memory import Buffer
from .codegen.placement import row_spread
from .codegen.schedule import Slot
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
        if mnemonic in ("mm", "sddmm"):
            self.notes[cl, i] = (self.held[cl, reads[0]], self.held[cl, reads[1]])
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


def replay(target: Target, m: int, n: int, k: int, a: cm.Operand, b: cm.Operand, *, t: int,
           placement: Callable | None, out_fmt: str, skip: str) -> cm.GemmCost:
    """``cost_model.gemm_cost``: see the module docstring."""
    ctx = _Recorder(target, t, placement or row_spread)
    operands = {"a": a, "b": b, "out": cm.Operand(m, n, out_fmt)}

    def buffer(name: str) -> Buffer:
        op = operands[name]
        return Buffer(0, (op.rows, op.cols), op.fmt, (t, t) if op.fmt != "dense" else (0, 0), name)

    emit_gemm(ctx, Gemm(buffer("a"), buffer("b"), buffer("out"), m, n, k, ta=a.transposed,
                        tb=b.transposed))
    return _Replay(target, t, operands, skip, ctx).run()


class _Replay:
    """Times the recorded streams (see the module docstring)."""

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
        self.items: dict[tuple[int, int], Any] = {}
        self.deps: dict[tuple[int, int], list[tuple[int, int]]] = {}
        self.queues: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for cl, stream in enumerate(ctx.streams):
            its = stream.items

            def node(d: int, its: list = its, cl: int = cl) -> tuple[int, int]:
                return its[d].remote if its[d].remote is not None else (cl, d)

            for i, it in enumerate(its):
                if it.remote is not None:  # a bcast's write here: it waits for our accesses
                    self.deps.setdefault(it.remote, []).extend(node(d) for d in it.deps)
                    continue
                self.items[cl, i] = it
                self.deps.setdefault((cl, i), []).extend(node(d) for d in it.deps)
                self.queues.setdefault((cl, UNITS.index(it.unit)), []).append((cl, i))

    def run(self) -> cm.GemmCost:
        end: dict[tuple[int, int], int] = {}
        free = dict.fromkeys(self.queues, self.start)
        pos = dict.fromkeys(self.queues, 0)
        blocked: dict[tuple[int, int], list] = {}
        heap: list[tuple[int, tuple[int, int]]] = []

        def push(q: tuple[int, int]) -> None:
            ready = free[q]
            node = self.queues[q][pos[q]]
            for d in self.deps[node]:
                e = end.get(d)
                if e is None:  # retried when d is timed
                    blocked.setdefault(d, []).append(q)
                    return
                ready = max(ready, e)
            heapq.heappush(heap, (ready, q))

        for q in self.queues:
            push(q)
        ends: dict[int, int] = {}
        while heap:  # earliest request first, ties in queue order
            s, q = heapq.heappop(heap)
            node = self.queues[q][pos[q]]
            e = end[node] = free[q] = self.time(node, s)
            ends[node[0]] = max(ends.get(node[0], 0), e)
            pos[q] += 1
            if pos[q] < len(self.queues[q]):
                push(q)
            for q2 in blocked.pop(node, ()):
                push(q2)
        if any(pos[q] < len(v) for q, v in self.queues.items()):
            raise AssertionError("cost model: the kernel's streams wait on each other")
        port: dict[int, int] = {}
        for link, f in self.links.flits.items():
            if link[0][0] == "p" or link[1][0] == "p":
                y = link[0][1] if link[0][0] == "p" else link[1][1]
                port[y] = port.get(y, 0) + f
        return cm.GemmCost(max(ends.values(), default=0), self.load_cycles, self.mac_cycles,
                           port, self.dram_bytes, ends)

    # ---- instruction costs ----------------------------------------------------------------
    def time(self, node: tuple[int, int], s: int) -> int:
        it = self.items[node]
        cl = node[0]
        note = self.notes.get(node)
        if it.mnemonic == "ld":
            return self._load(cl, note, s)
        if it.mnemonic in ("mm", "sddmm"):
            e = s + round(self._mm(it.args, *note))
            self.mac_cycles += e - s
            return e
        if it.mnemonic == "st":
            return self._store(cl, note, s)
        if it.mnemonic == "bcast":
            return self._bcast(cl, note, int(it.args["bytes"]), s)
        if it.mnemonic == "vop":
            lanes = int(self.target.cluster.vec_lanes)
            return s + self.I + cm._cdiv(int(it.args["rows"]) * int(it.args["cols"]), lanes)
        return s + self.I

    def _tile_mask(self, tile: Tile) -> np.ndarray | None:
        name, r0, c0, h, w = tile
        op = self.operands[name]
        mask = op.tile_mask(r0, c0, h, w)
        return mask.T if mask is not None and op.transposed else mask

    def _mm(self, args: dict, a: Tile, b: Tile) -> float:
        pa, pb = self.operands[a[0]], self.operands[b[0]]
        return cm.mm_cycles(self.target, int(args["m"]), int(args["n"]), int(args["k"]),
                            a_mask=self._tile_mask(a), b_mask=self._tile_mask(b),
                            a_density=pa.density, b_density=pb.density, skip=self.skip)

    def _load(self, cl: int, tile: Tile, s: int) -> int:
        name, r0, c0, h, w = tile
        op = self.operands[name]
        x, y = cl % self.X, cl // self.X
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
        dram_end = self.dram.access(s1, self.runs[tile])
        noc_end = self.links.reserve(s1 + self.lat, cm.memory_route(x, y), tc.flits)
        e = max(dram_end, noc_end, s1 + tc.codec_cycles, s1 + tc.bank_cycles)
        self.load_cycles += e - s
        self.dram_bytes += tc.bytes
        return e

    def _store(self, cl: int, tile: Tile, s: int) -> int:
        name, r0, c0, h, w = tile
        out = self.operands[name]
        x, y = cl % self.X, cl // self.X
        nbytes, values, indices, _ = cm.tile_counts(out.fmt, h, w, None, 1.0)
        s1 = s + self.I + cm.codec_cycles(self.target, values, indices)
        noc_end = self.links.reserve(s1, cm.memory_route(x, y, inbound=False),
                                     max(1, cm._cdiv(nbytes, int(self.target.noc.link_bytes))))
        self.dram_bytes += nbytes
        return self.dram.access(noc_end, self.dram.bursts(cm.tile_runs(out, r0, c0, h, w, self.t, nbytes)))

    def _bcast(self, cl: int, members: list[int], nbytes: int, s: int) -> int:
        flits = max(1, cm._cdiv(nbytes, int(self.target.noc.link_bytes)))
        return self.links.reserve_tree(s + self.I, _tree(self.target, cl, members), flits)
