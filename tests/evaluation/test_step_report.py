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
