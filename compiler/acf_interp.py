"""Interpreter of acf-level IR: every ``acf.*`` op runs with the ISA's own semantics
(:data:`acf.isa.semantics.SEMANTICS`) on a sequential machine, in program order, with no
timing. Tokens and barriers only order; a race-free program (every signal precedes its
wait in program order) computes here what the fabric computes. Used to check that each
lowering step preserves the graph interpreter's results::

    outs = run_module(parse_module(acf_ir_text), {"x": x, "w": w})   # symbol -> array

Dispatcher rows (``loop``, ``setar``, ``addar``) act on the program counter and address
registers; ``noc.mcast`` defines multicast groups (rectangles of clusters, ``y * X + x``);
other NoC configuration changes routes only, not values.
"""

from __future__ import annotations

import numpy as np
from acf.isa import symbols
from acf.isa.program import Program
from acf.isa.semantics import (
    SEMANTICS,
    DecodeCache,
    SemanticError,
    advance_loops,
    apply_ctl,
    view_span,
    write_view,
)
from acf.isa.target import Target, load_target

from .dialects.acf import to_program
from .ir import Module

MAX_LOOP_DEPTH = 64


class SequentialMachine:
    """DRAM, global buffer, per-cluster scratchpad / accumulator, address and float registers;
    memories grow on demand up to the target's sizes. Implements ``semantics.Machine``."""

    def __init__(self, target: Target) -> None:
        gx, gy = (int(v) for v in target.fabric.grid)
        self.grid = (gx, gy)
        self.num_clusters = gx * gy
        self.sizes = {"dram": int(target.dram.size_bytes), "gb": int(target.gbuf.bytes),
                      "sp": int(target.cluster.spad_bytes), "acc": int(target.cluster.acc_bytes)}
        self.mem: dict[tuple[str, int], np.ndarray] = {}
        self.ar = [0] * 16
        self.fregs = np.zeros((self.num_clusters, 16), np.float32)
        self.views: list[dict[int, tuple[int, ...]]] = [{} for _ in range(self.num_clusters)]
        self.bf16 = str(target.numeric.mode) == "bf16"
        self.groups: dict[int, list[int]] = {}
        self.decode_cache = DecodeCache()

    def _buf(self, space: str, cl: int, end: int) -> np.ndarray:
        key = (space, 0 if space in ("dram", "gb") else cl)
        if space not in ("dram", "gb") and not 0 <= cl < self.num_clusters:
            raise SemanticError(f"cluster c{cl} does not exist", "out-of-bounds", f"c{cl}")
        buf = self.mem.get(key, np.zeros(0, np.uint8))
        if end > buf.size:
            grown = np.zeros(min(max(end, 2 * buf.size, 4096), self.sizes[space]), np.uint8)
            grown[:buf.size] = buf
            self.mem[key] = buf = grown
        return buf

    def check(self, space: str, cl: int, addr: int, nbytes: int) -> None:
        if addr < 0 or addr + nbytes > self.sizes[space]:
            raise SemanticError(f"out-of-bounds {space} access {addr:#x}+{nbytes:#x}",
                                "out-of-bounds", f"{space}[{addr:#x}]")

    def read(self, space: str, cl: int, addr: int, nbytes: int) -> np.ndarray:
        self.check(space, cl, addr, nbytes)
        return self._buf(space, cl, addr + nbytes)[addr:addr + nbytes]

    def tile(self, space: str, cl: int, addr: int, rows: int, cols: int, pitch: int = 0
             ) -> np.ndarray:
        pitch = pitch or cols
        if rows <= 0 or cols <= 0:
            return np.zeros((max(rows, 0), max(cols, 0)), np.float32)
        raw = self.read(space, cl, addr, 4 * ((rows - 1) * pitch + cols)).copy()
        flat = np.concatenate([raw, np.zeros(4 * (rows * pitch) - raw.size, np.uint8)])
        return flat.view(np.float32).reshape(rows, pitch)[:, :cols].copy()

    def freg(self, cl: int, index: int) -> float:
        return float(self.fregs[cl, index])

    def view(self, cl: int, index: int) -> tuple[int, ...] | None:
        return self.views[cl].get(index)

    def group(self, g: int) -> list[int]:
        if g not in self.groups:
            raise SemanticError(f"multicast group {g} is not defined", "noc")
        return self.groups[g]

    def write(self, space: str, cl: int, addr: int, data: np.ndarray, pitch: int = 0) -> None:
        """Commit one write: bytes, or a 2-D tile whose rows land ``pitch`` bytes apart (or
        through a destination view when ``pitch`` is one)."""
        if isinstance(pitch, tuple):
            write_view(self._buf(space, cl, addr + view_span(pitch)), pitch, data)
            return
        if data.ndim != 2:
            flat = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            self._buf(space, cl, addr + flat.size)[addr:addr + flat.size] = flat
            return
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(data.shape[0], -1)
        rows, rb = raw.shape
        step = pitch or rb
        buf = self._buf(space, cl, addr + (rows - 1) * step + rb if rows else addr)
        for r in range(rows):
            buf[addr + r * step:addr + r * step + rb] = raw[r]

    def configure(self, mnemonic: str, args: dict) -> None:
        if mnemonic == "noc.mcast":
            gx = self.grid[0]
            self.groups[int(args["grp"])] = [y * gx + x for y in range(args["y0"], args["y1"] + 1)
                                             for x in range(args["x0"], args["x1"] + 1)]


