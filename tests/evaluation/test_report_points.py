"""Reports pair only rows of one point, state the targets' real hardware and node, name
what sets rows apart, and refuse unwritable output folders before any run."""

from __future__ import annotations

import json
import random
import sys

import pytest
from acf.evaluation import baselines, comparison, gpu_tables, labels, points, report
from acf.evaluation.points import latest_rows, point_key
from acf.evaluation.runner import RunSpec, hardware_figures, load, run_spec
from acf.evaluation.sweep import Grid, SweepError, parse_sets


def fake_row(target: str, seconds: float, energy_j: float = 1.0, model: str = "tiny-mlp",
             sparsity: float = 0.9, **spec) -> dict:
    """A result row as run_spec writes it, with chosen time and energy (no emulation)."""
    s = RunSpec(model, sparsity, target, **{k: v for k, v in spec.items() if k != "overrides"},
                overrides=tuple(sorted((spec.get("overrides") or {}).items())))
    t = load(s)
    hw = hardware_figures(t)
    gemm = {"key": "fc1.fwd", "m": 32, "n": 64, "k": 64, "count": 1, "cycles": seconds * 1e9,
            "ideal_speedup": 10.0, "sampled": 1.0}
    return {**s.as_dict(), "run_id": s.run_id(t.config_hash(), "test"), "config_hash": t.config_hash(),
            "status": "ok", "numeric_mode": hw["numeric_mode"], "tech_node_nm": hw["tech_node_nm"],
            "peak_macs_per_s": hw["peak_macs_per_s"], "area_mm2": hw["area_mm2"], "hardware": hw,
            "cycles": seconds * 1e9, "seconds": seconds, "energy_j": energy_j,
            "energy_mac_arrays_j": energy_j, "energy_dram_j": 0.0, "utilization": 0.5,
            "ideal_speedup": 10.0,
            "noc_max_link_load": 0.1, "sampled": 1.0, "gemms": [gemm], "mask_update_seconds": 0.0}


def vs(c: dict, target: str) -> dict:
    return next(v for v in c["vs_targets"] if v["target"] == target)


# ---- 1: pairing by point, whatever the row order ---------------------------------------------


def test_comparison_pairs_only_rows_of_the_same_point() -> None:
    """An acf-dense row of another batch (the repro: a second sweep with --batch 128 into
    the same folder) is no partner of acf-base at the default batch; --batch 32 is
    tiny-mlp's default batch, so that row is."""
    base = fake_row("acf-base", 1.0)
    dense = fake_row("acf-dense", 1.04)
    other_batch = fake_row("acf-dense", 1.69, batch=128)
    for rows in ([base, dense, other_batch], [base, other_batch, dense]):
        c = comparison.comparison(rows, "tiny-mlp", 0.9)
        assert vs(c, "acf-dense")["speedup"] == pytest.approx(1.04)
        assert len(comparison.compare_points(rows, "tiny-mlp", 0.9)[0]) == 1  # no acf-base at batch 128
    explicit_default = fake_row("acf-dense", 1.10, batch=32)
    c = comparison.comparison([base, explicit_default], "tiny-mlp", 0.9)
    assert vs(c, "acf-dense")["speedup"] == pytest.approx(1.10)


def test_comparison_does_not_depend_on_the_order_rows_finished_in() -> None:
    """With --masks random,magnitude each mask is its own point, compared on its own,
    the default (random) first, whichever run finished first."""
    rows = [fake_row("acf-base", 1.0), fake_row("acf-dense", 2.0),
            fake_row("acf-base", 1.0, mask="magnitude"), fake_row("acf-dense", 3.0, mask="magnitude")]
    results = []
    for seed in range(4):
        shuffled = rows[:]
        random.Random(seed).shuffle(shuffled)
        default = comparison.comparison(shuffled, "tiny-mlp", 0.9)
        assert (default["mask"], vs(default, "acf-dense")["speedup"]) == ("random", 2.0)
        found, why = comparison.compare_points(shuffled, "tiny-mlp", 0.9)
        assert why is None
        results.append([(c["mask"], vs(c, "acf-dense")["speedup"]) for c in found])
    assert all(r == [("random", 2.0), ("magnitude", 3.0)] for r in results)


