"""Architectural state: DRAM, global buffer, per-cluster scratchpad and accumulator, address
and float registers. Implements the read interface :mod:`acf.isa.semantics` needs.

Memories are zero-filled and lazy: large ones are anonymous ``MAP_NORESERVE`` mappings, so a
150 GB DRAM costs only the pages a program touches.
"""

from __future__ import annotations

import mmap

import numpy as np
from acf.isa.semantics import DecodeCache, SemanticError, write_view
from acf.isa.symbols import SPACE_NAMES

_LAZY_BYTES = 64 << 20


def _zeros(nbytes: int) -> np.ndarray:
    """Zeroed bytes; a large memory the host cannot map whole is backed by the largest
    mapping it grants (halving down to 1 GiB), and accesses beyond it trap."""
    if nbytes < _LAZY_BYTES:
        return np.zeros(nbytes, np.uint8)
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_NORESERVE", 0)
    size = nbytes
    while True:
        try:
            return np.frombuffer(mmap.mmap(-1, size, flags=flags), np.uint8)
        except (OSError, OverflowError):  # OverflowError: more than a mapping can be asked for
            if size <= 1 << 30:
                raise
            size //= 2


class State:
    """Memories and registers of one fabric instance."""

    def __init__(self, target, groups=None):
        n = target.num_clusters
        self.num_clusters = n
        self.dram_size = int(target.dram.size_bytes)
        self.dram = _zeros(self.dram_size)
        self.gb = _zeros(int(target.gbuf.bytes))
        self.sp = [_zeros(int(target.cluster.spad_bytes)) for _ in range(n)]
        self.acc = [_zeros(int(target.cluster.acc_bytes)) for _ in range(n)]
        self.ar = [0] * 16
        self.fregs = np.zeros((n, 16), np.float32)
        # per cluster, the MAC unit's view registers 1-7 (set by mview): (d1, d2, s0, s1, s2, s3)
        self.views: list[dict[int, tuple[int, ...]]] = [{} for _ in range(n)]
        self.bf16 = str(target.numeric.mode) == "bf16"
        self._groups = groups  # callable g -> list of cluster ids (the NoC owns groups)
        self.decode_cache = DecodeCache()  # packed tiles decoded once per distinct bytes

    # ---- the semantics.Machine interface ---------------------------------------------------
    def buf(self, space: str, cl: int) -> np.ndarray:
        if space == "dram":
            return self.dram
        if space == "gb":
            return self.gb
        if not 0 <= cl < self.num_clusters:
            raise SemanticError(f"cluster c{cl} does not exist ({self.num_clusters} clusters)",
                                "out-of-bounds", f"c{cl}")
        return self.sp[cl] if space == "sp" else self.acc[cl]

    def check(self, space: str, cl: int, addr: int, nbytes: int) -> None:
        size = self.buf(space, cl).size
        if addr < 0:  # an address register that took the address below the memory
            raise SemanticError(f"out-of-bounds {SPACE_NAMES[space]} access at {addr:#x}: "
                                "a negative address (offset + address register)",
                                "out-of-bounds", f"{space}[{addr:#x}]")
        if addr + nbytes > size:
            declared = self.dram_size if space == "dram" else size
            what = "" if declared == size else f" (host backing store {size:#x} of {declared:#x})"
            raise SemanticError(
                f"out-of-bounds {SPACE_NAMES[space]} access {addr:#x}+{nbytes:#x} > {size:#x}{what}",
                "out-of-bounds", f"{space}[{addr:#x}]")

    def read(self, space: str, cl: int, addr: int, nbytes: int) -> np.ndarray:
        """A view of the bytes (callers copy what must outlive later writes)."""
        self.check(space, cl, addr, nbytes)
        return self.buf(space, cl)[addr:addr + nbytes]

    def tile(self, space: str, cl: int, addr: int, rows: int, cols: int, pitch: int = 0) -> np.ndarray:
        """A fresh float32 copy of a rows x cols tile, rows ``pitch`` elements apart."""
        pitch = pitch or cols
        if rows <= 0 or cols <= 0:
            return np.zeros((max(rows, 0), max(cols, 0)), np.float32)
        span = 4 * ((rows - 1) * pitch + cols)
        self.check(space, cl, addr, span)
        # a float32 view straight on the memory (unaligned addresses too): the copy moves
        # the bits unchanged
        return np.ndarray((rows, cols), np.float32, self.buf(space, cl), addr, (4 * pitch, 4)).copy()

    def freg(self, cl: int, index: int) -> float:
        return float(self.fregs[cl, index])

    def view(self, cl: int, index: int) -> tuple[int, ...] | None:
        return self.views[cl].get(index)

    def group(self, g: int) -> list[int]:
        if self._groups is None:
            raise SemanticError(f"multicast group {g} is not defined", "noc")
        return self._groups(g)

    # ---- commits ---------------------------------------------------------------------------
    def write(self, space: str, cl: int, addr: int, data: np.ndarray, pitch: int = 0) -> None:
        """Commit one write: bytes, or a 2-D tile whose rows land ``pitch`` bytes apart."""
        b = self.buf(space, cl)
        if isinstance(pitch, tuple):  # through a destination view (mm vd)
            write_view(b, pitch, data)
            return
        if data.ndim == 2:
            rows, cols = data.shape
            rb = data.shape[1] * data.itemsize
            if rows == 0 or rb == 0:
                return
            if not pitch or pitch == rb or rows == 1:
                b[addr:addr + rows * rb] = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
                return
            if addr % 4 == 0 and pitch % 4 == 0 and data.itemsize == 4:
                np.ndarray((rows, cols), data.dtype, b, addr, (pitch, data.itemsize))[...] = data
                return
            raw = np.ascontiguousarray(data).view(np.uint8).reshape(rows, rb)
            for r in range(rows):  # unaligned pitched tile: rare, per row
                b[addr + r * pitch:addr + r * pitch + rb] = raw[r]
            return
        flat = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        b[addr:addr + flat.size] = flat
