"""What ``acfc run`` and ``acfc debug`` share: reading a program, its target and inputs."""

from __future__ import annotations

from typing import Any

from acf.cli import UserError, read_input


def load_program(path: str) -> Any:
    """An assembly file (``.s`` or ``-``) or a binary container, as a Program."""
    from acf.isa.asm import AsmError, assemble

    if path.endswith(".s") or path == "-":
        text, name = read_input(path)
        try:
            return assemble(str(text), name)
        except AsmError as exc:
            raise UserError(str(exc)) from None
    from acf.isa import container

    data, name = read_input(path, binary=True)
    try:
        return container.read(bytes(data))
    except container.ContainerError as exc:
        raise UserError(f"{name}: error: {exc}") from None


def load_target_for(prog: Any, name: str | None, sets: list[str] | None = None) -> Any:
    """The named target, else the program's ``.target``, else acf-base; with ``--set``s."""
    from acf.isa.target import TargetError, load_target, parse_set_args

    try:
        return load_target(name or prog.target or "acf-base", parse_set_args(sets or []) or None)
    except TargetError as exc:
        raise UserError(str(exc)) from None


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
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    except OSError as exc:
        raise UserError(f"{path}: error: cannot read inputs: {exc.strerror or exc}") from None
    except (ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: error: cannot read inputs: {exc}") from None
