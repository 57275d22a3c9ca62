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


def test_demo_refuses_a_batch_past_the_training_split() -> None:
    """It printed "batch 100000" and trained on the 1,348 samples there are."""
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--batch", "100000"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr == ("acfc demo: error: --batch 100000 is larger than the digits "
                           "training split (1348 samples)\n")


def test_demo_names_an_unknown_target_as_an_acfc_error() -> None:
    proc = subprocess.run([sys.executable, "-m", "acf.cli", "demo", "--target", "nope"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("acfc: error: --target: unknown target 'nope'")
