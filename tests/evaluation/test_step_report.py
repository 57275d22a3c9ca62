"""The whole-step report's arithmetic (benchmarks/step_report.py) on hand-made op records."""

from __future__ import annotations

import pytest
from acf.benchmarks.step_report import analyse, gemms


def op(name, kind, layer, span, macs):
    return {"op": name, "kind": kind, "layer": layer, "span_cycles": span, "effectual_macs": macs}


def row(cycles, ops):
    return {"cycles": cycles, "by_op": {str(i): o for i, o in enumerate(ops)}}


def test_gemms_match_by_layer_kind_and_order_and_amdahl_bound() -> None:
    dense = row(1000, [op("graph.conv2d", "forward", "c1", 300, 3000),
                       op("graph.batch_norm", "other", "bn1", 200, 0),
                       op("graph.sddmm", "wgrad_dense", "c1", 100, 1000),
                       op("graph.conv2d_backward_weight", "wgrad_dense", "c1", 100, 1000)])
    # the masked step's weight gradients are sampled (another kind, same layer and order)
    sparse = row(700, [op("graph.conv2d", "forward", "c1", 100, 300),
                       op("graph.batch_norm", "other", "bn1", 200, 0),
                       op("graph.sddmm", "wgrad_sddmm", "c1", 50, 100),
                       op("graph.conv2d_backward_weight", "wgrad_sddmm", "c1", 100, 250)])
    assert len(gemms(dense)) == 3
    a = analyse(dense, sparse)
    by = {(g["op"], g["kind"]): g for g in a["gemms"]}
    fwd = by[("graph.conv2d", "forward")]
    assert fwd["realized"] == pytest.approx(3.0) and fwd["ideal"] == pytest.approx(10.0)
    assert fwd["fraction_of_ideal"] == pytest.approx(0.3)
    wg = by[("graph.conv2d_backward_weight", "wgrad")]
    assert wg["realized"] == pytest.approx(1.0) and wg["ideal"] == pytest.approx(4.0)
    assert a["gemm_share_of_dense_step"] == pytest.approx(0.5)
    # non-GEMM 500 (the step less its GEMM spans) + 300/10 + 100/10 + 100/4 = 565
    assert a["step_amdahl_bound"] == pytest.approx(1000 / 565)
    assert a["step_realized_speedup"] == pytest.approx(1000 / 700)
    assert a["step_fraction_of_bound"] == pytest.approx(565 / 700)


def test_fabric_rows_pair_each_fabrics_dense_and_masked_steps() -> None:
    from acf.benchmarks.step_report import fabric_rows

    def full(target, density, cycles, energy, ops):
        return {**row(cycles, ops), "target": target, "density": density, "fabric": True,
                "seconds": cycles * 1e-9, "energy_j": energy, "peak_macs_per_s": 1e13,
                "numeric_mode": "fp32"}

    fwd = [op("graph.conv2d", "forward", "c1", 600, 6000), op("graph.relu", "other", "r1", 400, 0)]
    fwd_sparse = [op("graph.conv2d", "forward", "c1", 200, 600), op("graph.relu", "other", "r1", 400, 0)]
    rows = [full("acf-wide", 1.0, 1000, 2.0, fwd), full("acf-wide", 0.1, 600, 1.0, fwd_sparse),
            full("acf-lonely", 0.1, 600, 1.0, fwd_sparse)]  # no dense row: left out
    (f,) = fabric_rows(rows, batch=32)
    assert f["target"] == "acf-wide" and f["h200"] == []
    assert f["speedup"] == pytest.approx(1000 / 600) and f["energy_reduction"] == pytest.approx(2.0)
    # Amdahl: 400 non-GEMM + 600 / 10 = 460
    assert f["amdahl_bound"] == pytest.approx(1000 / 460)
    assert f["gemm_fraction_min"] == pytest.approx(3.0 / 10.0) == f["gemm_fraction_max"]


def test_fabric_variants_apply_their_overrides() -> None:
    from acf.benchmarks.step_report import fabric_target

    t = fabric_target("acf-base+cluster.fold_cycles=0+cluster.lookahead=4")
    base = fabric_target("acf-base")
    assert (int(t.cluster.fold_cycles), int(t.cluster.lookahead)) == (0, 4)
    assert (int(base.cluster.fold_cycles), int(base.cluster.lookahead)) == (16, 8)
    assert t.config_hash() != base.config_hash()


