"""Runs the ``// RUN:`` lines of every ``tests/compiler/**/*.acfir`` file (lit style).

Substitutions: ``%s`` -> the test file, ``acf-opt`` -> ``python -m acf.compiler.opt`` with
this interpreter, ``filecheck`` -> the ``filecheck`` next to it, ``not CMD`` -> succeeds
when CMD fails. Each RUN line runs in bash with ``pipefail``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
RUN_LINE = re.compile(r"^\s*//\s*RUN:\s*(.*)$")
PRELUDE = 'set -o pipefail\nnot() { if "$@"; then return 1; else return 0; fi; }\n'


def run_lines(path: Path) -> list[str]:
    """RUN commands of a file; a trailing backslash continues onto the next RUN line."""
    commands, pending = [], ""
    for line in path.read_text().splitlines():
        match = RUN_LINE.match(line)
        if not match:
            continue
        text = match[1].rstrip()
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        commands.append(pending + text)
        pending = ""
    return commands


def substitute(command: str, path: Path) -> str:
    opt = f"{shlex.quote(sys.executable)} -m acf.compiler.opt"
    command = re.sub(r"(?<![\w-])acf-opt(?![\w-])", opt, command)
    command = re.sub(r"(?<![\w-])filecheck(?![\w-])", shlex.quote(str(BIN / "filecheck")), command)
    return command.replace("%s", shlex.quote(str(path)))


TEST_FILES = sorted(HERE.rglob("*.acfir"))


@pytest.mark.parametrize("path", TEST_FILES, ids=[str(p.relative_to(HERE)) for p in TEST_FILES])
def test_lit_file(path: Path) -> None:
    commands = run_lines(path)
    assert commands, f"{path.name} has no RUN lines"
    for command in commands:
        script = PRELUDE + substitute(command, path)
        done = subprocess.run(
            ["bash", "-c", script],
            capture_output=True,
            text=True,
            check=False,
            cwd=path.parent,
            timeout=60,
        )
        assert done.returncode == 0, (
            f"RUN: {command}\nexit {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
