"""The ``acf`` dialect: one op per row of the ISA table, derived from :data:`acf.isa.spec.OPS`.

Nothing here restates the ISA: op names, attribute names, kinds and defaults all come from
the table. An op's attributes are the row's fields plus the queue header (``cl``, ``wait0``,
``wait1``, ``sig0``, ``sig1``); fields equal to their default are left out. Ops print and
parse through the compiler's generic op syntax, inside a ``graph.func`` holding one program::

    graph.func @main() -> () {
      "acf.target"() {name = "acf-small"} : () -> ()
      "acf.tensor"() {name = "x", space = "dram", addr = 4096, shape = [4, 8]} : () -> ()
      "acf.ld"() {dst = "sp[0x0]", src = "dram[0x1000]", fmt = "dense", rows = 4, cols = 8, sig0 = 1} : () -> () loc("m.py":3:0 layer "fc1")
      "acf.mm"() {cl = 0, dst = "acc[0x0]", a = "sp[0x0]", b = "sp[0x400]", m = 4, n = 4, k = 8, wait0 = 1, op_id = 2} : () -> ()
      "acf.halt"() : () -> ()
      graph.return
    }

Memory operands are ``space[offset+arN]`` strings, formats their names (``"nm2:4"``), enums
their names. ``acf.target``, ``acf.tensor`` (a symbol) and ``acf.label`` are declarations,
not instructions. :func:`to_program` and :func:`from_program` translate 1:1 to and from
:class:`acf.isa.program.Program` (``op_id`` and the location carry the debug info).
"""

from __future__ import annotations

import re
from typing import Any

from acf.isa.fields import FieldError, FmtSpec, Kind, MemRef
from acf.isa.program import Instruction, Program, SourceLoc, Symbol, make_op
from acf.isa.spec import BY_MNEMONIC, HEADER_FIELDS, HEADER_KINDS, OPS, Op
from acf.isa.symbols import data_bytes, data_values, symbol_elements

from ..diagnostics import IRError
from ..ir import Attribute, FuncOp, Location, Module, Operation
from ..verifier import op_position

PREFIX = "acf."
DECLARATIONS = ("acf.target", "acf.tensor", "acf.label")
_MEM = re.compile(r"(dram|gb|sp|acc)\[(?:(0x[0-9a-fA-F]+|\d+))?(?:\+?ar(\d+))?\]")


def op_name(row: Op) -> str:
    """``acf.<mnemonic>`` for a table row."""
    return PREFIX + row.mnemonic


def ops() -> dict[str, Op]:
    """Every op of the dialect by name, straight from the ISA table."""
    return {op_name(row): row for row in OPS}


def fields_of(row: Op) -> dict[str, Kind]:
    """Attribute name -> operand kind of one op (header fields first for queued rows)."""
    out = {h: HEADER_KINDS[h] for h in HEADER_FIELDS} if row.queued else {}
    out.update({f.name: f.kind for f in row.fields})
    return out


# ---- value <-> attribute -------------------------------------------------------------------
def to_attribute(kind: Kind, value: Any) -> Attribute:
    if kind.name == "mem":
        return str(value)
    if kind.name == "fmt":
        return str(value)
    if kind.name == "f32":
        return float(value)
    return value


def parse_memref(text: str) -> MemRef:
    """``"sp[0x40+ar2]"`` -> ``MemRef("sp", 0x40, 2)``."""
    m = _MEM.fullmatch(text.replace(" ", ""))
    if not m:
        raise FieldError(f"bad memory operand {text!r} (expected space[offset+arN])")
    return MemRef(m[1], int(m[2], 0) if m[2] else 0, int(m[3]) if m[3] else 0)


def from_attribute(kind: Kind, value: Attribute) -> Any:
    if kind.name == "mem":
        if not isinstance(value, str):
            raise FieldError(f"expected a memory operand string, got {value!r}")
        return parse_memref(value)
    if kind.name == "fmt":
        if not isinstance(value, str):
            raise FieldError(f"expected a format name, got {value!r}")
        return FmtSpec.parse(value)
    if kind.name == "f32" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


# ---- Program -> module -----------------------------------------------------------------------
def _decl(opname: str, **attrs: Attribute) -> Operation:
    return Operation(opname, [], [], attrs)


def instruction_op(ins: Instruction, loc: SourceLoc | None = None) -> Operation:
    """The ``acf.*`` op of one instruction (fields at their default are omitted)."""
    row = ins.op
    defaults = {f.name: f.default for f in row.fields}
    attrs: dict[str, Attribute] = {}
    for name, kind in fields_of(row).items():
        value = ins.args[name]
        default = 0 if name in HEADER_FIELDS else defaults.get(name)
        if default is not None and kind.check(name, default) == value and type(value) is type(
                kind.check(name, default)):
            continue
        attrs[name] = to_attribute(kind, value)
    location = None
    if loc is not None and loc != SourceLoc():
        if loc.op_id >= 0:
            attrs["op_id"] = loc.op_id
        location = Location(loc.file, loc.line, 0, loc.layer or None)
    return Operation(op_name(row), [], [], attrs, loc=location)


