"""``acfc run``: run a program (assembly or binary container) on the emulator."""

from __future__ import annotations

import argparse
import io
import sys

from acf.cli import UserError, read_input, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("program", help="assembly (.s) or binary container (.acfbin)")
    p.add_argument("--target", default=None, help="target name or TOML file (default: the program's .target)")
    p.add_argument("--set", action="append", default=[], metavar="SEC.FIELD=V", help="override a target field")
    p.add_argument("--inputs", help=".npz of input tensors, by .tensor symbol name")
    p.add_argument("--outputs", help="write every .tensor symbol to this .npz")
    p.add_argument("--report", help="write the report as JSON")
    p.add_argument("--csv", help="write the report as CSV")
    p.add_argument("--stepped", action="store_true", help="instruction-stepped mode (same results)")
    p.add_argument("--trace", help="write a Chrome/Perfetto trace JSON (1 simulated cycle = 1 ns)")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")


def _load_program(path: str):
    from acf.isa.asm import AsmError, assemble

    if path.endswith(".s") or path == "-":
        text, name = read_input(path)
        try:
            return assemble(text, name)
        except AsmError as exc:
            raise UserError(str(exc)) from None
    from acf.isa import container

    data, name = read_input(path, binary=True)
    try:
        return container.read(data)
    except container.ContainerError as exc:
        raise UserError(f"{name}: error: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from acf.emulator import EmulatorTrap
    from acf.emulator import run as emulate
    from acf.isa.target import TargetError, load_target, parse_set_args

    prog = _load_program(args.program)
    name = args.target or prog.target or "acf-base"
    try:
        target = load_target(name, parse_set_args(args.set) or None)
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
        if args.trace:
            res = _run_traced(prog, target, inputs, args.trace)
        else:
            res = emulate(prog, target, inputs, mode="stepped" if args.stepped else "batched")
    except EmulatorTrap as exc:
        raise UserError(f"{args.program}: {exc}") from None
    except ValueError as exc:
        raise UserError(f"{args.program}: error: {exc}") from None
    if args.outputs:
        buf = io.BytesIO()
        np.savez(buf, **res.outputs)
        write_output(args.outputs, buf.getvalue())
    if args.report:
        write_output(args.report, res.report.to_json())
    if args.csv:
        write_output(args.csv, res.report.to_csv())
    if not args.quiet:
        res.report.summary()
        for sym, why in sorted(res.unreadable.items()):
            print(f"note: output {sym!r} not decoded: {why}", file=sys.stderr)
    return 0


def _run_traced(prog, target, inputs, path: str):  # type: ignore[no-untyped-def]
    """Stream the trace to a temporary file and move it into place only on success."""
    import os
    import tempfile

    from acf.debugger.trace import write_trace
    from acf.emulator import Emulator

    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".acfc-trace-", suffix=".json")
    os.close(fd)
    try:
        res = write_trace(Emulator(prog, target, inputs), prog, target, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return res
