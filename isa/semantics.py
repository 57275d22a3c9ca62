"""Numerical semantics of every ISA row: one pure function per mnemonic.

A function receives the instruction, its effective addresses (``ea``: memory field name ->
byte address, address registers already added at dispatch) and a :class:`Machine` that
reads architectural state; it returns an :class:`Effect`: the writes to commit at the
instruction's end, the byte ranges it reads and writes (for race detection) and ``info``,
the data-dependent quantities a timing model needs (operand tiles, DRAM runs, codec work).
Nothing is mutated here, so an emulator is free to commit effects in timing order.

Numerics are fp32 numpy. With ``Machine.bf16`` the operands of every data multiply
(``mm``/``sddmm`` MACs, ``vop mul``/``square``, ``vred sumsq``) are rounded to bfloat16
(round to nearest even on the bit pattern) and products accumulate in fp32; the optimizer
updates (``sgd``, ``adam``) keep fp32, as mixed-precision training keeps its master weights.
Dispatcher rows (``loop setar addar barrier halt``) describe their action in ``info``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

import numpy as np
from acf.isa import formats
from acf.isa.program import Instruction


class SemanticError(Exception):
    """An instruction cannot execute (a trap): ``kind`` is a short cause, ``address`` text."""

    def __init__(self, message: str, kind: str = "trap", address: str = ""):
        super().__init__(message)
        self.kind = kind
        self.address = address


class Access(NamedTuple):
    """Bytes an instruction touches: ``rows`` runs of ``rowbytes`` every ``pitch`` bytes.
    (A named tuple: every instruction makes a few, and a dataclass costs three times more.)"""

    space: str
    cluster: int
    addr: int
    rows: int
    rowbytes: int
    pitch: int
    write: bool

    @property
    def end(self) -> int:
        return self.addr + (self.rows - 1) * self.pitch + self.rowbytes if self.rows else self.addr


@dataclass
class Effect:
    """What an instruction does: writes ``(space, cluster, addr, data, pitch_bytes)`` where
    data is a uint8 vector or a 2-D float32 tile (rows written ``pitch_bytes`` apart; a
    tuple instead of a pitch is a destination view, see :func:`write_view`)."""

    writes: list[tuple[str, int, int, np.ndarray, int]] = field(default_factory=list)
    accesses: list[Access] = field(default_factory=list)
    freg: list[tuple[int, int, float]] = field(default_factory=list)  # (cluster, index, value)
    info: dict[str, Any] = field(default_factory=dict)
    view: list[tuple[int, int, tuple[int, ...]]] = field(default_factory=list)
    """(cluster, view register, (d1, d2, s0, s1, s2, s3)) set by ``mview``"""


class Machine(Protocol):
    """Read access to architectural state (bounds-checked; raises SemanticError)."""

    bf16: bool

    def read(self, space: str, cluster: int, addr: int, nbytes: int) -> np.ndarray: ...
    def tile(self, space: str, cluster: int, addr: int, rows: int, cols: int, pitch: int = 0) -> np.ndarray: ...
    def check(self, space: str, cluster: int, addr: int, nbytes: int) -> None: ...
    def freg(self, cluster: int, index: int) -> float: ...
    def view(self, cluster: int, index: int) -> tuple[int, ...] | None: ...
    def group(self, g: int) -> list[int]: ...


Semantic = Callable[[Instruction, dict[str, int], Machine], Effect]
SEMANTICS: dict[str, Semantic] = {}

SPECIAL = frozenset({"div", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf", "gelu",
                     "gelu_bwd", "sigmoid"})
UNARY = frozenset({"copy", "neg", "abs", "exp", "log", "sqrt", "rsqrt", "recip", "tanh", "erf",
                   "relu", "gelu", "square", "sigmoid"})


def semantics(*names: str) -> Callable[[Semantic], Semantic]:
    def deco(fn: Semantic) -> Semantic:
        for n in names:
            SEMANTICS[n] = fn
        return fn
    return deco


# ---- helpers --------------------------------------------------------------------------------


def bf16_round(x: np.ndarray) -> np.ndarray:
    """Round fp32 values to bfloat16 (nearest even), returned as fp32; NaN stays NaN."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000))
    r = np.where(np.isnan(x), u | np.uint32(0x00400000), r).astype(np.uint32)
    return r.view(np.float32)


def _erf(x: np.ndarray) -> np.ndarray:
    try:  # scipy is optional; math.erf is the exact fallback
        from scipy.special import erf
        return erf(x.astype(np.float64))
    except ImportError:  # pragma: no cover - depends on the environment
        return np.vectorize(math.erf, otypes=[np.float64])(x.astype(np.float64))


def _tile_access(space: str, cl: int, addr: int, rows: int, cols: int, pitch: int, write: bool) -> Access:
    return Access(space, cl, addr, rows, 4 * cols, 4 * (pitch or cols), write)


_DENSE = formats.Format.DENSE


@lru_cache(maxsize=256)
def _spec(fmt: Any) -> formats.FormatSpec:
    return formats.FormatSpec.parse(str(fmt))  # a regex match: once per distinct operand


def codec_counts(tile: np.ndarray, spec: formats.FormatSpec) -> tuple[int, int, int]:
    """(stored values, index + pointer entries, encoded bytes); dense bypasses the codec."""
    if spec.format == formats.Format.DENSE:
        return 0, 0, 4 * tile.size
    mc = formats.metadata_counts(tile, spec)
    return mc.stored_values, mc.index_entries + mc.pointer_entries, mc.encoded_size


