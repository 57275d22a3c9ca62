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
A program has at most one ``.target``; a label, ``.equ`` constant or ``.tensor`` name is
defined once (a second definition is an error naming the first).
Errors are :class:`AsmError`: ``file:line:col: error: message`` plus the source line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from acf.isa.asm_grammar import parser
from acf.isa.fields import CL, F32, FieldError, FmtSpec, Kind, MemRef
from acf.isa.program import Instruction, Program, SourceLoc, Symbol, make_op
from acf.isa.spec import BY_MNEMONIC, CLUSTER_UNITS, REGISTER_PREFIX, Op
from lark import Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken


class AsmError(ValueError):
    """A located assembly error; ``str()`` is ``file:line:col: error: ...`` plus context."""

    def __init__(self, filename: str, line: int, col: int, msg: str, source: str = ""):
        self.filename, self.line, self.col, self.msg = filename, line, col, msg
        text = f"{filename}:{line}:{col}: error: {msg}"
        shown = source_line(source, line)
        if shown is not None:
            # other line-break characters (form feed, U+2028, ...) would split the quoted
            # line on a terminal; each is one column, so a space keeps the caret aligned
            shown = shown.translate(_SHOWN_AS_SPACE)
            text += f"\n{shown}\n{' ' * (col - 1)}^"
        super().__init__(text)


# Characters str.splitlines() breaks on besides "\n"; the grammar treats none of them as
# a line end, so they stay inside the line (shown as spaces in the quoted context).
_SHOWN_AS_SPACE = {ord(c): " " for c in "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"}


def source_line(source: str, line: int) -> str | None:
    """Line ``line`` (1-based) as the parser counts lines: only "\n" ends one (a "\r"
    before it belongs to the line ending), so error positions and quoted text agree."""
    lines = source.split("\n")
    if not 1 <= line <= len(lines):
        return None
    return lines[line - 1].removesuffix("\r")


@dataclass
class _Ctx:
    filename: str
    source: str
    labels: dict[str, int]
    symbols: dict[str, Symbol]
    consts: dict[str, int]
    target_token: Any = None  # the ``.target`` name, where errors about it point
    symbol_tokens: dict[str, Any] = field(default_factory=dict)  # name -> its .tensor name
    # where each label and .equ constant was defined (a second definition names the first)
    label_tokens: dict[str, Any] = field(default_factory=dict)
    const_tokens: dict[str, Any] = field(default_factory=dict)

    def error(self, node: Any, msg: str) -> AsmError:
        line = getattr(node, "line", None) or getattr(getattr(node, "meta", None), "line", 1)
        col = getattr(node, "column", None) or getattr(getattr(node, "meta", None), "column", 1)
        return AsmError(self.filename, line or 1, col or 1, msg, self.source)


def assemble(source: str, filename: str = "<input>", check: str = "") -> Program:
    """Assemble text into a Program; raises AsmError with location on any problem.

    ``check``: ``"target"``: the ``.target`` must name a target the tools can load;
    ``"fit"``: that, and every ``.tensor`` must lie in its memories. Off by default: a
    program may be run on another target than it names (``acfc run --target``, ``--set``),
    which decides what fits; ``acfc asm`` checks against the one it names."""
    if check not in ("", "target", "fit"):
        raise ValueError(f"check must be '', 'target' or 'fit', got {check!r}")
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
    prog.symbol_lines = {name: (int(tok.line), int(tok.column)) for name, tok in ctx.symbol_tokens.items()}
    prog.data = _data_directives(statements, ctx)
    _check_loop_nesting(prog, statements, ctx)
    if check and prog.target:
        _check_target(prog, ctx, check == "fit")
    return prog


def _check_target(prog: Program, ctx: _Ctx, fit: bool) -> None:
    """The ``.target`` must name a target the tools can load (a shipped one, or a target
    file), and with ``fit`` every ``.tensor`` must lie in that target's memories: errors
    located at the directive, rather than unlocated ones when the program is run."""
    from acf.isa.target import TargetError, load_target

    try:
        target = load_target(prog.target)
    except TargetError as exc:
        raise ctx.error(ctx.target_token, str(exc)) from None
    if not fit:
        return
    for sym in prog.symbols.values():
        why = symbol_misfit(sym, target)
        if why:
            raise ctx.error(ctx.symbol_tokens[sym.name], why)


