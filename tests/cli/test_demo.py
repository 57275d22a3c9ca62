"""The README's main command stays true: `acfc demo` checks gradients and compares with dense."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_and_gradients_match() -> None:
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--batch", "8"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "gradients match" in out
    cycles = {m.group(1): int(m.group(2)) for m in
              re.finditer(r"^(sparse|dense weights|no skipping) +(\d+) ", out, re.MULTILINE)}
    assert set(cycles) == {"sparse", "dense weights", "no skipping"}
    assert 0 < cycles["sparse"] < cycles["dense weights"]


def test_demo_rejects_bad_density() -> None:
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--density", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "--density must be in (0, 1]" in proc.stderr
    assert "Traceback" not in proc.stderr
