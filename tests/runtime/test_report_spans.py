"""Step reports' ``span_cycles``: first start to last end of a bucket's instruction records,
exactly (a hand-worked example, then a real step checked against its own records), and the
sampled weight gradient's effectual MACs derived from the mask and the batch."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import acf.runtime.session as session_mod
import numpy as np
import pytest
from acf.emulator.engine import Record
from acf.isa.program import SourceLoc
from acf.runtime.report import build_step_report

from .programs import run_masked_mlp_step


def _rec(index: int, start: int, end: int, eff: int = 0) -> Record:
    return Record(index=index, mnemonic="mm", unit="mac", cluster=0, dispatch=start,
                  start=start, end=end, issued_macs=eff, effectual_macs=eff)


def test_span_is_last_end_minus_first_start_by_hand() -> None:
    # instructions 0 and 1 belong to op 0 (forward, layer fc1), 2 to op 1 (optimizer, fc1),
    # 3 has no op (control). Records (index, start, end):
    #   forward:   (0, 3, 10), (1, 5, 20), (0, 12, 14)  -> span 20 - 3 = 17, busy 7+15+2 = 24
    #   optimizer: (2, 30, 31)                          -> span 1, busy 1
    #   control:   (3, 40, 46)                          -> span 6
    #   layer fc1 holds forward and optimizer records  -> span 31 - 3 = 28
    program = SimpleNamespace(
        debug={0: SourceLoc("m.py", 1, "fc1", 0), 1: SourceLoc("m.py", 1, "fc1", 0),
               2: SourceLoc("m.py", 2, "fc1", 1)},
        instructions=[None] * 4)
    records = [_rec(0, 3, 10, 5), _rec(1, 5, 20, 7), _rec(0, 12, 14, 1), _rec(2, 30, 31),
               _rec(3, 40, 46)]
    emu = SimpleNamespace(target="t", total_cycles=46, time_s=1e-6, energy_total_j=0.0,
                          macs_effectual_count=13, macs_issued_count=13)
    rep = build_step_report(0, "p", "v", SimpleNamespace(records=records, report=emu), program,
                            {0: "forward", 1: "optimizer"}, {0: "fc1", 1: "fc1"})
    fwd = rep.by_kind["forward"]
    assert (fwd["span_cycles"], fwd["busy_cycles"], fwd["instructions"]) == (17, 24, 3)
    assert fwd["effectual_macs"] == 13
    assert rep.by_kind["optimizer"]["span_cycles"] == 1
    assert rep.by_kind["control"]["span_cycles"] == 6
    assert rep.by_layer["fc1"]["span_cycles"] == 28
    assert rep.by_op["0"]["span_cycles"] == 17 and rep.by_op["1"]["span_cycles"] == 1
    # a bucket starting at cycle 0 counts from 0 (the first record is not "unset")
    rep0 = build_step_report(0, "p", "v", SimpleNamespace(records=[_rec(0, 0, 4), _rec(1, 2, 9)],
                                                          report=emu),
                             program, {0: "forward"}, {0: "fc1"})
    assert rep0.by_kind["forward"]["span_cycles"] == 9


@pytest.fixture(scope="module")
def mlp_step():
    """A masked MLP step, with the records and program the report was built from."""
    seen = {}
    real = session_mod.build_step_report

    def spy(step, name, variant, result, program, op_kinds, op_layers, op_names=None):
        seen.update(result=result, program=program, op_kinds=op_kinds)
        return real(step, name, variant, result, program, op_kinds, op_layers, op_names)

    mp = pytest.MonkeyPatch()
    mp.setattr(session_mod, "build_step_report", spy)
    try:
        res, args, mask = run_masked_mlp_step()
    finally:
        mp.undo()
    return res.report, seen, args, mask


def test_each_kinds_span_matches_its_records(mlp_step) -> None:
    rep, seen, _, _ = mlp_step
    program, op_kinds = seen["program"], seen["op_kinds"]
    starts, ends = defaultdict(list), defaultdict(list)
    for r in seen["result"].records:
        loc = program.debug.get(r.index)
        kind = op_kinds.get(loc.op_id, "control") if loc is not None and loc.op_id >= 0 \
            else "control"
        starts[kind].append(r.start)
        ends[kind].append(r.end)
    assert set(starts) == set(rep.by_kind)
    for kind, b in rep.by_kind.items():
        assert b["span_cycles"] == max(ends[kind]) - min(starts[kind]), kind
        assert b["instructions"] == len(starts[kind]), kind
    # a kind's span covers at least its longest instruction and at most the step
    for kind in ("forward", "wgrad_sddmm", "optimizer"):
        assert 0 < rep.by_kind[kind]["span_cycles"] <= rep.total_cycles


def test_sampled_weight_gradient_effectual_macs(mlp_step) -> None:
    """gw1 = mask * (gh^T @ x), computed only where the mask is set (sddmm), on acf-small,
    which skips zeros on both operands (skip = "ab"): an output (i, j) costs one effectual
    MAC per batch row b with gh[b, i] != 0 and x[b, j] != 0. gh = relu_backward(ga, a) is
    non-zero exactly where h = x @ (w1 * mask)^T is positive (ga has no exact zeros here), and
    x has none, so the count is sum over set (i, j) of #{b : h[b, i] > 0}."""
    rep, _, args, mask = mlp_step
    x = args["x"].astype(np.float64)
    h = x @ (args["w1"].astype(np.float64) * mask).T  # (16, 48)
    assert (args["x"] != 0).all()
    assert np.abs(h[h != 0]).min() > 1e-4  # no sign that float32 rounding could flip
    active = (h > 0).sum(axis=0)  # batch rows with a live ReLU, per output row i
    want = int(sum(active[i] * int(mask[i].sum()) for i in range(48)))
    assert rep.by_kind["wgrad_sddmm"]["effectual_macs"] == want
    # every MAC issued is a sampled output times the batch (16): nnz(mask) * 16
    assert rep.by_kind["wgrad_sddmm"]["issued_macs"] == int(mask.sum()) * 16
