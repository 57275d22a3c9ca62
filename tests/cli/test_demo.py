"""The README's main command stays true: `acfc demo` checks gradients and compares with dense."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_gradients_match() -> None:
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--batch", "8"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "gradients match" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("sparse ", "dense weights", "no skipping"))}
    sparse_cycles = int(rows["sparse"][1])
    dense_cycles = int(rows["dense"][2])  # "dense weights" splits into two words
    assert 0 < sparse_cycles < dense_cycles


def test_demo_rejects_bad_density() -> None:
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--density", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "--density must be in (0, 1]" in proc.stderr
    assert "Traceback" not in proc.stderr
