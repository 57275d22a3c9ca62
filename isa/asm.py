"""Assembler: ACF assembly text -> :class:`Program`, driven by the ISA table.

Syntax (one statement per line; ``#`` or ``;`` start a comment)::

    .target acf-small                          # target the program was built for
    .tensor X dram 0x1000 f32[16,16] csr       # symbol: name space addr dtype[shape] [fmt] [cN]
    .data X 1.0 0.5 -2.0 ...                   # initial contents of a symbol, every element
    .equ TILE 1024                             # a named constant
    .loc "model.py" 12 "fc1" 7                 # debug info for what follows: file line [layer] [op id]
    top:                                       # a label
        ld  c0, sp[0], dram[X+ar1], fmt=csr, rows=16, cols=16 sig(t1)
        mm  c0, acc[0], sp[0], sp[TILE], m=16, n=16, k=16 wait(t1) sig(t2)

Positional operands fill the row's fields in order (queued rows take an optional leading
cluster ``cN``); ``name=value`` sets any field; fields with a default may be left out.
Errors are :class:`AsmError`: ``file:line:col: error: message`` plus the source line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from acf.isa.asm_grammar import parser
from acf.isa.fields import FieldError, FmtSpec, Kind, MemRef
from acf.isa.program import Instruction, Program, SourceLoc, Symbol, make_op
from acf.isa.spec import BY_MNEMONIC, CLUSTER_UNITS, Op
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken


class AsmError(ValueError):
    """A located assembly error; ``str()`` is ``file:line:col: error: ...`` plus context."""

    def __init__(self, filename: str, line: int, col: int, msg: str, source: str = ""):
        self.filename, self.line, self.col, self.msg = filename, line, col, msg
        text = f"{filename}:{line}:{col}: error: {msg}"
        lines = source.splitlines()
        if 1 <= line <= len(lines):
            text += f"\n{lines[line - 1]}\n{' ' * (col - 1)}^"
        super().__init__(text)


@dataclass
class _Ctx:
    filename: str
    source: str
    labels: dict[str, int]
    symbols: dict[str, Symbol]
    consts: dict[str, int]

    def error(self, node: Any, msg: str) -> AsmError:
        line = getattr(node, "line", None) or getattr(getattr(node, "meta", None), "line", 1)
        col = getattr(node, "column", None) or getattr(getattr(node, "meta", None), "column", 1)
        return AsmError(self.filename, line or 1, col or 1, msg, self.source)


def assemble(source: str, filename: str = "<input>") -> Program:
    """Assemble text into a Program; raises AsmError with location on any problem."""
    if not source.endswith("\n"):
        source += "\n"
    try:
        tree = parser().parse(source)
    except UnexpectedInput as exc:
        raise _syntax_error(exc, filename, source) from None
    ctx = _Ctx(filename, source, {}, {}, {})
    prog = Program()
    statements = _first_pass(tree, ctx, prog)
    loc = SourceLoc()
    for node in statements:
        if node.data == "directive":
            loc = _directive_second_pass(node, ctx, prog, loc)
            continue
        index = len(prog.instructions)
        prog.instructions.append(_instruction(node, ctx, index))
        prog.asm_lines[index] = int(getattr(node.children[0], "line", 0) or 0)
        if loc != SourceLoc():
            prog.debug[index] = loc
    prog.labels = ctx.labels
    prog.symbols = ctx.symbols
    prog.data = _data_directives(statements, ctx)
    _check_loop_nesting(prog, statements, ctx)
    return prog


def _check_loop_nesting(prog: Program, statements: list[Tree], ctx: _Ctx) -> None:
    """A ``loop`` inside another's body must end within it (the dispatcher keeps a stack of
    loop bodies and only the innermost one's end is watched)."""
    nodes = [n for n in statements if n.data != "directive"]
    open_ends: list[tuple[int, int]] = []  # (body end, loop index), innermost last
    for i, ins in enumerate(prog.instructions):
        while open_ends and open_ends[-1][0] <= i:
            open_ends.pop()
        if ins.mnemonic != "loop" or ins["count"] == 0 or ins["end"] == 0:
            continue
        end = i + 1 + ins["end"]
        if open_ends and end > open_ends[-1][0]:
            outer_end, outer = open_ends[-1]
            raise ctx.error(nodes[i].children[0], f"this loop's body ends after the body of "
                                                  f"the loop it is in (instruction {outer}, "
                                                  f"ending at {outer_end}); loops must nest")
        open_ends.append((end, i))


