"""Memory planning: a DRAM buffer for every value of a function.

Arguments and results become ``.tensor`` symbols named after the IR argument names and
``result0``, ``result1``... so the runtime binds inputs and reads outputs by name. A tensor
whose type carries a sparse encoding is a tiled sparse symbol in that format
(``encoding_to_format``) with the tile shape the tiler chose; everything else is dense,
row-major. Every buffer starts on the target's DRAM interleave period (``dram_align``; 2 KB
on acf-base) and intermediates are bump-allocated, a buffer reused (first fit) after the
last use of every value it holds. ``graph.reshape`` of a dense value
aliases its operand's buffer, as does ``graph.one_hot`` of its (one-hot stored) indices.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from acf.isa.program import Symbol
from acf.isa.symbols import as_2d_shape, symbol_nbytes
from acf.isa.target import Target

from ..ir import FuncOp, Operation, TensorType, Value
from ..sparse_encoding import encoding_to_format

ALIGN = 64
BASE = 0x1000


@dataclass(frozen=True)
class Buffer:
    """Where a value lives in DRAM, in which format (tile = packed tile shape if sparse)."""

    addr: int
    shape: tuple[int, ...]
    fmt: str = "dense"
    tile: tuple[int, int] = (0, 0)
    name: str = ""

    @property
    def rows_cols(self) -> tuple[int, int]:
        """The 2-D view: leading dims x last dim (a scalar is 1 x 1); a sparse tensor's
        is the one its packed tiles cover, dim 0 x the others (``isa.symbols.as_2d_shape``)."""
        if not self.shape:
            return (1, 1)
        if self.sparse:
            return as_2d_shape(self.shape)
        return (math.prod(self.shape[:-1]), self.shape[-1])

    @property
    def sparse(self) -> bool:
        return self.fmt != "dense"

    def symbol(self) -> Symbol:
        return Symbol(
            self.name,
            "dram",
            self.addr,
            self.shape,
            "f32",
            self.fmt,
            tile=self.tile if self.sparse else (),
        )

    @property
    def nbytes(self) -> int:
        return self.symbol().nbytes if self.sparse else 4 * math.prod(self.shape)


def dram_align(target: Target) -> int:
    """The DRAM interleave period (``channels x interleave_bytes``, docs/timing.md section 6)
    rounded up to a multiple of ``ALIGN``: a buffer starting on it puts byte ``b`` of itself
    on channel ``(b // interleave) % channels`` wherever it lives, the mapping the GEMM
    kernel's k-chunk order and the cost model's replay (``cost_model._Dram``) assume."""
    period = int(target.dram.channels) * int(target.dram.interleave_bytes)
    return math.lcm(ALIGN, period)


def value_format(value: Value) -> str:
    t = value.type
    if isinstance(t, TensorType) and t.encoding is not None:
        return encoding_to_format(t.encoding)
    return "dense"


def _align(n: int, align: int = ALIGN) -> int:
    return -(-n // align) * align


class Heap:
    """Bump allocation with first-fit reuse of freed blocks."""

    def __init__(self, start: int, align: int = ALIGN) -> None:
        self.align = align
        self.top = _align(start, align)
        self.free: list[tuple[int, int]] = []  # (addr, size)

    def alloc(self, nbytes: int) -> int:
        size = _align(max(nbytes, 1), self.align)
        for i, (addr, have) in enumerate(self.free):
            if have >= size:
                if have > size:
                    self.free[i] = (addr + size, have - size)
                else:
                    del self.free[i]
                return addr
        addr, self.top = self.top, self.top + size
        return addr

    def release(self, addr: int, nbytes: int) -> None:
        self.free.append((addr, _align(max(nbytes, 1), self.align)))
        self.free.sort()


class GuardedHeap(Heap):
    """A heap whose blocks keep ``guard`` unused bytes on each side (see ``plan_memory``)."""

    def __init__(self, start: int, guard: int, align: int = ALIGN) -> None:
        super().__init__(start, align)
        self.guard = _align(guard, align) if guard else 0  # blocks and buffers stay aligned

    def alloc(self, nbytes: int) -> int:
        return super().alloc(nbytes + 2 * self.guard) + self.guard

    def release(self, addr: int, nbytes: int) -> None:
        super().release(addr - self.guard, nbytes + 2 * self.guard)


@dataclass
class MemoryPlan:
    """Buffers of every value, the symbols to declare, and the DRAM high-water mark."""

    buffers: dict[Value, Buffer]
    symbols: dict[str, Symbol]
    top: int
    scratch: dict[int, list[Buffer]] | None = None  # op index -> its scratch buffers


def plan_memory(
    func: FuncOp,
    tile: tuple[int, int],
    extra: dict[str, tuple[int, ...]],
    arg_shapes: dict[Value, tuple[int, ...]] | None = None,
    named: dict[Value, str] | None = None,
    scratch_of: Callable[[Operation], list[tuple[int, ...]]] | None = None,
    guard: int = 0,
    align: int = ALIGN,
) -> MemoryPlan:
    """Assign DRAM to ``func``'s arguments, results and intermediates.

    ``extra`` names additional dense symbols (``hyper``, constants) with their shapes;
    ``arg_shapes`` overrides the stored shape of an argument (one-hot labels);
    ``scratch_of(op)`` lists the shapes of dense DRAM scratch buffers an op's kernel needs
    (padded inputs, tap-major partial results); they live only while that op runs.
    ``guard``: unused bytes kept before and after every buffer, so that a kernel may read a
    little past a tensor's ends (a conv slab under the zero border, zeroed on chip) without
    touching, or racing with, any other buffer.
    ``align``: every buffer's address is a multiple of it (``dram_align``: the DRAM
    interleave period, so a tensor's tiles fall on the channels its own offsets say).
    """
    buffers: dict[Value, Buffer] = {}
    symbols: dict[str, Symbol] = {}
    top = BASE
    arg_shapes = arg_shapes or {}

    def declare(name: str, shape: tuple[int, ...], fmt: str) -> Buffer:
        nonlocal top
        top = _align(top + guard, align)
        buf = Buffer(top, shape, fmt, tile if fmt != "dense" else (0, 0), name)
        symbols[name] = buf.symbol()
        top = _align(top + max(symbol_nbytes(symbols[name]), 4) + guard, align)
        return buf

    for arg in func.arguments:
        shape = arg_shapes.get(arg, arg.type.shape)  # type: ignore[union-attr]
        buffers[arg] = declare(arg.name_hint or f"arg{arg.index}", shape, value_format(arg))
    ret = func.return_op
    returned = list(ret.operands) if ret is not None else []
    result_buf: dict[Value, Buffer] = {}
    for i, v in enumerate(returned):
        buf = declare(f"result{i}", v.type.shape, value_format(v))  # type: ignore[union-attr]
        if v not in result_buf and v not in buffers:
            result_buf[v] = buf
    extra_buf = {name: declare(name, shape, "dense") for name, shape in extra.items()}
    for v, name in (named or {}).items():
        buffers[v] = extra_buf[name]

    ops = func.body.ops
    last_use: dict[Value, int] = {}
    for i, op in enumerate(ops):
        for v in op.operands:
            last_use[v] = i
    alias_root: dict[Value, Value] = {}
    heap = GuardedHeap(top, guard, align)
    held: dict[Value, Buffer] = {}  # root value -> heap buffer
    scratch: dict[int, list[Buffer]] = {}
    for i, op in enumerate(ops):
        if op.name == "graph.return":
            break
        shapes = scratch_of(op) if scratch_of is not None else []
        if shapes:
            scratch[i] = [Buffer(heap.alloc(4 * math.prod(sh)), tuple(sh)) for sh in shapes]
        for r in op.results:
            if r in buffers:
                continue
            if r in result_buf:
                buffers[r] = result_buf[r]
            elif _aliases(op) and not buffers[op.operands[0]].sparse:
                src = buffers[op.operands[0]]
                buffers[r] = Buffer(src.addr, r.type.shape, "dense", name=src.name)  # type: ignore[union-attr]
                alias_root[r] = alias_root.get(op.operands[0], op.operands[0])
            else:
                fmt = value_format(r)
                probe = Buffer(0, r.type.shape, fmt, tile if fmt != "dense" else (0, 0))  # type: ignore[union-attr]
                buffers[r] = Buffer(heap.alloc(probe.nbytes), probe.shape, fmt, probe.tile)
                held[r] = buffers[r]
        for v in set(op.operands) | set(op.results):
            _release_if_dead(v, i, last_use, alias_root, held, heap)
        for b in scratch.get(i, []):
            heap.release(b.addr, b.nbytes)
    return MemoryPlan(buffers, symbols, heap.top, scratch)


def _aliases(op: Operation) -> bool:
    """Ops whose result is their operand's bytes: a reshape, and a one-hot of indices the
    runtime already stored one-hot (``lower._one_hot_inputs``)."""
    return op.name in ("graph.reshape", "graph.one_hot")


def _release_if_dead(
    v: Value,
    i: int,
    last_use: dict[Value, int],
    alias_root: dict[Value, Value],
    held: dict[Value, Buffer],
    heap: Heap,
) -> None:
    root = alias_root.get(v, v)
    if root not in held:
        return
    group = [root] + [a for a, r in alias_root.items() if r is root]
    if all(last_use.get(a, -1) <= i for a in group):
        buf = held.pop(root)
        heap.release(buf.addr, buf.nbytes)
