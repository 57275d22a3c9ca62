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


@pytest.fixture(scope="session")
def small():
    from acf.isa.target import load_target

    return load_target("acf-small")