_SPACE_SIZES = {"dram": lambda t: t.dram.size_bytes, "gb": lambda t: t.gbuf.bytes,
                "sp": lambda t: t.cluster.spad_bytes, "acc": lambda t: t.cluster.acc_bytes}


def symbol_misfit(sym: Symbol, target: Any) -> str:
    """Why a ``.tensor`` does not lie in ``target``'s memories ('' when it does)."""
    from acf.isa.symbols import SPACE_NAMES, symbol_nbytes

    what, size_of = SPACE_NAMES[sym.space], _SPACE_SIZES[sym.space]
    where = f"{sym.space}[{sym.addr:#x}]"
    if sym.space in ("sp", "acc"):
        where += f" c{sym.cluster}"
        if sym.cluster >= target.num_clusters:
            return (f".tensor {sym.name!r} at {where} does not fit {target.name}: cluster "
                    f"c{sym.cluster} does not exist ({target.num_clusters} clusters)")
    size, nbytes = int(size_of(target)), symbol_nbytes(sym)
    if sym.addr + nbytes > size:  # worded as the emulator's check words it
        return (f".tensor {sym.name!r} at {where} does not fit {target.name}: out-of-bounds "
                f"{what} access {sym.addr:#x}+{nbytes:#x} > {size:#x}")
    return ""


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


# Tokens a .tensor (and its .data) may be named by: a word, a number (a compiled program
# names an IR argument ``%0`` after it), or a quoted string for any other name (a PyTorch
# parameter ``0.weight``; the disassembler quotes what is not a plain word).
_TENSOR_NAMES = ("DNAME", "NAME", "NUMBER", "STRING")


def _tensor_name(ctx: _Ctx, tok: Any) -> str:
    if not isinstance(tok, Token) or tok.type not in _TENSOR_NAMES:
        raise ctx.error(_pos(tok), f"expected a tensor name, got {_text(tok)!r}")
    try:
        name = _unquote(tok)
    except ValueError as exc:
        raise ctx.error(tok, f"bad tensor name {str(tok)!r}: {exc}") from None
    if not name:
        raise ctx.error(tok, "a tensor name cannot be empty")
    return name


def _data_directives(statements: list[Tree], ctx: _Ctx) -> dict[str, bytes]:
    """``.data NAME v0 v1 ...``: every element of a declared ``.tensor`` (any order of the
    two directives), as little-endian f32."""
    from acf.isa.symbols import data_bytes, symbol_elements

    out: dict[str, bytes] = {}
    for node in statements:
        if node.data != "directive" or str(node.children[0]) != "data":
            continue
        args = node.children[1:]
        if not args or not isinstance(args[0], Token) or args[0].type not in _TENSOR_NAMES:
            raise ctx.error(node.children[0], ".data NAME VALUE...")
        name = _tensor_name(ctx, args[0])
        sym = ctx.symbols.get(name)
        if sym is None:
            raise ctx.error(args[0], f".data for {name!r}, which no .tensor declares")
        if name in out:
            raise ctx.error(args[0], f".data for {name!r} given twice")
        values = []
        for tok in args[1:]:
            if not isinstance(tok, Token) or tok.type != "NUMBER" or str(tok).lower().startswith(("0x", "+0x", "-0x")):
                raise ctx.error(tok, f"expected a number, got {_text(tok)!r}")
            value = float(str(tok))
            try:  # the immediates' check: inputs and immediates refuse these too
                if value in (float("inf"), float("-inf")) and "inf" not in str(tok).lower():
                    raise FieldError("1e999: past even a double")
                values.append(F32.check("value", value))
            except FieldError:
                raise ctx.error(tok, f"{tok!s} is beyond the fp32 range; write inf for an "
                                     "infinity") from None
        if len(values) != symbol_elements(sym):
            raise ctx.error(args[0], f".data for {name!r} has {len(values)} values; "
                                     f"f32[{','.join(map(str, sym.shape))}] has {symbol_elements(sym)}")
        out[name] = data_bytes(values)
    return out


