"""Architectural state the reference needs for data-dependent timing: byte-addressed memories
and a few numerical semantics (numpy, fp32). Reads happen at an instruction's start, writes
commit at its end."""

from __future__ import annotations

import math

import numpy as np
from acf.isa import formats, symbols


class MemError(RuntimeError):
    pass


class Memories:
    def __init__(self, target):
        n = target.num_clusters
        self.spaces = {
            ("dram", 0): np.zeros(target.dram.size_bytes, np.uint8),
            ("gb", 0): np.zeros(target.gbuf.bytes, np.uint8),
        }
        for c in range(n):
            self.spaces[("sp", c)] = np.zeros(target.cluster.spad_bytes, np.uint8)
            self.spaces[("acc", c)] = np.zeros(target.cluster.acc_bytes, np.uint8)

    def buf(self, space: str, cl: int) -> np.ndarray:
        return self.spaces[(space, 0 if space in ("dram", "gb") else cl)]

    def read(self, space: str, cl: int, addr: int, n: int) -> np.ndarray:
        b = self.buf(space, cl)
        if addr < 0 or addr + n > b.size:
            raise MemError(f"{space}[{addr:#x}..+{n}] out of bounds")
        return b[addr:addr + n].copy()

    def write(self, space: str, cl: int, addr: int, data: bytes | np.ndarray) -> None:
        data = np.frombuffer(bytes(data), np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8).reshape(-1)
        b = self.buf(space, cl)
        if addr < 0 or addr + data.size > b.size:
            raise MemError(f"{space}[{addr:#x}..+{data.size}] out of bounds")
        b[addr:addr + data.size] = data

    def f32(self, space: str, cl: int, addr: int, n: int) -> np.ndarray:
        return self.read(space, cl, addr, 4 * n).view(np.float32)

    def tile(self, space: str, cl: int, addr: int, rows: int, cols: int, pitch: int = 0) -> np.ndarray:
        pitch = pitch or cols
        out = np.zeros((rows, cols), np.float32)
        for r in range(rows):
            out[r] = self.f32(space, cl, addr + 4 * r * pitch, cols)
        return out

    def place_inputs(self, program, inputs) -> None:
        for name, arr in (inputs or {}).items():
            sym = program.symbols[name]
            self.write(sym.space, sym.cluster, sym.addr, symbols.pack_symbol(sym, np.asarray(arr)))


def tile_addrs(addr: int, rows: int, cols: int, pitch: int = 0) -> list[int]:
    pitch = pitch or cols
    return [addr + 4 * (r * pitch + c) for r in range(rows) for c in range(cols)]


SPECIAL = {"div", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf", "gelu", "gelu_bwd", "sigmoid"}
UNARY = {"copy", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf", "relu", "gelu",
         "square", "sigmoid"}

_erf = np.vectorize(math.erf, otypes=[np.float64])


def vfn(fn: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    with np.errstate(all="ignore"):
        out = {
            "add": lambda: a64 + b64, "sub": lambda: a64 - b64, "mul": lambda: a64 * b64,
            "div": lambda: a64 / b64, "max": lambda: np.maximum(a64, b64),
            "min": lambda: np.minimum(a64, b64), "copy": lambda: a64, "neg": lambda: -a64,
            "abs": lambda: np.abs(a64), "exp": lambda: np.exp(a64), "log": lambda: np.log(a64),
            "sqrt": lambda: np.sqrt(a64), "rsqrt": lambda: 1 / np.sqrt(a64),
            "recip": lambda: 1 / a64, "tanh": lambda: np.tanh(a64), "erf": lambda: _erf(a64),
            "relu": lambda: np.maximum(a64, 0), "relu_bwd": lambda: np.where(a64 > 0, b64, 0),
            "gelu": lambda: 0.5 * a64 * (1 + _erf(a64 / math.sqrt(2))),
            "gelu_bwd": lambda: b64 * (0.5 * (1 + _erf(a64 / math.sqrt(2)))
                                       + a64 * np.exp(-a64 * a64 / 2) / math.sqrt(2 * math.pi)),
            "gt": lambda: (a64 > b64) * 1.0, "ge": lambda: (a64 >= b64) * 1.0,
            "eq": lambda: (a64 == b64) * 1.0, "square": lambda: a64 * a64,
            "sigmoid": lambda: 1 / (1 + np.exp(-a64)), "mask": lambda: np.where(b64 != 0, a64, 0),
        }[fn]()
    return np.asarray(out, np.float64).astype(np.float32)


def fmt_spec(f) -> formats.FormatSpec:
    return formats.FormatSpec.parse(str(f))


def codec_counts(tile: np.ndarray, spec: formats.FormatSpec) -> tuple[int, int]:
    """(V, X): stored values and index/pointer entries of a tile (dense: no codec)."""
    if spec.format == formats.Format.DENSE:
        return 0, 0
    mc = formats.metadata_counts(tile, spec)
    return mc.stored_values, mc.index_entries + mc.pointer_entries
