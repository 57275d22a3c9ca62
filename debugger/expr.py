"""Conditions: a small, safe expression language over the machine state (never ``eval``).

Grammar (C-like precedence; ``and``/``or``/``not`` may be written ``&& || !``)::

    cycle >= 100 and t3 == 0          # clock, token counts
    ar1 == 256 || c0.fr2 > 0.5        # address registers, float registers of a cluster
    c0.mac.depth > 2                  # instructions waiting in a queue
    pc == 12                          # the dispatcher's next instruction
    X[1,3] != 0 / isnan(Y[0,0])       # an element of a named tensor

Names: ``cycle``, ``pc``, ``arN``, ``frN`` (cluster 0), ``cK.frN``, ``tN`` / ``cK.tN`` (token
count; a local ``tN`` is cluster 0's),
``cK.UNIT.depth`` / ``dma.depth`` / ``cfg.depth``, ``loopN`` (remaining iterations of loop
level N), a ``.tensor`` symbol indexed with ``[i, j, ...]``; functions ``isnan``, ``isinf``,
``abs``. Errors are :class:`ExprError` with the column of the offending text.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

GRAMMAR = r"""
?start: or_
?or_: and_ (("or" | "||") and_)*
?and_: not_ (("and" | "&&") not_)*
?not_: ("not" | "!") not_              -> not_
     | cmp
?cmp: sum (CMP sum)?
?sum: term (ADD term)*
?term: unary (MUL unary)*
?unary: "-" unary                      -> neg
      | atom
?atom: NUMBER                          -> number
     | NAME "(" start ")"              -> call
     | NAME "[" start ("," start)* "]" -> index
     | NAME                            -> name
     | "(" start ")"
CMP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADD: "+" | "-"
MUL: "*" | "/" | "%"
NAME: /[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*/
NUMBER: /0x[0-9a-fA-F]+/ | /\d+(\.\d*)?([eE][-+]?\d+)?/ | /inf|nan/
%ignore /\s+/
"""

_PARSER: Lark | None = None
_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "%": operator.mod,
}
_FUNCS: dict[str, Callable[[float], Any]] = {"isnan": math.isnan, "isinf": math.isinf, "abs": abs}
#: Deepest nesting of an expression (``-(-(-x))``, parentheses): evaluation recurses once per
#: level, and thousands of levels would exhaust Python's stack.
MAX_DEPTH = 100


class ExprError(ValueError):
    """A bad expression: ``column`` is 1-based within the expression text."""

    def __init__(self, text: str, column: int, msg: str):
        self.column = column
        if len(text) > 80:  # a long expression is shortened to the part around the column
            start = max(0, min(column - 40, len(text) - 77))
            shown = ("..." if start else "") + text[start:start + 77] + ("..." if start + 77 < len(text) else "")
            column_shown = column - start + (3 if start else 0)
        else:
            shown, column_shown = text, column
        super().__init__(f"{msg} at column {column}: {shown}\n{' ' * (column_shown - 1)}^")


class Expr:
    """A parsed condition; ``evaluate(lookup)`` with ``lookup(name, indices) -> value``."""

    def __init__(self, text: str):
        global _PARSER
        if _PARSER is None:
            _PARSER = Lark(GRAMMAR, parser="lalr")
        self.text = text.strip()
        try:
            self.tree = _PARSER.parse(self.text)
        except UnexpectedInput as exc:
            col = getattr(exc, "column", 1) or 1
            bad = self.text[col - 1 : col + 9] or "end of expression"
            raise ExprError(self.text, col, f"unexpected {bad!r}") from None
        except RecursionError:
            raise ExprError(self.text, 1, f"expression nested more than {MAX_DEPTH} deep") from None
        _check_depth(self.text, self.tree)

    def __str__(self) -> str:
        return self.text

    def evaluate(self, lookup: Callable[[str, tuple[int, ...]], Any]) -> Any:
        return self._eval(self.tree, lookup)

    def _eval(self, node: Any, lookup: Callable) -> Any:
        if isinstance(node, Token):
            raise ExprError(self.text, node.column or 1, f"unexpected {str(node)!r}")
        kind, kids = node.data, node.children
        if kind == "number":
            text = str(kids[0])
            return int(text, 0) if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", text) else float(text)
        if kind == "name":
            return self._lookup(lookup, kids[0], ())
        if kind == "index":
            idx = tuple(int(self._eval(k, lookup)) for k in kids[1:])
            return self._lookup(lookup, kids[0], idx)
        if kind == "call":
            fn = _FUNCS.get(str(kids[0]))
            if fn is None:
                raise ExprError(
                    self.text,
                    kids[0].column,
                    f"unknown function {str(kids[0])!r} ({', '.join(sorted(_FUNCS))})",
                )
            return fn(float(self._eval(kids[1], lookup)))
        if kind == "neg":
            return -self._eval(kids[0], lookup)
        if kind == "not_":
            return not self._eval(kids[0], lookup)
        if kind == "and_":
            return all(self._eval(k, lookup) for k in kids)
        if kind == "or_":
            return any(self._eval(k, lookup) for k in kids)
        if kind in ("cmp", "sum", "term"):
            value = self._eval(kids[0], lookup)
            for op, rhs in zip(kids[1::2], kids[2::2]):
                right = self._eval(rhs, lookup)
                try:
                    value = _OPS[str(op)](value, right)
                except ZeroDivisionError:
                    raise ExprError(self.text, op.column, "division by zero") from None
            return value
        raise ExprError(self.text, 1, f"internal error: unhandled node {kind}")

    def _lookup(self, lookup: Callable, tok: Token, idx: tuple[int, ...]) -> Any:
        try:
            return lookup(str(tok), idx)
        except KeyError as exc:
            raise ExprError(
                self.text,
                tok.column or 1,
                str(exc.args[0]) if exc.args else f"unknown name {str(tok)!r}",
            ) from None


def _check_depth(text: str, tree: Any) -> None:
    """ExprError when the tree nests deeper than MAX_DEPTH (walked without recursion)."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            col = getattr(getattr(node, "meta", None), "column", None) or 1
            raise ExprError(text, col if isinstance(col, int) else 1,
                            f"expression nested more than {MAX_DEPTH} deep")
        for kid in getattr(node, "children", ()):
            if not isinstance(kid, Token):
                stack.append((kid, depth + 1))


def parse(text: str) -> Expr:
    """Parse a condition (raises :class:`ExprError`)."""
    return Expr(text)
