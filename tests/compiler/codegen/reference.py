"""A sequential functional executor of the instructions codegen emits (test helper).

It runs instructions in program order (tokens ignored: the emitted streams are checked
separately for balanced tokens), with the semantics the ISA docs state. It exists so the
code generator is tested before and independently of the emulator; end-to-end tests also
run on ``acf.emulator`` when it is importable.
"""

from __future__ import annotations

import math

import numpy as np
from acf.isa import formats
from acf.isa.program import Program
from acf.isa.symbols import pack_symbol, symbol_nbytes, unpack_symbol
from acf.isa.target import Target

VFN = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
    "max": np.maximum, "min": np.minimum, "copy": lambda a, b: a.copy(), "neg": lambda a, b: -a,
    "abs": lambda a, b: np.abs(a), "exp": lambda a, b: np.exp(a), "log": lambda a, b: np.log(a),
    "sqrt": lambda a, b: np.sqrt(a),
    "rsqrt": lambda a, b: np.float32(1) / np.sqrt(a), "recip": lambda a, b: np.float32(1) / a,
    "relu": lambda a, b: np.maximum(a, np.float32(0)),
    "relu_bwd": lambda a, b: np.where(a > 0, b, np.float32(0)),
    "mask": lambda a, b: np.where(b != 0, a, np.float32(0)),
}