def run_program(prog: Program, target: Target, inputs: dict[str, np.ndarray]
                ) -> tuple[dict[str, np.ndarray], SequentialMachine]:
    """Run ``prog`` on a fresh machine; returns every ``.tensor`` symbol read back (symbols
    that never held a valid encoding are left out) and the final machine state."""
    m = SequentialMachine(target)
    for name, value in inputs.items():
        sym = prog.symbols[name]
        data = np.frombuffer(symbols.pack_symbol(sym, np.asarray(value, np.float32)), np.uint8)
        m.write(sym.space, sym.cluster, sym.addr, data)
    pc, n = 0, len(prog.instructions)
    loops: list[list[int]] = []
    while pc < n:
        ins = prog.instructions[pc]
        nxt = pc + 1
        if ins.mnemonic == "halt":
            break
        if ins.op.queued:
            ea = {f: ins.args[f].offset + m.ar[ins.args[f].areg] for f in _mem_fields(ins)}
            effect = SEMANTICS[ins.mnemonic](ins, ea, m)
            for space, cl, addr, data, pitch in effect.writes:
                m.write(space, cl, addr, data, pitch)
            for cl, i, v in effect.freg:
                m.fregs[cl, i] = v
            for cl, i, v in effect.view:
                m.views[cl][i] = v
            if "config" in effect.info:
                m.configure(*effect.info["config"])
        elif ins.mnemonic in ("setar", "addar"):
            apply_ctl(ins, m.ar)
        elif ins.mnemonic == "loop":
            if ins["count"] == 0 or ins["end"] == 0:
                nxt = pc + 1 + ins["end"]
            elif len(loops) < MAX_LOOP_DEPTH:
                loops.append([pc + 1, pc + 1 + ins["end"], ins["count"]])
            else:
                raise SemanticError(f"hardware loops nest deeper than {MAX_LOOP_DEPTH}", "loop")
        pc = advance_loops(nxt, loops)
    return _outputs(prog, m), m


def _mem_fields(ins) -> list[str]:
    return [f.name for f in ins.op.fields if f.kind.name == "mem"]


def _outputs(prog: Program, m: SequentialMachine) -> dict[str, np.ndarray]:
    out = {}
    for name, sym in sorted(prog.symbols.items()):
        try:
            out[name] = symbols.unpack_symbol(sym, m.read(sym.space, sym.cluster, sym.addr,
                                                          sym.nbytes).copy())
        except ValueError:  # a sparse symbol never written holds no valid encoding
            continue
    return out


def run_module(module: Module, inputs: dict[str, np.ndarray], func: str | None = None,
               target: Target | None = None) -> dict[str, np.ndarray]:
    """Interpret an acf-level module (its ``acf.target`` unless ``target`` is given)."""
    prog = to_program(module, func)
    return run_program(prog, target or load_target(prog.target), inputs)[0]
