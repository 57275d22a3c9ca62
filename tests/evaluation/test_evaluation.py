"""Evaluation: a CI-sized sweep end to end, resume after an interruption, anchors, rooflines,
normalizations and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from acf.evaluation import baselines, labels, outputs, points, report
from acf.evaluation.sweep import Grid, SweepError, read_rows, run_sweep
from acf.evaluation.workloads import (
    Workload,
    WorkloadError,
    gemm_ir,
    model_layers,
    sample_plan,
    training_gemms,
    weight_mask,
)

CI = dict(models=["tiny-mlp"], sparsities=[0.0, 0.9], targets=["acf-base", "acf-dense"])


def _rows(path):
    return [r for r in read_rows(path) if r.get("status") == "ok"]


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    res = run_sweep(Grid(**CI), out, jobs=1, progress=False)
    assert res.ran == 4 and res.skipped == 0
    return out


def test_ci_sweep_writes_rows_and_sane_values(sweep_dir) -> None:
    rows = _rows(sweep_dir)
    errors = [r for r in read_rows(sweep_dir) if r.get("status") != "ok"]
    assert not errors, errors[0].get("error")
    assert len(rows) == 4
    for r in rows:
        for key in ("run_id", "config_hash", "package_version", "target", "model", "sparsity", "cycles",
                    "seconds", "energy_j", "macs_issued", "macs_effectual", "utilization",
                    "noc_max_link_load", "sampled"):
            assert key in r, key
        assert r["cycles"] > 0 and r["seconds"] > 0 and r["energy_j"] > 0
        assert 0 < r["utilization"] <= 1 and 0 < r["sampled"] <= 1
        assert r["macs_effectual"] <= r["macs_issued"] + 1e-6
        assert any(k.startswith("energy_mac_arrays") for k in r)
        assert len(r["gemms"]) == 5  # 2 layers x (fwd, wgrad), and fc2's bwd-data (fc1's input is data)
    by = {(r["target"], r["sparsity"]): r for r in rows}
    # a mask update is costed apart (none in dense training)
    assert by[("acf-base", 0.0)]["mask_update_cycles"] == 0
    assert 0 < by[("acf-base", 0.9)]["mask_update_cycles"] < by[("acf-base", 0.9)]["cycles"]
    assert by[("acf-base", 0.9)]["mask_update_energy_j"] > 0
    assert by[("acf-base", 0.9)]["macs_effectual"] < by[("acf-dense", 0.9)]["macs_effectual"]
    assert by[("acf-base", 0.9)]["cycles"] < by[("acf-dense", 0.9)]["cycles"]
    csv_text = (sweep_dir / "rows.csv").read_text().splitlines()
    assert len(csv_text) == 5 and "config_hash" in csv_text[0]


def test_auto_formats_encode_relu_sparse_activations(tmp_path) -> None:
    """``formats=auto`` lets select-formats encode both operands from their densities: 30 %-
    dense activation operands are stored compressed where that is cheaper (fewer bytes over
    the memory ports), and the step is faster than with CSR weights and dense activations
    (at 50 % tiny-mlp's few ReLU-sparse operands stay dense: its first layer's dY is the
    only ReLU-masked gradient, and it has no input-gradient GEMM)."""
    rows = run_sweep(Grid(models=["tiny-mlp"], sparsities=[0.9], targets=["acf-base"],
                          formats=["auto", "csr"], act_density=0.3), tmp_path, jobs=1,
                     progress=False).rows
    by = {r["formats"]: r for r in rows if r.get("status") == "ok"}
    assert set(by) == {"auto", "csr"}
    def activation(g):  # the format of the activation operand (the one not the weight)
        return g["formats"]["b" if g["weight_operand"] == "a" else "a"]

    assert all(activation(g) == "dense" for g in by["csr"]["gemms"])
    relu_a = [activation(g) for g in by["auto"]["gemms"] if g["a_density"] < 1]
    assert any(f != "dense" for f in relu_a), relu_a  # where the model finds it cheaper
    assert by["auto"]["cycles"] < by["csr"]["cycles"]


def test_weight_only_skipping_design_skips_the_weights() -> None:
    """procrustes-like skips the zeros of the mm's ``a`` operand only; the sweep maps a
    layer's weight there on every target (C^T = W . X^T), so at 90 % its forward and
    input-gradient GEMMs issue about a tenth of their dense MACs whatever the activations'
    density (before, the weight sat in ``b`` and the design skipped activation zeros)."""
    from acf.evaluation.runner import RunSpec, run_spec

    rows = {t: run_spec(RunSpec(model="tiny-mlp", sparsity=0.9, target=t, act_density=1.0))
            for t in ("procrustes-like", "acf-base")}
    for t, row in rows.items():
        assert row["status"] == "ok", row.get("error")
        for g in row["gemms"]:
            if g["role"] == "wgrad":
                continue
            assert g["weight_operand"] == "a"
            assert 0.05 < g["macs_effectual"] / g["dense_macs"] < 0.15, (t, g["key"])


def test_the_ideal_is_the_workloads_whatever_the_target_skips() -> None:
    """The ideal speedup counts products of two nonzeros in the operands: on acf-base (both
    operands' zeros skipped) that is its effectual MAC count exactly; acf-dense and
    procrustes-like (activation zeros not skipped) show the same ideal at the same point
    instead of their own MAC counts (1.0x for acf-dense before)."""
    from acf.evaluation.runner import RunSpec, run_spec

    rows = {t: run_spec(RunSpec(model="tiny-mlp", sparsity=0.9, target=t, act_density=0.5))
            for t in ("acf-base", "acf-dense", "procrustes-like")}
    base = rows["acf-base"]
    assert all(r["status"] == "ok" for r in rows.values())
    assert base["macs_nonzero"] == base["macs_effectual"]
    for g in base["gemms"]:
        assert g["macs_nonzero"] == g["macs_effectual"], g["key"]
    assert 10 < base["ideal_speedup"] < 40  # 1/(0.1 * 0.5) where both operands are sparse
    for t in ("acf-dense", "procrustes-like"):
        assert rows[t]["ideal_speedup"] == base["ideal_speedup"], t
        assert rows[t]["macs_effectual"] > rows[t]["macs_nonzero"], t
    assert rows["acf-dense"]["macs_effectual"] == rows["acf-dense"]["macs_issued"]


def test_noc_configuration_off_ablation() -> None:
    """``noc=unicast`` compiles without the multicast groups the compiler otherwise sets up
    on the NoC: every cluster loads its own operand tiles, and the dense BERT layer's GEMMs
    take longer; the row says which it was."""
    from acf.evaluation.runner import RunSpec, run_spec

    rows = {noc: run_spec(RunSpec(model="bert-base-layer", sparsity=0.0, target="acf-base",
                                  noc=noc, max_k_chunks=1)) for noc in ("auto", "unicast")}
    assert all(r["status"] == "ok" and r["noc"] == n for n, r in rows.items())
    assert rows["unicast"]["cycles"] > 1.05 * rows["auto"]["cycles"]
    assert labels.label(rows["unicast"]) == "acf-base[noc=unicast]"


def test_report_writes_every_output(sweep_dir) -> None:
    anchors = baselines.load_anchors()
    acc = [{"algorithm": "rigl", "sparsity": 0.9, "model": "mlp", "dataset": "digits", "steps": 1,
            "final_accuracy": 0.5}]
    path = report.write_report(_rows(sweep_dir), sweep_dir, anchors=anchors, accuracy=acc,
                               comparisons=(("tiny-mlp", 0.9),))
    text = path.read_text()
    assert "tiny-mlp at 90 %" in text and "Amdahl bound" in text and "fraction of ideal" in text
    for name in outputs.PLOTS:
        p = sweep_dir / name
        assert p.exists() and p.stat().st_size > 1000, name
    assert "## GPU baselines" in text and "cuSPARSE CSR" in text and "2:4 cuSPARSELt" in text
    assert "mask update (ms, mJ)" in text
    assert "| tiny-mlp | A100 | tf32 |" in text  # rooflines beside the fabric at iso-peak
    comp = json.loads((sweep_dir / "comparison.json").read_text())["comparisons"][0]
    assert comp["vs_targets"][0]["target"] == "acf-dense"
    assert all(0 < g["fraction_of_ideal"] <= 1.5 for g in comp["gemms"])
    assert comp["step_amdahl_bound"] >= comp["step_realized_speedup"] > 0


def test_resume_after_interruption_loses_and_redoes_nothing(tmp_path) -> None:
    grid = Grid(**CI)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, jobs=1, progress=False, fail_after=2)
    first = read_rows(tmp_path)
    assert len(first) == 2
    res = run_sweep(grid, tmp_path, jobs=1, progress=False)
    assert res.skipped == 2 and res.ran == 2
    rows = read_rows(tmp_path)
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4
    assert rows[:2] == first  # finished rows untouched
    again = run_sweep(grid, tmp_path, jobs=1, progress=False)
    assert again.ran == 0 and again.skipped == 4


def test_torn_last_line_is_ignored(tmp_path) -> None:
    (tmp_path / "rows.jsonl").write_text('{"run_id": "a", "status": "ok"}\n[1, 2]\n'
                                         '{"run_id": "b", "sta')
    assert [r["run_id"] for r in read_rows(tmp_path)] == ["a"]


def test_resume_after_a_torn_write_keeps_every_row(tmp_path) -> None:
    """An interruption mid-write leaves a torn last line; the resumed sweep cuts it off
    before appending, so its first new row is not glued to the fragment (and lost)."""
    grid = Grid(**CI)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(grid, tmp_path, jobs=1, progress=False, fail_after=1)
    with (tmp_path / "rows.jsonl").open("a") as fh:
        fh.write('{"run_id": "torn", "status": "o')
    res = run_sweep(grid, tmp_path, jobs=1, progress=False)
    assert res.ran == 3
    assert len(_rows(tmp_path)) == 4
    assert run_sweep(grid, tmp_path, jobs=1, progress=False).ran == 0


def test_rows_of_other_code_are_rerun(tmp_path, monkeypatch) -> None:
    """A row's run id covers a hash of the code that made it: a resume after a change to
    the compiler or emulator reruns the point instead of keeping the old numbers."""
    from acf.evaluation import runner, sweep
    from acf.evaluation.runner import code_hash, package_version

    assert package_version().endswith("+" + code_hash()) and len(code_hash()) == 12
    grid = Grid(models=["tiny-mlp"], sparsities=[0.9], targets=["acf-base"])
    assert run_sweep(grid, tmp_path, jobs=1, progress=False).ran == 1
    assert run_sweep(grid, tmp_path, jobs=1, progress=False).ran == 0  # same code: kept
    other = lambda: "0.1.0+000000000000"  # noqa: E731 - the code as changed since
    monkeypatch.setattr(sweep, "package_version", other)
    monkeypatch.setattr(runner, "package_version", other)
    assert run_sweep(grid, tmp_path, jobs=1, progress=False).ran == 1


def test_a_point_rerun_by_newer_code_replaces_its_row_in_reports(tmp_path, monkeypatch) -> None:
    """rows.jsonl keeps both rows, but a report reads one per point (the newer), a value
    listed twice is one point, and an error row a later run replaced is not reported."""
    from acf.evaluation import runner, sweep
    from acf.evaluation.points import latest_rows

    grid = Grid(models=["tiny-mlp"], sparsities=[0.9, 0.9], targets=["acf-base", "acf-base"])
    first = run_sweep(grid, tmp_path, jobs=1, progress=False)
    assert first.ran == 1 and not first.errors
    old = dict(read_rows(tmp_path)[0], run_id="0" * 16, status="error", error="MemoryError")
    other = lambda: "0.1.0+000000000000"  # noqa: E731 - the code as changed since
    monkeypatch.setattr(sweep, "package_version", other)
    monkeypatch.setattr(runner, "package_version", other)
    second = run_sweep(grid, tmp_path, jobs=1, progress=False)
    sweep.append_row(tmp_path, old)  # an error row of some other run id of the same point
    rows = read_rows(tmp_path)
    assert second.ran == 1 and len(rows) == 3 and not second.errors
    (kept,) = latest_rows(rows)
    assert kept["package_version"] == "0.1.0+000000000000"


def test_anchors_load_with_provenance() -> None:
    a = baselines.load_anchors()
    assert "NVML" in a.provenance["what"] and a.provenance["device"] == "NVIDIA H200"
    step = a.training_step("resnet18-cifar", "fp32")
    assert step["time_s"] > 0 and step["energy_j"] > 0 and "what" in step["provenance"]
    g = a.gemm("dense", "bfloat16", "4096x4096x4096")
    assert g["dense_tflops_equiv"] > 100
    ratio = a.sparse_step_ratio(0.9)
    assert ratio is not None and ratio["ratio"] > 1  # cuSPARSE is slower than dense at 90 %


def test_roofline_known_gemm() -> None:
    r = baselines.roofline_gemm("H100", 4096, 4096, 4096, "bf16")
    assert r["bound"] == "compute"
    assert math.isclose(r["time_s"], 2 * 4096 ** 3 / 989.5e12, rel_tol=1e-12)
    small = baselines.roofline_gemm("A100", 4096, 4096, 1, "fp32")
    assert small["bound"] == "memory"
    assert math.isclose(small["time_s"], 4 * (4096 + 4096 + 4096 * 4096) / 2039e9, rel_tol=1e-12)
    with pytest.raises(ValueError, match="unknown GPU"):
        baselines.roofline_gemm("V100", 1, 1, 1)


def test_normalizations_state_themselves() -> None:
    iso = baselines.iso_peak_time(1.0, 4.096e12, "H200", "bf16")
    assert "iso-peak bf16" in iso["normalization"]
    assert math.isclose(iso["time_s"], 4.096e12 / (989.5e12 / 2))
    assert "TDP" in baselines.iso_power_time(1.0, 10.0, "H200")["normalization"]
    # scaled to the GPU's node as energy and area are: the same fabric draws less there
    own, scaled = baselines.iso_power_time(1.0, 10.0, "H200"), baselines.iso_power_time(1.0, 10.0, "H200", 45)
    assert math.isclose(scaled["acf_power_w"], 10.0 * baselines.energy_factor(45, 7))
    assert scaled["time_s"] < own["time_s"] and "scaled 45->7 nm" in scaled["normalization"]
    assert "iso-area" in baselines.iso_area_time(1.0, 100.0, 45, "H200")["normalization"]
    f = baselines.energy_factor(45, 7)
    assert 0.01 < f < 0.2  # 45 nm -> 7 nm lowers energy per op
    assert math.isclose(baselines.energy_factor(45, 45), 1.0)
    assert "Stillmaker" in baselines.scale_energy(1.0, 45, 7)["method"]
    with pytest.raises(ValueError, match="nearest node is 7 nm"):  # no 5 nm row in the tables
        baselines.scale_energy(1.0, 45, 5)


def test_cpu_measured_live() -> None:
    import time

    # distinct m, n, k so a swapped or dropped dimension shows
    m, n, k = 48, 32, 16
    t0 = time.perf_counter()
    r = baselines.cpu_gemm(m, n, k, dtype="fp32", min_time_s=0.01)
    wall = time.perf_counter() - t0
    assert (r["m"], r["n"], r["k"], r["dtype"]) == (m, n, k, "fp32")
    # time_s is the mean over the timed calls, so it is positive and at most the whole call
    assert 0 < r["time_s"] <= wall
    # a GEMM does m*n*k multiply-adds = 2*m*n*k FLOPs per call
    assert r["gflops"] == pytest.approx(2 * m * n * k / r["time_s"] / 1e9, rel=1e-12)
    assert r["normalization"] == "measured live, no normalization"
    rb = baselines.cpu_gemm(8, 4, 2, dtype="bf16", min_time_s=0.001)
    assert (rb["m"], rb["n"], rb["k"], rb["dtype"]) == (8, 4, 2, "bf16")
    assert rb["gflops"] == pytest.approx(2 * 8 * 4 * 2 / rb["time_s"] / 1e9, rel=1e-12)


def test_workload_densities_and_gemms_follow_the_models_training_step() -> None:
    """As torch trains them: the first layer's input is data (no input-gradient GEMM), a
    convolution's dY is dense (batch norm sits between it and its ReLU), an input after a
    2x2 max pool of ReLU outputs is zero only where all four are, one after the average pool
    is dense; the MLPs' dY is ReLU-masked."""
    def by_key(model: str) -> dict:
        return {g.key: g for g in Workload.build(model, 0.9, act_density=0.5).gemms}

    r18, vgg, mlp, r50 = by_key("resnet18-cifar"), by_key("vgg16-cifar"), by_key("mlp"), by_key("resnet50-imagenet")
    for gemms in (r18, vgg, mlp, r50):
        first = next(iter(gemms.values())).layer
        assert f"{first}.fwd" in gemms and f"{first}.bwd_data" not in gemms
    assert r18["layer1.conv.bwd_data"].a_density == 1.0 and r18["layer1.conv.wgrad"].a_density == 1.0
    assert r18["layer1.conv.fwd"].a_density == 0.5 and r18["fc.fwd"].a_density == 1.0
    assert vgg["conv3.fwd"].a_density == 1 - 0.5 ** 4 and vgg["conv4.fwd"].a_density == 0.5
    assert r50["layer1.0.conv1.fwd"].a_density == 1 - 0.5 ** 9
    assert mlp["fc2.bwd_data"].a_density == 0.5  # a linear layer's ReLU reads its output
    # torch's FLOP counter over forward and backward (MACs = FLOPs / 2), batch 128 / 64
    assert Workload.build("resnet18-cifar", 0.0).dense_macs == 213_055_832_064
    assert Workload.build("mlp", 0.0).dense_macs == 72_115_200


def test_workload_shapes_and_ir() -> None:
    layers = model_layers("resnet18-cifar")
    conv1 = layers[0]
    assert (conv1.m, conv1.n, conv1.k) == (128 * 32 * 32, 64, 27)
    gemms = training_gemms(layers, 0.9)
    assert {g.role for g in gemms} == {"fwd", "bwd_data", "wgrad"}
    assert all(g.op == "sddmm" for g in gemms if g.role == "wgrad")
    assert "graph.sddmm" in gemm_ir(gemms[1]) and "#csr" in gemm_ir(gemms[0])
    big = gemms[0]
    plan = sample_plan(big, 144, 16)
    assert plan.fraction < 1 and plan.time_scale > 1
    assert Workload.build("bert-base-layer", 0.5).dense_macs > 0
    m = weight_mask((16, 32), 0.25, "nm", np.random.default_rng(0))
    assert m.sum() == 16 * 32 // 4
    m = weight_mask((16, 40), 0.1, "nm", np.random.default_rng(0))  # exactly 1:10, not 1:8
    assert (m.reshape(16, 4, 10).sum(axis=2) == 1).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(models=["nope"]), "unknown model"),
    (dict(models=["tiny-mlp"], targets=["nope"]), "unknown target"),
    (dict(models=["tiny-mlp"], masks=["nope"]), "unknown mask"),
    (dict(models=["tiny-mlp"], sparsities=[1.0]), "impossible sparsity"),
    (dict(models=["tiny-mlp"], sparsities=[-0.1]), "impossible sparsity"),
    (dict(models=["tiny-mlp"], masks=["nm"], sparsities=[0.33]), "no N:M pattern has density 0.67"),
    (dict(models=["tiny-mlp"], noc=["adaptive"]), "unknown NoC mode 'adaptive'"),
    (dict(models=["tiny-mlp"], sets={"cluster.nope": ["1"]}), "unknown field"),
    (dict(models=["tiny-mlp"], sets={"cluster.lookahead": ["0"]}), "must be >= 1"),
    (dict(models=["tiny-mlp"], batch=-1), "--batch -1: must be at least 1"),
    (dict(models=["tiny-mlp"], max_waves=0), "--max-waves 0: must be at least 1"),
    (dict(models=["tiny-mlp"], max_k_chunks=0), "--max-k-chunks 0: must be at least 1"),
])
def test_bad_input_errors(tmp_path, kwargs, match) -> None:
    with pytest.raises(SweepError, match=match):
        run_sweep(Grid(**kwargs), tmp_path, jobs=1, progress=False)


