"""``acfc disasm prog.acfbin [-o prog.s] [--addresses]``."""

from __future__ import annotations

import argparse

from acf.cli import UserError, read_input, refuse_same_files, write_output
from acf.isa.container import MAGIC, ContainerError, read
from acf.isa.disasm import disassemble


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="binary container, or - for stdin")
    p.add_argument("-o", "--output", default="-", help="output assembly (default: stdout)")
    p.add_argument("--addresses", action="store_true", help="prefix instructions with their address")


def run(args: argparse.Namespace) -> int:
    refuse_same_files([("-o", args.output)], [("input", args.input)])
    data, name = read_input(args.input, binary=True)
    try:
        prog = read(bytes(data))
    except ContainerError as exc:
        from acf.cli import looks_like_text

        hint = ("; it is text: acfc asm makes a binary container of assembly"
                if data and not data.startswith(MAGIC) and looks_like_text(bytes(data)) else "")
        raise UserError(f"{name}: error: {exc}{hint}") from None
    write_output(args.output, disassemble(prog, with_addresses=args.addresses))
    return 0
