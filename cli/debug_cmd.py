"""``acfc debug prog.s|prog.acfbin --target NAME [--inputs in.npz] [-x cmds] [--batch]``.

Starts the assembly-level debugger (:mod:`acf.debugger.shell`): commands from ``-x`` run
first (echoed after the prompt), then stdin is read unless ``--batch``.
"""

from __future__ import annotations

import argparse
import sys

from acf.cli import UserError, read_input


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", help="assembly (.s) or binary container (.acfbin)")
    p.add_argument(
        "--target", default=None, help="target name or TOML file (default: the program's .target)"
    )
    p.add_argument("--inputs", help=".npz of input tensors, by .tensor symbol name")
    p.add_argument(
        "-x",
        dest="commands",
        action="append",
        default=[],
        metavar="FILE",
        help="run debugger commands from FILE first (repeatable)",
    )
    p.add_argument(
        "--batch", action="store_true", help="exit after the -x files instead of reading stdin"
    )


def run(args: argparse.Namespace) -> int:
    from acf.cli.program_io import load_inputs, load_program, load_target_for
    from acf.debugger.engine import Debugger
    from acf.debugger.shell import PROMPT, Shell

    prog = load_program(args.program)
    target = load_target_for(prog, args.target)
    inputs = load_inputs(args.inputs)
    try:
        dbg = Debugger(prog, target, inputs)
    except ValueError as exc:
        raise UserError(f"{args.program}: error: {exc}") from None
    shell = Shell(dbg, lambda line: print(line, flush=True))
    for path in args.commands:
        text, _ = read_input(path)
        if not shell.run(str(text).splitlines(), echo=True):
            return 0
    if args.batch:
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input(PROMPT) if interactive else sys.stdin.readline()
        except EOFError:
            return 0
        if not interactive and not line:
            return 0
        if not shell.execute(line):
            return 0