def test_gpu_baseline_tables_pair_rows_of_one_point() -> None:
    """The MLP step column and the roofline lines take 0 % and 90 % rows of one batch; two
    batches are two entries, each named."""
    rows = [fake_row("acf-base", 1.0, model="mlp"), fake_row("acf-dense", 2.0, model="mlp"),
            fake_row("acf-base", 1.0, model="mlp", batch=64), fake_row("acf-dense", 5.0, model="mlp", batch=64),
            fake_row("acf-base", 4.0, model="mlp", sparsity=0.0), fake_row("acf-base", 7.0, model="mlp",
                                                                           sparsity=0.0, batch=64)]
    text = "\n".join(gpu_tables.md_gpu_baselines(baselines.load_anchors(), rows[::-1]))
    assert ("| 2.00x (random masks; activation density 0.5; batch 128); "
            "5.00x (random masks; activation density 0.5; batch 64) |") in text
    h200 = baselines.iso_peak_time(1.0, rows[0]["peak_macs_per_s"], "H200", "tf32")["time_s"]
    line = next(x for x in text.splitlines() if x.startswith("| mlp (random masks; activation density 0.5; "
                                                             "batch 64) | H200 | tf32 |"))
    assert line.endswith(f"| {7 * h200 * 1e3:.3f} | {h200 * 1e3:.3f} |")


# ---- 2: normalization from the targets' configs --------------------------------------------


def test_comparison_states_each_targets_hardware() -> None:
    """tpu-like has 2 memory ports to acf-base's 4; acf-h200-iso multiplies in bf16 at
    1.5 GHz with 32 DRAM channels and a 64 MiB buffer: the text says so, from the configs
    (the rows here carry no hardware figures: the targets are loaded)."""
    rows = [fake_row(t, 1.0) for t in ("acf-base", "acf-dense", "tpu-like", "acf-h200-iso")]
    rows = [{k: v for k, v in r.items() if k != "hardware"} for r in rows]
    c = comparison.comparison(rows, "tiny-mlp", 0.9)
    assert vs(c, "acf-dense")["normalization"] == (
        "same hardware: peak (4.10 TMAC/s fp32), clock (1 GHz), memory ports (4 x 32 B/cycle), "
        "DRAM (8 channels, 256 GB/s), global buffer (8 MiB) and node (45 nm)")
    assert vs(c, "tpu-like")["normalization"].startswith(
        "tpu-like differs from acf-base in memory ports (2 x 32 B/cycle vs 4 x 32 B/cycle); same peak")
    iso = vs(c, "acf-h200-iso")["normalization"]
    assert iso == ("acf-h200-iso differs from acf-base in peak (497.66 TMAC/s bf16 vs 4.10 TMAC/s fp32), "
                   "clock (1.5 GHz vs 1 GHz), memory ports (16 x 32 B/cycle vs 4 x 32 B/cycle), "
                   "DRAM (32 channels, 4800 GB/s vs 8 channels, 256 GB/s) and global buffer "
                   "(64 MiB vs 8 MiB); same node (45 nm)")
    assert not any("memory system" in v["normalization"] for v in c["vs_targets"])


def test_summary_has_a_targets_table_instead_of_claims(tmp_path) -> None:
    rows = [fake_row(t, 1.0) for t in ("acf-base", "acf-dense", "tpu-like")]
    text = report.write_report(rows, tmp_path, comparisons=()).read_text()
    assert "memory system" not in text
    assert ("| tpu-like | 4.10 TMAC/s fp32 | 1 GHz | 2 x 32 B/cycle | 8 channels, 256 GB/s | 8 MiB | "
            "45 nm | 162.1 | memory ports (2 x 32 B/cycle vs 4 x 32 B/cycle) |") in text
    assert "| acf-base | 4.10 TMAC/s fp32 | 1 GHz | 4 x 32 B/cycle |" in text and "| 172.1 | same |" in text


# ---- 3: tech.scale_to_nm -------------------------------------------------------------------


@pytest.fixture(scope="module")
def scaled_rows():
    """tiny-mlp at 90 % on acf-base at its tables' 45 nm and scaled to 7 nm."""
    return {nm: run_spec(RunSpec("tiny-mlp", 0.9, "acf-base", overrides=(("tech.scale_to_nm", nm),)))
            for nm in ("0", "7")}