def _syntax_error(exc: UnexpectedInput, filename: str, source: str) -> AsmError:
    line, col = getattr(exc, "line", 1) or 1, getattr(exc, "column", 1) or 1
    unknown = _unknown_mnemonic(source, line)
    if unknown:
        return AsmError(filename, line, unknown[0], unknown[1], source)
    if isinstance(exc, UnexpectedCharacters):
        # the text up to the next blank the grammar skips (space or tab): a character it
        # does not know (a no-break space, a form feed) is quoted, not taken as a blank
        rest = (source_line(source, line) or "")[col - 1:]
        bad = re.match(r"[^ \t]*", rest).group(0) or rest[:1]
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
    """(column, message) when the statement on ``line`` starts with a word that is no
    mnemonic, or a label is named after one (``halt:``)."""
    text = source_line(source, line)
    if text is None:
        return None
    text = re.split(r"[#;]", text)[0]
    # only the blanks the grammar skips, and ASCII names: a no-break space before a word
    # is the error, not the word
    m = re.match(r"([ \t]*(?:[A-Za-z_][\w.$]*[ \t]*:[ \t]*)?)[A-Za-z_]", text, re.ASCII)
    if not m:
        return None
    col = len(m.group(1)) + 1
    # the whole word: a letter or control character no name may hold belongs to it
    # ("hält", "ha\0lt"); a blank of any kind or ASCII punctuation ends it
    rest = text[col - 1:]
    end = next((i for i, c in enumerate(rest) if not _in_word(c)), len(rest))
    word = rest[:end]
    if text[col - 1 + len(word):].lstrip(" \t").startswith(":"):
        if word in BY_MNEMONIC:
            return col, f"'{word}' is an instruction; a label cannot be named after one"
        return None
    if word not in BY_MNEMONIC:
        return col, f"unknown instruction {word!r}"
    return None


def _in_word(c: str) -> bool:
    """Whether ``c`` continues a word an error names: a name's characters, and any letter
    or control character no name holds (a blank or ASCII punctuation ends the word)."""
    if c.isalnum() or c in "_.$":
        return True
    return not c.isspace() and (not c.isascii() or not c.isprintable())


def _line_col(tok: Any) -> str:
    return f"line {getattr(tok, 'line', '?')}, column {getattr(tok, 'column', '?')}"


def _first_pass(tree: Tree, ctx: _Ctx, prog: Program) -> list[Tree]:
    """Record labels (instruction index), symbols and constants; keep statement order."""
    out: list[Tree] = []
    count = 0
    for node in tree.children:
        if node.data == "label":
            name = str(node.children[0])
            if name in ctx.labels:
                raise ctx.error(node.children[0], f"label {name!r} defined twice (first at "
                                                  f"{_line_col(ctx.label_tokens[name])})")
            ctx.labels[name] = count
            ctx.label_tokens[name] = node.children[0]
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
        if len(args) != 1 or not isinstance(args[0], Token) or args[0].type not in ("DNAME", "NAME"):
            raise ctx.error(node.children[0], ".target takes one target name")
        if ctx.target_token is not None:  # a second one would silently win
            raise ctx.error(node.children[0], f".target given twice (first at "
                                              f"{_line_col(ctx.target_token)}: "
                                              f"{str(ctx.target_token)!r})")
        prog.target = str(args[0])
        ctx.target_token = args[0]
    elif name == "equ":
        if len(args) != 2 or not isinstance(args[1], Token) or args[1].type != "NUMBER":
            raise ctx.error(node.children[0], ".equ takes a name and a number")
        const = str(args[0])
        if const in ctx.consts:
            raise ctx.error(args[0], f".equ {const!r} defined twice (first at "
                                     f"{_line_col(ctx.const_tokens[const])})")
        ctx.consts[const] = _int(ctx, args[1])
        ctx.const_tokens[const] = args[0]
    elif name == "tensor":
        sym = _tensor_directive(node, ctx)
        if sym.name in ctx.symbols:
            raise ctx.error(args[0], f"symbol {sym.name!r} defined twice (first at "
                                     f"{_line_col(ctx.symbol_tokens[sym.name])})")
        ctx.symbol_tokens[sym.name] = args[0]
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
    from acf.isa.formats import FormatError
    from acf.isa.symbols import symbol_nbytes

    args = node.children[1:]
    if len(args) < 4:
        raise ctx.error(node.children[0], ".tensor NAME SPACE ADDR DTYPE[SHAPE] [FMT] [tile[R,C]] [cN]")
    name, space, addr, shape = args[:4]
    sym_name = _tensor_name(ctx, name)
    if str(space) not in ("dram", "gb", "sp", "acc"):
        raise ctx.error(space, f"unknown memory space {str(space)!r} (dram gb sp acc)")
    if not isinstance(shape, Tree) or str(shape.children[0]) != "f32":
        raise ctx.error(node.children[0], "tensor type must be f32[d0,d1,...]")
    dims = tuple(_int(ctx, d) for d in shape.children[1:])
    for d, node_d in zip(dims, shape.children[1:]):
        if d < 0:
            raise ctx.error(node_d, f"negative dimension {d} in the shape of {sym_name!r}")
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
            if cluster > 255:
                raise ctx.error(extra, f"cluster {text} does not exist (cluster ids are c0..c255)")
        else:
            try:
                fmt = str(FmtSpec.parse(text))
            except FieldError as exc:
                raise ctx.error(extra, str(exc)) from None
    if tile and fmt == "dense":
        raise ctx.error(node.children[0], "tile[...] applies to sparse formats only")
    sym = Symbol(sym_name, str(space), _int(ctx, addr), dims, "f32", fmt, cluster, tile)
    if sym.addr < 0:
        raise ctx.error(addr, f"negative address {sym.addr} of {sym.name!r}")
    try:  # the format must be able to hold the shape (N:M needs whole groups of M, ...)
        symbol_nbytes(sym)
    except FormatError as exc:
        why = str(exc).removeprefix(f"{fmt}: ")
        raise ctx.error(name, f"tensor {sym.name!r}: f32[{','.join(map(str, dims))}] cannot be "
                              f"stored as {fmt}" + (f" tile[{tile[0]},{tile[1]}]" if tile else "")
                              + f": {why}") from None
    return sym


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


