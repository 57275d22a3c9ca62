"""Breakpoints and watchpoints: how they are written, resolved and matched against events.

Breakpoint locations (``break LOC [UNIT] [if COND]``)::

    12 / 0xc        instruction address          body / body+2   label (+ offset)
    body c0.vec     first instruction at or after label body that runs on c0.vec
    c0.mac / dma    any instruction starting on a unit's queue
    mm / dma.ld     any instruction with that mnemonic
    cycle 1200      the clock reaching a cycle (stops before the first event at or after it)
    if t3 > 1       no location: stops when the condition becomes true

A condition is evaluated at every event; where it cannot be (``1/(cycle-11)`` at cycle 11)
the breakpoint stops there, saying why, as if it held.

Instructions the dispatcher runs itself (``loop``, ``setar``, ``addar``, ``barrier``,
``halt``) never start or retire on a unit, so no breakpoint can stop at them: one is
refused, naming the next instruction a unit runs.

Watchpoints (``watch [-read|-write|-change|-nan] WHAT``): WHAT is a ``.tensor`` name or a
byte range ``[cK.]SPACE[LO:HI]`` / ``[cK.]SPACE[ADDR]`` (4 bytes). ``-write`` (default)
fires when a retiring instruction writes the range, ``-read`` when a starting instruction
reads it, ``-change`` when a write changes its bytes, ``-nan`` when a write leaves a NaN or
Inf in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from acf.debugger.expr import Expr
from acf.isa.program import Program
from acf.isa.spec import BY_MNEMONIC, CLUSTER_UNITS, GLOBAL_UNITS

Range = tuple[str, int, int, int]  # (space, cluster, lo, hi)
_RANGE = re.compile(r"(?:c(\d+)\.)?(dram|gb|sp|acc)\[\s*([^\]:]+?)\s*(?::\s*([^\]]+?)\s*)?\]$")
_UNIT = re.compile(r"c\d+\.({})$".format("|".join(CLUSTER_UNITS)))


class PointError(ValueError):
    """A location or watch expression the program cannot resolve."""


@dataclass
class Breakpoint:
    """``kind`` is ``addr``, ``unit``, ``mnemonic``, ``cycle`` or ``cond``."""

    id: int
    kind: str
    spec: str
    value: Any = None
    cond: Expr | None = None
    enabled: bool = True
    hits: int = 0

    def describe(self) -> str:
        text = f"{self.kind} {self.spec}" if self.kind != "cond" else "condition"
        return text + (f" if {self.cond}" if self.cond is not None else "")


@dataclass
class Watchpoint:
    """``kind`` is ``write``, ``read``, ``change`` or ``nan``; ``ranges`` the watched bytes."""

    id: int
    kind: str
    spec: str
    ranges: list[Range]
    symbol: Any = None
    enabled: bool = True
    hits: int = 0

    def describe(self) -> str:
        where = ", ".join(f"{_cl(s, c)}{s}[{lo:#x}:{hi:#x}]" for s, c, lo, hi in self.ranges)
        return f"{self.kind} {self.spec} ({where})"


@dataclass
class Hit:
    """One breakpoint or watchpoint that fired at an event."""

    point: Breakpoint | Watchpoint
    event: Any = None
    detail: str = ""
    points: list = field(default_factory=list)


def _cl(space: str, cl: int) -> str:
    return f"c{cl}." if space in ("sp", "acc") else ""


def resolve_address(prog: Program, text: str) -> int:
    """An address: a number or ``label[+N]``; raises PointError naming what is missing."""
    m = re.fullmatch(r"([A-Za-z_][\w.$]*)\s*(?:\+\s*(\w+))?", text.strip())
    try:
        if m and m.group(1) in prog.labels:
            addr = prog.labels[m.group(1)] + (int(m.group(2), 0) if m.group(2) else 0)
        else:
            addr = int(text, 0)
    except ValueError:
        raise PointError(f"no label {text.strip()!r} in the program") from None
    if not 0 <= addr < len(prog.instructions):
        raise PointError(f"address {addr} is outside the program (0..{len(prog.instructions) - 1})")
    return addr


def is_unit(text: str) -> bool:
    return bool(_UNIT.fullmatch(text)) or text in GLOBAL_UNITS


def make_breakpoint(bid: int, prog: Program, text: str) -> Breakpoint:
    """Parse ``LOC [UNIT] [if COND]`` (see the module doc)."""
    loc, _, cond_text = text.partition(" if ")
    loc = loc.strip()
    if loc.startswith("if ") or loc == "if":
        loc, cond_text = "", loc[3:]
    cond = Expr(cond_text) if cond_text.strip() else None
    if not loc:
        if cond is None:
            raise PointError("break needs a location or a condition")
        return Breakpoint(bid, "cond", "", None, cond)
    words = loc.split()
    if words[0] == "cycle" and len(words) == 2:
        try:
            cycle = int(words[1], 0)
        except ValueError:
            raise PointError(f"expected a cycle number, got {words[1]!r}") from None
        if cycle < 0:
            raise PointError(f"cycle {cycle}: cycles count from 0")
        return Breakpoint(bid, "cycle", words[1], cycle, cond)
    if len(words) == 1 and is_unit(words[0]):
        return Breakpoint(bid, "unit", words[0], words[0], cond)
    if len(words) == 1 and words[0] in BY_MNEMONIC and words[0] not in prog.labels:
        if not BY_MNEMONIC[words[0]].queued:
            raise PointError(f"{words[0]} {_DISPATCHER_RUNS} (break on an instruction a unit "
                             "runs, or on a unit such as c0.vec)")
        return Breakpoint(bid, "mnemonic", words[0], words[0], cond)
    if len(words) > 2 or (len(words) == 2 and not is_unit(words[1])):
        raise PointError(f"cannot read location {loc!r} (LOC [UNIT] [if COND])")
    addr = resolve_address(prog, words[0])
    if len(words) == 2:
        addr = _first_on_unit(prog, addr, words[1], words[0])
    ins = prog.instructions[addr]
    if not ins.op.queued:
        nxt = next((i for i in range(addr + 1, len(prog.instructions))
                    if prog.instructions[i].op.queued), None)
        if nxt is None:
            hint = "no instruction after it runs on a unit"
        else:
            after = prog.instructions[nxt]
            hint = (f"the next one in the program that a unit runs is #{nxt} {after.mnemonic} "
                    f"on {unit_name(after)}: break {nxt}")
        at = "" if re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", words[0]) else f" (at {words[0]})"
        raise PointError(f"#{addr} {ins.mnemonic}{at} {_DISPATCHER_RUNS} ({hint})")
    return Breakpoint(bid, "addr", loc, addr, cond)


# Why a breakpoint on loop, setar, addar, barrier or halt could never stop: the dispatcher
# runs them ahead of the event clock, and stops come from events (starts, retirements).
_DISPATCHER_RUNS = ("runs in the dispatcher, ahead of the units, and never starts or retires: "
                    "a breakpoint on it could never stop")


def _first_on_unit(prog: Program, addr: int, unit: str, loc: str) -> int:
    for i in range(addr, len(prog.instructions)):
        if unit_name(prog.instructions[i]) == unit:
            return i
    raise PointError(f"no instruction on {unit} at or after {loc}")


def unit_name(ins: Any) -> str:
    """``c0.mac`` for cluster units, ``dma``/``cfg``/``ctl`` for the others."""
    return f"c{ins.cluster}.{ins.unit}" if ins.unit in CLUSTER_UNITS else ins.unit


def make_watchpoint(wid: int, prog: Program, kind: str, text: str) -> Watchpoint:
    text = text.strip()
    sym = prog.symbols.get(text)
    if sym is not None:
        if not sym.nbytes:  # no byte of it can be written, read or changed
            raise PointError(f"tensor {text!r} is f32{list(sym.shape)}: it holds no elements, "
                             "so a watch on it could never fire")
        cl = sym.cluster if sym.space in ("sp", "acc") else 0
        return Watchpoint(wid, kind, text, [(sym.space, cl, sym.addr, sym.addr + sym.nbytes)], sym)
    return Watchpoint(wid, kind, text, [parse_range(text, prog)])


def parse_range(text: str, prog: Program) -> Range:
    """``[cK.]SPACE[LO:HI]`` or ``[cK.]SPACE[ADDR]`` (4 bytes); LO may name a symbol."""
    m = _RANGE.fullmatch(text.replace(" ", ""))
    if not m:
        raise PointError(
            f"no tensor or memory range {text!r} (a .tensor name or [cK.]space[lo:hi])"
        )
    cl = int(m.group(1) or 0)
    lo = _number(m.group(3), prog)
    hi = _number(m.group(4), prog) if m.group(4) else lo + 4
    if lo < 0:
        raise PointError(f"negative address {lo} in {text!r}")
    if hi <= lo:
        raise PointError(f"empty range {text!r}")
    return (m.group(2), cl, lo, hi)


def check_range(state: Any, r: Range, text: str) -> None:
    """PointError unless the range lies in a memory of this machine (its cluster one
    that exists): a watch on it could never fire, and reading it would fail later."""
    from acf.isa.semantics import SemanticError

    space, cl, lo, hi = r
    try:
        state.check(space, cl, lo, hi - lo)
    except SemanticError as exc:
        raise PointError(f"{text.strip()}: {exc}") from None


def _number(text: str, prog: Program) -> int:
    total = 0
    for term in text.split("+"):
        sym = prog.symbols.get(term)
        try:
            total += sym.addr if sym is not None else int(term, 0)
        except ValueError:
            raise PointError(f"expected an address, got {term!r}") from None
    return total


def overlaps(a: Range, b: Range) -> bool:
    return a[0] == b[0] and (a[1] == b[1] or a[0] in ("dram", "gb")) and a[2] < b[3] and b[2] < a[3]


def range_bytes(state: Any, r: Range) -> np.ndarray:
    space, cl, lo, hi = r
    return state.buf(space, cl)[lo:hi].copy()


def has_nonfinite(state: Any, wp: Watchpoint) -> bool:
    """Whether the watched values hold a NaN/Inf (sparse tensors are decoded first)."""
    from acf.isa import formats, symbols

    sym = wp.symbol
    if sym is not None and sym.fmt != "dense":
        try:
            values = symbols.unpack_symbol(sym, range_bytes(state, wp.ranges[0]))
        except (formats.FormatError, ValueError):  # never written: no values yet
            return False
        return bool(not np.all(np.isfinite(values)))
    for r in wp.ranges:
        raw = range_bytes(state, r)
        raw = raw[: raw.size // 4 * 4]
        if raw.size and not np.all(np.isfinite(raw.view(np.float32))):
            return True
    return False
