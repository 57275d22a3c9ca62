"""The technology knob: tech.scale_to_nm rescales every energy and area figure of a report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acf.emulator import run
from acf.isa.asm import assemble
from acf.isa.target import load_target
from acf.isa.tech import area_factor, energy_factor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gemm_small.s"


def test_public_coefficients_45_to_7nm() -> None:
    # Stillmaker & Baas high-performance energy polynomials at the nominal supplies
    # (1.0 V, 0.7 V): HP45 and HP7
    f45 = 1.018 - 0.3107 + 0.1539
    f7 = 0.1776 * 0.49 - 0.09097 * 0.7 + 0.02447
    assert energy_factor(45, 7) == pytest.approx(f7 / f45)
    assert area_factor(45, 7) == pytest.approx(0.059)
    assert energy_factor(45, 45) == 1.0 and area_factor(45, 45) == 1.0


def test_report_is_scaled_component_by_component() -> None:
    prog = assemble(EXAMPLE.read_text())
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 16)) * (rng.random((16, 16)) < 0.2)).astype(np.float32)
    inputs = {"W": w, "X": rng.standard_normal((16, 16)).astype(np.float32)}
    base = run(prog, load_target("acf-small"), inputs).report
    scaled = run(prog, load_target("acf-small", {"tech.scale_to_nm": 7}), inputs).report
    assert base.tech_node_nm == 45 and scaled.tech_node_nm == 7
    assert scaled.total_cycles == base.total_cycles
    f, a = energy_factor(45, 7), area_factor(45, 7)
    for key, pj in base.energy_pj.items():
        assert scaled.energy_pj[key] == pytest.approx(pj * f)
    assert scaled.area_total_mm2 == pytest.approx(base.area_total_mm2 * a)
