"""Transcript tests: each ``sessions/NAME.cmd`` runs through ``acfc debug -x NAME.cmd
--batch`` and must print ``sessions/NAME.out`` exactly. Header comments name the program
(``# program: FILE.s``) and inputs (``# inputs: FILE.npz``). ``ACF_UPDATE_TRANSCRIPTS=1``
rewrites the expected files (review the diff before committing).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from acf.cli import main

SESSIONS = Path(__file__).parent / "sessions"
CASES = sorted(p.stem for p in SESSIONS.glob("*.cmd"))


def transcript(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    cmd = SESSIONS / f"{name}.cmd"
    header = cmd.read_text()
    program = re.search(r"^# program: (\S+)", header, re.MULTILINE).group(1)
    argv = ["debug", str(SESSIONS / program), "-x", str(cmd), "--batch"]
    inputs = re.search(r"^# inputs: (\S+)", header, re.MULTILINE)
    if inputs:
        argv += ["--inputs", str(SESSIONS / inputs.group(1))]
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", CASES)
def test_transcript(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    got = transcript(name, capsys)
    expected = SESSIONS / f"{name}.out"
    if os.environ.get("ACF_UPDATE_TRANSCRIPTS"):
        expected.write_text(got)
    assert got == expected.read_text()


def test_reverse_continue_matches_forward_digest(capsys: pytest.CaptureFixture[str]) -> None:
    out = transcript("reverse", capsys)
    digests = re.findall(r"^(\w{16}) at position (\d+)", out, re.MULTILINE)
    first, second, back_to_second, back_to_first = digests[:4]
    assert back_to_second == second and back_to_first == first
    assert digests[4] == digests[6]  # goto 100 twice, via a goto back to cycle 40


def test_errors_keep_the_session_alive(capsys: pytest.CaptureFixture[str]) -> None:
    out = transcript("errors", capsys)
    assert out.count("error: ") == 19
    assert "error: no label 'nolabel' in the program" in out
    assert "error: unknown command 'frobnicate' (try help)" in out
    assert out.rstrip().splitlines()[-3].startswith("ar1 = ")
    assert out.rstrip().splitlines()[-1].startswith("the program's last event is at cycle ")