def test_rows_record_the_node_their_energy_and_area_are_at(scaled_rows) -> None:
    """The on-chip energy and area are at 7 nm; the DRAM energy (HBM interface) and the DRAM
    PHY area are as at 45 nm (neither is CMOS logic)."""
    at45, at7 = scaled_rows["0"], scaled_rows["7"]
    assert (at45["tech_node_nm"], at7["tech_node_nm"]) == (45, 7)
    assert at7["hardware"]["tech_tables_nm"] == 45
    dram = at45["energy_dram_j"]
    assert dram > 0 and at7["energy_dram_j"] == pytest.approx(dram, rel=1e-9)
    assert at7["energy_j"] == pytest.approx((at45["energy_j"] - dram) * baselines.energy_factor(45, 7) + dram,
                                            rel=1e-9)
    phy = at45["hardware"]["dram_phy_mm2"]
    assert phy == 8 * 1.25 and at7["hardware"]["dram_phy_mm2"] == phy
    assert at7["area_mm2"] == pytest.approx((at45["area_mm2"] - phy) * 0.059 + phy, rel=1e-9)


def test_gpu_comparison_scales_from_the_rows_node(scaled_rows) -> None:
    """The same design at 45 nm and reported at 7 nm is the same design at the H200's node:
    every normalized figure agrees (before, the 7 nm row was scaled 45->7 nm again)."""
    anchors = baselines.load_anchors()
    g45, g7 = (gpu_tables.gpu_comparison(scaled_rows[nm], anchors, "resnet18-cifar")[0] for nm in ("0", "7"))
    for key in ("acf_energy_j_scaled", "energy_reduction_scaled", "speedup_iso_power", "speedup_iso_area"):
        assert g7[key] == pytest.approx(g45[key], rel=1e-9), key
    assert g7["acf_energy_j_scaled"] == pytest.approx(scaled_rows["7"]["energy_j"])
    assert g7["acf_node_nm"] == 7 and g7["energy_scaling"].startswith("on-chip x1.0000 7->7 nm")
    assert g45["energy_scaling"].startswith("on-chip x0.0555 45->7 nm, DRAM (HBM interface) unscaled")


def test_summary_names_the_node_of_each_row(scaled_rows, tmp_path) -> None:
    rows = list(scaled_rows.values())
    text = report.write_report(rows, tmp_path, anchors=None, comparisons=(("tiny-mlp", 0.9),)).read_text()
    assert ("Energies and areas are at 45 nm, except acf-base[tech.scale_to_nm=7] at 7 nm." in text)
    assert "ACF (acf-base[tech.scale_to_nm=7]): " in text and " J per step (7 nm; GEMMs only" in text
    assert " J per step (45 nm; GEMMs only" in text


def test_rows_without_hardware_figures_are_read_at_their_real_node(scaled_rows) -> None:
    """A row of schema 1 (no ``hardware``) says 45 nm and the unscaled area for a 7 nm
    energy: the report takes the node and area from the target's config."""
    new = {**scaled_rows["7"], "model": "resnet18-cifar"}  # a model with a measured H200 step
    old = {k: v for k, v in new.items() if k != "hardware"}
    phy = new["hardware"]["dram_phy_mm2"]
    old.update(tech_node_nm=45, area_mm2=(new["area_mm2"] - phy) / 0.059 + phy)
    anchors = baselines.load_anchors()
    found, _ = comparison.compare_points([old], "resnet18-cifar", 0.9, anchors)
    c = found[0]  # the only point (tech.scale_to_nm=7: not the default settings)
    assert comparison.comparison([old], "resnet18-cifar", 0.9, anchors) is None
    right = gpu_tables.gpu_comparison(new, anchors, "resnet18-cifar")
    for key in ("energy_reduction_scaled", "speedup_iso_area", "speedup_iso_power"):
        assert c["gpu"][0][key] == pytest.approx(right[0][key], rel=1e-12), key
    assert c["acf_node_nm"] == 7


# ---- 4: one spelling per --set value -------------------------------------------------------


