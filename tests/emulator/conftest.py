"""Shared helpers of the emulator tests: the assembly programs and their inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf.isa.asm import assemble

PROGRAMS = Path(__file__).parent / "programs"


def program(name: str):
    path = PROGRAMS / name
    return assemble(path.read_text(), str(path))


def random_inputs(prog, seed: int = 0, zero_frac: float = 0.4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for name, sym in sorted(prog.symbols.items()):
        x = rng.standard_normal(sym.shape).astype(np.float32)
        x[rng.random(sym.shape) < zero_frac] = 0
        out[name] = x
    return out


@pytest.fixture(autouse=True)
def compiled_window_counts(monkeypatch):
    """Every ``mm`` with zero-skipping counts its windows with the compiled kernels, as the
    reference-equivalence and mutation suites were written against (a run outside the
    tests gives small ``mm``s to numpy; test_timing checks both paths against the closed
    form)."""
    from acf.emulator import timing_compute

    monkeypatch.setattr(timing_compute, "COMPILED_MIN_MACS", 0)


@pytest.fixture(scope="session")
def small():
    from acf.isa.target import load_target

    return load_target("acf-small")