class DecodeCache:
    """Decoded packed tiles of one machine, keyed by where they were read and validated by
    their bytes: a tile loaded again (the same weights by several clusters, or every step)
    is decoded once. An entry is used only when the stored bytes are identical, so writes
    need no tracking. Holds at most ``budget`` bytes (oldest entries dropped first); the
    cached tiles are read-only."""

    def __init__(self, budget: int = 256 << 20):
        self.budget = budget
        self.used = 0
        self.entries: dict[tuple, tuple[np.ndarray, np.ndarray, int, int]] = {}

    def get(self, key: tuple, raw: np.ndarray) -> tuple[np.ndarray, int, int] | None:
        e = self.entries.get(key)
        if e is None or e[0].size != raw.size or not np.array_equal(e[0], raw):
            return None
        return e[1], e[2], e[3]

    def put_decoded(self, key: tuple, raw: np.ndarray, tile: np.ndarray) -> None:
        """Remember a tile whose decoding the caller knows (it has just packed it: see
        :func:`acf.isa.formats.decoded`), with the codec counts its header implies."""
        self.put(key, raw, tile, *_header_codec_counts(formats.header(raw)))

    def put(self, key: tuple, raw: np.ndarray, tile: np.ndarray, V: int, X: int) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.used -= old[0].nbytes + old[1].nbytes
        tile.flags.writeable = False
        cost = raw.nbytes + tile.nbytes
        if cost > self.budget:
            return
        while self.entries and self.used + cost > self.budget:
            r, t, _, _ = self.entries.pop(next(iter(self.entries)))  # the oldest
            self.used -= r.nbytes + t.nbytes
        self.entries[key] = (raw.copy(), tile, V, X)
        self.used += cost


def read_packed(m: Machine, space: str, cl: int, addr: int, fmt: Any, rows: int, cols: int
                ) -> tuple[np.ndarray, int]:
    """Decode the packed tile at ``space[addr]``, checking its header against the operands."""
    tile, size, _, _ = read_packed_counts(m, space, cl, addr, fmt, rows, cols)
    return tile, size


def read_packed_counts(m: Machine, space: str, cl: int, addr: int, fmt: Any, rows: int, cols: int
                       ) -> tuple[np.ndarray, int, int, int]:
    """:func:`read_packed` plus the tile's codec counts (stored values, index + pointer
    entries). Uses the machine's ``decode_cache`` (a :class:`DecodeCache`) when it has one;
    a cached tile is read-only."""
    spec = _spec(fmt)
    where = f"{space}[{addr:#x}]"
    try:
        head = m.read(space, cl, addr, formats.HEADER_BYTES)
        if not head.any() and spec.format != _DENSE:  # nothing stored there (format ids are >= 1)
            raise formats.FormatError(f"no {spec} tile was stored there (its header bytes are all zero)")
        h = formats.header(head)
        size = h.encoded_size
        if h.format_spec != spec or (h.rows, h.cols) != (rows, cols) and spec.format != formats.Format.BCSR:
            raise formats.FormatError(f"tile is {h.format_spec} {h.rows}x{h.cols}, instruction says {spec} {rows}x{cols}")
        raw = m.read(space, cl, addr, size)
        cache: DecodeCache | None = getattr(m, "decode_cache", None)
        key = (space, cl if space in ("sp", "acc") else -1, addr)
        hit = cache.get(key, raw) if cache is not None else None
        tile = hit[0] if hit is not None else formats.unpack(raw)
    except formats.FormatError as exc:
        raise SemanticError(f"bad format header at {where}: {exc}", "bad format header", where) from None
    if tile.shape != (rows, cols):  # a cached tile too: block-CSR's header holds its blocks' shape
        raise SemanticError(f"bad format header at {where}: tile is {tile.shape[0]}x{tile.shape[1]}, "
                            f"instruction says {rows}x{cols}", "bad format header", where)
    if hit is not None:
        return tile, size, hit[1], hit[2]
    V, X = _header_codec_counts(h)
    if cache is not None:
        cache.put(key, raw, tile, V, X)
    return tile, size, V, X


