"""``acf-opt``: parse ACF IR, run a pass pipeline, print the result.

Usage::

    python -m acf.compiler.opt in.acfir -p 'canonicalize,cse' [-o out.acfir]
        [--print-ir-before=NAME] [--print-ir-after=NAME] [--print-ir-after-all]
        [--print-ir-after-change] [--time-passes] [--reproducer=PATH]
        [--print-generic] [--no-verify-each] [--split-input-file] [--list-passes]

``-`` reads stdin; output goes to stdout unless ``-o``. User errors print
``file:line:col: error: ...`` on stderr and return 1; usage errors return 2; a pass that
crashes returns 3 after writing a reproducer. ``--split-input-file`` treats each chunk
between ``// -----`` lines as its own module (line numbers stay those of the file) and
reports every failing chunk.
"""

from __future__ import annotations

import argparse
import re
import sys

from .diagnostics import IRError, decode_utf8
from .pass_manager import Instrumentation, PassFailure, PassManager, parse_pipeline
from .passes import PASSES, PIPELINES
from .printer import print_module


class _UsageError(Exception):
    pass


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def _names(values: list[str]) -> set[str]:
    """Pass names, a named pipeline standing for the passes it runs (``sparsify``)."""
    out = set()
    for n in (n.strip() for v in values for n in v.split(",")):
        if n in PIPELINES and n not in PASSES:
            out |= {p.strip().split("{")[0] for p in PIPELINES[n].split(",")}
        elif n:
            out.add(n)
    return out


def build_arg_parser(prog: str = "acf-opt") -> argparse.ArgumentParser:
    ap = _ArgumentParser(prog=prog, description="Run passes over ACF IR.")
    ap.add_argument("input", nargs="?", default="-", help="IR file, or - for stdin")
    ap.add_argument("-p", "--pipeline", default="", help="e.g. 'canonicalize,cse,tile{m=32}'")
    ap.add_argument("-o", "--output", default="-", help="output file (default stdout)")
    ap.add_argument("--print-ir-before", action="append", default=[], metavar="NAME")
    ap.add_argument("--print-ir-after", action="append", default=[], metavar="NAME")
    ap.add_argument("--print-ir-after-all", action="store_true")
    ap.add_argument("--print-ir-after-change", action="store_true")
    ap.add_argument("--time-passes", action="store_true")
    ap.add_argument("--remarks", action="store_true",
                    help="passes that explain their choices (select-formats) print remarks")
    ap.add_argument("--reproducer", metavar="PATH", help="where to write a crash reproducer")
    ap.add_argument("--print-generic", action="store_true", help="print every op generically")
    ap.add_argument("--no-verify-each", action="store_true", help="skip verify after passes")
    ap.add_argument(
        "--split-input-file",
        action="store_true",
        help="process chunks separated by '// -----' independently",
    )
    ap.add_argument("--list-passes", action="store_true", help="list passes and pipelines")
    return ap


def _list_passes() -> str:
    lines = ["passes:"]
    for name, cls in sorted(PASSES.items()):
        opts = ", ".join(f"{k}={o.default!r}" for k, o in cls.options.items())
        lines.append(f"  {name}{'{' + opts + '}' if opts else ''}")
    lines.append("pipelines:")
    lines += [f"  {name} = {text}" for name, text in sorted(PIPELINES.items())]
    return "\n".join(lines) + "\n"


def _read(path: str) -> tuple[str, str]:
    """The input's text and name; an IRError at the first byte that is not UTF-8."""
    if path == "-":
        if not hasattr(sys.stdin, "buffer"):  # replaced by a text stream (tests)
            return sys.stdin.read(), "<stdin>"
        data, name = sys.stdin.buffer.read(), "<stdin>"
    else:
        with open(path, "rb") as f:
            data, name = f.read(), path
    # universal newlines, as text-mode reading gave
    return decode_utf8(data, name).replace("\r\n", "\n").replace("\r", "\n"), name


SPLIT_MARKER = re.compile(r"^// -----.*$", re.MULTILINE)


def split_chunks(text: str) -> list[str]:
    """Chunks between ``// -----`` lines, each padded with newlines to keep line numbers."""
    chunks, start, line = [], 0, 0
    for match in SPLIT_MARKER.finditer(text):
        chunks.append("\n" * line + text[start : match.start()])
        line = text.count("\n", 0, match.end())
        start = match.end()
    chunks.append("\n" * line + text[start:])
    return chunks


def _process(
    text: str, name: str, passes_text: str, args: argparse.Namespace, instr: Instrumentation
) -> tuple[int, str]:
    """Parse, run the pipeline and print one module: (status, output text)."""
    from .parser import parse_module

    try:
        passes = parse_pipeline(passes_text)
        if args.remarks:
            for p in passes:
                if "remarks" in p.options:
                    p.remarks = True  # type: ignore[attr-defined]
        module = parse_module(text, name)
        PassManager(passes, instr, verify_each=not args.no_verify_each).run(module)
        return 0, print_module(module, generic=args.print_generic)
    except IRError as err:
        sys.stderr.write(f"{err}\n")
        return 1, ""
    except PassFailure as err:
        sys.stderr.write(f"{err}\n")
        return 3, ""


def main(argv: list[str], prog: str = "acf-opt") -> int:
    """Entry point; returns the process exit status (0 ok, 1 IR error, 2 usage, 3 crash).
    ``prog``: the command's name in help and errors (``acfc opt`` when run through acfc)."""
    try:
        args = build_arg_parser(prog).parse_args(argv)
    except _UsageError as err:
        sys.stderr.write(f"{prog}: error: {err}\n")
        return 2
    if args.list_passes:
        sys.stdout.write(_list_passes())
        return 0
    unknown = sorted((_names(args.print_ir_before) | _names(args.print_ir_after)) - set(PASSES))
    if unknown:
        sys.stderr.write(f"{prog}: error: --print-ir-before/after: unknown pass '{unknown[0]}'; "
                         f"valid passes: {', '.join(sorted(PASSES))}\n")
        return 2
    instr = Instrumentation(
        print_before=_names(args.print_ir_before),
        print_after=_names(args.print_ir_after),
        print_after_all=args.print_ir_after_all,
        print_after_change=args.print_ir_after_change,
        time_passes=args.time_passes,
        reproducer=args.reproducer,
        stream=sys.stderr,
    )
    try:
        parse_pipeline(args.pipeline)  # report a bad pipeline once, before any input
        text, name = _read(args.input)
    except IRError as err:
        sys.stderr.write(f"{err}\n")
        return 1
    except OSError as err:
        sys.stderr.write(f"{prog}: error: {err.strerror}: {err.filename}\n")
        return 1
    chunks = split_chunks(text) if args.split_input_file else [text]
    outcomes = [_process(chunk, name, args.pipeline, args, instr) for chunk in chunks]
    status = max(code for code, _ in outcomes)
    result = "// -----\n".join(out for code, out in outcomes if code == 0)
    if args.output == "-":
        sys.stdout.write(result)
        return status
    if not any(code == 0 for code, _ in outcomes):
        return status  # nothing to write: an earlier output file stays as it was
    try:
        _write_atomically(args.output, result)
    except OSError as err:
        sys.stderr.write(f"{prog}: error: cannot write {args.output}: {err.strerror}\n")
        return 1
    return status


def _write_atomically(path: str, text: str) -> None:
    """Write through a temporary file in the same folder, then rename: a failed write
    leaves an earlier output whole rather than half-written (``isa.outfiles``)."""
    from acf.isa.outfiles import write_file

    write_file(path, text.encode("utf-8"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
