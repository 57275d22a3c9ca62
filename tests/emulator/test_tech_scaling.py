"""The technology knob: tech.scale_to_nm rescales the on-chip energy and area figures of a
report (not the DRAM interface energy nor the DRAM PHY area), to tabulated nodes only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acf.emulator import run
from acf.isa.asm import assemble
from acf.isa.target import TargetError, load_target
from acf.isa.tech import TABULATED_NODES, area_factor, check_node, energy_factor

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gemm_small.s"


def test_public_coefficients_45_to_7nm() -> None:
    # Stillmaker & Baas high-performance energy polynomials at the nominal supplies
    # (1.0 V, 0.7 V): HP45 and HP7
    f45 = 1.018 - 0.3107 + 0.1539
    f7 = 0.1776 * 0.49 - 0.09097 * 0.7 + 0.02447
    assert energy_factor(45, 7) == pytest.approx(f7 / f45)
    assert area_factor(45, 7) == pytest.approx(0.059)
    assert energy_factor(45, 45) == 1.0 and area_factor(45, 45) == 1.0


def _reports(to_nm: int):
    prog = assemble(EXAMPLE.read_text())
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((16, 16)) * (rng.random((16, 16)) < 0.2)).astype(np.float32)
    inputs = {"W": w, "X": rng.standard_normal((16, 16)).astype(np.float32)}
    base = run(prog, load_target("acf-small"), inputs).report
    scaled = run(prog, load_target("acf-small", {"tech.scale_to_nm": to_nm}), inputs).report
    return base, scaled


def test_report_is_scaled_component_by_component() -> None:
    base, scaled = _reports(7)
    assert base.tech_node_nm == 45 and scaled.tech_node_nm == 7
    assert scaled.total_cycles == base.total_cycles
    f, a = energy_factor(45, 7), area_factor(45, 7)
    assert (scaled.tech_energy_scale, scaled.tech_area_scale) == (f, a)
    for key, pj in base.energy_pj.items():
        assert scaled.energy_pj[key] == pytest.approx(pj if key == "dram" else pj * f), key
    for key, mm2 in base.area_mm2.items():
        assert scaled.area_mm2[key] == pytest.approx(mm2 if key == "dram_phy" else mm2 * a), key
    assert scaled.energy_total_pj == pytest.approx(sum(scaled.energy_pj.values()))
    assert scaled.area_total_mm2 == pytest.approx(sum(scaled.area_mm2.values()))


def test_dram_energy_and_phy_area_are_not_scaled_with_the_logic_node() -> None:
    """dram_byte is an HBM2 interface figure (3.9 pJ/bit), not 45 nm logic: at 7 nm it stays
    31.2 pJ/B (a logic factor made it 1.73 pJ/B, 0.22 pJ/bit); the PHY's analog and I/O area
    stays 1.25 mm2 a channel (it became 0.074)."""
    base, scaled = _reports(7)
    dram_bytes = scaled.memory_bytes["dram_bytes"]
    assert dram_bytes > 0
    assert scaled.energy_pj["dram"] == pytest.approx(31.2 * dram_bytes)
    assert scaled.energy_pj["dram"] == pytest.approx(base.energy_pj["dram"])
    assert scaled.area_mm2["dram_phy"] == pytest.approx(load_target("acf-small").dram.channels * 1.25)
    # the on-chip components still shrink
    assert scaled.energy_pj["mac_arrays"] < 0.06 * base.energy_pj["mac_arrays"]


@pytest.mark.parametrize("nm", [5, 3, 1, 28, 40, 200])
def test_untabulated_nodes_are_refused_at_load(nm: int) -> None:
    """A node the Stillmaker & Baas tables lack was silently snapped (5, 3 and 1 nm used
    7 nm's factors, 28 nm used 32 nm's) while the report named the node asked for."""
    with pytest.raises(TargetError, match=r"tech\.scale_to_nm.*nearest.*tabulated: 130, 90"):
        load_target("acf-small", {"tech.scale_to_nm": nm})
    with pytest.raises(TargetError, match=r"tech\.node_nm"):
        load_target("acf-small", {"tech.node_nm": nm})
    with pytest.raises(ValueError, match="nearest"):
        energy_factor(45, nm)


def test_every_tabulated_node_loads_and_is_the_node_reported() -> None:
    for nm in TABULATED_NODES:
        t = load_target("acf-small", {"tech.scale_to_nm": nm})
        assert check_node(t.tech.scale_to_nm) == nm
    _, scaled = _reports(10)
    assert scaled.tech_node_nm == 10 and scaled.tech_energy_scale == energy_factor(45, 10)
    assert "nearest node is 7 nm" in str(pytest.raises(ValueError, check_node, 5).value)
    assert "nearest one is 32 nm" in str(pytest.raises(ValueError, check_node, 28).value)