def _data_directives(statements: list[Tree], ctx: _Ctx) -> dict[str, bytes]:
    """``.data NAME v0 v1 ...``: every element of a declared ``.tensor`` (any order of the
    two directives), as little-endian f32."""
    from acf.isa.symbols import data_bytes, symbol_elements

    out: dict[str, bytes] = {}
    for node in statements:
        if node.data != "directive" or str(node.children[0]) != "data":
            continue
        args = node.children[1:]
        if not args or not isinstance(args[0], Token) or args[0].type not in ("DNAME", "NAME"):
            raise ctx.error(node.children[0], ".data NAME VALUE...")
        name = str(args[0])
        sym = ctx.symbols.get(name)
        if sym is None:
            raise ctx.error(args[0], f".data for {name!r}, which no .tensor declares")
        if name in out:
            raise ctx.error(args[0], f".data for {name!r} given twice")
        values = []
        for tok in args[1:]:
            if not isinstance(tok, Token) or tok.type != "NUMBER" or str(tok).lower().startswith(("0x", "+0x", "-0x")):
                raise ctx.error(tok, f"expected a number, got {_text(tok)!r}")
            values.append(float(str(tok)))
        if len(values) != symbol_elements(sym):
            raise ctx.error(args[0], f".data for {name!r} has {len(values)} values; "
                                     f"f32[{','.join(map(str, sym.shape))}] has {symbol_elements(sym)}")
        out[name] = data_bytes(values)
    return out


def _syntax_error(exc: UnexpectedInput, filename: str, source: str) -> AsmError:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    unknown = _unknown_mnemonic(source, line)
    if unknown:
        return AsmError(filename, line, unknown[0], f"unknown instruction {unknown[1]!r}", source)
    if isinstance(exc, UnexpectedCharacters):
        bad = source.splitlines()[line - 1][col - 1 :].split()[0] if line <= len(source.splitlines()) else ""
        msg = f"unexpected text {bad!r}"
    elif isinstance(exc, UnexpectedToken):
        tok = exc.token
        if tok.type == "NAME" and exc.expected and "MNEMONIC" in exc.expected:
            msg = f"unknown instruction {str(tok)!r}"
        elif tok.type == "_NL" or tok.type == "$END":
            msg = "unexpected end of line"
        else:
            msg = f"unexpected {str(tok)!r}"
    elif isinstance(exc, UnexpectedEOF):
        msg = "unexpected end of input"
    else:  # pragma: no cover - lark has no other kinds
        msg = "syntax error"
    return AsmError(filename, line, col, msg, source)


def _unknown_mnemonic(source: str, line: int) -> tuple[int, str] | None:
    """(column, word) when the statement on ``line`` starts with a word that is no mnemonic."""
    lines = source.splitlines()
    if not 1 <= line <= len(lines):
        return None
    text = re.split(r"[#;]", lines[line - 1])[0]
    m = re.match(r"(\s*(?:[A-Za-z_][\w.$]*\s*:\s*)?)([A-Za-z_][\w.$]*)(?!\s*:)", text)
    if m and m.group(2) not in BY_MNEMONIC:
        return len(m.group(1)) + 1, m.group(2)
    return None


def _first_pass(tree: Tree, ctx: _Ctx, prog: Program) -> list[Tree]:
    """Record labels (instruction index), symbols and constants; keep statement order."""
    out: list[Tree] = []
    count = 0
    for node in tree.children:
        if node.data == "label":
            name = str(node.children[0])
            if name in ctx.labels:
                raise ctx.error(node.children[0], f"label {name!r} defined twice")
            ctx.labels[name] = count
        elif node.data == "instr":
            count += 1
            out.append(node)
        else:
            _directive_first_pass(node, ctx, prog)
            out.append(node)
    return out