# Backslash escapes of a quoted string; any other character, non-ASCII included, stands
# for itself (the disassembler writes \\, \" and the line breaks this way).
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t", "0": "\0"}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", re.DOTALL)


def _unescape(match: re.Match) -> str:
    code = match.group(1)
    if code in _ESCAPES:
        return _ESCAPES[code]
    if len(code) > 1:
        value = int(code[1:], 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise ValueError(f"\\{code} is not a character")
        return chr(value)
    return "\\" + code  # an unknown escape keeps its backslash


def _unquote(tok: Any) -> str:
    """A quoted string's text (``.loc`` strings, quoted tensor names): escapes decoded on
    the text itself, not on its UTF-8 bytes, so a non-ASCII name reads back as written."""
    text = str(tok)
    if text.startswith('"'):
        return _ESCAPE_RE.sub(_unescape, text[1:-1])
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
        args["cl"] = _cluster(ctx, op, positional[0])
        positional = positional[1:]
    if len(positional) > len(op.fields):
        raise ctx.error(_pos(positional[len(op.fields)]), f"{op.mnemonic} takes at most {len(op.fields)} operands")
    for f, value in zip(op.fields, positional):
        args[f.name] = _value(ctx, op, f.name, f.kind, value, index)
    for kw in keywords:
        name_tok, value = kw.children
        name = str(name_tok)
        if name == "cl" and op.queued and _is_cluster(value):
            # checked like any operand: a second cl= (or cl= after a leading cN) would
            # silently move the instruction to another cluster
            if name in args:
                raise ctx.error(name_tok, f"operand {name!r} given twice")
            args["cl"] = _cluster(ctx, op, value)
            continue
        try:
            field = op.field(name)
        except KeyError:
            raise ctx.error(name_tok, f"{op.mnemonic} has no operand {name!r} "
                            f"(operands: {', '.join(f.name for f in op.fields)})") from None
        if name in args:
            raise ctx.error(name_tok, f"operand {name!r} given twice")
        args[name] = _value(ctx, op, name, field.kind, value, index)
    given: set[str] = set()
    for clause in clauses:
        _clause(ctx, op, clause, args, given)
    try:
        return make_op(op, args)
    except FieldError as exc:
        msg = str(exc)
        raise ctx.error(mnemonic_tok, msg if msg.startswith(op.mnemonic) else f"{op.mnemonic}: {msg}") from None


def _cluster(ctx: _Ctx, op: Op, tok: Any) -> int:
    """A ``cN`` cluster operand, range-checked here so an error points at it."""
    try:
        return CL.check("cl", int(str(tok)[1:]))
    except FieldError as exc:
        raise ctx.error(tok, f"{op.mnemonic}: {exc}") from None


def _is_cluster(node: Any) -> bool:
    return isinstance(node, Token) and node.type == "NAME" and re.fullmatch(r"c\d+", str(node)) is not None


def _pos(node: Any) -> Any:
    return node if isinstance(node, Token) else node.meta


def _clause(ctx: _Ctx, op: Op, clause: Tree, args: dict[str, Any], given: set[str]) -> None:
    """One ``wait(...)`` or ``sig(...)`` clause; ``given`` holds the kinds seen before on
    the instruction (a second clause of a kind would silently replace the first's tokens)."""
    kind = str(clause.children[0])
    if not op.queued:
        raise ctx.error(clause.children[0], f"{op.mnemonic} is executed by the dispatcher and takes no tokens")
    if kind in given:
        raise ctx.error(clause.children[0], f"{kind}(...) given twice; name up to two tokens in one "
                                            f"{kind}(...)")
    given.add(kind)
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
        value = _convert(ctx, fname, kind, node, index)
    except AsmError:
        raise
    except FieldError as exc:
        raise ctx.error(where, f"{op.mnemonic}: field '{fname}': {exc}") from None
    except (ValueError, KeyError):
        text = _text(node)
        raise ctx.error(where, f"{op.mnemonic}: field '{fname}' expects {kind.describe()}, got {text!r}") from None
    try:  # the range check make_op does too, here so the error points at the value
        return kind.check(fname, value)
    except FieldError as exc:  # its message names the field already
        raise ctx.error(where, f"{op.mnemonic}: {exc}") from None


def _text(node: Any) -> str:
    if isinstance(node, Token):
        return str(node)
    return "".join(_text(c) for c in node.children)


def _convert(ctx: _Ctx, fname: str, kind: Kind, node: Any, index: int) -> Any:
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
        return _float(text)
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
        # address and float registers are separate files with the same numbers: the
        # other class's name would silently stand for this class's register
        prefix = REGISTER_PREFIX.get(fname, "ar")  # as the disassembler spells the field
        if m.group(1) != prefix:
            raise FieldError(f"expects {_REGISTER_CLASS[prefix]} register {prefix}N, got "
                             f"{_REGISTER_CLASS[m.group(1)]} register {text!r}")
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


_REGISTER_CLASS = {"ar": "an address", "fr": "a float"}


def _float(text: str) -> float:
    """A float immediate's text (decimal, hex integer, inf, nan) as a double; FieldError
    when it is past the double range, as ``.data`` refuses it: a hex integer too large for
    a double, or a decimal that rounds to an infinity it does not spell."""
    if "0x" in text.lower():
        try:
            return float(int(text, 0))
        except OverflowError:
            raise FieldError(f"{_shown(text)} overflows fp32") from None
    value = float(text)
    if value in (float("inf"), float("-inf")) and "inf" not in text.lower():
        raise FieldError(f"{_shown(text)} overflows fp32")
    return value


def _shown(text: str) -> str:
    """A number's text for a message; a very long one is cut to its start."""
    return text if len(text) <= 40 else f"{text[:24]}... ({len(text)} characters)"


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


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*")
_WORD_RE = re.compile(r"[A-Za-z0-9_.$+-]+")  # no blank, quote or line break: one token at most
_READ_BACK = {
    # a .tensor name written unquoted (and so .data can name it)
    "symbol": (_WORD_RE, ".tensor {0} dram 0 f32[1]\n.data {0} 0\nhalt\n"),
    "label": (_NAME_RE, "{0}:\nhalt\n"),
    # a label a loop can name as its end
    "loop end": (_NAME_RE, "loop 1, {0}\nhalt\n{0}:\n"),
}


@lru_cache(maxsize=4096)
def reads_back(kind: str, name: str) -> bool:
    """Whether assembly text can name ``name`` as a ``kind`` (``symbol``, ``label`` or
    ``loop end``), so a program holding it disassembles to text that reassembles.

    Decided by assembling a line that uses it, so the grammar's own lexer decides: a
    name may be a word of the grammar (``halt`` names a tensor but not a label) or begin
    like a number (``1abc``)."""
    pattern, template = _READ_BACK[kind]
    if not pattern.fullmatch(name):
        return False
    try:
        prog = assemble(template.format(name))
    except AsmError:
        return False
    return name in (prog.symbols if kind == "symbol" else prog.labels)


def is_cluster_unit(op: Op, args: dict[str, Any]) -> bool:
    unit = args.get("unit") if op.unit.startswith("field:") else op.unit
    return unit in CLUSTER_UNITS


__all__ = ["AsmError", "assemble"]
