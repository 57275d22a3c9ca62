"""The assembler's lark grammar, generated from the ISA table (one mnemonic terminal per row)."""

from __future__ import annotations

from functools import lru_cache

from lark import Lark

from acf.isa.spec import OPS

_TEMPLATE = r"""
start: _line*
_line: label? statement? _NL
label: NAME ":"
?statement: directive | instr
directive: "." NAME darg*
?darg: DNAME | NUMBER | STRING | FMTNM | typed_shape
typed_shape: DNAME "[" NUMBER ("," NUMBER)* "]"
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
NUMBER.1: /[+-]?(0x[0-9a-fA-F]+|[0-9]+\.?[0-9]*([eE][+-]?[0-9]+)?|\.[0-9]+([eE][+-]?[0-9]+)?|inf|nan)/
SIGN: "+" | "-"
NAME: /[A-Za-z_][A-Za-z0-9_.$]*/
DNAME: /[A-Za-z_][A-Za-z0-9_.$-]*/
STRING: /"([^"\\\n]|\\.)*"/
COMMENT: /[#;][^\n]*/
_NL: /(\r?\n)+/
%ignore /[ \t]+/
%ignore COMMENT
"""


def grammar_text() -> str:
    """The grammar, with every mnemonic of the table as an alternative (longest first)."""
    names = sorted((op.mnemonic for op in OPS), key=len, reverse=True)
    alts = " | ".join(f'/{m.replace(".", "[.]")}(?![A-Za-z0-9_.])/' for m in names)
    return _TEMPLATE.replace("{mnemonics}", alts)


@lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=False)
