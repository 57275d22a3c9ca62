"""What a kernel emitter works with: its op, buffers, on-chip slots and per-cluster streams.

Kernels call :meth:`KernelContext.load` / :meth:`KernelContext.store` to move tiles between
DRAM buffers (dense or packed sparse tiles) and scratchpad slots, and
:meth:`KernelContext.emit` for everything else; every instruction carries the op's
:class:`SourceLoc`. Slots come from a per-kernel allocator shared by all clusters (each
cluster has its own scratchpad, so the same layout serves all).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from acf.isa.fields import FmtSpec, MemRef
from acf.isa.program import SourceLoc
from acf.isa.symbols import slot_bytes, tile_address
from acf.isa.target import Target

from ..dialect import AttrView, attrs_of
from ..ir import Operation, Value
from .errors import error_at
from .memory import Buffer
from .placement import Placement, round_robin
from .schedule import ClusterStream, Slot
from .tiling import Tiling

SLOT_ALIGN = 64
MCAST_GROUPS = 16  # noc.mcast's 4-bit group id
SCALAR_FREG = 8  # fr8..fr15 hold broadcast scalars; fr0..fr7 optimizer hyperparameters


@dataclass
class OpStats:
    """Per-op summary numbers."""

    name: str
    instructions: int = 0
    macs: int = 0
    dram_bytes: int = 0


@dataclass
class HyperSlot:
    """Where one optimizer op's hyperparameters live in the ``hyper`` tensor."""

    op_id: int
    op: str
    offset: int
    names: tuple[str, ...]
    defaults: tuple[float, ...]
    #: Adam's step: the input symbol that holds it (a function argument), or its value
    #: (a constant), if any
    step_input: str | float | None = None


@dataclass
class HyperTable:
    """Layout of the ``hyper`` DRAM tensor the runtime fills (8 floats per optimizer op)."""

    slots: list[HyperSlot] = field(default_factory=list)
    stride: int = 8

    def add(self, op_id: int, op: str, names: tuple[str, ...], defaults: tuple[float, ...],
            step_input: str | float | None = None) -> int:
        offset = len(self.slots) * self.stride
        self.slots.append(HyperSlot(op_id, op, offset, names, defaults, step_input))
        return offset

    @property
    def size(self) -> int:
        return len(self.slots) * self.stride


