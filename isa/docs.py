"""``docs/isa.md``, generated from the ISA table (a test fails when the file is stale)."""

from __future__ import annotations

from acf.isa import spec
from acf.isa.spec import QUEUED_HEADER_BITS, WORD_BITS


def isa_markdown() -> str:
    out = [
        "# ACF instruction set",
        "",
        "Generated from `isa/spec.py` by `acfc isa-doc`; do not edit by hand.",
        "",
        f"Every instruction is one {WORD_BITS}-bit little-endian word; bits 0-7 are the opcode.",
        f"Queued instructions carry a {QUEUED_HEADER_BITS}-bit header: opcode, cluster `cl`, tokens",
        "`wait0`, `wait1` (consumed before start) and `sig0`, `sig1` (signalled at completion).",
        f"Token ids `t1`-`t{spec.SHARED_TOKENS - 1}` are local: every cluster has its own counters",
        "(the global `dma`/`cfg` queues share one more set); "
        f"`t{spec.SHARED_TOKENS}`-`t255` are shared by the",
        "whole fabric and order work across clusters.",
        "In assembly: `mnemonic cN, operands... wait(tA, tB) sig(tC)`; operands with a default",
        "are written `name=value`. Memory operands: `space[offset+symbol+arN]` with space one of",
        "`dram gb sp acc`.",
        "",
        "| mnemonic | opcode | group | unit | timing | doc |",
        "|---|---|---|---|---|---|",
    ]
    for op in spec.OPS:
        out.append(f"| `{op.mnemonic}` | `{op.opcode:#04x}` | {op.group} | {op.unit} | {op.timing} | {op.doc} |")
    for op in spec.OPS:
        out += ["", f"## `{op.mnemonic}`", "", op.doc, ""]
        out.append(f"opcode `{op.opcode:#04x}`, unit `{op.unit}`, timing class `{op.timing}`, "
                   f"energy events: {', '.join(f'`{e}`' for e in op.energy) or 'none'}.")
        if op.fields:
            out += ["", "| field | bits | offset | kind | default | doc |", "|---|---|---|---|---|---|"]
            for f, off in op.layout():
                default = "" if f.default is None else f"`{f.default}`"
                out.append(f"| `{f.name}` | {f.kind.bits} | {off} | {f.kind.describe()} | {default} | {f.doc} |")
    return "\n".join(out) + "\n"