def test_port_floor_caps_each_gemms_ideal_and_the_step_bound() -> None:
    """A GEMM whose masked traffic needs more cycles over the memory ports than its ideal
    leaves is credited only what the ports allow: here the forward's 12,800 bytes in at
    32 B/cycle (400 cycles) against its ideal's 600 / 10 = 60, the weight gradient's 1,600
    bytes out (50 cycles) against 200 / 5 = 40; DRAM (64 B/cycle for both directions)
    binds neither."""
    def ported(o, i, out):
        return {**o, "port_in_bytes": i, "port_out_bytes": out}

    dense = {**row(1000, [ported(op("graph.conv2d", "forward", "c1", 600, 3000), 0, 0),
                          op("graph.relu", "other", "r1", 200, 0),
                          ported(op("graph.conv2d_backward_weight", "wgrad_dense", "c1", 200, 1000), 0, 0)]),
             "port_bytes_per_cycle": 32, "dram_bytes_per_cycle": 64}
    sparse = {**row(900, [ported(op("graph.conv2d", "forward", "c1", 500, 300), 12_800, 640),
                          op("graph.relu", "other", "r1", 200, 0),
                          ported(op("graph.conv2d_backward_weight", "wgrad_sddmm", "c1", 100, 200), 320, 1_600)]),
              "port_bytes_per_cycle": 32, "dram_bytes_per_cycle": 64}
    a = analyse(dense, sparse)
    fwd, wg = a["gemms"]
    assert fwd["port_floor_cycles"] == 400 and wg["port_floor_cycles"] == 50
    assert fwd["attainable"] == pytest.approx(600 / 400)  # the ports, not the 10x ideal
    assert wg["ideal"] == pytest.approx(5.0) and wg["attainable"] == pytest.approx(200 / 50)
    assert fwd["fraction_of_attainable"] == pytest.approx((600 / 500) / (600 / 400))
    # Amdahl: 200 + 600 / 10 + 200 / 5 = 300; with the floors: 200 + 400 + 50 = 650
    assert a["step_amdahl_bound"] == pytest.approx(1000 / 300)
    assert a["step_port_bound"] == pytest.approx(1000 / 650)
    assert a["step_fraction_of_port_bound"] == pytest.approx((1000 / 900) / (1000 / 650))
    # a row measured without port byte counts keeps the Amdahl analysis only
    old = analyse(row(1000, dense["by_op"].values()), row(900, sparse["by_op"].values()))
    assert "step_port_bound" not in old and "attainable" not in old["gemms"][0]


def test_a_gemm_computed_by_another_op_when_masked_is_still_paired() -> None:
    """The linear layer's weight gradient is a matmul in the dense step and an sddmm in the
    masked one: it is one GEMM of the table, its op named both ways, not non-GEMM work."""
    dense = row(1000, [op("graph.linear", "forward", "fc", 100, 1000),
                       op("graph.matmul", "wgrad_dense", "fc", 200, 2000)])
    sparse = row(400, [op("graph.linear", "forward", "fc", 50, 100),
                       op("graph.sddmm", "wgrad_sddmm", "fc", 40, 200)])
    a = analyse(dense, sparse)
    wg = next(g for g in a["gemms"] if g["kind"] == "wgrad")
    assert wg["op"] == "graph.matmul / graph.sddmm"
    assert wg["realized"] == pytest.approx(5.0) and wg["ideal"] == pytest.approx(10.0)
    # non-GEMM 1000 - 300 = 700; both GEMMs at their ideal (10x): 10 + 20
    assert a["step_amdahl_bound"] == pytest.approx(1000 / 730)


def test_the_h200_lines_leave_dram_energy_unscaled_and_state_each_rows_peak() -> None:
    """The step's DRAM (HBM interface) energy is kept as it is and only the on-chip rest
    scaled to the H200's node; each GPU row's notes name its own iso-peak dtype, and the
    bf16-amp row its caveat (the H200's bf16-amp ResNet-18 step ran slower than TF32)."""
    from acf.benchmarks.step_report import gpu_notes, versus_h200
    from acf.evaluation import baselines
    from acf.evaluation.runner import hardware_figures
    from acf.isa.target import load_target

    hw = hardware_figures(load_target("acf-base"))
    acf = {"target": "acf-base", "seconds": 0.0125, "energy_j": 0.18, "energy_dram_j": 0.05,
           "peak_macs_per_s": hw["peak_macs_per_s"], "area_mm2": hw["area_mm2"], "hardware": hw,
           "tech_node_nm": 45, "numeric_mode": "fp32"}
    tf32, bf16 = versus_h200(acf, 32)
    factor = baselines.scale_energy(1.0, 45, baselines.GPUS["H200"].node_nm)["energy_j"]
    assert 0.01 < factor < 0.2
    assert tf32["acf_energy_j_scaled"] == pytest.approx(0.13 * factor + 0.05)
    assert tf32["energy_reduction_scaled"] == pytest.approx(tf32["gpu_energy_j"] / (0.13 * factor + 0.05))
    notes = gpu_notes([tf32, bf16])
    assert any(n.startswith(bf16["gpu_row"]) and "bf16" in n for n in notes)
    assert bf16["bf16_amp_not_faster_than_tf32"] is True
    assert any(n == f"{bf16['gpu_row']}: {bf16['iso_peak_caveat']}" for n in notes)


@pytest.mark.parametrize("spec", ["nosuch", "acf-base+cluster.bogus=3", "acf-base+cluster.lookahead"])
def test_a_bad_target_or_fabric_is_refused_before_any_step_runs(spec, capsys) -> None:
    from acf.benchmarks.step_report import main

    with pytest.raises(SystemExit) as exc:
        main(["--targets", "acf-base", "--fabrics", spec])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {spec}:" in err and "Traceback" not in err
