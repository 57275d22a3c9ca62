"""CI-sized accuracy experiment: digits, MLP, dense and 90 % RigL, one seed, few steps,
two sampled fabric iterations each (plus RigL's dense-gradient sample)."""

from __future__ import annotations

import json
import math

import pytest

pytest.importorskip("sklearn")
from acf.evaluation import accuracy as acc

STEPS = 12


@pytest.fixture(scope="module")
def rows():
    common = dict(steps=STEPS, eval_every=4, sample_every=STEPS, max_update_samples=0,
                  max_dense_grad_samples=1, update_every=4)
    out = [acc.run(acc.RunConfig("digits", "mlp", "dense", 0.0, **common)),
           acc.run(acc.RunConfig("digits", "mlp", "rigl", 0.9, **common))]
    acc.time_to_target(out, 0.5)
    return out


def test_rows_sane(rows):
    for r in rows:
        assert 0.0 <= r["final_accuracy"] <= 1.0
        assert all(0.0 <= a <= 1.0 for _, a in r["curve"])
        assert [s for s, _ in r["curve"]] == [4, 8, 12]
        f = r["fabric"]
        assert f["target"] == "acf-base"
        assert all(s["cycles"] > 0 and s["energy_j"] > 0 and s["seconds"] > 0 for s in f["samples"])
        json.dumps(r)  # rows are JSON


def test_sampled_bookkeeping(rows):
    dense, rigl = rows
    # regular samples: iteration 1 and the last; exactly those were emulated for dense
    assert dense["fabric"]["plan"]["regular"] == [1, STEPS - 1]
    assert sorted(s["iteration"] for s in dense["fabric"]["samples"]) == [1, STEPS - 1]
    for r in rows:
        f, t = r["fabric"], r["fabric"]["totals"]
        planned = sorted(i for k in f["plan"].values() for i in k)
        assert sorted(s["iteration"] for s in f["samples"]) == planned
        assert t["emulated_steps"] == len(f["samples"])
        assert t["sparse_steps"] + t["dense_grad_steps"] == STEPS
        assert math.isclose(t["total_seconds"], t["sparse_seconds"] + t["dense_grad_seconds"]
                            + t["mask_update_seconds"])
        costs = acc.per_step_costs(f, STEPS)
        assert len(costs) == STEPS and sum(c["emulated"] for c in costs) == len(f["samples"])
        assert all(c["cycles"] > 0 for c in costs)
    # RigL: dense weight gradient before each mask update (iterations 3 and 7 with delta_t 4,
    # t_end 9), costed apart and with the dense-gradient variant
    assert rigl["dense_grad_iterations"] == [3, 7]
    assert rigl["fabric"]["totals"]["dense_grad_steps"] == 2
    dg = [s for s in rigl["fabric"]["samples"] if s["kind"] == "dense_grad"]
    assert len(dg) == 1 and dg[0]["variant"].startswith("wgrad=dense")
    assert "wgrad_dense" in dg[0]["by_kind_cycles"]
    assert rigl["fabric"]["update_steps"] == [4, 8]
    assert rigl["mask_updates"] == 2
    # mask updates: measured where a sample first saw new masks, charged at both updates
    assert dense["fabric"]["totals"]["mask_update_steps"] == 0
    t = rigl["fabric"]["totals"]
    measured = [s["mask_update"] for s in rigl["fabric"]["samples"] if s["mask_update"]]
    assert measured and all(m["cycles"] > 0 for m in measured)
    assert t["mask_update_steps"] == 2 and t["mask_update_measured"] == len(measured)
    mean = sum(m["cycles"] for m in measured) / len(measured)
    assert t["mask_update_cycles"] == pytest.approx(2 * mean)


def test_sparse_cheaper_than_dense_weights(rows):
    _, rigl = rows
    ref = rigl["fabric"]["masked_program_all_ones"]
    sparse = [s for s in rigl["fabric"]["samples"] if s["kind"] != "dense_grad"]
    assert ref is not None and ref["cycles"] > 0
    # the same captured (masked) step: 90 % sparse masks need fewer cycles than all-ones
    assert all(s["cycles"] < ref["cycles"] for s in sparse)
    assert all(0.05 < s["density"] < 0.2 for s in sparse)
    # dense-gradient iterations cost more than sparse ones
    t = rigl["fabric"]["totals"]
    assert t["mean_dense_grad_step_cycles"] > t["mean_sparse_step_cycles"]


