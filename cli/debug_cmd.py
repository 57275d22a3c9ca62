"""``acfc debug prog.s|prog.acfbin --target NAME [--inputs in.npz] [-x cmds] [--batch]``.

Starts the assembly-level debugger (:mod:`acf.debugger.shell`): commands from ``-x`` run
first (echoed after the prompt), then stdin is read unless ``--batch``.
"""

from __future__ import annotations

import argparse
import sys

from acf.cli import UserError, read_input
from acf.cli.program_io import positive_int


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
    p.add_argument("--max-instructions", type=positive_int, default=None, metavar="N",
                   help="trap once N instructions have run (default: 10 million)")


def run(args: argparse.Namespace) -> int:
    from acf.cli import writing_stdout
    from acf.cli.program_io import load_inputs, load_program, load_target_for, symbol_error
    from acf.cli.run_cmd import trap_text
    from acf.debugger.engine import Debugger
    from acf.emulator import EmulatorTrap
    from acf.emulator.emulator import SymbolError
    from acf.emulator.engine import DEFAULT_MAX_INSTRUCTIONS

    prog = load_program(args.program, check_target=not args.target)
    target = load_target_for(prog, args.target, None, args.program)
    inputs = load_inputs(args.inputs)
    try:
        dbg = Debugger(prog, target, inputs,
                       max_instructions=args.max_instructions or DEFAULT_MAX_INSTRUCTIONS)
    except SymbolError as exc:
        raise UserError(symbol_error(args.program, prog, exc)) from None
    except EmulatorTrap as exc:  # the dispatcher runs ahead from the start: a loop nested
        # too deep, or the instruction limit, can stop the program before any command
        raise UserError(trap_text(args.program, prog, exc)) from None
    except ValueError as exc:
        raise UserError(f"{args.program}: error: {exc}") from None
    # the shell lets an error writing its output through: a full disk or device ends the
    # session with one error line (writing_stdout), not one per command
    from acf.debugger.shell import PROMPT, Shell

    shell = Shell(dbg, lambda line: print(line, flush=True))
    for path in args.commands:
        text, _ = read_input(path)
        with writing_stdout():
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
        with writing_stdout():
            if not shell.execute(line):
                return 0
