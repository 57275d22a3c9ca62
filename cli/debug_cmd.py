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
    import numpy as np
    from acf.cli.run_cmd import _load_program
    from acf.debugger.engine import Debugger
    from acf.debugger.shell import PROMPT, Shell
    from acf.isa.target import TargetError, load_target

    prog = _load_program(args.program)
    try:
        target = load_target(args.target or prog.target or "acf-base")
    except TargetError as exc:
        raise UserError(str(exc)) from None
    inputs = {}
    if args.inputs:
        try:
            with np.load(args.inputs) as npz:
                inputs = {k: npz[k] for k in npz.files}
        except (OSError, ValueError) as exc:
            raise UserError(f"{args.inputs}: error: cannot read inputs: {exc}") from None
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