def test_time_to_target_and_summary(rows, tmp_path):
    dense, rigl = rows
    assert dense["target_accuracy"] == pytest.approx(0.5 * dense["final_accuracy"])
    if dense["steps_to_target"] is not None:
        assert 0 < dense["seconds_to_target"] <= dense["fabric"]["totals"]["total_seconds"] + 1e-12
        assert 0 < dense["energy_to_target_j"] <= dense["fabric"]["totals"]["total_energy_j"] + 1e-12
    rep = acc.write_report(rows, tmp_path, target_fraction=0.5)
    assert (tmp_path / "summary.md").read_text().startswith("# Accuracy")
    for name in ("accuracy_vs_sparsity.png", "accuracy_curves.png", "tradeoff.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert {g["algorithm"] for g in rep["groups"]} == {"dense", "rigl"}


def test_drop_rule():
    mk = lambda a, s, seed, x: {"key": f"d/m/{a}/{s}", "dataset": "d", "model": "m",
                                "algorithm": a, "sparsity": s, "seed": seed, "steps": 1,
                                "final_accuracy": x, "curve": [[1, x]]}
    rows = [mk("dense", 0.0, i, x) for i, x in enumerate((0.90, 0.92, 0.91))]
    rows += [mk("rigl", 0.5, i, x) for i, x in enumerate((0.90, 0.91, 0.92))]
    rows += [mk("rigl", 0.9, i, x) for i, x in enumerate((0.80, 0.82, 0.81))]
    s = acc.summarize(rows)
    assert s.drops == [{"dataset": "d", "model": "m", "algorithm": "rigl",
                        "first_drop_sparsity": 0.9, "tested": [0.5, 0.9]}]


@pytest.mark.parametrize("kw, match", [
    (dict(dataset="cifar"), "unknown dataset"),
    (dict(model="vit"), "unknown model"),
    (dict(algorithm="magic"), "unknown algorithm"),
    (dict(sparsity=1.0), "sparsity must be in"),
    (dict(sparsity=-0.1), "sparsity must be in"),
    (dict(algorithm="dense", sparsity=0.5), "dense training has sparsity 0"),
    (dict(algorithm="nm", sparsity=0.9), "nm is 2:4"),
    (dict(algorithm="nm-srste", sparsity=0.9), "nm-srste is 2:4"),
    (dict(sparsity=0.0), "needs sparsity > 0"),
    (dict(steps=1), "steps must be"),
    (dict(steps=0), "steps must be"),
    (dict(sample_every=-1), "sample_every"),
])
def test_bad_input(kw, match):
    base = dict(dataset="digits", model="mlp", algorithm="rigl", sparsity=0.9)
    with pytest.raises(acc.AccuracyError, match=match):
        acc.run(acc.RunConfig(**{**base, **kw}))


def test_bad_target_fraction():
    with pytest.raises(acc.AccuracyError, match="target_fraction"):
        acc.time_to_target([], 1.5)


def test_sr_ste_needs_the_dense_weight_gradient_every_step():
    """SR-STE's mask follows the dense weights, so every iteration is a dense-gradient one
    (and costed as such on the fabric); one-shot N:M never needs it."""
    common = dict(steps=6, eval_every=3, sample_every=6, max_update_samples=0,
                  max_dense_grad_samples=1)
    srste = acc.run(acc.RunConfig("digits", "mlp", "nm-srste", 0.5, **common))
    nm = acc.run(acc.RunConfig("digits", "mlp", "nm", 0.5, **common))
    assert srste["nm"] == nm["nm"] == "2:4"
    assert srste["dense_grad_iterations"] == list(range(6)) and nm["dense_grad_iterations"] == []
    assert srste["fabric"]["totals"]["mean_dense_grad_step_cycles"] > 0
    assert acc.grid(datasets=("digits",), models=("mlp",), seeds=(0,), sweep=())[-1].algorithm \
        == "nm-srste"


def test_run_id_covers_the_settings():
    """A resumed experiment must not keep a row trained with other steps, lr or sampling."""
    a = acc.RunConfig("digits", "mlp", "rigl", 0.9, steps=300)
    assert a.run_id.startswith("digits/mlp/rigl/0.9/seed0/")
    assert a.run_id == acc.RunConfig("digits", "mlp", "rigl", 0.9, steps=300).run_id
    for other in (dict(steps=200), dict(lr=0.1), dict(sample_every=7), dict(target="acf-small")):
        assert acc.RunConfig("digits", "mlp", "rigl", 0.9, **{"steps": 300, **other}).run_id != a.run_id


@pytest.mark.parametrize("argv, message", [
    (["--datasets", "nope"], "unknown dataset 'nope'"),
    (["--target-fraction", "1.5"], "--target-fraction 1.5: must be in (0, 1]"),
])
def test_sweep_accuracy_bad_input_is_one_line(tmp_path, capsys, argv, message):
    from acf.benchmarks import sweep_accuracy

    assert sweep_accuracy.main(["--out", str(tmp_path / "out"), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sweep_accuracy: error: ") and message in err and err.count("\n") == 1
