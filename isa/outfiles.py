"""Writing output files safely: never half-written, and never clobbering what the path is.

Every tool that writes a result (binaries, assembly, IR, reports, traces, outputs) goes
through :func:`write_file` or :func:`install_file`: the bytes go to a temporary file beside
the target and are renamed into place only once complete. A symbolic link is written
through (its target replaced, the link kept); a path that is not a regular file
(``/dev/null``, a pipe) is written directly, since renaming over it would replace the
device with a file; a new file gets the mode the umask gives, a replaced one keeps its own.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile


def _mode_for(st: os.stat_result | None) -> int:
    """The replaced file's mode, or what the umask gives a new one."""
    if st is not None:
        return stat.S_IMODE(st.st_mode)
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def check_file_path(path: str) -> None:
    """OSError unless ``path`` can name a file: one ending in a separator (``out/``) names
    a directory, and resolving it (which drops the separator) would write a file named
    ``out``, or replace one."""
    seps = (os.sep, os.altsep) if os.altsep else (os.sep,)
    if path.endswith(seps):
        raise IsADirectoryError(21, "it is a directory path (it ends in a separator); name a file", path)


def _stat(target: str) -> os.stat_result | None:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(21, "Is a directory", target)
    return st


def install_file(tmp: str, path: str) -> None:
    """Move the finished temporary file ``tmp`` to ``path`` (the rules above); ``tmp``
    is gone afterwards. Raises OSError."""
    target = os.path.realpath(path)
    try:
        check_file_path(path)
        st = _stat(target)
        if st is not None and not stat.S_ISREG(st.st_mode):
            with open(tmp, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return
        os.chmod(tmp, _mode_for(st))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def temp_beside(path: str, prefix: str = ".acf-", suffix: str = "") -> str:
    """A new empty temporary file in the folder ``path`` (links resolved) will be in."""
    check_file_path(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.realpath(path)), prefix=prefix,
                               suffix=suffix)
    os.close(fd)
    return tmp


def write_file(path: str, raw: bytes) -> None:
    """Write ``raw`` to ``path`` completely or not at all (the rules above). Raises OSError."""
    check_file_path(path)
    target = os.path.realpath(path)
    _stat(target)  # a directory fails before anything is written
    tmp = temp_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(raw)
    except BaseException:
        os.unlink(tmp)
        raise
    install_file(tmp, path)