def test_set_values_written_two_ways_are_one_value() -> None:
    assert parse_sets(["noc.link_bytes=32,0x20,+32,032"]) == {"noc.link_bytes": ["32"]}
    assert parse_sets(["fabric.grid=[2,2];[2, 2]"]) == {"fabric.grid": ["[2, 2]"]}
    assert parse_sets(["clock.freq_ghz=1,1.0,01.0"]) == {"clock.freq_ghz": ["1.0"]}
    assert parse_sets(["noc.routing=yx,\"yx\""]) == {"noc.routing": ["yx"]}
    # leading zeros are a plain decimal, as 0x20 is a hex one
    assert parse_sets(["cluster.lookahead=04,4"]) == {"cluster.lookahead": ["4"]}
    # a value the field does not take is kept as written: loading the target says why
    assert parse_sets(["cluster.lookahead=abc"]) == {"cluster.lookahead": ["abc"]}


def test_a_value_written_two_ways_runs_once(tmp_path) -> None:
    grid = Grid(models=["tiny-mlp"], sparsities=[0.9], targets=["acf-base"],
                sets={"cluster.lookahead": ["04", "4"], "fabric.grid": ["[2,2]", "[2, 2]"]})
    (spec,) = grid.specs()
    assert spec.overrides == (("cluster.lookahead", "4"), ("fabric.grid", "[2, 2]"))
    with pytest.raises(SweepError, match="must be an integer"):
        Grid(models=["tiny-mlp"], sets={"cluster.lookahead": ["abc"]}).validate()


def test_rows_of_one_value_written_two_ways_are_one_point() -> None:
    a = fake_row("acf-base", 1.0, overrides={"noc.link_bytes": "32"})
    b = {**a, "overrides": {"noc.link_bytes": "0x20"}}
    assert point_key(a) == point_key(b) and points.point_of(a) == points.point_of(b)
    assert latest_rows([a, b]) == [b]


# ---- 5: output folders ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.csv", "rows.csv.tmp", "summary.md",
                                  "comparison.json", "noc_link_load.png"])