def _directive_first_pass(node: Tree, ctx: _Ctx, prog: Program) -> None:
    name = str(node.children[0])
    args = node.children[1:]
    if name == "target":
        if len(args) != 1:
            raise ctx.error(node.children[0], ".target takes one target name")
        prog.target = str(args[0])
    elif name == "equ":
        if len(args) != 2 or not isinstance(args[1], Token) or args[1].type != "NUMBER":
            raise ctx.error(node.children[0], ".equ takes a name and a number")
        ctx.consts[str(args[0])] = _int(ctx, args[1])
    elif name == "tensor":
        sym = _tensor_directive(node, ctx)
        if sym.name in ctx.symbols:
            raise ctx.error(args[0], f"symbol {sym.name!r} defined twice")
        other = _overlapping(sym, ctx.symbols.values())
        if other is not None:  # inputs bound to both would overwrite each other
            raise ctx.error(args[0], f"tensor {sym.name!r} overlaps {other.name!r} in "
                                     f"{sym.space}" + (f" c{sym.cluster}" if sym.space in ("sp", "acc") else ""))
        ctx.symbols[sym.name] = sym
    elif name in ("loc", "data"):
        pass  # .loc in order (second pass), .data once every symbol is known
    else:
        raise ctx.error(node.children[0], f"unknown directive '.{name}' (.target .tensor .data .equ .loc)")


def _overlapping(sym: Symbol, others) -> Symbol | None:
    """The first symbol among ``others`` whose bytes meet ``sym``'s (same memory)."""
    from acf.isa.symbols import symbol_nbytes

    lo, hi = sym.addr, sym.addr + symbol_nbytes(sym)
    same_cluster = sym.space in ("sp", "acc")
    for o in others:
        if (o.space == sym.space and (not same_cluster or o.cluster == sym.cluster)
                and o.addr < hi and lo < o.addr + symbol_nbytes(o) and hi > lo):
            return o
    return None


def _tensor_directive(node: Tree, ctx: _Ctx) -> Symbol:
    args = node.children[1:]
    if len(args) < 4:
        raise ctx.error(node.children[0], ".tensor NAME SPACE ADDR DTYPE[SHAPE] [FMT] [tile[R,C]] [cN]")
    name, space, addr, shape = args[:4]
    if str(space) not in ("dram", "gb", "sp", "acc"):
        raise ctx.error(space, f"unknown memory space {str(space)!r} (dram gb sp acc)")
    if not isinstance(shape, Tree) or str(shape.children[0]) != "f32":
        raise ctx.error(node.children[0], "tensor type must be f32[d0,d1,...]")
    dims = tuple(_int(ctx, d) for d in shape.children[1:])
    for d, node_d in zip(dims, shape.children[1:]):
        if d < 0:
            raise ctx.error(node_d, f"negative dimension {d} in the shape of {str(name)!r}")
    fmt, cluster, tile = "dense", 0, ()
    for extra in args[4:]:
        text = str(extra)
        if isinstance(extra, Tree) and str(extra.children[0]) == "tile":
            tile = tuple(_int(ctx, d) for d in extra.children[1:])
            if len(tile) != 2 or min(tile) < 1:
                raise ctx.error(node.children[0], "tile[ROWS,COLS] needs two positive sizes")
            continue
        if isinstance(extra, Tree):
            raise ctx.error(node.children[0], f"unexpected {_text(extra)!r} in .tensor")
        if re.fullmatch(r"c\d+", text):
            cluster = int(text[1:])
        else:
            try:
                fmt = str(FmtSpec.parse(text))
            except FieldError as exc:
                raise ctx.error(extra, str(exc)) from None
    if tile and fmt == "dense":
        raise ctx.error(node.children[0], "tile[...] applies to sparse formats only")
    return Symbol(str(name), str(space), _int(ctx, addr), dims, "f32", fmt, cluster, tile)