class Allocator:
    """Bump allocation of scratchpad / accumulator slots for one kernel."""

    def __init__(self, ctx: KernelContext) -> None:
        self.ctx = ctx
        self.top = {"sp": 0, "acc": 0}

    def __call__(self, space: str, nbytes: int) -> Slot:
        limit = self.ctx.tiling.spad_bytes if space == "sp" else self.ctx.tiling.acc_bytes
        addr = self.top[space]
        size = -(-max(nbytes, 4) // SLOT_ALIGN) * SLOT_ALIGN
        if addr + size > limit:
            what = "scratchpad" if space == "sp" else "accumulator"
            raise error_at(self.ctx.op, f"needs more than the {limit}-byte {what} of "
                                        f"{self.ctx.target.name} ({addr + size} bytes)")
        self.top[space] = addr + size
        return Slot(space, addr, size)


class KernelContext:
    """One op being lowered: its operands' buffers, slots, streams and statistics."""

    def __init__(self, op: Operation, op_id: int, loc: SourceLoc, target: Target,
                 tiling: Tiling, buffers: dict[Value, Buffer], hyper: HyperTable,
                 placement: Placement = round_robin) -> None:
        self.op, self.op_id, self.loc = op, op_id, loc
        self.target, self.tiling, self.buffers, self.hyper = target, tiling, buffers, hyper
        self.placement = placement
        gx, gy = target.fabric.grid
        self.streams = [ClusterStream(c) for c in range(int(gx) * int(gy))]
        self.phases: list[list[ClusterStream]] = []
        self.alloc = Allocator(self)
        self.stats = OpStats(op.name)
        self.scalar_loaded: set[tuple[int, int]] = set()
        self.views: dict[tuple[int, int], tuple[int, ...]] = {}  # (cluster, vr) -> set
        # slots reusing others' memory (see share), by identity: a shared slot may equal
        # one of the slots it overlaps (same range), which must not expand
        self.aliases: dict[int, tuple[Slot, tuple[Slot, ...]]] = {}
        self.scratch: list[Buffer] = []  # the op's DRAM scratch (kernels.scratch)
        self.options: Any = None  # the CompileOptions (lower sets it)
        self.multicast = True  # whether kernels may multicast shared tiles (lower sets it)
        # multicast groups of the program (lower shares them) and those this kernel adds
        self.mcast_groups: dict[tuple[int, int, int, int], int] = {}
        self.new_groups: list[tuple[tuple[int, int, int, int], int]] = []

    # ---- operands -------------------------------------------------------------------------
    @property
    def attrs(self) -> AttrView:
        return attrs_of(self.op)

    def buf(self, value: Value) -> Buffer:
        return self.buffers[value]

    @property
    def ins(self) -> list[Buffer]:
        return [self.buffers[v] for v in self.op.operands]

    @property
    def outs(self) -> list[Buffer]:
        return [self.buffers[v] for v in self.op.results]

    def error(self, message: str) -> Exception:
        return error_at(self.op, message)

    def operand_density(self, index: int) -> float:
        """Expected fraction of non-zeros of operand ``index``, for a kernel's cost estimates
        only (never for correctness: the data may differ). The ``density`` attribute of the
        function argument it comes from, directly or through ``mask_apply`` and shape ops
        (the runtime sets it on masked parameters from their bound masks; the smaller of a
        weight's and its mask's); else 0.5 for a value whose zeros a ReLU makes (its
        ``sparsity`` annotation, or a ReLU fused into its producer); else 1."""
        value = self.op.operands[index]
        found = 1.0
        while True:
            op = value.defining_op
            if op is None:
                attrs = value.owner.arg_attributes[value.index]  # type: ignore[union-attr]
                if "density" in attrs:
                    return min(found, float(attrs["density"]))  # type: ignore[arg-type]
                return min(found, _relu_density(attrs.get("sparsity")))
            if op.name == "graph.mask_apply":
                mask = op.operands[1]
                if mask.defining_op is None:
                    attrs = mask.owner.arg_attributes[mask.index]  # type: ignore[union-attr]
                    found = min(found, float(attrs.get("density", 1.0)))  # type: ignore[arg-type]
                value = op.operands[0]
                continue
            if op.name in ("graph.reshape", "graph.transpose"):
                value = op.operands[0]
                continue
            if op.name == "graph.one_hot":  # one non-zero per row of classes
                return min(found, 1.0 / int(op.attributes["classes"]))  # type: ignore[arg-type]
            if value.index == 0 and op.attributes.get("activation") == "relu":  # a fused ReLU
                return min(found, _relu_density("relu"))
            note = op.attributes.get("sparsity")
            if isinstance(note, list):
                note = note[value.index] if value.index < len(note) else None
            return min(found, _relu_density(note))

    def place(self, tiles: list[Any]) -> Iterator[tuple[int, Any]]:
        return iter(self.placement(tiles, self.target))

    def barrier(self) -> None:
        """End a phase: later instructions may read what earlier ones stored to DRAM.

        Every instruction of the phase has ended at the barrier, so the next phase
        allocates its slots afresh (slots must not be used across a barrier)."""
        self.phases.append(self.streams)
        self.streams = [ClusterStream(s.cl) for s in self.streams]
        self.alloc = Allocator(self)
        self.scalar_loaded.clear()

    def all_phases(self) -> list[list[ClusterStream]]:
        return [p for p in self.phases + [self.streams] if any(s.items for s in p)]

    # ---- instructions ---------------------------------------------------------------------
    def emit(self, cl: int, mnemonic: str, reads: tuple[Slot, ...] = (),
             writes: tuple[Slot, ...] = (), **args: Any) -> int:
        if self.aliases:  # an access to a shared range also reads/writes what it overlaps
            reads, writes = self._expand(reads), self._expand(writes)
        return self.streams[cl].emit(mnemonic, self.loc, reads, writes, args)

    def mcast_group(self, x0: int, y0: int, x1: int, y1: int) -> int | None:
        """The multicast group id of a cluster rectangle, configured before this kernel
        when new (``noc.mcast``); None when all 16 ids are taken."""
        rect = (x0, y0, x1, y1)
        grp = self.mcast_groups.get(rect)
        if grp is None:
            if len(self.mcast_groups) >= MCAST_GROUPS:
                return None
            grp = self.mcast_groups[rect] = len(self.mcast_groups)
            self.new_groups.append((rect, grp))
        return grp

    def bcast(self, cl: int, grp: int, slot: Slot, nbytes: int, receivers: list[int]) -> int:
        """Multicast the first ``nbytes`` of ``slot`` on cluster ``cl`` to the same slot of
        every cluster of group ``grp`` (``receivers``: its members but ``cl``); each
        receiver's stream orders the write among its own accesses to the slot. The sender's
        own copy is the source and is not written (``bcast`` semantics), so the sender's
        reads of it (its own ``mm``) need not wait for the multicast, only its next write."""
        index = self.emit(cl, "bcast", reads=(slot,), writes=(), grp=grp, dst=slot.ref(),
                          src=slot.ref(), bytes=nbytes)
        slots = self._expand((slot,)) if self.aliases else (slot,)
        for r in receivers:
            self.streams[r].remote_write(slots, (cl, index), self.loc)
        return index

    def _expand(self, slots: tuple[Slot, ...]) -> tuple[Slot, ...]:
        out: tuple[Slot, ...] = ()
        for x in slots:
            entry = self.aliases.get(id(x))
            out += (x, *entry[1]) if entry is not None and entry[0] is x else (x,)
        return out

    def share(self, slot: Slot, others: tuple[Slot, ...]) -> None:
        """``slot`` reuses the memory of ``others`` while they are dead: an access to it
        counts as the same access to each of them, so it is ordered after their earlier
        uses and their later uses after it. (Only this direction: ``others`` stay
        independent of one another, e.g. double buffers.)"""
        self.aliases[id(slot)] = (slot, others)

    def _tile_coords(self, buf: Buffer, r0: int, c0: int, rows: int, cols: int) -> tuple[int, int]:
        tr, tc = buf.tile
        R, C = buf.rows_cols  # a sparse tensor of higher rank: its dim 0 x the others
        if r0 % tr or c0 % tc or rows != min(tr, R - r0) or cols != min(tc, C - c0):
            raise self.error(f"internal error: {rows}x{cols} access at ({r0},{c0}) is not "
                             f"a packed {tr}x{tc} tile")
        return r0 // tr, c0 // tc

    def load(self, cl: int, buf: Buffer, r0: int, c0: int, rows: int, cols: int, slot: Slot,
             base: int = 0) -> int:
        """``ld`` a rows x cols tile at (r0, c0) of the 2-D view of ``buf`` into ``slot``.

        ``base`` is a byte offset (batch) into a dense buffer."""
        self.stats.dram_bytes += 4 * rows * cols
        if buf.sparse:
            ti, tj = self._tile_coords(buf, r0, c0, rows, cols)
            src = MemRef("dram", tile_address(buf.symbol(), ti, tj))
            return self.emit(cl, "ld", writes=(slot,), dst=slot.ref(), src=src,
                             fmt=FmtSpec.parse(buf.fmt), rows=rows, cols=cols)
        pitch = buf.rows_cols[1]
        src = MemRef("dram", buf.addr + base + 4 * (r0 * pitch + c0))
        return self.emit(cl, "ld", writes=(slot,), dst=slot.ref(), src=src,
                         fmt=FmtSpec("dense"), rows=rows, cols=cols,
                         stride=0 if pitch == cols else pitch)

    def store(self, cl: int, buf: Buffer, r0: int, c0: int, rows: int, cols: int, slot: Slot,
              base: int = 0) -> int:
        """``st`` a tile from ``slot`` to (r0, c0) of ``buf`` (encoding packed tiles)."""
        self.stats.dram_bytes += 4 * rows * cols
        if buf.sparse:
            ti, tj = self._tile_coords(buf, r0, c0, rows, cols)
            sym = buf.symbol()
            return self.emit(cl, "st", reads=(slot,), dst=MemRef("dram", tile_address(sym, ti, tj)),
                             src=slot.ref(), fmt=FmtSpec.parse(buf.fmt), rows=rows, cols=cols,
                             cap=slot_bytes(sym))
        pitch = buf.rows_cols[1]
        dst = MemRef("dram", buf.addr + base + 4 * (r0 * pitch + c0))
        return self.emit(cl, "st", reads=(slot,), dst=dst, src=slot.ref(), fmt=FmtSpec("dense"),
                         rows=rows, cols=cols, stride=0 if pitch == cols else pitch)

    def ldg(self, cl: int, slot: Slot, addr: int, dims: tuple[int, int, int],
            strides: tuple[int, int, int], offset: int = 0) -> int:
        """``ldg`` a d0 x d1 x d2 block at DRAM byte ``addr`` (element strides) into ``slot``."""
        d0, d1, d2 = dims
        s0, s1, s2 = (st if d > 1 else 0 for st, d in zip(strides, dims))
        if s2 > 0xFFFF or s1 > 0xFFFFFF or s0 > 0xFFFFFFFF:
            raise self.error(f"gather strides {strides} exceed the ldg fields (16/24/32 bits)")
        self.stats.dram_bytes += 4 * d0 * d1 * d2
        return self.emit(cl, "ldg", writes=(slot,), dst=slot.ref(offset), src=MemRef("dram", addr),
                         d0=d0, d1=d1, d2=d2, s0=s0, s1=s1, s2=s2)

    def gather_sp(self, cl: int, slot: Slot, src: Slot, src_offset: int, dims: tuple[int, int, int],
                  strides: tuple[int, int, int], offset: int = 0) -> int:
        """On-chip ``ldg``: a d0 x d1 x d2 strided block of the resident ``src`` slot (from
        element ``src_offset``) into ``slot`` (+ byte ``offset``); no DRAM or NoC traffic."""
        d0, d1, d2 = dims
        s0, s1, s2 = (st if d > 1 else 0 for st, d in zip(strides, dims))
        return self.emit(cl, "ldg", reads=(src,), writes=(slot,), dst=slot.ref(offset),
                         src=src.ref(4 * src_offset), d0=d0, d1=d1, d2=d2, s0=s0, s1=s1, s2=s2)

    def ld_at(self, cl: int, slot: Slot, addr: int, rows: int, cols: int, stride: int = 0) -> int:
        """Dense ``ld`` of rows x cols at DRAM byte ``addr`` (row pitch ``stride`` elements)."""
        self.stats.dram_bytes += 4 * rows * cols
        return self.emit(cl, "ld", writes=(slot,), dst=slot.ref(), src=MemRef("dram", addr),
                         fmt=FmtSpec("dense"), rows=rows, cols=cols,
                         stride=0 if stride in (0, cols) or rows == 1 else stride)

    def st_at(self, cl: int, slot: Slot, addr: int, rows: int, cols: int, stride: int = 0,
              offset: int = 0) -> int:
        """Dense ``st`` of rows x cols from ``slot`` (+ byte ``offset``) to DRAM byte ``addr``."""
        self.stats.dram_bytes += 4 * rows * cols
        return self.emit(cl, "st", reads=(slot,), dst=MemRef("dram", addr), src=slot.ref(offset),
                         fmt=FmtSpec("dense"), rows=rows, cols=cols,
                         stride=0 if stride in (0, cols) or rows == 1 else stride)

    def view(self, cl: int, vr: int, d2: int, s0: int, s1: int, s2: int, d1: int = 0, s3: int = 0) -> int:
        """View register ``vr`` of cluster ``cl``'s MAC unit (``mview``, emitted only when
        it changes): an mm operand read through it is the strided block whose element
        (r, c) lies ``r*s0 + b*s3 + u*s1 + (c % d2)*s2`` elements after its address, ``u``
        the run of ``d2`` columns within its block ``b`` of ``d1`` runs (``d1 = 0``: one
        block). Returns ``vr`` for the mm's ``va``/``vb`` field."""
        v = (d1, d2, s0, s1, s2, s3)
        if self.views.get((cl, vr)) != v:
            if d1 > 0xFFFF or d2 > 0xFFFF or s0 > 0xFFFFFFFF or s1 > 0xFFFFFF or s2 > 0xFFFF \
                    or s3 > 0xFFFFFFFF:
                raise self.error(f"operand view {v} exceeds the mview fields")
            self.emit(cl, "mview", vr=vr, d2=d2, s0=s0, s1=s1, s2=s2, d1=d1, s3=s3)
            self.views[cl, vr] = v
        return vr

    def vop(self, cl: int, fn: str, dst: Slot, a: Slot, rows: int, cols: int,
            b: Slot | None = None, bmode: str = "tile", imm: float = 0.0) -> int:
        reads = (a,) if b is None or b == a else (a, b)
        args: dict[str, Any] = {"fn": fn, "dst": dst.ref(), "a": a.ref(), "rows": rows,
                                "cols": cols, "bmode": bmode, "imm": float(imm)}
        if b is not None:
            args["b"] = b.ref()
        return self.emit(cl, "vop", reads=reads, writes=(dst,), **args)

    def vred(self, cl: int, fn: str, dst: Slot, a: Slot, rows: int, cols: int, axis: int,
             accum: bool = False) -> int:
        reads = (a, dst) if accum else (a,)
        return self.emit(cl, "vred", reads=reads, writes=(dst,), fn=fn, dst=dst.ref(), a=a.ref(),
                         rows=rows, cols=cols, axis=axis, accum=int(accum))

    def scalar_to_freg(self, cl: int, buf: Buffer, slot: Slot, freg: int = SCALAR_FREG) -> None:
        """Load a one-element tensor into float register ``freg`` of cluster ``cl`` (once)."""
        if (cl, freg) in self.scalar_loaded:
            return
        self.scalar_loaded.add((cl, freg))
        self.load(cl, buf, 0, 0, 1, 1, slot)
        self.emit(cl, "fld", reads=(slot,), fd=freg, src=slot.ref())


def tiles_2d(rows: int, cols: int, tr: int, tc: int) -> list[tuple[int, int, int, int]]:
    """(r0, c0, h, w) of a row-major grid of tr x tc tiles over rows x cols."""
    return [(r0, c0, min(tr, rows - r0), min(tc, cols - c0))
            for r0 in range(0, rows, tr) for c0 in range(0, cols, tc)]


def numel(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _relu_density(note: object) -> float:
    """The density a ``sparsity`` annotation implies for cost estimates: a ReLU (or its
    backward) zeroes about half of its values."""
    return 0.5 if isinstance(note, str) and "relu" in note else 1.0
