"""`acfc run --trace`: a valid trace on success, no file at all when the program traps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acf.cli", "run", *args], capture_output=True, text=True)


def test_trace_written_on_success_and_matches_records(tmp_path) -> None:
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((16, 16)) * (rng.random((16, 16)) < 0.3)).astype(np.float32)
    x = rng.standard_normal((16, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", W=w, X=x)
    trace = tmp_path / "t.json"
    proc = _run(str(ROOT / "examples" / "gemm_small.s"), "--inputs", str(tmp_path / "in.npz"),
                "--outputs", str(tmp_path / "out.npz"), "--trace", str(trace), "--quiet")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(trace.read_text())
    complete = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    assert sorted(e["args"]["mnemonic"] for e in complete) == ["ld", "ld", "mm", "st"]
    assert np.allclose(np.load(tmp_path / "out.npz")["Y"], w @ x, rtol=1e-5, atol=1e-5)


def test_trap_leaves_no_trace_file(tmp_path) -> None:
    trace = tmp_path / "t.json"
    proc = _run(str(ROOT / "examples" / "gemm_small.s"), "--trace", str(trace), "--quiet")
    assert proc.returncode == 1
    assert "bad format header" in proc.stderr and "Traceback" not in proc.stderr
    assert not trace.exists() and not list(tmp_path.iterdir())