def _directive_second_pass(node: Tree, ctx: _Ctx, prog: Program, loc: SourceLoc) -> SourceLoc:
    if str(node.children[0]) != "loc":
        return loc
    args = node.children[1:]
    if not args:
        return SourceLoc()
    try:
        file = _unquote(args[0])
        line = _int(ctx, args[1]) if len(args) > 1 else 0
        layer = _unquote(args[2]) if len(args) > 2 else ""
        op_id = _int(ctx, args[3]) if len(args) > 3 else -1
    except (IndexError, ValueError):
        raise ctx.error(node.children[0], '.loc "FILE" LINE ["LAYER"] [OPID]') from None
    return SourceLoc(file, line, layer, op_id)


def _unquote(tok: Any) -> str:
    text = str(tok)
    if text.startswith('"'):
        return bytes(text[1:-1], "utf-8").decode("unicode_escape")
    return text


def _int(ctx: _Ctx, tok: Any) -> int:
    text = str(tok)
    if text in ctx.consts:
        return ctx.consts[text]
    try:
        return int(text, 0)
    except ValueError:
        raise ctx.error(tok, f"expected an integer, got {text!r}") from None


# ---- instructions -----------------------------------------------------------------------


def _instruction(node: Tree, ctx: _Ctx, index: int) -> Instruction:
    mnemonic_tok = node.children[0]
    op = BY_MNEMONIC[str(mnemonic_tok)]
    operands = [c for c in node.children[1:] if not (isinstance(c, Tree) and c.data == "clause")]
    clauses = [c for c in node.children[1:] if isinstance(c, Tree) and c.data == "clause"]
    args: dict[str, Any] = {}
    positional = [o for o in operands if not (isinstance(o, Tree) and o.data == "kwarg")]
    keywords = [o for o in operands if isinstance(o, Tree) and o.data == "kwarg"]
    # A leading cN is the cluster for rows that run on a cluster unit; global rows (dma,
    # cfg) may name one with ``cl=cN`` (it only matters for their queue id).
    if op.queued and positional and _is_cluster(positional[0]) and (
        op.unit in CLUSTER_UNITS or op.unit.startswith("field:")
    ):
        args["cl"] = int(str(positional[0])[1:])
        positional = positional[1:]
    if len(positional) > len(op.fields):
        raise ctx.error(_pos(positional[len(op.fields)]), f"{op.mnemonic} takes at most {len(op.fields)} operands")
    for f, value in zip(op.fields, positional):
        args[f.name] = _value(ctx, op, f.name, f.kind, value, index)
    for kw in keywords:
        name_tok, value = kw.children
        name = str(name_tok)
        if name == "cl" and op.queued and _is_cluster(value):
            args["cl"] = int(str(value)[1:])
            continue
        try:
            field = op.field(name)
        except KeyError:
            raise ctx.error(name_tok, f"{op.mnemonic} has no operand {name!r} "
                            f"(operands: {', '.join(f.name for f in op.fields)})") from None
        if name in args:
            raise ctx.error(name_tok, f"operand {name!r} given twice")
        args[name] = _value(ctx, op, name, field.kind, value, index)
    for clause in clauses:
        _clause(ctx, op, clause, args)
    try:
        return make_op(op, args)
    except FieldError as exc:
        msg = str(exc)
        raise ctx.error(mnemonic_tok, msg if msg.startswith(op.mnemonic) else f"{op.mnemonic}: {msg}") from None


def _is_cluster(node: Any) -> bool:
    return isinstance(node, Token) and node.type == "NAME" and re.fullmatch(r"c\d+", str(node)) is not None


def _pos(node: Any) -> Any:
    return node if isinstance(node, Token) else node.meta


def _clause(ctx: _Ctx, op: Op, clause: Tree, args: dict[str, Any]) -> None:
    kind = str(clause.children[0])
    if not op.queued:
        raise ctx.error(clause.children[0], f"{op.mnemonic} is executed by the dispatcher and takes no tokens")
    names = clause.children[1:]
    if len(names) > 2:
        raise ctx.error(names[2], f"at most two tokens in {kind}(...)")
    for i, tok in enumerate(names):
        m = re.fullmatch(r"t(\d+)", str(tok))
        if not m or not 0 <= int(m.group(1)) <= 255:
            raise ctx.error(tok, f"expected a token t0..t255 (t0 = none), got {str(tok)!r}")
        args[f"{kind}{i}"] = int(m.group(1))


