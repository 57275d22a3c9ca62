"""Instructions, programs, symbols and debug locations: the in-memory form of an ACF program."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from acf.isa.fields import INT_KINDS, FieldError
from acf.isa.spec import (
    BY_MNEMONIC,
    CLUSTER_UNITS,
    HEADER_FIELDS,
    HEADER_KINDS,
    Op,
    token_counter,
    unit_of,
)


@dataclass(frozen=True)
class Instruction:
    """One instruction: a table row plus operand values (header fields included when queued).

    ``args`` maps every field name of the row (and ``cl``, ``wait0``, ``wait1``, ``sig0``,
    ``sig1`` for queued rows) to its value. Construct through :func:`make` to validate.
    """

    op: Op
    args: dict[str, Any]

    @property
    def mnemonic(self) -> str:
        return self.op.mnemonic

    @property
    def unit(self) -> str:
        return unit_of(self.op, self.args)

    @property
    def cluster(self) -> int:
        return int(self.args.get("cl", 0))

    @property
    def waits(self) -> tuple[int, ...]:
        return tuple(t for t in (self.args.get("wait0", 0), self.args.get("wait1", 0)) if t)

    @property
    def signals(self) -> tuple[int, ...]:
        return tuple(t for t in (self.args.get("sig0", 0), self.args.get("sig1", 0)) if t)

    @property
    def owner(self) -> int | None:
        """The cluster whose local tokens this instruction names (``None``: the global units)."""
        return self.cluster if self.unit in CLUSTER_UNITS else None

    @property
    def wait_counters(self) -> tuple[int, ...]:
        """The token counters it consumes (:func:`acf.isa.spec.token_counter`)."""
        owner = self.owner
        return tuple(token_counter(t, owner) for t in self.waits)

    @property
    def signal_counters(self) -> tuple[int, ...]:
        owner = self.owner
        return tuple(token_counter(t, owner) for t in self.signals)

    def __getitem__(self, name: str) -> Any:
        return self.args[name]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return self.op.mnemonic == other.op.mnemonic and _norm(self.args) == _norm(other.args)

    def __hash__(self) -> int:
        return hash((self.op.mnemonic, tuple(sorted(_norm(self.args).items()))))

    def __repr__(self) -> str:
        return f"Instruction({self.op.mnemonic}, {self.args})"


def _norm(args: dict[str, Any]) -> dict[str, Any]:
    # Floats compare bit-exactly (NaN equals NaN, -0.0 differs from 0.0).
    import struct

    out = {}
    for k, v in args.items():
        out[k] = ("f32", struct.pack("<f", v)) if isinstance(v, float) else v
    return out


def make(mnemonic: str, **args: Any) -> Instruction:
    """Build and validate an instruction: ``make("mm", cl=0, dst=MemRef("acc", 0), ...)``.

    Fields with defaults may be omitted; header fields default to 0. Raises FieldError
    naming the field for any out-of-range value, unknown field or missing field.
    """
    op = BY_MNEMONIC.get(mnemonic)
    if op is None:
        raise FieldError(f"unknown instruction {mnemonic!r}")
    return make_op(op, args)


_NO_DEFAULT = object()
# id(op) -> (op, field names incl. header, per field: (name, kind, default, int range or None))
_PLANS: dict[int, tuple[Op, frozenset[str], tuple[tuple[str, Any, Any, Any], ...]]] = {}


def _plan(op: Op) -> tuple[Op, frozenset[str], tuple[tuple[str, Any, Any, Any], ...]]:
    entry = _PLANS.get(id(op))
    if entry is None or entry[0] is not op:  # the op is held, so its id is never reused
        rows = [(h, HEADER_KINDS[h], 0) for h in HEADER_FIELDS] if op.queued else []
        rows += [(f.name, f.kind, _NO_DEFAULT if f.default is None else f.default) for f in op.fields]
        plan = tuple((name, kind, default, kind.int_range() if kind.name in INT_KINDS else None)
                     for name, kind, default in rows)
        entry = _PLANS[id(op)] = (op, frozenset(r[0] for r in rows), plan)
    return entry


def make_op(op: Op, args: dict[str, Any]) -> Instruction:
    _, known, plan = _plan(op)
    if not known.issuperset(args):
        name = next(n for n in args if n not in known)
        raise FieldError(f"{op.mnemonic}: unknown field '{name}'")
    full: dict[str, Any] = {}
    for name, kind, default, rng in plan:
        value = args.get(name, default)
        if value is _NO_DEFAULT:
            raise FieldError(f"{op.mnemonic}: missing field '{name}'")
        if rng is not None and value.__class__ is int and rng[0] <= value <= rng[1]:
            full[name] = value  # an in-range int: what Kind.check would return
        else:
            full[name] = kind.check(name, value)
    return Instruction(op, full)


@dataclass(frozen=True)
class Symbol:
    """A named tensor or buffer: ``.tensor W dram 0x1000 f32[64,64] csr tile[32,32]``.

    Dense tensors are stored raw, row-major. A sparse tensor is stored as a grid of packed
    tiles (``tile``; the whole tensor is one tile when empty), each in a fixed slot sized
    for a fully dense tile, so masks can change at run time without moving anything
    (see :mod:`acf.isa.symbols`).
    """

    name: str
    space: str
    addr: int
    shape: tuple[int, ...]
    dtype: str = "f32"
    fmt: str = "dense"
    cluster: int = 0  # for on-chip spaces (sp, acc)
    tile: tuple[int, ...] = ()  # (rows, cols) of one packed tile of a sparse tensor

    @property
    def nbytes(self) -> int:
        """Bytes the symbol occupies in its memory space (slots included)."""
        from acf.isa.symbols import symbol_nbytes

        return symbol_nbytes(self)


@dataclass(frozen=True)
class SourceLoc:
    """Where an instruction came from: IR op id, user file:line and layer name."""

    file: str = ""
    line: int = 0
    layer: str = ""
    op_id: int = -1

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file else "?"
        return f"{where}" + (f" ({self.layer})" if self.layer else "")


@dataclass
class Program:
    """A whole ACF program: instructions plus symbols, labels, debug info and its target."""

    instructions: list[Instruction] = field(default_factory=list)
    symbols: dict[str, Symbol] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    debug: dict[int, SourceLoc] = field(default_factory=dict)
    target: str = ""
    #: initial contents of symbols (``.data``): little-endian f32 of every element, placed
    #: before the run as inputs are (an input of the same name replaces it); a compiled
    #: program's constants and optimizer hyperparameters
    data: dict[str, bytes] = field(default_factory=dict)
    #: instruction index -> its line in the assembly text it was assembled from (not
    #: serialized: diagnostics of the run that assembled it name the line)
    asm_lines: dict[int, int] = field(default_factory=dict, compare=False, repr=False)
    #: symbol name -> (line, column) of its ``.tensor`` in that text (not serialized either)
    symbol_lines: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.instructions)

    def label_at(self, addr: int) -> list[str]:
        return [name for name, a in self.labels.items() if a == addr]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a large program is built or run.

    Building or emulating a program allocates hundreds of thousands of long-lived objects
    (instructions and their operand dicts, records) and no garbage cycles worth collecting;
    every full collection rescans all of them. A ResNet-18 batch-16 compile took 6-10 s
    with it running and 2.2 s without; emulation gains about 6 %."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