def test_bad_model_in_workloads() -> None:
    with pytest.raises(WorkloadError, match="unknown model"):
        model_layers("alexnet")


def test_cli_bench_bad_input(capsys) -> None:
    from acf.cli import main

    assert main(["bench", "--models", "nope", "--out", "/tmp/x-acf-bench-bad", "--no-progress"]) == 1
    assert "unknown model" in capsys.readouterr().err


def test_cli_bench_bad_set_field_is_said_once(capsys, tmp_path) -> None:
    """A --set naming no field carries its own location and 'error:'; the command adds
    no second prefix."""
    from acf.cli import main

    assert main(["bench", "--models", "tiny-mlp", "--set", "cluster.nosuch=1", "--out",
                 str(tmp_path), "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == (
        "--set cluster.nosuch: error: key 'cluster.nosuch': unknown field")


@pytest.mark.parametrize("argv,message", [
    (["--jobs", "-2"], "--jobs -2: must be 0 (every CPU) or more"),
    (["--accuracy", "nope"], "--accuracy: unknown sparsity algorithm 'nope'; choose one of "),
    (["--accuracy", "rigl", "--accuracy-steps", "0"], "--accuracy-steps 0: must be at least 1"),
    (["--accuracy", "nm", "--sparsity", "0.33"],
     "--accuracy nm at sparsity 0.33: no N:M pattern has density 0.67"),
    (["--compare", "alexnet:0.9"], "--compare 'alexnet:0.9': unknown model 'alexnet'"),
    (["--compare", "mlp:x"], "--compare 'mlp:x': expected MODEL:SPARSITY with a sparsity in [0, 1)"),
    (["--compare", "mlp:1"], "--compare 'mlp:1': expected MODEL:SPARSITY with a sparsity in [0, 1)"),
    (["--out", "{file}"], "--out {file}: cannot create the results folder: File exists"),
    (["--targets", "{dir}"], "unknown target '{dir}'; choose one of acf-base"),
    (["--models", ""], "--models '': give at least one value"),
    (["--set", "cluster.lookahead="], "--set cluster.lookahead=: no value for cluster.lookahead"),
    (["--set", "cluster.lookahead=4", "--set", "cluster.lookahead=8"],
     "--set cluster.lookahead given twice"),
])
def test_cli_bench_rejects_bad_options_before_any_run(tmp_path, capsys, argv, message) -> None:
    """Each is one line and status 1, before a run starts (no results folder appears)."""
    from acf.cli import main

    file = tmp_path / "a-file"
    file.write_text("")
    out = tmp_path / "out"
    argv = ["bench", "--models", "tiny-mlp", "--sparsity", "0.5", "--no-progress", "--out", str(out),
            *(a.replace("{file}", str(file)).replace("{dir}", str(tmp_path)) for a in argv)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("acfc: error: " + message.replace("{file}", str(file))
                          .replace("{dir}", str(tmp_path)))
    assert err.count("\n") == 1
    assert not out.exists()


def test_ray_executor_local_cluster(tmp_path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        res = run_sweep(Grid(models=["tiny-mlp"], sparsities=[0.9], targets=["acf-base", "acf-dense"]),
                        tmp_path, executor="ray", progress=False)
    finally:
        ray.shutdown()
    assert res.ran == 2 and all(r["status"] == "ok" for r in res.rows)


def test_calibration_from_rows_reports_gap(sweep_dir) -> None:
    from acf.evaluation.calibration import CASES, calibrate_from_rows

    rows = _rows(sweep_dir)
    import dataclasses

    case = dataclasses.replace(CASES[1], peer="acf-base", baseline="acf-dense")
    (c,) = calibrate_from_rows(rows, "tiny-mlp", (case,))
    assert c["modelled_speedup"] > 0 and "gap" in c and c["headline"] == 1.95
    assert (abs(c["gap"]) > 0.25) == bool(c["explanation"])


def test_report_without_accuracy_runs_draws_no_placeholder(sweep_dir, tmp_path) -> None:
    path = report.write_report(_rows(sweep_dir), tmp_path, anchors=None)
    assert not (tmp_path / "accuracy_vs_sparsity.png").exists()
    assert "accuracy_vs_sparsity.png" not in path.read_text()
    assert all((tmp_path / name).stat().st_size > 1000 for name in outputs.PLOTS[:6])


def test_speedup_against_another_peak_is_marked() -> None:
    r = {"peak_macs_per_s": 121e12, "seconds": 1.0}
    d = {"peak_macs_per_s": 1e12, "seconds": 2.0}
    assert points.same_peak_or_none(r, d) is None and points.same_peak_or_none(r, {**d, "peak_macs_per_s": 121e12})
    assert round(points.peak_ratio(r, d)) == 121


def test_gpu_live_without_cuda_says_why() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device: measured for real by sweep_paper")
    assert "no CUDA device" in baselines.gpu_live()["skipped"]
