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
``abs``. Errors are :class:`ExprError` with the column of the offending text;
:class:`ExprValueError` where only the values met make it fail (a division by zero).
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


class ExprValueError(ExprError):
    """An expression that is well formed and names what exists, failing on the values it
    meets (a division by zero, a result past the largest float, an index that is not a
    whole number). ``constant``: the failing part reads no name, so it fails whatever the
    machine holds; otherwise a condition may still be set, failing only where those
    values occur."""

    def __init__(self, text: str, column: int, msg: str, constant: bool = False):
        super().__init__(text, column, msg)
        self.constant = constant


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
            try:
                return int(text, 0) if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", text) else float(text)
            except ValueError:  # past Python's limit on the digits of an integer
                raise ExprError(self.text, kids[0].column or 1,
                                f"number too long ({len(text)} digits)") from None
        if kind == "name":
            return self._lookup(lookup, kids[0], ())
        if kind == "index":
            idx = tuple(self._index(k, lookup) for k in kids[1:])
            return self._lookup(lookup, kids[0], idx)
        if kind == "call":
            fn = _FUNCS.get(str(kids[0]))
            if fn is None:
                raise ExprError(
                    self.text,
                    kids[0].column,
                    f"unknown function {str(kids[0])!r} ({', '.join(sorted(_FUNCS))})",
                )
            value = self._eval(kids[1], lookup)
            try:
                return fn(float(value))
            except OverflowError:  # an integer past the largest float
                raise ExprValueError(self.text, _column(kids[1]),
                                     f"{kids[0]!s}: the value is too large for a float",
                                     _constant(kids[1])) from None
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
                    raise ExprValueError(self.text, op.column, "division by zero",
                                         _constant(node)) from None
                except OverflowError:  # integers whose quotient is past the largest float
                    raise ExprValueError(self.text, op.column, f"the result of {str(op)!r} is "
                                         "too large for a float", _constant(node)) from None
            return value
        raise ExprError(self.text, 1, f"internal error: unhandled node {kind}")

    def _index(self, node: Any, lookup: Callable) -> int:
        """A tensor index: a whole number (``X[1.5,0]``, ``X[inf,0]`` or ``X[nan,0]`` name
        no element)."""
        value = self._eval(node, lookup)
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise ExprValueError(self.text, _column(node), f"index {value} is not a whole number",
                                 _constant(node))
        return int(value)

    def _lookup(self, lookup: Callable, tok: Token, idx: tuple[int, ...]) -> Any:
        try:
            return lookup(str(tok), idx)
        except KeyError as exc:
            raise ExprError(
                self.text,
                tok.column or 1,
                str(exc.args[0]) if exc.args else f"unknown name {str(tok)!r}",
            ) from None


def _constant(node: Any) -> bool:
    """Whether a subtree reads no name (its value is the same whatever the machine holds)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if getattr(item, "data", None) in ("name", "index"):
            return False
        stack.extend(getattr(item, "children", ()))
    return True


def _column(node: Any) -> int:
    """Column of the first token of a subtree (1 when it has none)."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, Token):
            return item.column or 1
        stack.extend(reversed(getattr(item, "children", ())))
    return 1


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