class Machine:
    def __init__(self, prog: Program, target: Target, inputs: dict[str, np.ndarray]) -> None:
        self.prog = prog
        size = max(s.addr + symbol_nbytes(s) for s in prog.symbols.values()) + (1 << 20)
        self.dram = np.zeros(size, np.uint8)
        n = math.prod(target.fabric.grid)
        self.sp = [np.zeros(int(target.cluster.spad_bytes), np.uint8) for _ in range(n)]
        self.acc = [np.zeros(int(target.cluster.acc_bytes), np.uint8) for _ in range(n)]
        self.fr = [np.zeros(16, np.float32) for _ in range(n)]
        self.grid = tuple(int(v) for v in target.fabric.grid)
        self.groups: dict[int, list[int]] = {}
        for name, value in inputs.items():
            sym = prog.symbols[name]
            if sym.fmt == "dense":  # pack_symbol turns a 0-d array into shape [1]
                blob = np.asarray(value, np.float32).reshape(-1).view(np.uint8)
            else:
                blob = np.frombuffer(pack_symbol(sym, value), np.uint8)
            self.dram[sym.addr:sym.addr + len(blob)] = blob
        self.macs = 0

    def mem(self, cl: int, ref) -> tuple[np.ndarray, int]:
        space = {"dram": self.dram, "sp": self.sp[cl], "acc": self.acc[cl]}[ref.space]
        return space, ref.offset

    def read(self, cl: int, ref, rows: int, cols: int, pitch: int = 0) -> np.ndarray:
        buf, off = self.mem(cl, ref)
        pitch = pitch or cols
        flat = buf[off:off + 4 * ((rows - 1) * pitch + cols)].view(np.float32)
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (4 * pitch, 4)).copy()

    def write(self, cl: int, ref, x: np.ndarray, pitch: int = 0) -> None:
        buf, off = self.mem(cl, ref)
        rows, cols = x.shape
        pitch = pitch or cols
        for r in range(rows):
            buf[off + 4 * r * pitch: off + 4 * (r * pitch + cols)] = \
                np.ascontiguousarray(x[r], np.float32).view(np.uint8)

    def run(self) -> None:
        for ins in self.prog.instructions:
            getattr(self, "op_" + ins.mnemonic.replace(".", "_"))(ins.cluster, ins.args)

    def output(self, name: str) -> np.ndarray:
        sym = self.prog.symbols[name]
        return unpack_symbol(sym, self.dram[sym.addr:sym.addr + symbol_nbytes(sym)].tobytes())

    # ---- instructions -------------------------------------------------------------------
    def op_ld(self, cl, a):
        if a["fmt"].name == "dense":
            x = self.read(cl, a["src"], a["rows"], a["cols"], a["stride"])
        else:
            buf, off = self.mem(cl, a["src"])
            size = formats.header(buf[off:off + 64]).encoded_size
            x = formats.unpack(buf[off:off + size])
            assert x.shape == (a["rows"], a["cols"])
        self.write(cl, a["dst"], x)

    def op_st(self, cl, a):
        x = self.read(cl, a["src"], a["rows"], a["cols"])
        if a["fmt"].name == "dense":
            self.write(cl, a["dst"], x, a["stride"])
        else:
            blob = np.frombuffer(formats.pack(x, str(a["fmt"])), np.uint8)
            assert len(blob) <= a["cap"]
            buf, off = self.mem(cl, a["dst"])
            buf[off:off + len(blob)] = blob

    def _operands(self, cl, a):
        m, n, k = a["m"], a["n"], a["k"]
        A = self.read(cl, a["a"], k, m).T if a["ta"] else self.read(cl, a["a"], m, k)
        B = self.read(cl, a["b"], n, k).T if a["tb"] else self.read(cl, a["b"], k, n)
        return A, B

    def op_mm(self, cl, a):
        A, B = self._operands(cl, a)
        C = A @ B
        if a["accum"]:
            C = C + self.read(cl, a["dst"], a["m"], a["n"])
        self.write(cl, a["dst"], C)

    def op_sddmm(self, cl, a):
        A, B = self._operands(cl, a)
        S = self.read(cl, a["s"], a["m"], a["n"])
        C = np.where(S != 0, A @ B, np.float32(0))
        if a["accum"]:
            C = C + self.read(cl, a["dst"], a["m"], a["n"])
        self.write(cl, a["dst"], C)

    def op_vop(self, cl, a):
        r, c = a["rows"], a["cols"]
        x = self.read(cl, a["a"], r, c, a["pitch"])
        mode = a["bmode"]
        if mode == "tile":
            b = self.read(cl, a["b"], r, c, a["pitch"])
        elif mode == "row":
            b = self.read(cl, a["b"], 1, c)
        elif mode == "col":
            b = self.read(cl, a["b"], r, 1)
        elif mode == "imm":
            b = np.float32(a["imm"])
        else:
            b = self.fr[cl][int(a["imm"])]
        out = VFN[a["fn"]](x, b)
        self.write(cl, a["dst"], np.broadcast_to(np.asarray(out, np.float32), (r, c)), a["pitch"])

    def op_vred(self, cl, a):
        x = self.read(cl, a["a"], a["rows"], a["cols"], a["pitch"])
        fn = {"sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean}[a["fn"]]
        out = fn(x, axis=a["axis"], keepdims=True).astype(np.float32)
        if a["accum"]:
            old = self.read(cl, a["dst"], *out.shape)
            out = np.maximum(old, out) if a["fn"] == "max" else (
                np.minimum(old, out) if a["fn"] == "min" else old + out)
        self.write(cl, a["dst"], out)

    def op_fld(self, cl, a):
        self.fr[cl][a["fd"]] = self.read(cl, a["src"], 1, 1)[0, 0]

    def op_sgd(self, cl, a):
        n = a["n"]
        w, g, buf = (self.read(cl, a[k], 1, n) for k in ("w", "g", "mom"))
        lr, mom, damp, wd = self.fr[cl][a["fr"]:a["fr"] + 4]
        g = g + wd * w
        buf = mom * buf + (np.float32(1) - damp) * g
        self.write(cl, a["mom"], buf)
        self.write(cl, a["w"], w - lr * buf)

    def op_sync(self, cl, a):
        pass

    def op_noc_mcast(self, cl, a):
        gx = self.grid[0]
        self.groups[a["grp"]] = [y * gx + x for y in range(a["y0"], a["y1"] + 1)
                                 for x in range(a["x0"], a["x1"] + 1)]

    def op_bcast(self, cl, a):
        src, off = self.mem(cl, a["src"])
        data = src[off:off + a["bytes"]].copy()
        for member in self.groups[a["grp"]]:
            dst, doff = self.mem(member, a["dst"])
            dst[doff:doff + a["bytes"]] = data

    op_barrier = op_halt = op_sync


def run(prog: Program, target: Target, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    m = Machine(prog, target, inputs)
    m.run()
    return {name: m.output(name) for name in prog.symbols}