def _header_codec_counts(h: formats.TileHeader) -> tuple[int, int]:
    """:func:`codec_counts` of a tile that decoded without error, from its header alone
    (a canonical encoding stores exactly the counts the tile implies)."""
    f, count = h.format, h.count
    if f == formats.Format.DENSE:
        return 0, 0
    if f == formats.Format.CSR:
        return count, count + h.rows + 1
    if f == formats.Format.CSC:
        return count, count + h.cols + 1
    if f == formats.Format.COO:
        return count, 2 * count
    if f == formats.Format.BITMAP:
        return count, 0
    if f == formats.Format.NM:
        return count, count
    br, bc = h.p0, h.p1  # bcsr: count stored blocks
    return count * br * bc, count + -(-h.rows // br) + 1


class RunGrid:
    """Byte runs on a grid: one run of ``length`` bytes at ``addr + sum_k i_k * pitches[k]``
    for every index ``0 <= i_k < counts[k]`` (row-major). A pitched block is a 1-D grid
    (rows, row pitch), a gather a 2-D or 3-D one. ``np.asarray`` gives the ``(runs, 2)``
    int64 array of ``(address, length)``; a timing model can use the grid instead."""

    __slots__ = ("addr", "counts", "length", "pitches")

    def __init__(self, addr: int, counts: tuple[int, ...], pitches: tuple[int, ...], length: int):
        self.addr, self.counts, self.pitches, self.length = addr, counts, pitches, length

    @property
    def runs(self) -> int:
        return math.prod(self.counts)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        addr = np.full((1,) * len(self.counts), self.addr, np.int64)
        for k, (n, p) in enumerate(zip(self.counts, self.pitches)):
            shape = [1] * len(self.counts)
            shape[k] = n
            addr = addr + p * np.arange(n, dtype=np.int64).reshape(shape)
        addr = addr.reshape(-1)
        out = np.stack([addr, np.full(addr.size, self.length, np.int64)], axis=1)
        return out if dtype is None else out.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.runs

    def __repr__(self) -> str:
        return (f"RunGrid(addr={self.addr:#x}, counts={self.counts}, pitches={self.pitches}, "
                f"length={self.length})")


def dense_runs(addr: int, rows: int, rowbytes: int, pitch: int) -> RunGrid:
    """(address, length) of each row of a pitched block (array-like; see RunGrid)."""
    return RunGrid(addr, (rows,), (pitch,), rowbytes)


# ---- memory ---------------------------------------------------------------------------------


@semantics("dma.ld", "dma.st")
def _dma(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    load = ins.mnemonic == "dma.ld"
    rows, rb = ins["rows"], ins["rowbytes"]
    pitch = ins["stride"] or rb
    dram_addr = ea["src"] if load else ea["dst"]
    gb_addr = ea["dst"] if load else ea["src"]
    dram = Access("dram", 0, dram_addr, rows, rb, pitch, not load)
    gb = Access("gb", 0, gb_addr, 1, rows * rb, rows * rb, load)
    if load:
        m.check("dram", 0, dram_addr, dram.end - dram_addr if rows else 0)
        data = np.concatenate([m.read("dram", 0, dram_addr + r * pitch, rb) for r in range(rows)]) \
            if pitch != rb and rows else m.read("dram", 0, dram_addr, rows * rb).copy()
        m.check("gb", 0, gb_addr, rows * rb)
        writes = [("gb", 0, gb_addr, data, 0)]
    else:
        data = m.read("gb", 0, gb_addr, rows * rb).copy()
        m.check("dram", 0, dram_addr, dram.end - dram_addr if rows else 0)
        writes = [("dram", 0, dram_addr, data.reshape(rows, rb), pitch)] if rows else []
    return Effect(writes, [dram, gb], info={"runs": dense_runs(dram_addr, rows, rb, pitch), "nbytes": rows * rb})


@semantics("ld")
def _ld(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    args = ins.args
    cl, rows, cols = ins.cluster, args["rows"], args["cols"]
    src, space, dst = ea["src"], args["src"].space, ea["dst"]
    if _spec(args["fmt"]).format == _DENSE:
        pitch = args["stride"] or cols
        tile = m.tile(space, cl, src, rows, cols, pitch)
        runs = RunGrid(src, (rows,), (4 * pitch,), 4 * cols)
        acc = Access(space, cl, src, rows, 4 * cols, 4 * pitch, False)
        V = X = 0
        nbytes = 4 * rows * cols
    else:
        tile, nbytes, V, X = read_packed_counts(m, space, cl, src, args["fmt"], rows, cols)
        runs = RunGrid(src, (1,), (0,), nbytes)
        acc = Access(space, cl, src, 1, nbytes, nbytes, False)
    m.check("sp", cl, dst, 4 * rows * cols)
    return Effect([("sp", cl, dst, tile, 4 * cols)],
                  [acc, Access("sp", cl, dst, rows, 4 * cols, 4 * cols, True)],
                  info={"runs": runs, "nbytes": nbytes, "codec": (V, X), "space": space})


@semantics("ldg")
def _ldg(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, space, base = ins.cluster, ins["src"].space, ea["src"]
    d0, d1, d2 = ins["d0"], ins["d1"], ins["d2"]
    s0, s1, s2 = ins["s0"], ins["s1"], ins["s2"]
    n = d0 * d1 * d2
    m.check("sp", cl, ea["dst"], 4 * n)  # before gathering: n may be far beyond the scratchpad
    if n:
        # strides are unsigned: the first element is the lowest address, the last the highest
        lo, hi = base, base + 4 * ((d0 - 1) * s0 + (d1 - 1) * s1 + (d2 - 1) * s2) + 4
        raw = m.read(space, cl, lo, hi - lo)
        # one strided copy of a float32 view of the block (any alignment; bits unchanged)
        vals = np.ndarray((d0, d1, d2), np.float32, raw, 0, (4 * s0, 4 * s1, 4 * s2)).reshape(-1)
        if vals.base is not None:  # the block was contiguous: reshape gave a view
            vals = vals.copy()
    else:
        lo = hi = base
        vals = np.zeros(0, np.float32)
    if s2 == 1:  # rows of d2 contiguous elements
        runs = RunGrid(base, (d0, d1), (4 * s0, 4 * s1), 4 * d2) if d2 else RunGrid(base, (0,), (0,), 0)
    else:
        runs = RunGrid(base, (d0, d1, d2), (4 * s0, 4 * s1, 4 * s2), 4)
    m.check("sp", cl, ea["dst"], 4 * n)
    info = {"runs": runs, "nbytes": 4 * n, "codec": (0, 0), "space": space}
    if space == "sp":  # an on-chip gather is timed by the banks of the elements it reads
        info["view"] = (base, d0, d1, d2, s0, s1, s2)
    return Effect([("sp", cl, ea["dst"], vals.reshape(1, n), 4 * n)],
                  [Access(space, cl, lo, 1, hi - lo, hi - lo, False),
                   Access("sp", cl, ea["dst"], 1, 4 * n, 4 * n, True)],
                  info=info)


def gather_addresses(view: tuple[int, ...]) -> np.ndarray:
    """Byte addresses, in element order, of a strided view ``(base, *dims, *strides)`` (an
    ``ldg`` view ``(base, d0, d1, d2, s0, s1, s2)``, or an mm operand view)."""
    base, rest = view[0], view[1:]
    n = len(rest) // 2
    addrs = np.full((1,) * n, base, np.int64)
    for axis, (d, st) in enumerate(zip(rest[:n], rest[n:])):
        shape = [1] * n
        shape[axis] = d
        addrs = addrs + 4 * st * np.arange(d, dtype=np.int64).reshape(shape)
    return addrs.reshape(-1)


@semantics("st")
def _st(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    args = ins.args
    cl, rows, cols = ins.cluster, args["rows"], args["cols"]
    sspace, dspace, src, dst = args["src"].space, args["dst"].space, ea["src"], ea["dst"]
    tile = m.tile(sspace, cl, src, rows, cols)
    spec = _spec(args["fmt"])
    reads = Access(sspace, cl, src, rows, 4 * cols, 4 * cols, False)
    if spec.format == _DENSE:
        pitch = args["stride"] or cols
        w = Access(dspace, cl, dst, rows, 4 * cols, 4 * pitch, True)
        m.check(dspace, cl, dst, 4 * ((rows - 1) * pitch + cols) if rows else 0)
        writes = [(dspace, cl, dst, tile, 4 * pitch)]
        runs, nbytes, V, X = RunGrid(dst, (rows,), (4 * pitch,), 4 * cols), 4 * rows * cols, 0, 0
    else:
        try:
            blob = np.frombuffer(formats.pack(tile, spec), np.uint8)
        except formats.FormatError as exc:
            raise SemanticError(f"cannot encode tile as {spec}: {exc}", "format") from None
        if args["cap"] and blob.size > args["cap"]:
            raise SemanticError(f"capacity overflow: {spec} encoding of {blob.size} bytes exceeds cap "
                                f"{args['cap']}", "capacity overflow", f"{dspace}[{dst:#x}]")
        m.check(dspace, cl, dst, blob.size)
        w = Access(dspace, cl, dst, 1, blob.size, blob.size, True)
        writes = [(dspace, cl, dst, blob, 0)]
        runs, nbytes = RunGrid(dst, (1,), (0,), int(blob.size)), int(blob.size)
        V, X, _ = codec_counts(tile, spec)
    return Effect(writes, [reads, w], info={"runs": runs, "nbytes": nbytes, "codec": (V, X), "space": dspace})


# ---- compute --------------------------------------------------------------------------------


def _view(m: Machine, space: str, cl: int, addr: int, rows: int, cols: int) -> np.ndarray:
    """A read-only float32 view of a contiguous tile, for operands used only at the start
    (``Machine.tile`` copies; the product and the timing read them at once)."""
    if rows <= 0 or cols <= 0:
        return m.tile(space, cl, addr, rows, cols)
    v = m.read(space, cl, addr, 4 * rows * cols).view(np.float32).reshape(rows, cols)
    v.flags.writeable = False
    return v


_OPERAND = {"a": "a", "b": "b", "d": "dst"}  # view-register field suffix -> operand name


def operand_view(ins: Instruction, which: str, base: int, rows: int, cols: int, m: Machine
                 ) -> tuple[int, ...] | None:
    """The strided view ``(base, rows, blocks, d1, d2, s0, s3, s1, s2)`` of an mm/sddmm
    operand read through a view register, or None for a contiguous tile. Its stored
    rows x cols matrix has element (r, c) at ``base + 4*(r*s0 + b*s3 + u*s1 + q*s2)`` with
    ``q = c mod d2`` (within a run), ``u`` the run within its block of ``d1`` runs and ``b``
    the block (``d1 = 0``: one block of every run)."""
    r = ins["v" + which]
    if not r:
        return None
    v = m.view(ins.cluster, r)
    if v is None:
        raise SemanticError(f"operand {_OPERAND[which]} uses view register {r}, which no mview set",
                            "view")
    d1, d2, s0, s1, s2, s3 = v
    runs = cols // d2 if d2 else 0
    if d2 == 0 or cols % d2 or (d1 and runs % d1):
        raise SemanticError(f"operand {_OPERAND[which]}: {cols} columns are not whole runs of d2={d2}"
                            + (f" in blocks of d1={d1} runs" if d1 else "")
                            + f" (view register {r})", "view")
    if not d1:
        return (base, rows, 1, runs, d2, s0, 0, s1, s2)
    return (base, rows, runs // d1, d1, d2, s0, s3, s1, s2)


def view_span(view: tuple[int, ...]) -> int:
    """Bytes from an operand view's first element to the end of its last."""
    _, d0, nb, d1, d2, s0, s3, s1, s2 = view
    if d0 * nb * d1 * d2 == 0:
        return 0
    return 4 * ((d0 - 1) * s0 + (nb - 1) * s3 + (d1 - 1) * s1 + (d2 - 1) * s2) + 4


def view_is_injective(view: tuple[int, ...]) -> bool:
    """True when no two elements of the view share an address, what a destination view
    must satisfy. Nested strides (each, innermost first, clearing the span of the
    dimensions inside it) settle most views at once; others (interleaved strides, such as
    the stride phases of a transposed convolution) by listing every element's address."""
    _, d0, nb, d1, d2, s0, s3, s1, s2 = view
    dims = ((d0, s0), (nb, s3), (d1, s1), (d2, s2))
    reach = 1
    for stride, dim in sorted((st, d) for d, st in dims if d > 1):
        if stride < reach:
            break
        reach += stride * (dim - 1)
    else:
        return True
    if any(d > 1 and st == 0 for d, st in dims):
        return False
    addr = np.zeros(1, np.int64)
    for d, st in dims:  # every element's offset: an outer sum over the four dimensions
        addr = (addr[:, None] + st * np.arange(d, dtype=np.int64)[None, :]).reshape(-1)
    return np.unique(addr).size == addr.size


def _strided(buf: np.ndarray, offset: int, view: tuple[int, ...]) -> np.ndarray:
    """The (rows, blocks, runs, run) float32 array an operand view covers in ``buf``, whose
    byte ``offset`` is the view's base."""
    _, d0, nb, d1, d2, s0, s3, s1, s2 = view
    return np.ndarray((d0, nb, d1, d2), np.float32, buf, offset, (4 * s0, 4 * s3, 4 * s1, 4 * s2))


def write_view(buf: np.ndarray, view: tuple[int, ...], data: np.ndarray) -> None:
    """Store a float32 matrix into a byte memory through an injective operand view."""
    if view_span(view):
        arr = _strided(buf, view[0], view)
        arr[...] = data.reshape(arr.shape)


#: elements of one operand built through a view register (stride-0 views re-read bytes, so
#: an operand may be far larger than the scratchpad; a conv slab's is at most a few million)
MAX_VIEW_ELEMENTS = 1 << 26


def _read_view(m: Machine, cl: int, view: tuple[int, ...], space: str = "sp") -> tuple[np.ndarray, Access]:
    """The rows x cols float32 matrix of an operand view and the byte range it reads."""
    base, d0, nb, d1, d2, s0, s3, s1, s2 = view
    if d0 * nb * d1 * d2 == 0:
        return np.zeros((d0, nb * d1 * d2), np.float32), Access(space, cl, base, 0, 0, 0, False)
    if d0 * nb * d1 * d2 > MAX_VIEW_ELEMENTS:
        raise SemanticError(f"a {d0} x {nb * d1 * d2} operand view ({d0 * nb * d1 * d2} elements, "
                            f"re-reading its {space} bytes) is beyond the emulator's "
                            f"{MAX_VIEW_ELEMENTS} elements per operand", "operand")
    span = view_span(view)
    raw = m.read(space, cl, base, span)
    # a contiguous copy: the product is then the same BLAS call as on a gathered tile
    vals = np.ascontiguousarray(_strided(raw, 0, view).reshape(d0, nb * d1 * d2))
    return vals, Access(space, cl, base, 1, span, span, False)


def _mm_operand(ins: Instruction, which: str, ea: dict[str, int], m: Machine, rows: int, cols: int,
                info: dict[str, Any]) -> tuple[np.ndarray, Access]:
    """One stored operand matrix (rows x cols) and its access."""
    cl, base = ins.cluster, ea[which]
    view = operand_view(ins, which, base, rows, cols, m)
    if view is None:
        return _view(m, "sp", cl, base, rows, cols), Access("sp", cl, base, 1, 4 * rows * cols,
                                                              4 * rows * cols, False)
    info.setdefault("views", []).append(("sp", view))
    return _read_view(m, cl, view)


def _mm_operands(ins: Instruction, ea: dict[str, int], m: Machine, info: dict[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray, list[Access]]:
    """A, B and their accesses; A and B may be views of the scratchpad, valid until the
    next write (the emulator uses them when the instruction starts). An operand read
    through a view register is gathered (``info['views']`` lists such views, with their
    buffers, for timing)."""
    M, N, K = ins["m"], ins["n"], ins["k"]
    ta, tb = ins["ta"], ins["tb"]
    A, acc_a = _mm_operand(ins, "a", ea, m, K if ta else M, M if ta else K, info)
    B, acc_b = _mm_operand(ins, "b", ea, m, N if tb else K, K if tb else N, info)
    return (A.T if ta else A), (B.T if tb else B), [acc_a, acc_b]


def _product(A: np.ndarray, B: np.ndarray, bf16: bool) -> np.ndarray:
    if bf16:
        A, B = bf16_round(A), bf16_round(B)
    with np.errstate(all="ignore"):  # inf and NaN propagate as IEEE fp32 says, silently
        return A @ B  # both fp32: BLAS sgemm (a dtype= argument would bypass BLAS)


@semantics("mm", "sddmm")
def _mm(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, M, N = ins.cluster, ins["m"], ins["n"]
    info: dict[str, Any] = {}
    if operand_view(ins, "d", ea["dst"], M, N, m) is None:  # before building the operands
        m.check(ins["dst"].space, cl, ea["dst"], 4 * M * N)
    A, B, acc = _mm_operands(ins, ea, m, info)
    info["A"], info["B"] = A, B
    C = _product(A, B, m.bf16) if A.size and B.size else np.zeros((M, N), np.float32)
    if ins.mnemonic == "sddmm":
        S = m.tile("sp", cl, ea["s"], M, N)
        acc.append(Access("sp", cl, ea["s"], 1, 4 * M * N, 4 * M * N, False))
        C = np.where(S != 0, C, np.float32(0))
        info["S"] = S != 0
    dspace = ins["dst"].space
    dview = operand_view(ins, "d", ea["dst"], M, N, m)
    if dview is not None:  # C written (and read) through a view: e.g. one stride phase of a
        # transposed conv's output, interleaved with the other phases in one tile
        if not view_is_injective(dview):
            raise SemanticError("the destination view writes some element twice", "view")
        info.setdefault("views", []).append((dspace, dview))
        span = view_span(dview)
        m.check(dspace, cl, ea["dst"], span)
        if ins["accum"]:
            with np.errstate(all="ignore"):
                C += _read_view(m, cl, dview, dspace)[0]
            acc.append(Access(dspace, cl, ea["dst"], 1, span, span, False))
        acc.append(Access(dspace, cl, ea["dst"], 1, span, span, True))
        return Effect([(dspace, cl, ea["dst"], C.astype(np.float32, copy=False), dview)], acc, info=info)
    if ins["accum"]:  # C is a fresh array: add in place
        with np.errstate(all="ignore"):
            C += _view(m, dspace, cl, ea["dst"], M, N)
        acc.append(Access(dspace, cl, ea["dst"], 1, 4 * M * N, 4 * M * N, False))
    m.check(dspace, cl, ea["dst"], 4 * M * N)
    acc.append(Access(dspace, cl, ea["dst"], 1, 4 * M * N, 4 * M * N, True))
    return Effect([(dspace, cl, ea["dst"], C.astype(np.float32, copy=False), 4 * N)], acc, info=info)


# ---- vector ---------------------------------------------------------------------------------


def _gelu(a: np.ndarray, b: Any) -> np.ndarray:
    """Exact erf form, as torch.nn.functional.gelu(approximate="none")."""
    return 0.5 * a.astype(np.float64) * (1 + _erf(a / math.sqrt(2)))


def _gelu_bwd(a: np.ndarray, b: Any) -> np.ndarray:
    """a = x, b = incoming gradient: b * (Phi(x) + x * phi(x))."""
    x = a.astype(np.float64)
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return b * (0.5 * (1 + _erf(x / math.sqrt(2))) + x * pdf)


_ONE, _ZERO = np.float32(1), np.float32(0)
_VFN: dict[str, Callable[[np.ndarray, Any], np.ndarray]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b, "max": np.maximum, "min": np.minimum,
    "copy": lambda a, b: a.copy(), "neg": lambda a, b: -a, "abs": lambda a, b: np.abs(a),
    "exp": lambda a, b: np.exp(a), "log": lambda a, b: np.log(a), "sqrt": lambda a, b: np.sqrt(a),
    "rsqrt": lambda a, b: _ONE / np.sqrt(a), "recip": lambda a, b: _ONE / a,
    "tanh": lambda a, b: np.tanh(a), "erf": lambda a, b: _erf(a),
    "relu": lambda a, b: np.maximum(a, _ZERO), "relu_bwd": lambda a, b: np.where(a > 0, b, _ZERO),
    "mask": lambda a, b: np.where(b != 0, a, _ZERO), "gelu": _gelu, "gelu_bwd": _gelu_bwd,
    "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b, "eq": lambda a, b: a == b,
    "square": lambda a, b: a * a, "sigmoid": lambda a, b: _ONE / (_ONE + np.exp(-a)),
}


def vfn(fn: str, a: np.ndarray, b: Any, bf16: bool = False) -> np.ndarray:
    """Elementwise function of the ``VFN`` enum in fp32 (``b`` broadcast to ``a``; gt/ge/eq
    give 1.0/0.0). In bf16 mode the operands of a multiply are rounded to bfloat16."""
    f = _VFN.get(fn)
    if f is None:
        raise SemanticError(f"unknown vector function {fn!r}")
    if bf16 and fn in ("mul", "square"):
        a, b = bf16_round(a), bf16_round(np.asarray(b, np.float32))
    with np.errstate(all="ignore"):
        return np.asarray(f(a, b)).astype(np.float32, copy=False)


@semantics("vop")
def _vop(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, fn, rows, cols, bmode = ins.cluster, ins["fn"], ins["rows"], ins["cols"], ins["bmode"]
    pitch = ins["pitch"] or cols
    aspace, bspace, dspace = ins["a"].space, ins["b"].space, ins["dst"].space
    A = m.tile(aspace, cl, ea["a"], rows, cols, pitch)
    acc = [_tile_access(aspace, cl, ea["a"], rows, cols, pitch, False)]
    bshape: tuple[int, int, int] | None = None
    if fn in UNARY:
        B = np.zeros(1, np.float32)
    elif bmode == "tile":
        B, bshape = m.tile(bspace, cl, ea["b"], rows, cols, pitch), (rows, cols, pitch)
    elif bmode == "row":
        B, bshape = m.tile(bspace, cl, ea["b"], 1, cols), (1, cols, cols)
    elif bmode == "col":
        B, bshape = m.tile(bspace, cl, ea["b"], rows, 1), (rows, 1, 1)
    elif bmode == "imm":
        B = np.float32(ins["imm"])
    else:  # bmode=freg: imm names the float register
        r = float(ins["imm"])
        if not (r.is_integer() and 0 <= r < 16):
            raise SemanticError(f"bmode=freg reads float register imm={ins['imm']}; registers "
                                "are 0-15", "operand")
        B = np.float32(m.freg(cl, int(r)))
    if bshape is not None:
        acc.append(_tile_access(bspace, cl, ea["b"], *bshape, False))
    out = vfn(fn, A, B, m.bf16).astype(np.float32, copy=False).reshape(rows, cols)
    w = _tile_access(dspace, cl, ea["dst"], rows, cols, pitch, True)
    m.check(dspace, cl, ea["dst"], w.end - ea["dst"] if rows else 0)
    acc.append(w)
    return Effect([(dspace, cl, ea["dst"], out, 4 * pitch)], acc, info={"bshape": bshape})


#: what an empty vred gives (rows or cols 0): the reduction's identity, so that with
#: ``accum`` the destination keeps its values (a max of nothing is -inf, not 0)
_EMPTY_REDUCTION = {"max": -np.inf, "min": np.inf}


@semantics("vred")
def _vred(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, fn, rows, cols, axis = ins.cluster, ins["fn"], ins["rows"], ins["cols"], ins["axis"]
    aspace, dspace = ins["a"].space, ins["dst"].space
    pitch = ins["pitch"] or cols
    A = m.tile(aspace, cl, ea["a"], rows, cols, pitch)
    shape = (1, cols) if axis == 0 else (rows, 1)
    with np.errstate(all="ignore"):  # inf and NaN propagate as IEEE fp32 says, silently
        if A.size == 0:  # each reduction's identity: an accumulating max/min keeps dst
            out = np.full(shape, _EMPTY_REDUCTION.get(fn, 0.0), np.float32)
        elif fn == "sumsq":
            Q = bf16_round(A) if m.bf16 else A  # a multiply: bf16 operands in bf16 mode
            out = np.sum(Q * Q, axis=axis, dtype=np.float32)
        else:
            out = {"sum": np.sum, "max": np.max, "min": np.min, "mean": np.mean}[fn](A, axis=axis)
    out = np.asarray(out, np.float32).reshape(shape)
    acc = [_tile_access(aspace, cl, ea["a"], rows, cols, pitch, False)]
    n = shape[0] * shape[1]
    if ins["accum"]:
        old = m.tile(dspace, cl, ea["dst"], *shape)
        with np.errstate(all="ignore"):
            out = {"max": np.maximum, "min": np.minimum}.get(fn, np.add)(old, out)
        acc.append(Access(dspace, cl, ea["dst"], 1, 4 * n, 4 * n, False))
    m.check(dspace, cl, ea["dst"], 4 * n)
    acc.append(Access(dspace, cl, ea["dst"], 1, 4 * n, 4 * n, True))
    return Effect([(dspace, cl, ea["dst"], out, 4 * shape[1])], acc, info={"out_shape": shape})


def _vec(m: Machine, cl: int, addr: int, n: int) -> np.ndarray:
    return m.tile("sp", cl, addr, 1, n).reshape(-1)


@semantics("sgd")
def _sgd(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    """torch.optim.SGD: d = g + wd*w; buf = mom*buf + (1-damp)*d; w -= lr*buf, or with
    ``nesterov`` w -= lr*(d + mom*buf).

    torch's first step sets ``buf = d``; the runtime gets it exactly by passing a zero buffer
    with dampening 0 on that step (mom*0 + 1*d == d in fp32). With momentum 0, buf = d."""
    cl, n, fr = ins.cluster, ins["n"], ins["fr"]
    lr, mom, damp, wd = (np.float32(m.freg(cl, (fr + i) % 16)) for i in range(4))
    w, g, buf = (_vec(m, cl, ea[k], n) for k in ("w", "g", "mom"))
    d = g + wd * w if wd != 0 else g
    buf = mom * buf + (np.float32(1) - damp) * d if mom != 0 else d
    w = w - lr * (d + mom * buf if ins["nesterov"] and mom != 0 else buf)
    acc = [Access("sp", cl, ea[k], 1, 4 * n, 4 * n, False) for k in ("w", "g", "mom")]
    acc += [Access("sp", cl, ea[k], 1, 4 * n, 4 * n, True) for k in ("w", "mom")]
    return Effect([("sp", cl, ea["w"], w.reshape(1, n), 0), ("sp", cl, ea["mom"], buf.reshape(1, n), 0)], acc)


@semantics("adam")
def _adam(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    """torch.optim.Adam (single-tensor path, no amsgrad). fr+1, fr+2 hold 1 - beta1 and
    1 - beta2, not the betas: torch takes both ``beta2`` and ``1 - beta2`` from the double
    the user gave, and once beta2 = 0.999 is rounded to fp32, 1 - beta2 is 0.00099998713,
    1.3e-5 off. The complement in fp32 is torch's, and beta = 1 - complement in fp32 is
    torch's fp32 beta for the usual betas (0.9, 0.99, 0.999; for some others one fp32 step
    off, a relative 6e-8 in the decay). fr+5, fr+6 = 1-beta1^t, 1-beta2^t."""
    cl, n, fr = ins.cluster, ins["n"], ins["fr"]
    lr, c1, c2, eps, wd, bc1, bc2 = (m.freg(cl, (fr + i) % 16) for i in range(7))
    w, g, m1, m2 = (_vec(m, cl, ea[k], n) for k in ("w", "g", "m1", "m2"))
    f32 = np.float32
    if wd != 0:
        g = g + f32(wd) * w
    wt, b1, b2 = f32(c1), f32(1) - f32(c1), f32(1) - f32(c2)
    m1 = m1 + wt * (g - m1) if wt < 0.5 else g - (g - m1) * b1  # torch.lerp(m1, g, 1 - beta1)
    m2 = m2 * b2 + f32(c2) * g * g
    step = f32(lr / bc1) if bc1 else f32(np.inf)
    with np.errstate(all="ignore"):
        # a negative correction (beta2 > 1) gives NaN, as an fp32 square root does
        denom = np.sqrt(m2) / (f32(math.sqrt(bc2)) if bc2 >= 0 else f32(np.nan)) + f32(eps)
        w = w - step * (m1 / denom)
    acc = [Access("sp", cl, ea[k], 1, 4 * n, 4 * n, False) for k in ("w", "g", "m1", "m2")]
    acc += [Access("sp", cl, ea[k], 1, 4 * n, 4 * n, True) for k in ("w", "m1", "m2")]
    return Effect([("sp", cl, ea[k], v.astype(f32).reshape(1, n), 0)
                   for k, v in (("w", w), ("m1", m1), ("m2", m2))], acc)


#: what an mview sets: (d1, d2, s0, s1, s2, s3)
VIEW_FIELDS = ("d1", "d2", "s0", "s1", "s2", "s3")


@semantics("mview")
def _mview(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    if not 1 <= ins["vr"] <= 7:
        raise SemanticError(f"mview sets view register {ins['vr']}; registers are 1-7", "view")
    return Effect(view=[(ins.cluster, ins["vr"], tuple(ins[f] for f in VIEW_FIELDS))])


@semantics("fset")
def _fset(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    return Effect(freg=[(ins.cluster, ins["fd"], float(np.float32(ins["imm"])))])


@semantics("fld")
def _fld(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    v = float(m.tile("sp", ins.cluster, ea["src"], 1, 1)[0, 0])
    return Effect(accesses=[Access("sp", ins.cluster, ea["src"], 1, 4, 4, False)],
                  freg=[(ins.cluster, ins["fd"], v)])


# ---- format conversion ----------------------------------------------------------------------


@semantics("enc")
def _enc(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, rows, cols, sspace = ins.cluster, ins["rows"], ins["cols"], ins["src"].space
    tile = m.tile(sspace, cl, ea["src"], rows, cols)
    spec = _spec(ins["fmt"])
    try:
        blob = np.frombuffer(formats.pack(tile, spec), np.uint8)
    except formats.FormatError as exc:
        raise SemanticError(f"cannot encode tile as {spec}: {exc}", "format") from None
    if blob.size > ins["cap"]:
        raise SemanticError(f"capacity overflow: {spec} encoding of {blob.size} bytes exceeds cap {ins['cap']}",
                            "capacity overflow", f"sp[{ea['dst']:#x}]")
    m.check("sp", cl, ea["dst"], blob.size)
    V, X, _ = codec_counts(tile, spec)
    return Effect([("sp", cl, ea["dst"], blob, 0)],
                  [_tile_access(sspace, cl, ea["src"], rows, cols, cols, False),
                   Access("sp", cl, ea["dst"], 1, blob.size, blob.size, True)],
                  info={"codec": (V, X), "nbytes": int(blob.size)})


@semantics("dec")
def _dec(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, rows, cols = ins.cluster, ins["rows"], ins["cols"]
    tile, size, V, X = read_packed_counts(m, "sp", cl, ea["src"], ins["fmt"], rows, cols)
    m.check("sp", cl, ea["dst"], 4 * rows * cols)
    return Effect([("sp", cl, ea["dst"], tile, 4 * cols)],
                  [Access("sp", cl, ea["src"], 1, size, size, False),
                   _tile_access("sp", cl, ea["dst"], rows, cols, cols, True)],
                  info={"codec": (V, X), "nbytes": size})


# ---- NoC ------------------------------------------------------------------------------------


@semantics("noc.topo", "noc.route", "noc.mcast", "noc.pin", "noc.clear")
def _noc_cfg(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    """Configuration applies at the instruction's end (the emulator owns the NoC)."""
    return Effect(info={"config": (ins.mnemonic, {k: ins.args[k] for k in (f.name for f in ins.op.fields)})})


@semantics("send")
def _send(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, to, n, sspace = ins.cluster, ins["to"], ins["bytes"], ins["src"].space
    data = m.read(sspace, cl, ea["src"], n).copy()
    m.check("sp", to, ea["dst"], n)
    return Effect([("sp", to, ea["dst"], data, 0)],
                  [Access(sspace, cl, ea["src"], 1, n, n, False), Access("sp", to, ea["dst"], 1, n, n, True)],
                  info={"nbytes": n})


@semantics("bcast")
def _bcast(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, n, sspace = ins.cluster, ins["bytes"], ins["src"].space
    src_cl = cl if sspace == "sp" else 0
    data = m.read(sspace, src_cl, ea["src"], n).copy()
    members = m.group(ins["grp"])
    acc = [Access(sspace, src_cl, ea["src"], 1, n, n, False)]
    writes = []
    for mb in members:
        m.check("sp", mb, ea["dst"], n)
        # the sender's own copy is the source: nothing to write there, so the sender's
        # reads of that buffer may overlap the multicast
        if sspace == "sp" and mb == cl and ea["dst"] == ea["src"]:
            continue
        writes.append(("sp", mb, ea["dst"], data, 0))
        acc.append(Access("sp", mb, ea["dst"], 1, n, n, True))
    return Effect(writes, acc, info={"nbytes": n, "members": members, "space": sspace,
                                     "written": len(writes),
                                     "runs": np.array([[ea["src"], n]], np.int64)})


@semantics("reduce")
def _reduce(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    cl, n, sspace = ins.cluster, ins["n"], ins["src"].space
    members = m.group(ins["grp"])
    total = np.zeros((1, n), np.float32)
    acc = []
    for mb in members:  # fixed member order: the sum is deterministic
        total = total + m.tile(sspace, mb, ea["src"], 1, n)
        acc.append(Access(sspace, mb, ea["src"], 1, 4 * n, 4 * n, False))
    m.check("sp", cl, ea["dst"], 4 * n)
    acc.append(Access("sp", cl, ea["dst"], 1, 4 * n, 4 * n, True))
    return Effect([("sp", cl, ea["dst"], total, 0)], acc, info={"nbytes": 4 * n, "members": members})


@semantics("recv", "sync")
def _nothing(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    """Ordering only: recv waits for its send, sync for its tokens."""
    return Effect()


# ---- dispatcher rows ------------------------------------------------------------------------


@semantics("loop", "setar", "addar", "barrier", "halt")
def _ctl(ins: Instruction, ea: dict[str, int], m: Machine) -> Effect:
    """Executed by the dispatcher; ``info['ctl']`` says what it does."""
    return Effect(info={"ctl": (ins.mnemonic, dict(ins.args))})


def apply_ctl(ins: Instruction, ar: list[int]) -> None:
    """Address-register effect of ``setar``/``addar`` (ar0 stays 0)."""
    r = ins["ar"]
    if r:
        ar[r] = ins["value"] if ins.mnemonic == "setar" else ar[r] + ins["value"]


def advance_loops(pc: int, loops: list[list[int]]) -> int:
    """The dispatcher's next pc at a hardware-loop back-edge.

    ``loops`` is the stack of open loops as ``[body_start, body_end, iterations_left]``;
    reaching ``body_end`` jumps back while iterations remain and pops the loop otherwise
    (several nested loops may end at the same pc)."""
    while loops and pc == loops[-1][1]:
        if loops[-1][2] > 1:
            loops[-1][2] -= 1
            return loops[-1][0]
        loops.pop()
    return pc


__all__ = [
    "SEMANTICS",
    "SPECIAL",
    "UNARY",
    "VIEW_FIELDS",
    "Access",
    "DecodeCache",
    "Effect",
    "Machine",
    "RunGrid",
    "SemanticError",
    "advance_loops",
    "apply_ctl",
    "bf16_round",
    "codec_counts",
    "operand_view",
    "read_packed",
    "read_packed_counts",
    "vfn",
    "view_is_injective",
    "view_span",
    "write_view",
]
