"""Disassembler: Program -> assembly text that reassembles to the same bytes."""

from __future__ import annotations

import math
from typing import Any

from acf.isa.fields import Field, MemRef
from acf.isa.program import Instruction, Program, SourceLoc
from acf.isa.spec import CLUSTER_UNITS
from acf.isa.symbols import data_values


def format_value(field: Field, value: Any, index: int, labels: dict[int, str]) -> str:
    k = field.kind.name
    if k == "mem":
        return str(value)
    if k == "f32":
        return repr(float(value))
    if k == "cl":
        return f"c{value}"
    if k == "tok":
        return f"t{value}"
    if k == "reg":
        return ("fr" if field.name in ("fd", "fr") else "ar") + str(value)
    if k == "rel":
        return labels.get(index + 1 + value, str(value))
    return str(value)


def format_instruction(ins: Instruction, index: int = 0, labels: dict[int, str] | None = None) -> str:
    """One instruction as assembly: positional required fields, then non-default keywords."""
    labels = labels or {}
    op, args = ins.op, ins.args
    parts: list[str] = []
    cluster_row = op.unit in CLUSTER_UNITS or op.unit.startswith("field:")
    if op.queued and cluster_row:
        parts.append(f"c{args['cl']}")
    keyword_mode = False
    for f in op.fields:
        value = args[f.name]
        text = format_value(f, value, index, labels)
        # Operands stay positional while they are required and not plain numbers (the
        # dispatcher's short forms like ``loop 4, end`` excepted); after that, name=value.
        numeric = f.kind.name in ("u", "s", "f32") and op.queued
        if f.default is not None or numeric:
            keyword_mode = True
        if not keyword_mode:
            parts.append(text)
        elif f.default is None or not _same(value, f.default):
            parts.append(f"{f.name}={text}")
    if op.queued and not cluster_row and args["cl"]:
        parts.append(f"cl=c{args['cl']}")
    line = op.mnemonic + (" " + ", ".join(parts) if parts else "")
    waits = [f"t{args[k]}" for k in ("wait0", "wait1") if op.queued and args[k]]
    sigs = [f"t{args[k]}" for k in ("sig0", "sig1") if op.queued and args[k]]
    if op.queued and (args["wait1"] and not args["wait0"]):
        waits = [f"t{args['wait0']}", f"t{args['wait1']}"]  # keep slot positions exact
    if op.queued and (args["sig1"] and not args["sig0"]):
        sigs = [f"t{args['sig0']}", f"t{args['sig1']}"]
    if waits:
        line += f" wait({', '.join(waits)})"
    if sigs:
        line += f" sig({', '.join(sigs)})"
    return line


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        import struct

        return struct.pack("<f", a) == struct.pack("<f", b)
    return a == b and type(a) is type(b) or (isinstance(a, MemRef) and a == b)


def disassemble(prog: Program, with_addresses: bool = False) -> str:
    """The whole program as assembly: directives, labels, instructions, .loc lines."""
    out: list[str] = []
    if prog.target:
        out.append(f".target {prog.target}")
    for sym in prog.symbols.values():
        shape = ",".join(str(d) for d in sym.shape)
        extra = (f" {sym.fmt}" if sym.fmt != "dense" else "") + (f" c{sym.cluster}" if sym.cluster else "")
        if sym.tile:
            extra += f" tile[{sym.tile[0]},{sym.tile[1]}]"
        out.append(f".tensor {_name(sym.name)} {sym.space} {sym.addr:#x} f32[{shape}]{extra}")
    for name, raw in prog.data.items():
        out.append(f".data {_name(name)} " + " ".join(_f32_text(v) for v in data_values(raw)))
    # the program's labels only: a loop whose end has none an operand can name keeps its
    # numeric offset (a generated label would reassemble to other bytes)
    labels = prog.labels
    ends = {a: n for n, a in labels.items() if _loop_end(n)}  # what a loop may name
    loc = SourceLoc()
    for i, ins in enumerate(prog.instructions):
        for name in sorted(n for n, a in labels.items() if a == i):
            out.append(f"{name}:")
        new_loc = prog.debug.get(i, SourceLoc())
        if new_loc != loc:
            out.append(_loc_line(new_loc))
            loc = new_loc
        prefix = f"{i:6d}:  " if with_addresses else "    "
        out.append(prefix + format_instruction(ins, i, ends))
    end = len(prog.instructions)
    for name in sorted(n for n, a in labels.items() if a == end):
        out.append(f"{name}:")
    return "\n".join(out) + "\n"


def _f32_text(v: float) -> str:
    """The f32 as the shortest text that reads back to its double value, so assembling
    it gives the same bits (``nan``, ``inf``, ``-0.0`` spelt out)."""
    if math.isnan(v):
        return "nan"
    return repr(v)


def _name(name: str) -> str:
    """A tensor name as written: a plain word when it reads back as one, else quoted (a
    PyTorch parameter ``0.weight`` would lex as the number ``0.`` then a word)."""
    from acf.isa.asm import reads_back

    return name if reads_back("symbol", name) else f'"{_esc(name)}"'


def _loc_line(loc: SourceLoc) -> str:
    if loc == SourceLoc():
        return ".loc"
    text = f'.loc "{_esc(loc.file)}" {loc.line} "{_esc(loc.layer)}"'
    return text + (f" {loc.op_id}" if loc.op_id >= 0 else "")


def _esc(text: str) -> str:
    """Text for a quoted string (``.loc``, a tensor name) as the assembler reads it back:
    backslashes and quotes escaped, and the line breaks (a reader of the text may turn a
    bare carriage return into a line end)."""
    return (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            .replace("\r", "\\r"))


def _loop_end(name: str) -> bool:
    """Whether a loop can name this label as its end: checked, not assumed, since an
    operand is lexed with other tokens in play than a label definition is."""
    from acf.isa.asm import reads_back

    return reads_back("loop end", name)


