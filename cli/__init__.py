"""``acfc``: the ACF toolchain's command line.

Each subcommand lives in its own module under ``acf.cli`` with ``add_arguments(parser)``
and ``run(args) -> int``; modules are imported only when their command runs, so
``acfc asm`` / ``disasm`` / ``run`` / ``opt`` / ``debug`` start without torch or TVM.
User errors print ``file:line:col: error: ...`` (or ``acfc: error: ...``) and exit 1;
internal errors say they are internal.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "targets": ("acf.cli.targets_cmd", "list hardware targets, or print one with derived figures"),
    "asm": ("acf.cli.asm_cmd", "assemble ACF assembly into a binary container"),
    "disasm": ("acf.cli.disasm_cmd", "disassemble a binary container into assembly"),
    "isa-doc": ("acf.cli.isadoc_cmd", "write the ISA reference (docs/isa.md) from the ISA table"),
}


class UserError(Exception):
    """An error caused by the user's input; printed without a traceback."""


def target_error(exc: Exception, flag: str = "") -> str:
    """A target's error as printed: one about a file already names it (``t.toml:3:5:
    error: ...``); any other gets ``acfc: error:`` and the option it came from."""
    msg = str(exc)
    if ": error: " in msg.split("\n")[0]:
        return msg
    return f"acfc: error: {flag + ': ' if flag else ''}{msg}"


def register(name: str, module: str, help_text: str) -> None:
    COMMANDS[name] = (module, help_text)


def _load_optional() -> None:
    """Commands from layers that may not exist in every checkout stage."""
    for name, module, help_text in (
        ("run", "acf.cli.run_cmd", "run a program on the emulator"),
        ("opt", "acf.cli.opt_cmd", "run compiler passes over IR"),
        ("compile", "acf.cli.compile_cmd", "compile IR or a PyTorch model to an ACF program"),
        ("debug", "acf.cli.debug_cmd", "assembly-level debugger"),
        ("bench", "acf.cli.bench_cmd", "evaluation sweeps"),
        ("demo", "acf.cli.demo_cmd", "the main job: compile, emulate and compare a sparse training step"),
    ):
        if importlib.util.find_spec(module) is not None:
            COMMANDS.setdefault(name, (module, help_text))


def main(argv: list[str] | None = None) -> int:
    _load_optional()
    parser = argparse.ArgumentParser(prog="acfc", description="Adaptive Compute Fabric toolchain")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    if chosen:
        mod = importlib.import_module(COMMANDS[chosen][0])
        if not getattr(mod, "ADD_HELP", True):  # a driver of its own takes every argument
            return int(mod.run(argparse.Namespace(command=chosen, args=argv[1:])) or 0)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module).add_arguments(p)
        else:
            p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        rc = int(module.run(args) or 0)
        with writing_stdout():  # what is still buffered must reach stdout, or say why not
            sys.stdout.flush()
        return rc
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (``| head``): stop quietly, as Unix tools do; stdout is
        # pointed at /dev/null so the flush at exit does not report the pipe again
        _detach_stdout()
        return 0
    except OSError as exc:
        # a command that prints without writing_stdout (``acfc targets > /dev/full``): a
        # write error on no named file is stdout's (files are written by write_output,
        # which names them); any other OSError is not explained here
        if exc.filename is not None or exc.errno not in _WRITE_ERRNOS:
            raise
        _detach_stdout()
        print(f"acfc: error: cannot write to stdout: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EBADF}


@contextlib.contextmanager
def writing_stdout() -> Iterator[None]:
    """Around writes to stdout: a full disk or device (``> /dev/full``) or any other write
    error is ``acfc: error: cannot write to stdout: ...`` (exit 1), not a traceback; a closed
    pipe propagates as BrokenPipeError, which :func:`main` ends quietly."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        _detach_stdout()  # the unwritten rest must not fail again at exit
        raise UserError(f"acfc: error: cannot write to stdout: {exc.strerror or exc}") from None


def _detach_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout replaced by an object without a file
        pass


def read_input(path: str, binary: bool = False) -> tuple[str | bytes, str]:
    """Read a file or stdin ('-'), once; returns (content, display name). Text is UTF-8 with
    universal newlines; a byte that is not UTF-8 is an error at its line and column."""
    try:
        if path == "-":
            if not binary and not hasattr(sys.stdin, "buffer"):  # replaced by a text stream
                return sys.stdin.read(), "<stdin>"
            data, name = sys.stdin.buffer.read(), "<stdin>"
        else:
            with open(path, "rb") as fh:
                data, name = fh.read(), path
    except OSError as exc:
        raise UserError(f"{path}: error: cannot read: {exc.strerror}") from None
    if binary:
        return data, name
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(_not_utf8(data, name)) from None
    # a byte-order mark (some editors on Windows write one) is no part of the text
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n"), name


def looks_like_text(data: bytes) -> bool:
    """Whether bytes read as UTF-8 text (no NUL, which text never holds): a binary input
    that is text was most likely given in place of its source."""
    if b"\0" in data[:4096]:
        return False
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the 4096th byte is still text
        return exc.start >= 4093
    return True


def _not_utf8(data: bytes, name: str) -> str:
    """``name:line:col: error: not UTF-8 text (byte 0x..)`` at the first byte that is not
    (the compiler's located diagnostic)."""
    from acf.compiler.diagnostics import IRError, decode_utf8

    try:
        decode_utf8(data, name)
    except IRError as exc:
        return str(exc)
    return f"{name}: error: not UTF-8 text"


def refuse_same_files(outputs: Sequence[tuple[str, str | None]],
                      inputs: Sequence[tuple[str, str | None]] = ()) -> None:
    """UserError, before anything is written, when two outputs name one file (the second
    write would replace the first) or an output names an input (it would replace what it
    was made from). Each item is ``(flag, path)``; None and '-' (stdout) are skipped, and
    so is anything that is not a regular file (``/dev/null`` may take every output)."""
    outs = [(flag, path) for flag, path in outputs if path not in (None, "-")]
    ins = [(flag, path) for flag, path in inputs if path not in (None, "-")]
    for i, (flag, path) in enumerate(outs):
        for other_flag, other in outs[:i]:
            if _same_file(path, other):
                raise UserError(f"acfc: error: {other_flag} and {flag} name the same file "
                                f"({other}): one would replace the other; give each its own")
        for in_flag, in_path in ins:
            if _same_file(path, in_path):
                raise UserError(f"acfc: error: {flag} names the {in_flag} ({in_path}): writing "
                                "it would replace what is read; choose another output file")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one regular file (both there: the same device and inode,
    through links; one yet to be made: the same resolved path)."""
    import stat

    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):  # one is not there (yet), or cannot name a file
        try:
            return os.path.realpath(a) == os.path.realpath(b)
        except (OSError, ValueError):
            return False
    return stat.S_ISREG(sa.st_mode) and os.path.samestat(sa, sb)


def write_output(path: str | None, data: str | bytes) -> None:
    """Write to a file (``isa.outfiles.write_file``: never half-written, links written
    through, devices kept) or stdout ('-' or None)."""
    from acf.isa.outfiles import write_file

    if path in (None, "-"):
        with writing_stdout():
            if isinstance(data, bytes):
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                sys.stdout.write(data)
                sys.stdout.flush()
        return
    try:
        write_file(path, data if isinstance(data, bytes) else data.encode())
    except OSError as exc:
        raise UserError(f"{path}: error: cannot write: {exc.strerror or exc}") from None