def test_a_folder_where_an_output_file_goes_is_one_line_before_any_run(tmp_path, capsys, name) -> None:
    from acf.cli import main

    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    argv = ["bench", "--models", "tiny-mlp", "--targets", "acf-base", "--sparsity", "0", "--no-progress",
            "--jobs", "1", "--out", str(out)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == (f"acfc: error: --out {out}: {out / name} is a directory where the sweep writes a "
                   "file; remove or rename it\n")
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing ran, nothing written


def test_write_report_refuses_a_folder_in_place_of_its_files(tmp_path) -> None:
    (tmp_path / "summary.md").mkdir()
    with pytest.raises(SweepError, match="summary.md is a directory where the sweep writes a file"):
        report.write_report([fake_row("acf-base", 1.0)], tmp_path, comparisons=())


def test_ray_missing_leaves_no_results_folder(tmp_path, capsys, monkeypatch) -> None:
    from acf.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    out = tmp_path / "out"
    assert main(["bench", "--models", "tiny-mlp", "--sparsity", "0", "--no-progress", "--executor", "ray",
                 "--out", str(out)]) == 1
    assert capsys.readouterr().err == ("acfc: error: --executor ray needs the optional 'ray' package "
                                       "(pip install ray)\n")
    assert not out.exists()


# ---- 6: --compare at every setting, or why not ---------------------------------------------


def test_compare_at_each_setting_when_no_row_has_the_defaults(tmp_path) -> None:
    rows = [fake_row(t, s * la, overrides={"cluster.lookahead": str(la)}, noc=noc)
            for la in (1, 8) for noc in ("auto", "unicast") for t, s in (("acf-base", 1.0), ("acf-dense", 1.5))]
    text = report.write_report(rows, tmp_path, comparisons=(("tiny-mlp", 0.9),)).read_text()
    assert ("tiny-mlp at 90 % sparsity ran at 4 points (they differ in --set values and NoC mode): "
            "each is compared on its own below") in text
    assert ("## tiny-mlp at 90 % weight sparsity (random masks; activation density 0.5; batch 32; "
            "cluster.lookahead=8; NoC unicast)") in text
    found, why = comparison.compare_points(rows, "tiny-mlp", 0.9)
    assert why is None
    assert [(c["point"]["overrides"], c["point"]["noc"]) for c in found] == [
        ({"cluster.lookahead": "1"}, "auto"), ({"cluster.lookahead": "8"}, "auto"),
        ({"cluster.lookahead": "1"}, "unicast"), ({"cluster.lookahead": "8"}, "unicast")]
    assert all(vs(c, "acf-dense")["speedup"] == pytest.approx(1.5) for c in found)


@pytest.mark.parametrize("compare,why", [
    (("mlp", 0.9), "no comparison for mlp at 90 % sparsity: the sweep has no mlp rows"),
    (("tiny-mlp", 0.5), "no comparison for tiny-mlp at 50 % sparsity: tiny-mlp ran at 90 % sparsity only"),
    (("tiny-mlp", 0.9), "no comparison for tiny-mlp at 90 % sparsity: no acf-base row there "
                        "(targets there: acf-dense)"),
])
def test_a_compare_without_a_table_says_why(tmp_path, capsys, compare, why) -> None:
    text = report.write_report([fake_row("acf-dense", 1.0)], tmp_path, comparisons=(compare,)).read_text()
    assert why[0].upper() + why[1:] + "." in text.splitlines()
    assert capsys.readouterr().err == f"note: {why}\n"
    assert json.loads((tmp_path / "comparison.json").read_text())["not_compared"] == [why]


# ---- 7: labels -----------------------------------------------------------------------------


def test_labels_name_what_sets_points_apart(tmp_path) -> None:
    rows = [fake_row("acf-base", 1.0), fake_row("acf-base", 2.0, batch=64),
            fake_row("acf-base", 3.0, act_density=0.3), fake_row("acf-base", 4.0, seed=1)]
    text = report.write_report(rows, tmp_path, comparisons=()).read_text()
    shown = [line.split(" | ")[1] for line in text.splitlines() if line.startswith("| tiny-mlp | ")]
    assert shown == ["acf-base[batch=32,act_density=0.3,seed=0]", "acf-base[batch=32,act_density=0.5,seed=0]",
                      "acf-base[batch=32,act_density=0.5,seed=1]", "acf-base[batch=64,act_density=0.5,seed=0]"]
    # one value of each in the table: nothing to name
    assert labels.label(rows[0], labels.distinguishing(rows[:1])["tiny-mlp"]) == "acf-base"


# ---- 8: rows from another sweep ------------------------------------------------------------


def test_rows_from_another_sweep_are_marked(tmp_path) -> None:
    reference = [fake_row("acf-base", 1.0), fake_row("acf-dense", 2.0)]
    own = [fake_row("acf-base", 0.5, overrides={"cluster.lookahead": "1"})]
    path = report.write_report(own + reference, tmp_path, comparisons=(),
                               borrowed={"../sweep_main": reference})
    text = path.read_text()
    assert ("3 runs. 2 of them were measured by another sweep (../sweep_main), not by the command "
            "above, and are shown for reference") in text
    assert "| tiny-mlp | acf-base (from ../sweep_main) | 90 % |" in text
    assert "| tiny-mlp | acf-dense (from ../sweep_main) | 90 % |" in text
    assert "| tiny-mlp | acf-base[cluster.lookahead=1] | 90 % |" in text
    borrowed = json.loads((tmp_path / "comparison.json").read_text())["borrowed_rows"]
    assert borrowed == {r["run_id"]: "../sweep_main" for r in reference}


def test_bench_compares_what_it_swept_by_default(tmp_path, capsys) -> None:
    """Without --compare the summary compares the swept model at its highest sparsity (it
    compared resnet18-cifar at 90 %, which a tiny-mlp sweep never has, and said so)."""
    from acf.cli import main

    out = tmp_path / "out"
    assert main(["bench", "--models", "tiny-mlp", "--targets", "acf-base,acf-dense", "--sparsity",
                 "0,0.5", "--no-progress", "--jobs", "1", "--out", str(out)]) == 0
    assert "no comparison" not in capsys.readouterr().err
    compared = json.loads((out / "comparison.json").read_text())["comparisons"]
    assert [(c["model"], c["sparsity"]) for c in compared] == [("tiny-mlp", 0.5)]
