"""``acfc asm prog.s [-o prog.acfbin]``: assemble ('-' reads stdin / writes stdout)."""

from __future__ import annotations

import argparse

from acf.cli import UserError, read_input, refuse_same_files, write_output
from acf.isa.asm import AsmError, assemble
from acf.isa.container import write


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="assembly file, or - for stdin")
    p.add_argument("-o", "--output", default="-", help="output container (default: stdout)")


def run(args: argparse.Namespace) -> int:
    refuse_same_files([("-o", args.output)], [("input", args.input)])
    text, name = read_input(args.input)
    try:
        prog = assemble(str(text), name, check="fit")  # against the .target it names
    except AsmError as exc:
        raise UserError(str(exc)) from None
    write_output(args.output, write(prog))
    return 0
