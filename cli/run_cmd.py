"""``acfc run``: run a program (assembly or binary container) on the emulator."""

from __future__ import annotations

import argparse
import io
import os
import sys

from acf.cli import UserError, refuse_same_files, write_output
from acf.cli.program_io import positive_int


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
    p.add_argument("--max-instructions", type=positive_int, default=None, metavar="N",
                   help="stop with a trap once N instructions have run (default: 10 million)")


def run(args: argparse.Namespace) -> int:
    from acf.cli import writing_stdout
    from acf.cli.program_io import load_inputs, load_program, load_target_for, symbol_error
    from acf.emulator import EmulatorTrap
    from acf.emulator import run as emulate
    from acf.emulator.emulator import SymbolError
    from acf.emulator.engine import DEFAULT_MAX_INSTRUCTIONS

    outputs = [("--outputs", args.outputs), ("--report", args.report), ("--csv", args.csv),
               ("--trace", args.trace)]
    target_file = args.target if args.target and os.path.isfile(args.target) else None
    refuse_same_files(outputs, [("program", args.program), ("--inputs file", args.inputs),
                                ("--target file", target_file)])
    prog = load_program(args.program, check_target=not args.target)
    target = load_target_for(prog, args.target, args.set, args.program)
    inputs = load_inputs(args.inputs)
    to_stdout = [flag for flag, path in outputs if path == "-"]
    if len(to_stdout) > 1:
        flags = (f"{to_stdout[0]} and {to_stdout[1]} both" if len(to_stdout) == 2 else
                 f"{', '.join(to_stdout[:-1])} and {to_stdout[-1]} all")
        raise UserError(f"{args.program}: error: {flags} write to stdout ('-'); send all but "
                        "one to files")
    for path in (args.outputs, args.report, args.csv, args.trace):
        _check_writable(path)  # before the run: a long run must not end unable to save
    limit = args.max_instructions or DEFAULT_MAX_INSTRUCTIONS
    try:
        if args.trace:
            res = _run_traced(prog, target, inputs, args.trace, limit)
        else:
            res = emulate(prog, target, inputs, mode="stepped" if args.stepped else "batched",
                          max_instructions=limit)
    except EmulatorTrap as exc:
        raise UserError(trap_text(args.program, prog, exc)) from None
    except SymbolError as exc:
        raise UserError(symbol_error(args.program, prog, exc)) from None
    except ValueError as exc:
        raise UserError(f"{args.program}: error: {exc}") from None
    if args.outputs:
        write_output(args.outputs, npz_bytes(res.outputs))
    if args.report:
        write_output(args.report, res.report.to_json())
    if args.csv:
        write_output(args.csv, res.report.to_csv())
    if not args.quiet:  # on stderr when stdout carries a file ('-'), which it must not corrupt
        with writing_stdout():
            res.report.summary(_stderr_console() if to_stdout else None)
    for sym, why in sorted(res.unreadable.items()):  # stderr: --quiet silences stdout only
        print(f"{args.program}: warning: output {sym!r} left out of the outputs: {why}",
              file=sys.stderr)
    return 0


def npz_bytes(arrays: dict) -> bytes:
    """An ``.npz`` archive (what ``numpy.savez`` writes: one ``NAME.npy`` member per array),
    written member by member: ``numpy.savez(file, **arrays)`` takes tensor names as its
    own keywords, so a tensor named ``file`` failed and one named ``allow_pickle`` was
    dropped. Every name reads back from ``numpy.load`` as given."""
    import zipfile

    import numpy as np

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return buf.getvalue()


def trap_text(path: str, prog, exc) -> str:
    """``prog.s:LINE: trap at cycle ...``: the trapping instruction's line when the program
    was assembled here, and the source it was compiled from (its debug info) when known."""
    line = prog.asm_lines.get(exc.index)
    text = f"{path}:{line}: {exc}" if line else f"{path}: {exc}"
    loc = prog.debug.get(exc.index)
    text += f" (compiled from {loc})" if loc is not None and loc.file else ""
    heads = [f"{w} at line {prog.asm_lines[w.index]}" for w in exc.blocked
             if w.index in prog.asm_lines and w.index != exc.index]
    text += ("; the other blocked heads: " + ", ".join(heads)) if heads else ""
    return text + ("; --max-instructions N sets the limit" if exc.kind == "limit" else "")


def _check_writable(path: str | None) -> None:
    from acf.isa.outfiles import check_file_path

    if path in (None, "-"):
        return
    try:
        check_file_path(path)
    except OSError as exc:
        raise UserError(f"{path}: error: cannot write: {exc.strerror}") from None
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UserError(f"{path}: error: cannot write: Is a directory")
    if not os.path.isdir(folder):
        raise UserError(f"{path}: error: cannot write: No such directory {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{path}: error: cannot write: Permission denied")


def _run_traced(prog, target, inputs, path: str, limit: int):  # type: ignore[no-untyped-def]
    """Stream the trace to a temporary file and move it into place only on success ('-':
    copy it to stdout then)."""
    import shutil
    import tempfile

    from acf.cli import writing_stdout
    from acf.debugger.trace import write_trace
    from acf.emulator import Emulator
    from acf.isa.outfiles import install_file, temp_beside

    if path == "-":
        fd, tmp = tempfile.mkstemp(prefix="acfc-trace-", suffix=".json")
        os.close(fd)
    else:
        tmp = temp_beside(path, ".acfc-trace-", ".json")
    try:
        res = write_trace(Emulator(prog, target, inputs, limit), prog, target, tmp)
        if path == "-":
            with open(tmp, "rb") as f, writing_stdout():
                shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
    except BaseException:
        os.unlink(tmp)
        raise
    if path == "-":
        os.unlink(tmp)
    else:
        install_file(tmp, path)
    return res


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
