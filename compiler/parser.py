"""Parse ACF IR text into a :class:`~acf.compiler.ir.Module` (lark, LALR).

Accepts both op forms, encoding aliases and locations; see ``grammar.py``. Every user error
is an :class:`IRError` pointing at the offending token. ``parse_module`` also runs the
verifier unless ``verify=False``.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

import numpy as np
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .diagnostics import IRError, SourcePos, SourceText
from .grammar import GRAMMAR
from .ir import (
    ELEMENT_TYPES,
    Attribute,
    Block,
    DenseElements,
    FuncOp,
    Location,
    Module,
    Operation,
    Region,
    ScalarType,
    TensorType,
    Type,
    Value,
)
from .sparse_encoding import LevelExpr, LevelType, SparseEncoding

#: one dimension of a tensor type and its ``x`` (a sign, so a negative one is reported)
_DIM = re.compile(r"(-?\d+)x")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=True)


_TERMINAL_TEXT = {
    "TENSOR_HEAD": "a tensor type",
    "SCALAR": "a scalar type",
    "VALUE_ID": "a value (%name)",
    "SYMBOL": "a function name (@name)",
    "OP_NAME": "an op name",
    "STRING": "a string",
    "INT": "an integer",
    "FLOAT": "a float",
    "BOOL": "true/false",
    "NAME": "a name",
    "ENC_ALIAS": "an encoding alias (#name)",
    "FUNC_KW": "'graph.func'",
    "SPARSE_OPEN": "'#sparse<'",
    "DENSE_OPEN": "'dense<'",
    "LOC_OPEN": "'loc('",
}


def _expected_text(name: str) -> str:
    if name in _TERMINAL_TEXT:
        return _TERMINAL_TEXT[name]
    for term in _lark().terminals:
        if term.name == name and term.pattern.type == "str":
            return f"'{term.pattern.value}'"
    return name.lower()


def _describe(token: Token) -> str:
    if token.type == "$END":
        return "end of input"
    if token.type == "TENSOR_HEAD":
        return f"type '{token}...>'"
    return f"'{token}'"


def _syntax_error(err: UnexpectedInput, source: SourceText) -> IRError:
    pos = source.pos(
        err.line if err.line > 0 else len(source.lines), err.column if err.column > 0 else 1
    )
    if isinstance(err, UnexpectedToken):
        expected = sorted(_expected_text(e) for e in err.expected if not e.startswith("__"))
        msg = f"unexpected {_describe(err.token)}, expected one of: {', '.join(expected)}"
    elif isinstance(err, UnexpectedCharacters):
        msg = f"unexpected character '{source.text[err.pos_in_stream or 0]}'"
    elif isinstance(err, UnexpectedEOF):
        msg = "unexpected end of input"
    else:
        msg = "syntax error"
    return IRError(msg, pos, source)


class _Builder:
    """Walks the parse tree, resolving value names and encoding aliases."""

    def __init__(self, source: SourceText) -> None:
        self.source = source
        self.aliases: dict[str, SparseEncoding] = {}
        self.scopes: list[dict[str, Value]] = []
        self.later_defs: set[str] = set()

    def pos(self, item: Token | Tree) -> SourcePos:
        if isinstance(item, Token):
            return self.source.pos(item.line or 1, item.column or 1)
        return self.source.pos(item.meta.line, item.meta.column)

    def error(self, item: Token | Tree, message: str) -> IRError:
        return IRError(message, self.pos(item), self.source)

    # --- module and functions -------------------------------------------------------
    def module(self, tree: Tree) -> Module:
        module = Module()
        module.aliases = self.aliases  # filled while walking
        names: set[str] = set()
        for item in tree.children:
            if item.data == "alias_def":
                name, enc = item.children
                if str(name) in self.aliases:
                    raise self.error(name, f"redefinition of encoding alias '{name}'")
                self.aliases[str(name)] = self.encoding(enc)
            else:
                func = self.func(item)
                if func.sym_name in names:
                    raise self.error(
                        item.children[1], f"redefinition of function '@{func.sym_name}'"
                    )
                names.add(func.sym_name)
                module.funcs.append(func)
        return module

    def func(self, tree: Tree) -> FuncOp:
        _, symbol, *rest = tree.children
        loc = self.location(rest[-1]) if rest[-1] is not None else None
        args = [c for c in rest if isinstance(c, Tree) and c.data == "func_arg"]
        results_tree = next(
            (c for c in rest if isinstance(c, Tree) and c.data == "func_results"), None
        )
        ops = [c for c in rest if isinstance(c, Tree) and c.data == "operation"]
        result_types = self.func_results(results_tree) if results_tree is not None else []
        func = FuncOp(
            str(symbol)[1:],
            [self.type(a.children[1]) for a in args],
            result_types,
            loc=loc,
            pos=self.pos(tree),
        )
        self.scopes = [{}]
        self.later_defs = {
            str(t) for op in ops for names in op.find_data("result_names") for t in names.children
        }
        for arg_tree, value, attrs in zip(args, func.arguments, func.body.arg_attributes):
            self.define(arg_tree.children[0], value)
            if arg_tree.children[2] is not None:
                attrs.update(self.attr_dict(arg_tree.children[2]))
        for op_tree in ops:
            func.body.append(self.operation(op_tree))
        return func

    def func_results(self, tree: Tree) -> list[Type]:
        child = tree.children[0]
        if child is None:
            return []
        return self.type_list(child) if child.data == "type_list" else [self.type(child)]

    # --- values -------------------------------------------------------------------
    def define(self, token: Token | Tree, value: Value) -> None:
        name = str(token)[1:]
        if any(name in scope for scope in self.scopes):
            raise self.error(token, f"redefinition of value '%{name}'")
        value.name_hint = name
        self.scopes[-1][name] = value

    def use(self, token: Token | Tree) -> Value:
        name = str(token)[1:]
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        raise self.error(
            token,
            f"value '%{name}' is used before it is defined"
            if str(token) in self.later_defs
            else f"use of undefined value '%{name}'",
        )

    # --- operations ----------------------------------------------------------------
    def operation(self, tree: Tree) -> Operation:
        names_tree, body, loc_tree = tree.children
        loc = self.location(loc_tree) if loc_tree is not None else None
        regions: list[Region] = []
        if body.data == "generic_body":
            name_tok, values, regions_tree, attrs, in_types, out_types = body.children
            name = ast.literal_eval(str(name_tok))
            if regions_tree is not None:
                regions = [self.region(r) for r in regions_tree.children]
        else:
            name_tok, values, attrs, in_types, out_types = body.children
            name = str(name_tok)
        operands = [self.use(t) for t in values.children] if values is not None else []
        operand_types = self.type_list(in_types) if in_types is not None else []
        result_types = self.type_list(out_types) if out_types is not None else []
        if len(operand_types) != len(operands) and (
            operand_types or in_types is not None or operands
        ):
            raise self.error(
                name_tok,
                f"'{name}' has {len(operands)} operands but {len(operand_types)} operand types",
            )
        for token, value, written in zip(
            values.children if values else [], operands, operand_types
        ):
            if value.type != written:
                raise self.error(
                    token,
                    f"use of value '{token}' expects type {written}, but it has type {value.type}",
                )
        op = Operation(
            name,
            operands,
            result_types,
            self.attr_dict(attrs) if attrs else {},
            regions,
            loc,
            self.pos(name_tok),
        )
        result_tokens = names_tree.children if names_tree is not None else []
        if len(result_tokens) != len(op.results):
            raise self.error(
                name_tok,
                f"'{name}' declares {len(op.results)} result types but "
                f"names {len(result_tokens)} results",
            )
        for token, value in zip(result_tokens, op.results):
            self.define(token, value)
        return op

    def region(self, tree: Tree) -> Region:
        block = Block()
        self.scopes.append({})
        for op_tree in tree.children:
            block.append(self.operation(op_tree))
        self.scopes.pop()
        return Region([block])

    def location(self, tree: Tree) -> Location:
        _, file, line, col, _, layer = tree.children
        for tok, what in ((line, "line"), (col, "column")):
            if int(str(tok)) < 0:
                raise self.error(tok, f"a location's {what} cannot be negative, got {tok}")
        return Location(
            ast.literal_eval(str(file)),
            int(str(line)),
            int(str(col)),
            ast.literal_eval(str(layer)) if layer is not None else None,
        )

    # --- types and encodings ---------------------------------------------------------
    def type_list(self, tree: Tree) -> list[Type]:
        if tree.data != "type_list":  # "(" [type_list] ")" wrappers
            inner = tree.children[0] if tree.children else None
            return self.type_list(inner) if inner is not None else []
        return [self.type(t) for t in tree.children]

    def type(self, tree: Tree) -> Type:
        if tree.data == "scalar_type":
            return ScalarType(str(tree.children[0]))
        head, enc = tree.children
        shape, element = self.tensor_head(head)
        if enc is None:
            encoding = None
        elif enc.data == "alias_ref":
            alias = str(enc.children[0])
            if alias not in self.aliases:
                raise self.error(enc.children[0], f"undefined encoding alias '{alias}'")
            encoding = self.aliases[alias]
        else:
            encoding = self.encoding(enc)
        # a matrix encoding on a tensor of higher rank applies to its matrix view: dim 0 by
        # the product of the others (a conv kernel OIHW as O x IHW, as the ISA packs it)
        if encoding is not None and encoding.rank != len(shape) and not (encoding.rank == 2 < len(shape)):
            raise self.error(
                head, f"encoding of rank {encoding.rank} on a tensor of rank {len(shape)}"
            )
        return TensorType(shape, element, encoding)

    def tensor_head(self, head: Token) -> tuple[tuple[int, ...], str]:
        """Shape and element type of ``tensor<4x8xf32``. The lexer takes the head up to ``,``
        or ``>`` whatever it holds, so a bad dimension or element type is reported here at
        its own column (and an element type may contain an 'x': ``index``)."""
        text = str(head)
        at = len("tensor<")
        dims: list[int] = []
        while match := _DIM.match(text, at):
            if match[1].startswith("-"):
                raise self._head_error(head, at, f"dimension {match[1]} is negative; "
                                                 "dimensions are sizes (0 or more)")
            dims.append(int(match[1]))
            at = match.end()
        element = text[at:]
        if element not in ELEMENT_TYPES:
            found = f"'{element}'" if element else "nothing"
            raise self._head_error(head, at, f"expected an element type ({', '.join(ELEMENT_TYPES)}) "
                                             f"after the dimensions, got {found}")
        return tuple(dims), element

    def _head_error(self, head: Token, offset: int, message: str) -> IRError:
        pos = self.pos(head)
        return IRError(message, self.source.pos(pos.line, pos.col + offset), self.source)

    def encoding(self, tree: Tree) -> SparseEncoding:
        dims = [str(c) for c in tree.children if isinstance(c, Token) and c.type == "NAME"]
        levels = []
        for level in (c for c in tree.children if isinstance(c, Tree)):
            (dim, op, value), kind = level.children[0].children, level.children[1]
            expr = LevelExpr(str(dim), str(op) if op else None, int(str(value)) if value else 0)
            try:
                levels.append((expr, self.level_type(kind)))
            except ValueError as err:
                raise self.error(kind, str(err)) from None
        try:
            return SparseEncoding(tuple(dims), tuple(levels))
        except ValueError as err:
            raise self.error(tree, str(err)) from None

    @staticmethod
    def level_type(tree: Tree) -> LevelType:
        first, *args = tree.children
        if str(first) == "structured":
            return LevelType("structured", n=int(str(args[0])), m=int(str(args[1])))
        if args[0] is not None and str(args[0]) != "nonunique":
            raise ValueError(f"unknown level property '{args[0]}'; expected 'nonunique'")
        return LevelType(str(first), nonunique=args[0] is not None)

    # --- attributes ---------------------------------------------------------------------
    def attr_dict(self, tree: Tree) -> dict[str, Attribute]:
        out: dict[str, Attribute] = {}
        for entry in tree.children:
            if entry is None:
                continue
            key, value = entry.children
            if str(key) in out:
                raise self.error(key, f"duplicate attribute '{key}'")
            out[str(key)] = self.attr_value(value)
        return out

    def attr_value(self, tree: Tree) -> Attribute:
        kind = tree.data
        if kind == "list_attr":
            return [self.attr_value(c) for c in tree.children if c is not None]
        if kind == "dense_attr":
            _, literal, type_tree = tree.children
            type_ = self.type(type_tree)
            return self.dense(literal, type_, type_tree)
        token = str(tree.children[0])
        if kind == "int_attr":
            return int(token)
        if kind == "float_attr":
            return float(token)
        if kind == "bool_attr":
            return token == "true"
        return ast.literal_eval(token)

    def dense(self, literal: Tree, type_: Type, where: Tree) -> DenseElements:
        if not isinstance(type_, TensorType):
            raise self.error(where, "dense elements need a tensor type")

        def nested(tree: Tree) -> object:
            if tree.data == "dense_list":
                return [nested(c) for c in tree.children if c is not None]
            return self.attr_value(tree)

        dtype = {"f32": np.float32, "i64": np.int64, "i1": np.bool_, "index": np.int64}
        try:
            array: np.ndarray = np.array(nested(literal), dtype=dtype[type_.element])
            if array.ndim == 0:
                array = np.broadcast_to(array, type_.shape).copy()
        except (ValueError, TypeError):
            raise self.error(literal, "ragged dense literal") from None
        if array.shape != type_.shape:
            raise self.error(
                literal, f"dense literal has shape {list(array.shape)}, but its type is {type_}"
            )
        return DenseElements(array, type_)


def parse_module(text: str, filename: str = "<input>", verify: bool = True) -> Module:
    """Parse (and by default verify) IR text; raises :class:`IRError` on any user error."""
    source = SourceText(filename, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as err:
        raise _syntax_error(err, source) from None
    module = _Builder(source).module(tree)
    if verify:
        from .verifier import verify_module

        try:
            verify_module(module)
        except IRError as err:
            raise err.with_source(source) from None
    return module
