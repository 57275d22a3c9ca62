"""What ``acfc run`` and ``acfc debug`` share: reading a program, its target and inputs."""

from __future__ import annotations

import argparse
from typing import Any

from acf.cli import UserError, read_input


def load_program(path: str, check_target: bool = False) -> Any:
    """An assembly file (``.s`` or ``-``) or a binary container, as a Program.
    ``check_target``: the assembly's ``.target`` is the one the run uses, so a name no
    target has is an error at its line (what fits is checked against the target used)."""
    from acf.isa.asm import AsmError, assemble

    if path.endswith(".s") or path == "-":
        text, name = read_input(path)
        try:
            return assemble(str(text), name, check="target" if check_target else "")
        except AsmError as exc:
            raise UserError(str(exc)) from None
    from acf.isa import container

    data, name = read_input(path, binary=True)
    try:
        return container.read(bytes(data))
    except container.ContainerError as exc:
        raise UserError(f"{name}: error: {exc}{text_hint(bytes(data))}") from None


def text_hint(data: bytes) -> str:
    """What to add to "not an ACF binary" when the input is text: assembly is read from a
    file named ``.s`` (or stdin)."""
    from acf.cli import looks_like_text
    from acf.isa import container

    if data.startswith(container.MAGIC) or not data or not looks_like_text(data):
        return ""
    return "; it is text: assembly is read from a file named .s, or from stdin ('-')"


def load_target_for(prog: Any, name: str | None, sets: list[str] | None = None,
                    path: str = "") -> Any:
    """The named target, else the program's ``.target``, else acf-base; with ``--set``s.
    An error that names no file says where the name came from: ``--target``, or the
    program ``path`` (its ``.target`` or target section)."""
    from acf.isa.target import TargetError, load_target, parse_set_args

    try:
        return load_target(name or prog.target or "acf-base", parse_set_args(sets or []) or None)
    except TargetError as exc:
        msg = str(exc)
        if ": error: " not in msg.split("\n")[0]:
            if name:
                msg = f"acfc: error: --target: {msg}"
            elif path and prog.target:
                msg = f"{path}: error: {msg} (the target the program names; --target chooses another)"
            else:
                msg = f"acfc: error: {msg}"
        raise UserError(msg) from None


def load_inputs(path: str | None) -> dict[str, Any]:
    """Input tensors from an ``.npz`` file, by ``.tensor`` symbol name."""
    if not path:
        return {}
    import zipfile

    import numpy as np

    try:
        with open(path, "rb"):
            pass  # a missing or unreadable file says so, not "not an archive"
        if not zipfile.is_zipfile(path):  # np.load would try a .npy or a pickle instead
            raise UserError(f"{path}: error: cannot read inputs: not an .npz archive "
                            "(numpy.savez writes one)")
        _check_declared_sizes(path)
        with np.load(path) as npz:
            out = {}
            for k in npz.files:
                try:
                    out[k] = npz[k]
                except MemoryError:
                    raise UserError(f"{path}: error: cannot read inputs: input '{k}' needs more "
                                    "memory than there is") from None
            return out
    except OSError as exc:
        raise UserError(f"{path}: error: cannot read inputs: {exc.strerror or exc}") from None
    except (ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: error: cannot read inputs: {exc}") from None


def _check_declared_sizes(path: str) -> None:
    """UserError when a member's ``.npy`` header declares more bytes than the member holds:
    a few bytes claiming a shape of 10^13 elements would otherwise be allocated (and fail
    for want of memory) before the missing data is noticed. Headers numpy cannot read are
    left to ``numpy.load``, which says what is wrong with them."""
    import math
    import zipfile

    import numpy as np

    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as fh:
                try:
                    reader = readers.get(np.lib.format.read_magic(fh))
                    if reader is None:
                        continue
                    shape, _, dtype = reader(fh)
                except (ValueError, OSError, zipfile.BadZipFile):
                    continue
                held = info.file_size - fh.tell()
            needed = math.prod(shape) * dtype.itemsize
            if needed > held:
                name = info.filename[: -len(".npy")]
                raise UserError(f"{path}: error: cannot read inputs: input '{name}' declares "
                                f"shape {tuple(shape)} of {dtype} ({needed:,} bytes), but its "
                                f"member holds {max(held, 0):,} bytes")


def symbol_error(path: str, prog: Any, exc: Any) -> str:
    """A ``.tensor`` the target cannot hold, at the ``.tensor``'s line when the program
    was assembled here (``path:line:col: error: ...``)."""
    at = getattr(prog, "symbol_lines", {}).get(getattr(exc, "symbol", ""))
    return f"{path}:{at[0]}:{at[1]}: error: {exc}" if at else f"{path}: error: {exc}"


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1 (``--max-instructions``)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
