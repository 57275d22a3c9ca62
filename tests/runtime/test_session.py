"""Runtime session: training steps from IR text on the emulator against the interpreter,
masks as data (no recompiles), weight-gradient variants, re-specialization, reports, and
clear errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.runtime import BindError, Session, SessionOptions, profile

from .programs import LAYER, MLP, layer_args, mlp_args, random_mask, run_masked_mlp_step


def interp(text: str, args: list[np.ndarray]) -> list[np.ndarray]:
    return run_func(parse_module(text).funcs[0], args)


def close(got: np.ndarray, want: np.ndarray) -> None:
    want = np.asarray(want, np.float32)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5,
                               atol=1e-6 * max(scale, 1.0))


def test_mlp_training_step_matches_interpreter() -> None:
    res, args, mask = run_masked_mlp_step()
    want = interp(MLP, [args["w1"] * mask, args["w2"], args["x"], args["labels"], mask])
    for got, w in zip(res.values, want):
        close(got, w)
    rep = res.report
    assert rep.total_cycles > 0 and rep.energy_j > 0 and rep.seconds > 0
    assert {"forward", "backward_data", "wgrad_sddmm", "wgrad_dense", "optimizer",
            "other"} <= set(rep.by_kind)
    # the sampled gw1 (acf-small skips zeros on both operands): per set mask[i, j], one MAC
    # per batch row whose ReLU at unit i is live (h = x @ (w1 * mask)^T > 0; x has no zeros);
    # derivation in tests/runtime/test_report_spans.py
    live = (args["x"].astype(np.float64) @ (args["w1"] * mask).T.astype(np.float64) > 0).sum(axis=0)
    assert rep.by_kind["wgrad_sddmm"]["effectual_macs"] == int(live @ mask.sum(axis=1))
    assert {"fc1", "fc2", "loss"} <= set(rep.by_layer)  # the ReLU ("act") runs fused in fc1/fc2
    assert rep.by_layer["fc1"]["energy_j"] > 0
    ops = rep.by_op.values()  # every op with instructions, with its name, kind and layer
    assert sum(o["effectual_macs"] for o in ops) == rep.effectual_macs
    assert sum(o["instructions"] for o in ops) == sum(b["instructions"] for b in rep.by_kind.values()
                                                      ) - rep.by_kind.get("control", {}).get("instructions", 0)
    sddmm = [o for o in ops if o["kind"] == "wgrad_sddmm"]
    assert sddmm and all(o["op"] == "graph.sddmm" and o["layer"] == "fc1" for o in sddmm)
    # bytes through the memory ports, counted per op from the program, add up to the
    # emulator's own DRAM byte count (no global-buffer traffic here); each GEMM reads more
    # than it writes
    mem = rep.emulator.memory_bytes
    assert mem["gbuf_bytes"] == 0
    assert sum(o["port_in_bytes"] + o["port_out_bytes"] for o in ops) == mem["dram_bytes"] > 0
    fwd = [o for o in ops if o["kind"] == "forward"]
    assert fwd and all(o["port_in_bytes"] > o["port_out_bytes"] > 0 for o in fwd)
    d = json.loads(rep.to_json())
    assert d["total_cycles"] == rep.total_cycles and d["densities"]["w1"] == pytest.approx(
        mask.mean())


def test_mask_changes_are_data_not_recompiles() -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
    assert sess.compile_count == 1
    args = mlp_args(2)
    sess.set_params({"w1": args["w1"], "w2": args["w2"]})
    w1, w2 = args["w1"], args["w2"]
    for i, density in enumerate([0.8, 0.5, 0.3, 0.1]):
        mask = random_mask((48, 32), density, 10 + i)
        sess.bind_mask("w1", mask)
        res = sess.run_step({"x": args["x"], "labels": args["labels"]})
        want = interp(MLP, [w1 * mask, w2, args["x"], args["labels"], mask])
        for got, w in zip(res.values, want):
            close(got, w)
        w1, w2 = want[3], want[4]
        assert not res.report.compiled
    assert sess.compile_count == 1


def test_cycles_follow_density() -> None:
    sess = Session("acf-small", SessionOptions(respecialize="off"))
    sess.load(LAYER)
    cycles = []
    for density in (1.0, 0.5, 0.1):
        args = layer_args(density)
        sess.bind_mask("w", args.pop("mask"))
        res = sess.run_step(args)
        cycles.append(res.report.total_cycles)
        macs = res.report.by_kind["wgrad_sddmm"]["effectual_macs"]
        assert macs <= int(40 * 64 * 8 * density * 1.3) + 64
    assert cycles[0] > cycles[1] > cycles[2]
    assert sess.compile_count == 1


def test_dense_gradient_variant() -> None:
    sess = Session("acf-small", SessionOptions(grad_variants=("sddmm", "dense")))
    sess.load(LAYER)
    assert sess.compile_count == 2  # both variants up front
    args = layer_args(0.3)
    sess.bind_mask("w", args["mask"])
    inputs = {k: v for k, v in args.items() if k != "mask"}
    sparse = sess.run_step(inputs)
    dense = sess.run_step(inputs, dense_grad=True)
    assert sess.compile_count == 2
    want = interp(LAYER, [args[k] for k in ("x", "w", "mask", "gy", "buf")])
    gh = np.where(want[0] > 0, args["gy"], 0).astype(np.float32)
    close(dense.values[2], gh.T @ args["x"])                  # the full dense gradient
    close(sparse.values[2], want[2])                           # sampled at the mask
    assert np.count_nonzero(dense.values[2] * (1 - args["mask"])) > 0
    for i in (0, 1, 3, 4):  # same forward, backward-data and masked update
        close(dense.values[i], want[i])
    assert "wgrad_dense" in dense.report.by_kind and "wgrad_sddmm" not in dense.report.by_kind
    assert "wgrad_sddmm" in sparse.report.by_kind


def test_respecialization_once_and_faster() -> None:
    sess = Session("acf-small")
    sess.load(LAYER)
    low = layer_args(0.3, seed=3)
    sess.bind_mask("w", low.pop("mask"))
    first = sess.run_step(low)
    assert first.report.formats == {"w": "csr"} and not first.report.respecialized
    compiles = sess.compile_count
    reports = []
    for seed in (4, 5, 6):  # density 0.8: crosses the dense band once, then stays
        high = layer_args(0.8, seed=seed)
        mask = high.pop("mask")
        sess.bind_mask("w", mask)
        res = sess.run_step(high)
        want = interp(LAYER, [high["x"], high["w"], mask, high["gy"], high["buf"]])
        for got, w in zip(res.values, want):
            close(got, w)
        reports.append(res.report)
    respec = [r for rep in reports for r in rep.respecialized]
    assert len(respec) == 1
    r = respec[0]
    assert (r["from"], r["to"], r["kept"]) == ("csr", "dense", True)
    assert r["new_cycles"] < r["old_cycles"]
    assert reports[0].formats == {"w": "dense"} and reports[-1].formats == {"w": "dense"}
    assert sess.compile_count == compiles + 1
    assert reports[1].total_cycles < r["old_cycles"]


def test_profile_collects_reports(tmp_path) -> None:
    sess = Session("acf-small")
    sess.load(LAYER)
    args = layer_args(0.5)
    sess.bind_mask("w", args.pop("mask"))
    path = tmp_path / "report.json"
    with profile(path) as prof:
        sess.run_step(args)
        sess.run_step(args)
    sess.run_step(args)
    assert len(prof.reports) == 2
    data = json.loads(path.read_text())
    assert [s["step"] for s in data["steps"]] == [1, 2]
    assert set(data["steps"][0]["by_kind"]) >= {"forward", "wgrad_sddmm", "optimizer"}


def test_bad_inputs_raise_clear_errors() -> None:
    sess = Session("acf-small")
    sess.load(LAYER)
    args = layer_args(0.5)
    mask = args.pop("mask")
    with pytest.raises(BindError, match="no mask bound for masked parameter 'w'"):
        sess.run_step(args)
    with pytest.raises(BindError, match="'fc9.weight' is not a masked parameter.*w"):
        sess.bind_mask("fc9.weight", mask)
    with pytest.raises(BindError, match=r"mask for 'w': expected shape \[40, 64\]"):
        sess.bind_mask("w", mask[:, :10])
    sess.bind_mask("w", mask)
    with pytest.raises(BindError, match=r"tensor 'x': expected shape \[8, 64\], got \[8, 63\]"):
        sess.run_step({**args, "x": args["x"][:, :63]})
    with pytest.raises(BindError, match="unknown tensor 'xx'.*arguments: x, w, mask"):
        sess.run_step({**args, "xx": args["x"]})
    with pytest.raises(BindError, match="missing inputs.*gy"):
        sess.run_step({k: v for k, v in args.items() if k != "gy"})
    with pytest.raises(BindError, match="takes 5 arguments"):
        sess.run_step([args["x"]])


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support")
def test_sparse_torch_tensors_are_rejected() -> None:
    torch = pytest.importorskip("torch")
    sess = Session("acf-small")
    sess.load(LAYER)
    args = layer_args(0.5)
    sess.bind_mask("w", torch.from_numpy(args.pop("mask")))  # dense torch tensors are fine
    inputs = {k: torch.from_numpy(v) for k, v in args.items()}
    inputs["w"] = inputs["w"].to_sparse()
    with pytest.raises(BindError, match="tensor 'w': torch layout torch.sparse_coo"):
        sess.run_step(inputs)
    inputs["w"] = torch.from_numpy(args["w"]).to_sparse_csr()
    with pytest.raises(BindError, match="sparse_csr.*to_dense"):
        sess.run_step(inputs)
    inputs["w"] = torch.from_numpy(args["w"])
    assert sess.run_step(inputs).report.total_cycles > 0


DROPOUT = """
graph.func @step(%x: tensor<64x32xf32>, %keep: tensor<64x32xf32> {dropout = 0.25}) -> (tensor<64x32xf32>) {
  %y = graph.mul %x, %keep : tensor<64x32xf32>, tensor<64x32xf32> -> tensor<64x32xf32>
  graph.return %y : tensor<64x32xf32>
}
"""


def test_dropout_keep_masks_are_drawn_each_step_unless_given() -> None:
    """An argument with a ``dropout`` attribute is drawn by the session on every step that
    does not pass it (keep probability 1 - p, from ``SessionOptions.seed``)."""
    text = DROPOUT
    x = np.ones((64, 32), np.float32)

    def steps(seed: int, n: int = 2) -> list[np.ndarray]:
        sess = Session("acf-small", SessionOptions(seed=seed))
        sess.load(text)
        return [sess.run_step({"x": x}).values[0] for _ in range(n)]

    a, b = steps(0)
    assert set(np.unique(a)) == {0.0, 1.0}
    assert abs(float(a.mean()) - 0.75) < 0.03  # 2048 draws: 3 sigma is 0.029
    assert not np.array_equal(a, b)            # a new mask every step
    np.testing.assert_array_equal(steps(0)[0], a)   # the same seed draws the same
    assert not np.array_equal(steps(1)[0], a)
    sess = Session("acf-small")
    sess.load(text)
    given = (np.arange(64 * 32).reshape(64, 32) % 3 == 0).astype(np.float32)
    np.testing.assert_array_equal(sess.run_step({"x": x, "keep": given}).values[0], given)


INTEGER_RESULTS = """graph.func @f(%x: tensor<2x3xf32>, %t: tensor<2x3xi64>) -> (tensor<2x3xf32>, tensor<2x3xi64>, tensor<2xi64>) {
  %y = graph.mul %x, %x : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x3xf32>
  %u = graph.add %t, %t : tensor<2x3xi64>, tensor<2x3xi64> -> tensor<2x3xi64>
  %s = graph.reduce_sum %t {axes = [1], keepdim = false} : tensor<2x3xi64> -> tensor<2xi64>
  graph.return %y, %u, %s : tensor<2x3xf32>, tensor<2x3xi64>, tensor<2xi64>
}
"""


def test_integer_results_come_back_in_the_graphs_element_type() -> None:
    """The fabric computes in fp32 (integers exact below 2^24); run_step returned the i64
    results as float32 too."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = np.array([[1, -2, 3], [2**20, 5, -6]], np.int64)
    sess = Session("acf-small")
    sess.load(INTEGER_RESULTS)
    res = sess.run_step([x, t])
    want = interp(INTEGER_RESULTS, [x, t])
    assert [v.dtype for v in res.values] == [np.float32, np.int64, np.int64]
    for got, w in zip(res.values, want):
        np.testing.assert_array_equal(got, w)
    assert res.outputs["result2"].dtype == np.int64


def test_every_broadcasting_op_of_the_dialect_has_its_operands_expanded() -> None:
    """``materialize_broadcasts`` covers each graph op whose shape rule is numpy
    broadcasting (graph.maximum and graph.minimum were missing)."""
    from acf.compiler import shape_rules
    from acf.compiler.dialect import registered_ops
    from acf.runtime.variants import ELEMENTWISE_BINARY

    broadcasting = {d.name for d in registered_ops() if d.infer is shape_rules.broadcast}
    assert {"graph.add", "graph.maximum", "graph.minimum"} <= broadcasting
    assert broadcasting <= set(ELEMENTWISE_BINARY)