def from_program(prog: Program, name: str = "main") -> Module:
    """A module with one ``graph.func`` holding ``prog`` as ``acf.*`` ops."""
    func = FuncOp(name, [], [])
    body = func.body
    if prog.target:
        body.append(_decl("acf.target", name=prog.target))
    for sym in prog.symbols.values():
        attrs: dict[str, Attribute] = {"name": sym.name, "space": sym.space, "addr": sym.addr,
                                       "shape": list(sym.shape)}
        if sym.dtype != "f32":
            attrs["dtype"] = sym.dtype
        if sym.fmt != "dense":
            attrs["fmt"] = sym.fmt
        if sym.cluster:
            attrs["cluster"] = sym.cluster
        if sym.tile:
            attrs["tile"] = list(sym.tile)
        if sym.name in prog.data:  # its initial contents (.data)
            attrs["data"] = data_values(prog.data[sym.name])
        body.append(_decl("acf.tensor", **attrs))
    labels_at: dict[int, list[str]] = {}
    for label, addr in prog.labels.items():
        labels_at.setdefault(addr, []).append(label)
    for i, ins in enumerate(prog.instructions):
        for label in labels_at.get(i, []):
            body.append(_decl("acf.label", name=label))
        body.append(instruction_op(ins, prog.debug.get(i)))
    for label in labels_at.get(len(prog.instructions), []):
        body.append(_decl("acf.label", name=label))
    body.append(Operation("graph.return", [], []))
    return Module([func])


# ---- module -> Program -----------------------------------------------------------------------
class AcfDialectError(IRError):
    """A malformed ``acf`` op; located at the op."""


def _err(op: Operation, message: str) -> AcfDialectError:
    return AcfDialectError(f"'{op.name}': {message}", op_position(op))


def instruction_of(op: Operation) -> Instruction:
    """Build and validate the instruction of one ``acf.*`` op (raises a located error)."""
    row = ops().get(op.name)
    if row is None:
        raise _err(op, "unknown op in the acf dialect")
    kinds = fields_of(row)
    args: dict[str, Any] = {}
    for key, value in op.attributes.items():
        if key == "op_id":
            continue
        if key not in kinds:
            raise _err(op, f"has no attribute '{key}' (valid: {', '.join(kinds)})")
        try:
            args[key] = from_attribute(kinds[key], value)
        except FieldError as err:
            raise _err(op, f"attribute '{key}': {err}") from None
    try:
        return make_op(BY_MNEMONIC[row.mnemonic], args)
    except FieldError as err:
        raise _err(op, str(err)) from None


def _symbol(op: Operation) -> Symbol:
    a = op.attributes
    try:
        return Symbol(str(a["name"]), str(a.get("space", "dram")), int(a["addr"]),  # type: ignore[arg-type]
                      tuple(int(d) for d in a["shape"]), str(a.get("dtype", "f32")),  # type: ignore[union-attr]
                      str(a.get("fmt", "dense")), int(a.get("cluster", 0)),  # type: ignore[arg-type]
                      tuple(int(d) for d in a.get("tile", [])))  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError) as err:
        raise _err(op, f"bad symbol declaration ({err})") from None


def _data(op: Operation, sym: Symbol) -> bytes:
    """A symbol's ``data`` attribute (every element, row-major) as little-endian f32."""
    values = op.attributes["data"]
    if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                               for v in values):
        raise _err(op, "attribute 'data' must be a list of numbers")
    if len(values) != symbol_elements(sym):
        raise _err(op, f"attribute 'data' has {len(values)} values for the "
                       f"{symbol_elements(sym)} elements of {list(sym.shape)}")
    return data_bytes(values)


def to_program(module: Module, func: str | None = None) -> Program:
    """The :class:`Program` of an acf-level module (its first function unless named)."""
    f = module.func(func) if func else module.funcs[0]
    prog = Program()
    for op in f.body.ops:
        if op.name == "graph.return":
            continue
        if op.name == "acf.target":
            prog.target = str(op.attributes["name"])
        elif op.name == "acf.tensor":
            sym = _symbol(op)
            prog.symbols[sym.name] = sym
            if "data" in op.attributes:
                prog.data[sym.name] = _data(op, sym)
        elif op.name == "acf.label":
            prog.labels[str(op.attributes["name"])] = len(prog.instructions)
        else:
            index = len(prog.instructions)
            prog.instructions.append(instruction_of(op))
            if op.loc is not None or "op_id" in op.attributes:
                loc = op.loc or Location("", 0, 0)
                prog.debug[index] = SourceLoc(loc.file, loc.line, loc.layer or "",
                                              int(op.attributes.get("op_id", -1)))  # type: ignore[arg-type]
    return prog


def check_op(op: Operation) -> None:
    """One ``acf.*`` op against the ISA table (directives: their required attributes);
    raises :class:`AcfDialectError` at the op. The verifier calls it for every acf op."""
    if op.name in ("acf.target", "acf.label"):
        if not isinstance(op.attributes.get("name"), str):
            raise _err(op, "requires a string attribute 'name'")
        return
    if op.name == "acf.tensor":
        sym = _symbol(op)
        if "data" in op.attributes:
            _data(op, sym)
        return
    instruction_of(op)


def verify(module: Module) -> None:
    """Check every ``acf.*`` op against its ISA row (raises a located :class:`IRError`)."""
    to_program(module)
