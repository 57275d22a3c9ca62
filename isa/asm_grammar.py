"""The assembler's lark grammar, generated from the ISA table (one mnemonic terminal per row)."""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

from acf.isa import spec

_TEMPLATE = r"""
start: _line*
_line: label? statement? _NL
label: NAME ":"
?statement: directive | instr
directive: "." NAME darg*
?darg: DNAME | NUMBER | STRING | FMTNM | typed_shape
typed_shape: DNAME "[" (NUMBER ("," NUMBER)*)? "]"
instr: MNEMONIC (operand ("," operand)*)? clause*
?operand: kwarg | value
kwarg: NAME "=" value
?value: memref | NUMBER | NAME | FMTNM
memref: SPACE "[" addr "]"
addr: term (SIGN term)*
?term: NUMBER | NAME
clause: CLAUSE "(" NAME ("," NAME)* ")"

MNEMONIC.3: {mnemonics}
CLAUSE.3: /(wait|sig)(?=\()/
SPACE.3: /(dram|gb|sp|acc)(?=\[)/
FMTNM.2: /nm[0-9]+:[0-9]+/
// inf and nan only as whole words: "info" and "nan2" are names
NUMBER.1: /[+-]?(0x[0-9a-fA-F]+|[0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|(inf|nan)(?![A-Za-z0-9_.$-]))/
SIGN: "+" | "-"
NAME: /[A-Za-z_][A-Za-z0-9_.$]*/
DNAME: /[A-Za-z_][A-Za-z0-9_.$-]*/
STRING: /"([^"\\\n]|\\.)*"/
COMMENT: /[#;][^\n]*/
_NL: /(\r?\n)+/
%ignore /[ \t]+/
%ignore COMMENT
"""


def grammar_text(mnemonics: tuple[str, ...] | None = None) -> str:
    """The grammar, with every mnemonic of the table as an alternative (longest first)."""
    names = sorted(mnemonics or (op.mnemonic for op in spec.OPS), key=len, reverse=True)
    # a mnemonic is a whole word: ``halt$x`` is a name
    alts = " | ".join(f'/{m.replace(".", "[.]")}(?![A-Za-z0-9_.$])/' for m in names)
    return _TEMPLATE.replace("{mnemonics}", alts)


def parser() -> Lark:
    """The parser for the current table (rebuilt only when the table changes)."""
    return _parser(tuple(op.mnemonic for op in spec.OPS))


@lru_cache(maxsize=4)
def _parser(mnemonics: tuple[str, ...]) -> Lark:
    return Lark(grammar_text(mnemonics), parser="lalr", propagate_positions=True, maybe_placeholders=False)
