"""Hypothesis strategies for random small ACF programs (assembly text plus input arrays).

Programs are built from independent *blocks* (a matmul chain, an SDDMM, vector work, NoC
transfers, loads from DRAM/GB to several clusters at once, a hardware loop...). Each block uses
fresh token ids and fresh memory, and orders its own producer/consumer pairs with tokens, so
programs are race-free and every token signalled is consumed. Values are small integers, so
every sum is exact in fp32 and zero-ness (what timing depends on) is the same whatever the
summation order.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from acf.isa import formats
from acf.isa.spec import SHARED_TOKENS
from hypothesis import strategies as st

# Target variants: overrides on top of acf-small.
TARGET_VARIANTS: list[dict] = [
    {},
    {"cluster.lookahead": 1},
    {"cluster.lookahead": 2},
    {"cluster.lookahead": 8},
    {"cluster.skip": "none"},
    {"cluster.skip": "a", "cluster.lookahead": 2},
    {"cluster.dataflow": "flexible"},
    {"cluster.dataflow": "flexible", "cluster.reduce_cycles": 3, "cluster.skip": "a"},
    {"cluster.dataflow": "systolic", "cluster.skip": "none"},
    {"cluster.queue_depth": 1},
    {"cluster.queue_depth": 2, "cluster.issue_cycles": 3},
    {"noc.routing": "yx", "noc.router_latency": 1},
    {"noc.link_bytes": 8, "noc.router_latency": 3},
    {"fabric.grid": [3, 2], "noc.link_bytes": 16},
    {"fabric.grid": [3, 3], "noc.topology": "torus"},
    {"dram.channels": 1, "dram.burst_bytes": 32},
    {"dram.channels": 4, "dram.interleave_bytes": 64, "dram.latency_cycles": 5},
    {"cluster.spad_banks": 2, "cluster.spad_bank_bytes": 4, "cluster.vec_special_cycles": 3},
    {"cluster.spad_banks": 3, "cluster.spad_bank_bytes": 2},
    {"cluster.spad_banks": 8, "cluster.vec_lanes": 4, "cluster.pe_rows": 2, "cluster.pe_cols": 3},
    {"gbuf.banks": 1, "gbuf.bank_bytes": 8, "cluster.codec_values_per_cycle": 1,
     "cluster.codec_index_per_cycle": 2},
]

LOAD_FORMATS = ["dense", "csr", "csc", "coo", "bitmap", "nm2:4", "bcsr2x2"]
STORE_FORMATS = ["dense", "csr", "csc", "coo", "bitmap", "bcsr2x2"]
VFNS_EXACT = ["add", "sub", "mul", "max", "min", "copy", "neg", "abs", "relu", "relu_bwd",
              "gt", "ge", "eq", "square", "mask"]
VFNS_SPECIAL = ["div", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf", "gelu", "gelu_bwd",
                "sigmoid"]


@dataclass
class MicroProgram:
    text: str
    inputs: dict[str, np.ndarray]
    overrides: dict
    blocks: list[str] = field(default_factory=list)

    def __repr__(self) -> str:  # hypothesis prints this for a failing example
        return f"MicroProgram(overrides={self.overrides!r}, blocks={self.blocks!r})\n{self.text}"


class Builder:
    def __init__(self, draw, overrides: dict):
        self.draw = draw
        self.overrides = overrides
        self.grid = tuple(overrides.get("fabric.grid", (2, 2)))
        self.ncl = self.grid[0] * self.grid[1]
        self.lines: list[str] = []
        self.decls: list[str] = []
        self.inputs: dict[str, np.ndarray] = {}
        self.tok = 1
        self.shared_tok = SHARED_TOKENS
        self.ntensor = 0
        self.ptr = {"dram": 0x1000, "gb": 0x100}
        self.sp = [0x40] * self.ncl
        self.acc = [0x40] * self.ncl
        self.groups = 0
        self.blocks: list[str] = []
        self.ar = 1
        self.cfg_kind: str | None = None

    # ---- resources ----------------------------------------------------------------------
    def token(self, local: bool = False) -> int:
        """A fresh token id: local (t1..t127, both ends on one cluster, or both on the
        global queues) or shared (t128..t250, any ends)."""
        if local:
            t = self.tok
            self.tok += 1
            if t >= SHARED_TOKENS:
                raise OverflowError
            return t
        t = self.shared_tok
        self.shared_tok += 1
        if t > 250:
            raise OverflowError
        return t

    def alloc(self, space: str, nbytes: int, cl: int = 0) -> int:
        nbytes = -(-max(nbytes, 4) // 64) * 64
        if space in ("dram", "gb"):
            a = self.ptr[space]
            self.ptr[space] += nbytes
            if space == "gb" and self.ptr[space] > 200_000:
                raise OverflowError
            return a
        arr = self.sp if space == "sp" else self.acc
        a = arr[cl]
        arr[cl] += nbytes
        if arr[cl] > (60_000 if space == "sp" else 30_000):
            raise OverflowError
        return a

    def int_draw(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def pick(self, seq):
        return self.draw(st.sampled_from(seq))

    def cluster(self) -> int:
        return self.int_draw(0, self.ncl - 1)

    def values(self, rows: int, cols: int, fmt: str = "dense") -> np.ndarray:
        kind = self.pick(["zero", "one", "dense", "sparse", "sparse", "sparse"])
        seed = self.int_draw(0, 2**31 - 1)
        rng = np.random.default_rng(seed)
        x = rng.integers(1, 4, (rows, cols)) * rng.choice([-1, 1], (rows, cols))
        x = x.astype(np.float32)
        if kind == "zero":
            x[:] = 0
        elif kind == "one":
            keep = np.zeros(rows * cols, bool)
            if rows * cols:
                keep[rng.integers(0, rows * cols)] = True
            x = np.where(keep.reshape(rows, cols), x, 0).astype(np.float32)
        elif kind == "sparse":
            dens = rng.choice([0.05, 0.2, 0.5, 0.8])
            x = np.where(rng.random((rows, cols)) < dens, x, 0).astype(np.float32)
        if fmt.startswith("nm"):
            x = formats.nm_prune(x, 2, 4)
        return x

    def tensor(self, space: str, rows: int, cols: int, fmt: str = "dense", cl: int = 0,
               x: np.ndarray | None = None) -> tuple[str, np.ndarray]:
        name = f"T{self.ntensor}"
        self.ntensor += 1
        if x is None:
            x = self.values(rows, cols, fmt)
        if fmt == "dense":
            nbytes = 4 * rows * cols
        else:
            nbytes = formats.encoded_size(fmt, rows, cols, nnz=rows * cols,
                                          nblocks=-(-rows // 2) * -(-cols // 2)) + 64
        addr = self.alloc(space, nbytes, cl)
        extra = "" if fmt == "dense" else f" {fmt}"
        extra += f" c{cl}" if space in ("sp", "acc") else ""
        self.decls.append(f".tensor {name} {space} {addr:#x} f32[{rows},{cols}]{extra}")
        self.inputs[name] = x
        return name, x

    def emit(self, line: str) -> None:
        self.lines.append("    " + line)

    @staticmethod
    def clauses(wait=(), sig=()) -> str:
        out = ""
        if wait:
            out += " wait(" + ", ".join(f"t{t}" for t in wait) + ")"
        if sig:
            out += " sig(" + ", ".join(f"t{t}" for t in sig) + ")"
        return out

    def dims(self, lo=1, hi=24):
        return self.int_draw(lo, hi)

    # ---- blocks -------------------------------------------------------------------------
    def load(self, cl: int, rows: int, cols: int, sig: int, fmt: str | None = None,
             space: str | None = None, x=None) -> tuple[int, np.ndarray]:
        """ld a tile into cl's scratchpad; returns (sp address, values)."""
        fmt = fmt or self.pick(LOAD_FORMATS)
        if fmt.startswith("nm") and cols % 4:
            fmt = "csr"
        space = space or self.pick(["dram", "dram", "gb"])
        name, x = self.tensor(space, rows, cols, fmt, x=x)
        dst = self.alloc("sp", 4 * rows * cols, cl)
        self.emit(f"ld c{cl}, sp[{dst:#x}], {space}[{name}], fmt={fmt}, rows={rows}, cols={cols}"
                  + self.clauses(sig=(sig,)))
        return dst, x

    def operand(self, cl: int, rows: int, cols: int, via_load: bool):
        """A dense operand in cl's scratchpad: loaded (token) or placed there as input."""
        if via_load:
            t = self.token(local=True)
            addr, x = self.load(cl, rows, cols, t)
            return addr, x, (t,)
        name, x = self.tensor("sp", rows, cols, cl=cl)
        return self.sp_addr(name), x, ()

    def sp_addr(self, name: str) -> int:
        for d in self.decls:
            parts = d.split()
            if parts[1] == name:
                return int(parts[3], 16)
        raise KeyError(name)

    def b_mm(self, sddmm: bool = False) -> None:
        cl = self.cluster()
        m, n, k = self.dims(), self.dims(), self.dims(0 if not sddmm else 1, 24)
        ta, tb = self.int_draw(0, 1), self.int_draw(0, 1)
        skip = self.pick(["none", "a", "b", "ab", "ab"])
        via = self.draw(st.booleans())
        a_addr, _, wa = self.operand(cl, k if ta else m, m if ta else k, via and k > 0)
        b_addr, _, wb = self.operand(cl, n if tb else k, k if tb else n, self.draw(st.booleans()) and k > 0)
        waits = wa + wb
        dspace = self.pick(["acc", "acc", "sp"])
        dst = self.alloc(dspace, 4 * m * n, cl)
        t_done = self.token(local=True)
        store = self.draw(st.booleans())
        sig = (t_done,) if store else ()
        if sddmm:
            s_addr, _, _ = self.operand(cl, m, n, False)
            self.emit(f"sddmm c{cl}, {dspace}[{dst:#x}], sp[{a_addr:#x}], sp[{b_addr:#x}], sp[{s_addr:#x}], "
                      f"m={m}, n={n}, k={k}, ta={ta}, tb={tb}, skip={skip}" + self.clauses(waits, sig))
        else:
            self.emit(f"mm c{cl}, {dspace}[{dst:#x}], sp[{a_addr:#x}], sp[{b_addr:#x}], m={m}, n={n}, k={k}, "
                      f"ta={ta}, tb={tb}, skip={skip}" + self.clauses(waits, sig))
        if store:
            fmt = self.pick(STORE_FORMATS)
            dest = self.pick(["dram", "dram", "gb"])
            out = self.alloc(dest, 12 * m * n + 4 * (m + n) + 128)  # worst encoding of any format
            self.emit(f"st c{cl}, {dest}[{out:#x}], {dspace}[{dst:#x}], fmt={fmt}, rows={m}, cols={n}"
                      + self.clauses((t_done,)))
        self.blocks.append("sddmm" if sddmm else "mm")

    def viewed_operand(self, cl: int, rows: int, cols: int, taken: int = 0) -> tuple[int, int]:
        """A rows x cols operand read through a random view of a placed input region: sets
        a view register with mview; returns (base address, register)."""
        d2 = self.pick([d for d in range(1, cols + 1) if cols % d == 0])
        runs = cols // d2
        d1 = self.pick([0] + [d for d in range(1, runs + 1) if runs % d == 0])
        s0, s1, s2, s3 = self.int_draw(0, 40), self.int_draw(0, 12), self.int_draw(1, 3), self.int_draw(0, 60)
        blocks, per = (runs // d1, d1) if d1 else (1, runs)
        span = (rows - 1) * s0 + (blocks - 1) * s3 + (per - 1) * s1 + (d2 - 1) * s2 + 1
        name, _ = self.tensor("sp", 1, span, cl=cl)
        vr = self.pick([r for r in range(1, 8) if r != taken])
        self.emit(f"mview c{cl}, {vr}, {d2}, {s0}, {s1}, {s2}, d1={d1}, s3={s3}")
        return self.sp_addr(name), vr

    def b_mm_view(self) -> None:
        """mm/sddmm with one or both operands read through view registers (strided, possibly
        overlapping and bank-conflicting reads, as a conv window of a resident slab)."""
        cl = self.cluster()
        sddmm = self.draw(st.booleans())
        m, n, k = self.dims(1, 12), self.dims(1, 12), self.dims(1, 12)
        ta, tb = self.int_draw(0, 1), self.int_draw(0, 1)
        skip = self.pick(["none", "ab", "ab"])
        which = self.pick(["a", "b", "ab", "ab"])
        ops = {}
        for op, rows, cols in (("a", k if ta else m, m if ta else k), ("b", n if tb else k, k if tb else n)):
            if op in which:
                ops[op] = self.viewed_operand(cl, rows, cols, ops.get("a", (0, 0))[1])
            else:
                addr, _, _ = self.operand(cl, rows, cols, False)
                ops[op] = (addr, 0)
        vd, out_rows, out_cols = 0, m, n
        if self.draw(st.booleans()):  # C written through an injective view: rows of runs
            vd = self.pick([r for r in range(1, 8) if r not in (ops["a"][1], ops["b"][1])])
            d2 = self.pick([d for d in range(1, n + 1) if n % d == 0])
            s2 = self.int_draw(1, 2)
            s1 = (d2 - 1) * s2 + 1 + self.int_draw(0, 3)
            s0 = (n // d2 - 1) * s1 + (d2 - 1) * s2 + 1 + self.int_draw(0, 5)
            out_rows, out_cols = 1, (m - 1) * s0 + (n // d2 - 1) * s1 + (d2 - 1) * s2 + 1
            self.emit(f"mview c{cl}, {vd}, {d2}, {s0}, {s1}, {s2}")
        dst = self.alloc("acc", 4 * out_rows * out_cols, cl)
        t_done = self.token(local=True)
        views = f", va={ops['a'][1]}, vb={ops['b'][1]}, vd={vd}"
        if sddmm:
            s_addr, _, _ = self.operand(cl, m, n, False)
            self.emit(f"sddmm c{cl}, acc[{dst:#x}], sp[{ops['a'][0]:#x}], sp[{ops['b'][0]:#x}], sp[{s_addr:#x}], "
                      f"m={m}, n={n}, k={k}, ta={ta}, tb={tb}, skip={skip}{views}" + self.clauses((), (t_done,)))
        else:
            self.emit(f"mm c{cl}, acc[{dst:#x}], sp[{ops['a'][0]:#x}], sp[{ops['b'][0]:#x}], m={m}, n={n}, "
                      f"k={k}, ta={ta}, tb={tb}, skip={skip}{views}" + self.clauses((), (t_done,)))
        out = self.alloc("dram", 4 * out_rows * out_cols)
        self.emit(f"st c{cl}, dram[{out:#x}], acc[{dst:#x}], fmt=dense, rows={out_rows}, cols={out_cols}"
                  + self.clauses((t_done,)))
        self.blocks.append("mm_view")

    def b_relu_mm(self) -> None:
        """vop relu/mask creates zeros on chip, then mm skips them."""
        cl = self.cluster()
        m, n, k = self.dims(1, 12), self.dims(1, 12), self.dims(1, 12)
        a_addr, _, _ = self.operand(cl, m, k, False)
        b_addr, _, _ = self.operand(cl, k, n, False)
        r_addr = self.alloc("sp", 4 * m * k, cl)
        t1 = self.token(local=True)
        fn = self.pick(["relu", "mask", "mul", "abs", "neg"])
        self.emit(f"vop c{cl}, {fn}, sp[{r_addr:#x}], sp[{a_addr:#x}], sp[{a_addr:#x}], rows={m}, cols={k}"
                  + self.clauses(sig=(t1,)))
        dst = self.alloc("acc", 4 * m * n, cl)
        self.emit(f"mm c{cl}, acc[{dst:#x}], sp[{r_addr:#x}], sp[{b_addr:#x}], m={m}, n={n}, k={k}, skip=ab"
                  + self.clauses((t1,)))
        self.blocks.append("relu_mm")

    def b_vec(self) -> None:
        cl = self.cluster()
        rows, cols = self.dims(1, 12), self.dims(1, 12)
        pitch = self.pick([0, 0, cols + self.int_draw(0, 5)])
        p = pitch or cols
        name, _ = self.tensor("sp", rows, p, cl=cl)
        a_addr = self.sp_addr(name)
        bmode = self.pick(["tile", "row", "col", "imm", "freg"])
        bname, _ = self.tensor("sp", rows, p, cl=cl)
        b_addr = self.sp_addr(bname)
        fn = self.pick(VFNS_EXACT + VFNS_SPECIAL)
        dspace = self.pick(["sp", "acc"])
        dst = self.alloc(dspace, 4 * rows * p, cl)
        if bmode == "freg":
            t1 = self.token(local=True)
            self.emit(f"fset c{cl}, fr2, 1.5" + self.clauses(sig=(t1,)))
            w = (t1,)
            imm = 2.0
        else:
            w, imm = (), 0.5
        self.emit(f"vop c{cl}, {fn}, {dspace}[{dst:#x}], sp[{a_addr:#x}], sp[{b_addr:#x}], rows={rows}, "
                  f"cols={cols}, bmode={bmode}, imm={imm}, pitch={pitch}" + self.clauses(w))
        if self.draw(st.booleans()):
            axis = self.int_draw(0, 1)
            rfn = self.pick(["sum", "max", "min", "sumsq", "mean"])
            out = self.alloc("acc", 4 * max(rows, cols), cl)
            accum = self.int_draw(0, 1)
            self.emit(f"vred c{cl}, {rfn}, acc[{out:#x}], sp[{a_addr:#x}], rows={rows}, cols={cols}, "
                      f"axis={axis}, accum={accum}, pitch={pitch}")
        if self.draw(st.booleans()):
            nel = self.dims(1, 40)
            regs = [self.alloc("sp", 4 * nel, cl) for _ in range(4)]
            if self.draw(st.booleans()):
                self.emit(f"sgd c{cl}, sp[{regs[0]:#x}], sp[{regs[1]:#x}], sp[{regs[2]:#x}], {nel}, fr4, "
                          f"nesterov={self.int_draw(0, 1)}")
            else:
                self.emit(f"adam c{cl}, sp[{regs[0]:#x}], sp[{regs[1]:#x}], sp[{regs[2]:#x}], "
                          f"sp[{regs[3]:#x}], {nel}, fr4")
        self.blocks.append(f"vec:{fn}/{bmode}")

    def b_codec(self) -> None:
        cl = self.cluster()
        rows, cols = self.dims(1, 12), self.pick([4, 8, 12, 5, 7])
        fmt = self.pick(LOAD_FORMATS[1:])
        if fmt.startswith("nm") and cols % 4:
            fmt = "bitmap"
        x = self.values(rows, cols, fmt)
        name, _ = self.tensor("sp", rows, cols, cl=cl, x=x)
        src = self.sp_addr(name)
        cap = formats.encoded_size_of(x, fmt)
        packed = self.alloc("sp", cap, cl)
        t1 = self.token(local=True)
        self.emit(f"enc c{cl}, sp[{packed:#x}], sp[{src:#x}], fmt={fmt}, rows={rows}, cols={cols}, cap={cap}"
                  + self.clauses(sig=(t1,)))
        back = self.alloc("sp", 4 * rows * cols, cl)
        self.emit(f"dec c{cl}, sp[{back:#x}], sp[{packed:#x}], fmt={fmt}, rows={rows}, cols={cols}"
                  + self.clauses((t1,)))
        self.blocks.append(f"codec:{fmt}")

    def b_multiload(self) -> None:
        """The same or different tensors loaded by several clusters at once: DRAM channel,
        global buffer and port-link contention."""
        k = self.int_draw(2, min(4, self.ncl))
        cls = self.draw(st.lists(st.integers(0, self.ncl - 1), min_size=k, max_size=k, unique=True))
        rows, cols = self.dims(1, 16), self.dims(1, 16)
        for cl in cls:
            t = self.token(local=True)
            self.load(cl, rows, cols, t)
            self.emit(f"sync c{cl}, mac" + self.clauses((t,)))
        self.blocks.append("multiload")

    def b_ldg(self) -> None:
        cl = self.cluster()
        d0, d1, d2 = self.int_draw(1, 3), self.int_draw(1, 4), self.int_draw(1, 6)
        s2 = self.pick([1, 1, 2])
        s1 = d2 * s2 + self.int_draw(0, 3)
        s0 = d1 * s1 + self.int_draw(0, 3)
        space = self.pick(["dram", "gb", "sp"])
        if space == "sp":  # on-chip gather from a resident slab (conv im2col)
            name, _ = self.tensor("sp", 1, s0 * d0, cl=cl)
            src = f"sp[{self.sp_addr(name):#x}]"
        else:
            name, _ = self.tensor(space, 1, s0 * d0)
            src = f"{space}[{name}]"
        dst = self.alloc("sp", 4 * d0 * d1 * d2, cl)
        self.emit(f"ldg c{cl}, sp[{dst:#x}], {src}, {d0}, {d1}, {d2}, {s0}, {s1}, {s2}")
        self.blocks.append("ldg")

    def b_dma(self) -> None:
        rows, rb = self.int_draw(1, 6), self.pick([4, 16, 40, 64, 100, 256])
        stride = self.pick([0, rb + 12, 256])
        pitch = stride or rb
        self.tensor("dram", 1, (rows * pitch) // 4 + 1)
        src = int(self.decls[-1].split()[3], 16)
        gdst = self.alloc("gb", rows * rb)
        t1 = self.token(local=True)
        self.emit(f"dma.ld gb[{gdst:#x}], dram[{src:#x}], rows={rows}, rowbytes={rb}, stride={stride}"
                  + self.clauses(sig=(t1,)))
        back = self.alloc("dram", rows * pitch + 64)
        self.emit(f"dma.st dram[{back:#x}], gb[{gdst:#x}], rows={rows}, rowbytes={rb}, stride={stride}"
                  + self.clauses((t1,)))
        self.blocks.append("dma")

    def b_send(self) -> None:
        """Sends between clusters (contending), each matched by a recv on the receiver."""
        nsend = self.int_draw(1, 3)
        for _ in range(nsend):
            a, b = self.cluster(), self.cluster()
            nbytes = self.pick([4, 32, 100, 256, 1000])
            src = self.alloc("sp", nbytes, a)
            dst = self.alloc("sp", nbytes, b)
            self.emit(f"send c{a}, c{b}, sp[{dst:#x}], sp[{src:#x}], {nbytes}")
            self.emit(f"recv c{b}, c{a}")
        self.blocks.append("send")

    def b_mcast(self) -> None:
        grp = self.groups % 16
        self.groups += 1
        X, Y = self.grid
        x0, x1 = sorted((self.int_draw(0, X - 1), self.int_draw(0, X - 1)))
        y0, y1 = sorted((self.int_draw(0, Y - 1), self.int_draw(0, Y - 1)))
        members = [y * X + x for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
        t_cfg = self.token()
        self.emit(f"noc.mcast {grp}, {x0}, {y0}, {x1}, {y1}" + self.clauses(sig=(t_cfg,)))
        cl = self.cluster()
        if self.draw(st.booleans()):
            nbytes = self.pick([4, 64, 200, 512])
            space = self.pick(["sp", "gb", "dram"])
            src = self.alloc(space, nbytes, cl)
            dst = max(self.alloc("sp", nbytes, m) for m in members)
            for m in members:  # same destination address on every member
                self.sp[m] = max(self.sp[m], dst + -(-nbytes // 64) * 64)
            self.emit(f"bcast c{cl}, {grp}, sp[{dst:#x}], {space}[{src:#x}], {nbytes}" + self.clauses((t_cfg,)))
            self.blocks.append(f"bcast:{space}")
        else:
            n = self.pick([1, 8, 30, 100])
            src = max(self.alloc("sp", 4 * n, m) for m in members)
            for m in members:
                self.sp[m] = max(self.sp[m], src + -(-4 * n // 64) * 64)
            dst = self.alloc("sp", 4 * n, cl)
            self.emit(f"reduce c{cl}, {grp}, sp[{dst:#x}], sp[{src:#x}], {n}" + self.clauses((t_cfg,)))
            self.blocks.append("reduce")

    def b_mcast_redefine(self) -> None:
        """A bcast or reduce whose group a second noc.mcast redefines while it waits. The
        group binds at the start and the routes at the NoC request; a vop of chosen length
        delays the start so that, on an otherwise idle fabric, the redefinition ends between
        the two (now and then anywhere near them; contending blocks move it too)."""
        tg = target_of(self.overrides)
        grp = self.groups % 16
        self.groups += 1
        X, Y = self.grid
        rects = []
        for _ in range(2):
            x0, x1 = sorted((self.int_draw(0, X - 1), self.int_draw(0, X - 1)))
            y0, y1 = sorted((self.int_draw(0, Y - 1), self.int_draw(0, Y - 1)))
            rects.append(f"{x0}, {y0}, {x1}, {y1}")
        t_delay, t_op, t_vop = self.token(), self.token(), self.token()
        cl = self.cluster()
        bcast = self.draw(st.booleans())
        space = self.pick(["sp", "gb", "dram"]) if bcast else "sp"
        nbytes = self.pick([4, 64, 200]) if bcast else 4 * self.pick([1, 8, 30])
        # whichever group is in force, the members' buffer is this block's alone
        shared = max(self.sp)
        for m in range(self.ncl):
            self.sp[m] = shared + -(-nbytes // 64) * 64
        if shared + nbytes > 60_000:
            raise OverflowError
        own = self.alloc(space, nbytes, cl)
        # The first noc.mcast ends at e, the redefinition at e + mcast_cycles; the vop runs
        # from e for `delay` cycles, the bcast/reduce starts at its end and makes its request
        # I (plus the source latency) later: a delay in the drawn range puts the start before
        # the redefinition's end and the request at or after it.
        issue = tg.cluster.issue_cycles
        latency = {"sp": 0, "gb": tg.gbuf.latency_cycles, "dram": tg.dram.latency_cycles}[space]
        mcast_cycles = issue + tg.noc.reconfig_cycles
        delay = self.int_draw(max(issue + 1, mcast_cycles - issue - latency), mcast_cycles - 1)
        if self.int_draw(0, 3) == 0:
            delay = self.int_draw(issue + 1, mcast_cycles + issue + latency + 4)
        cols = copy_cols_for(tg, delay)
        a = self.alloc("sp", 4 * cols, cl)
        d = self.alloc("acc", 4 * cols, cl)
        self.emit(f"noc.mcast {grp}, {rects[0]}" + self.clauses(sig=(t_delay, t_op)))
        self.emit(f"noc.mcast {grp}, {rects[1]}")
        self.emit(f"vop c{cl}, copy, acc[{d:#x}], sp[{a:#x}], sp[{a:#x}], rows=1, cols={cols}"
                  + self.clauses((t_delay,), (t_vop,)))
        if bcast:
            self.emit(f"bcast c{cl}, {grp}, sp[{shared:#x}], {space}[{own:#x}], {nbytes}"
                      + self.clauses((t_op, t_vop)))
        else:
            self.emit(f"reduce c{cl}, {grp}, sp[{own:#x}], sp[{shared:#x}], {nbytes // 4}"
                      + self.clauses((t_op, t_vop)))
        self.blocks.append("mcast_redefine:" + (f"bcast:{space}" if bcast else "reduce"))

    def b_noc_cfg(self) -> None:
        """Switch the routing order, or pin a route through its xy corner (deadlock-free with
        xy routing; a program does only one of the two)."""
        what = self.cfg_kind or self.pick(["route", "pin"])
        if self.overrides.get("noc.routing", "xy") != "xy":
            what = "route"
        self.cfg_kind = what
        if what == "route":
            choice = self.pick(["xy", "yx", "topo", "clear"])
            if choice == "topo":
                self.emit(f"noc.topo {self.pick(['mesh', 'torus'])}")
            elif choice == "clear":
                self.emit("noc.clear")
            else:
                self.emit(f"noc.route {choice}")
        else:
            a, b = self.cluster(), self.cluster()
            X = self.grid[0]
            v = (a // X) * X + b % X  # (x_dst, y_src)
            self.emit(f"noc.pin c{a}, c{b}, c{v}")
        self.blocks.append(f"cfg:{what}")

    def b_tokens(self) -> None:
        """A token chain across queues of different clusters and the global queues."""
        n = self.int_draw(2, 4)
        prev = ()
        for i in range(n):
            t = self.token() if i < n - 1 else None
            unit = self.pick(["ld", "st", "mac", "vec", "codec", "noc", "dma", "cfg"])
            where = f"c{self.cluster()}, " if unit not in ("dma", "cfg") else ""
            self.emit(f"sync {where}{unit}" + self.clauses(prev, (t,) if t else ()))
            prev = (t,) if t else ()
        self.blocks.append("tokens")

    def b_loop(self) -> None:
        """A hardware loop: each iteration loads a tile and multiplies it, addresses advanced
        with address registers."""
        if self.ar > 12:
            raise OverflowError
        cl = self.cluster()
        iters = self.int_draw(0, 3)
        m, n, k = self.dims(1, 8), self.dims(1, 8), self.dims(1, 8)
        fmt = self.pick(LOAD_FORMATS)
        if fmt.startswith("nm") and k % 4:
            fmt = "dense"
        names = []
        for _ in range(max(iters, 1)):
            nm_, _ = self.tensor("dram", m, k, fmt)
            names.append(nm_)
        addrs = [int(d.split()[3], 16) for d in self.decls if d.split()[1] in names]
        step_src = addrs[1] - addrs[0] if len(addrs) > 1 else 0
        if any(addrs[i + 1] - addrs[i] != step_src for i in range(len(addrs) - 1)):
            raise OverflowError
        b_addr, _, _ = self.operand(cl, k, n, False)
        tile = -(-4 * m * max(k, n) // 64) * 64
        sp0 = self.alloc("sp", tile * max(iters, 1), cl)
        acc0 = self.alloc("acc", -(-4 * m * n // 64) * 64 * max(iters, 1), cl)
        r1, r2, r3 = self.ar, self.ar + 1, self.ar + 2
        self.ar += 3
        t1, t2 = self.token(local=True), self.token(local=True)
        label = f"L{len(self.lines)}"
        self.emit(f"setar ar{r1}, 0")
        self.emit(f"setar ar{r2}, 0")
        self.emit(f"setar ar{r3}, 0")
        self.emit(f"loop {iters}, {label}")
        self.emit(f"ld c{cl}, sp[{sp0:#x}+ar{r2}], dram[{addrs[0]:#x}+ar{r1}], fmt={fmt}, rows={m}, cols={k}"
                  + self.clauses(sig=(t1,)))
        self.emit(f"mm c{cl}, acc[{acc0:#x}+ar{r3}], sp[{sp0:#x}+ar{r2}], sp[{b_addr:#x}], m={m}, n={n}, k={k}"
                  + self.clauses((t1,), (t2,)))
        self.emit(f"sync c{cl}, st" + self.clauses((t2,)))
        self.emit(f"addar ar{r1}, {step_src}")
        self.emit(f"addar ar{r2}, {tile}")
        self.emit(f"addar ar{r3}, {-(-4 * m * n // 64) * 64}")
        self.lines.append(f"{label}:")
        self.blocks.append(f"loop{iters}")

    def b_burst(self) -> None:
        """One producer releases two consumers in the same cycle (two tokens signalled at one
        end): same-cycle requests for DRAM, the global buffer and shared NoC links, granted in
        queue-id order."""
        ta, tb = self.token(), self.token()
        unit = self.pick(["mac", "vec", "dma", "cfg"])
        where = f"c{self.cluster()}, " if unit not in ("dma", "cfg") else ""
        self.emit(f"sync {where}{unit}" + self.clauses(sig=(ta, tb)))
        dst = self.cluster()
        kinds = []
        for tok in (ta, tb):
            kind = self.pick(["send", "send", "ld", "bcast"])
            kinds.append(kind)
            cl = self.cluster()
            nbytes = self.pick([32, 100, 256, 640])
            if kind == "send":
                src = self.alloc("sp", nbytes, cl)
                d = self.alloc("sp", nbytes, dst)
                self.emit(f"send c{cl}, c{dst}, sp[{d:#x}], sp[{src:#x}], {nbytes}" + self.clauses((tok,)))
                self.emit(f"recv c{dst}, c{cl}")
            elif kind == "ld":
                rows, cols = self.dims(1, 8), self.dims(1, 16)
                fmt = self.pick(["dense", "csr", "bitmap"])
                name, _ = self.tensor(self.pick(["dram", "gb"]), rows, cols, fmt)
                space = self.decls[-1].split()[2]
                d = self.alloc("sp", 4 * rows * cols, cl)
                self.emit(f"ld c{cl}, sp[{d:#x}], {space}[{name}], fmt={fmt}, rows={rows}, cols={cols}"
                          + self.clauses((tok,)))
            else:
                grp = self.groups % 16
                self.groups += 1
                X, Y = self.grid
                tcfg = self.token()
                self.emit(f"noc.mcast {grp}, 0, 0, {X - 1}, {Y - 1}" + self.clauses(sig=(tcfg,)))
                self.emit(f"sync c{cl}, noc" + self.clauses((tcfg,)))
                space = self.pick(["sp", "dram"])
                src = self.alloc(space, nbytes, cl)
                d = max(self.sp)
                for m in range(self.ncl):
                    self.sp[m] = d + -(-nbytes // 64) * 64
                if d + nbytes > 60_000:
                    raise OverflowError
                self.emit(f"bcast c{cl}, {grp}, sp[{d:#x}], {space}[{src:#x}], {nbytes}" + self.clauses((tok,)))
        self.blocks.append("burst:" + "+".join(kinds))

    def b_barrier(self) -> None:
        self.emit("barrier")
        self.blocks.append("barrier")

    BLOCKS: ClassVar[dict] = {
        "mm": (lambda b: b.b_mm(False), 6), "sddmm": (lambda b: b.b_mm(True), 3),
        "relu_mm": (lambda b: b.b_relu_mm(), 2), "vec": (lambda b: b.b_vec(), 3),
        "codec": (lambda b: b.b_codec(), 2), "multiload": (lambda b: b.b_multiload(), 3),
        "ldg": (lambda b: b.b_ldg(), 1), "mm_view": (lambda b: b.b_mm_view(), 2), "dma": (lambda b: b.b_dma(), 1),
        "send": (lambda b: b.b_send(), 3), "mcast": (lambda b: b.b_mcast(), 3),
        "mcast_redefine": (lambda b: b.b_mcast_redefine(), 2),
        "noc_cfg": (lambda b: b.b_noc_cfg(), 1), "tokens": (lambda b: b.b_tokens(), 1),
        "loop": (lambda b: b.b_loop(), 2), "barrier": (lambda b: b.b_barrier(), 1),
        "burst": (lambda b: b.b_burst(), 4),
    }

    def text(self) -> str:
        return "\n".join([".target acf-small", *self.decls, *self.lines, "    halt", ""])


@functools.cache
def _target(overrides: tuple):
    from acf.isa.target import load_target

    return load_target("acf-small", overrides={k: list(v) if isinstance(v, tuple) else v
                                               for k, v in overrides} or None)


def target_of(overrides: dict):
    """The target a generated program runs on (for blocks that aim at its timing)."""
    return _target(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in overrides.items())))


def copy_cols_for(target, cycles: int) -> int:
    """Columns of a one-row ``vop copy`` from sp to acc (both word-aligned) that takes
    ``cycles`` or just more on an idle vec queue (docs/timing.md section 4: each operand is
    a contiguous run of words on its own buffer's banks, so it puts
    ``ceil(words / spad_banks)`` accesses on its busiest bank)."""
    c = target.cluster

    def ceil_div(a: int, b: int) -> int:
        return -(-a // b)

    for cols in range(1, 4096):
        banks = ceil_div(ceil_div(4 * cols, c.spad_bank_bytes), c.spad_banks)
        if c.issue_cycles + max(ceil_div(cols, c.vec_lanes), banks) >= cycles:
            return cols
    return 4095


def _weighted_names() -> list[str]:
    out = []
    for name, (_, w) in Builder.BLOCKS.items():
        out += [name] * w
    return out


@st.composite
def microprograms(draw, max_blocks: int = 4, variants: list[dict] | None = None,
                  blocks: list[str] | None = None) -> MicroProgram:
    overrides = dict(draw(st.sampled_from(variants or TARGET_VARIANTS)))
    b = Builder(draw, overrides)
    names = blocks or _weighted_names()
    for _ in range(draw(st.integers(1, max_blocks))):
        name = draw(st.sampled_from(names))
        if name == "noc_cfg" and overrides.get("noc.topology") == "torus":
            continue  # pinned routes on a torus: keep to meshes
        lines, decls, ptrs = list(b.lines), list(b.decls), (dict(b.ptr), list(b.sp), list(b.acc))
        try:
            Builder.BLOCKS[name][0](b)
        except OverflowError:  # out of tokens or memory: drop the block
            b.lines, b.decls = lines, decls
            b.ptr, b.sp, b.acc = ptrs
    used = {d.split()[1] for d in b.decls}
    inputs = {k: v for k, v in b.inputs.items() if k in used}
    return MicroProgram(b.text(), inputs, overrides, b.blocks)


def load(mp: MicroProgram):
    """(program, target) of a generated micro-program."""
    from acf.isa.asm import assemble
    from acf.isa.target import load_target

    return assemble(mp.text), load_target("acf-small", overrides=mp.overrides or None)