def _value(ctx: _Ctx, op: Op, fname: str, kind: Kind, node: Any, index: int) -> Any:
    where = _pos(node)
    try:
        return _convert(ctx, kind, node, index)
    except AsmError:
        raise
    except FieldError as exc:
        raise ctx.error(where, f"{op.mnemonic}: field '{fname}': {exc}") from None
    except (ValueError, KeyError):
        text = _text(node)
        raise ctx.error(where, f"{op.mnemonic}: field '{fname}' expects {kind.describe()}, got {text!r}") from None


def _text(node: Any) -> str:
    if isinstance(node, Token):
        return str(node)
    return "".join(_text(c) for c in node.children)


def _convert(ctx: _Ctx, kind: Kind, node: Any, index: int) -> Any:
    k = kind.name
    if k == "mem":
        if not (isinstance(node, Tree) and node.data == "memref"):
            raise ValueError
        return _memref(ctx, node)
    if not isinstance(node, Token):
        raise ValueError
    text = str(node)
    if k in ("u", "s"):
        return ctx.consts[text] if text in ctx.consts else int(text, 0)
    if k == "f32":
        return float(int(text, 0)) if "0x" in text.lower() else float(text)
    if k == "enum":
        if text not in kind.choices:
            raise FieldError(f"{text!r} is not one of {', '.join(kind.choices)}")
        return text
    if k == "cl":
        return _prefixed(text, "c")
    if k == "tok":
        return _prefixed(text, "t")
    if k == "reg":
        m = re.fullmatch(r"(ar|fr)(\d+)", text)
        if not m:
            raise ValueError
        return int(m.group(2))
    if k == "fmt":
        return FmtSpec.parse(text)
    if k == "rel":
        if text in ctx.labels:
            body = ctx.labels[text] - index - 1
            if body < 0:
                raise FieldError(f"label {text!r} must come after the loop")
            return body
        if node.type == "NAME":
            raise FieldError(f"undefined label {text!r}")
        return int(text, 0)
    raise ValueError


def _prefixed(text: str, prefix: str) -> int:
    m = re.fullmatch(prefix + r"(\d+)", text)
    if not m:
        raise ValueError
    return int(m.group(1))


def _memref(ctx: _Ctx, node: Tree) -> MemRef:
    space = str(node.children[0])
    terms = node.children[1].children
    offset, areg, sign = 0, 0, 1
    for term in terms:
        text = str(term)
        if term.type == "SIGN":
            sign = -1 if text == "-" else 1
            continue
        m = re.fullmatch(r"ar(\d+)", text)
        if m:
            if areg or sign < 0:
                raise ctx.error(term, "at most one address register, added")
            areg = int(m.group(1))
            if areg > 15:
                raise ctx.error(term, f"address register {text} does not exist (ar0..ar15)")
        elif term.type == "NAME":
            if text in ctx.consts:
                offset += sign * ctx.consts[text]
            elif text in ctx.symbols:
                sym = ctx.symbols[text]
                if sym.space != space:
                    raise ctx.error(term, f"symbol {text!r} lives in {sym.space}, not {space}")
                offset += sign * sym.addr
            else:
                raise ctx.error(term, f"undefined symbol {text!r}")
        else:
            try:
                offset += sign * int(text, 0)
            except ValueError:
                raise ctx.error(term, f"expected an integer offset, got {text!r}") from None
        sign = 1
    if offset < 0:
        raise ctx.error(node.children[0], f"negative address {offset}")
    return MemRef(space, offset, areg)


def is_cluster_unit(op: Op, args: dict[str, Any]) -> bool:
    unit = args.get("unit") if op.unit.startswith("field:") else op.unit
    return unit in CLUSTER_UNITS


__all__ = ["AsmError", "assemble"]
