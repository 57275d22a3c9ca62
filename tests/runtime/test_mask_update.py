"""A mask change between steps is costed on the fabric and reported apart from the step; a
mask that changes a weight's format is priced from the format the weight was stored in."""

from __future__ import annotations

import json

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen import compile_module
from acf.compiler.parser import parse_module
from acf.runtime import BindError, Session, SessionOptions
from acf.runtime.session import mask_update_ir

from .programs import CONV_LINEAR, MLP, conv_linear_args, mlp_args, random_mask
from .test_respecialization import INPUTS, _conv_masks


def _step(sess: Session, mw, mv):
    sess.bind_mask("w", mw)
    sess.bind_mask("v", mv)
    args = conv_linear_args()
    return sess.run_step({k: args[k] for k in INPUTS}).report


def test_changed_masks_are_costed_apart_from_the_step() -> None:
    sess = Session("acf-base", SessionOptions(formats="auto", verify=False))
    sess.load(CONV_LINEAR)
    mw, mv = _conv_masks(0.1, 0)
    mw2, mv2 = _conv_masks(0.1, 5)
    first, same, v_only, w_only = (_step(sess, *m) for m in ((mw, mv), (mw, mv), (mw, mv2), (mw2, mv2)))
    assert first.mask_update == {} and same.mask_update == {}
    assert v_only.mask_update["params"] == ["v"] and w_only.mask_update["params"] == ["w"]
    for rep in (v_only, w_only):
        assert rep.mask_update["cycles"] > 0 and rep.mask_update["energy_j"] > 0
        assert rep.mask_update["seconds"] == pytest.approx(rep.mask_update["cycles"] * 1e-9)  # 1 GHz
    # the step's own totals do not include it: a fresh session runs the same step as many cycles
    fresh = Session("acf-base", SessionOptions(formats="auto", verify=False))
    fresh.load(CONV_LINEAR)
    assert _step(fresh, mw2, mv2).total_cycles == w_only.total_cycles
    assert json.loads(w_only.to_json())["mask_update"]["params"] == ["w"]
    # both changed: one program re-masks both (the CSR one decoded and re-encoded)
    both = _step(sess, *_conv_masks(0.1, 7))
    assert both.mask_update["params"] == ["v", "w"]
    assert both.mask_update["cycles"] >= max(v_only.mask_update["cycles"], w_only.mask_update["cycles"])
    # one mask-update program per set of changed weights, logged apart from the step's
    assert [e["variant"] for e in sess.compile_log if e["reason"] == "mask-update"] == ["v", "w", "v,w"]
    assert sess.compile_count == 1


def test_cost_mask_update_without_a_step() -> None:
    """The cost of moving to other masks, asked ahead: what the next step reports."""
    sess = Session("acf-base", SessionOptions(formats="auto", verify=False))
    sess.load(CONV_LINEAR)
    mw, mv = _conv_masks(0.1, 0)
    _step(sess, mw, mv)
    mw2, _ = _conv_masks(0.1, 5)
    asked = sess.cost_mask_update({"w": mw2, "v": mv})
    assert asked["params"] == ["w"] and asked["cycles"] > 0
    assert sess.cost_mask_update({"w": mw, "v": mv}) == {}
    assert _step(sess, mw2, mv).mask_update == asked
    with pytest.raises(BindError, match="expected shape"):
        sess.cost_mask_update({"w": mv})


@pytest.mark.parametrize("densities, crossing", [
    ((0.8, 0.05), ("dense", "csr")),
    ((0.35, 0.9), ("bitmap", "dense")),
])
def test_a_format_change_is_priced_from_the_stored_format(densities, crossing) -> None:
    """A mask that moves a weight to another band: the step's mask update reads the weight
    in the format it was stored in and writes it in the new one (the conversion is part of
    the update), as cost_mask_update foresaw, not as if it had been stored in the new
    format already."""
    args = mlp_args()
    sess = Session("acf-small", SessionOptions(formats="auto", verify=False))
    sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
    sess.set_params({"w1": args["w1"], "w2": args["w2"]})
    sess.bind_mask("w1", random_mask((48, 32), densities[0], 1))
    first = sess.run_step({"x": args["x"], "labels": args["labels"]}).report
    assert first.formats == {"w1": crossing[0]}
    stored = sess._get(None).last_weights["w1"]
    m2 = random_mask((48, 32), densities[1], 2)
    asked = sess.cost_mask_update({"w1": m2})
    sess.bind_mask("w1", m2)
    rep = sess.run_step({"x": args["x"], "labels": args["labels"]}).report
    assert [(e["from"], e["to"], e["kept"]) for e in rep.respecialized] == [(*crossing, True)]
    assert rep.mask_update == asked
    assert asked["converted"] == {"w1": list(crossing)}

    def cycles(stored_as: str, written_as: str) -> int:
        program = compile_module(parse_module(mask_update_ir([((48, 32), stored_as, written_as)])),
                                 sess.target)
        return emulator.run(program.program, sess.target,
                            program.bind([stored, m2])).report.total_cycles

    # the weight read in the format it was stored in, written in the new one; not the
    # price of an update of a weight already stored in the new format
    assert asked["cycles"] == cycles(*crossing) != cycles(crossing[1], crossing[1])


def test_cost_mask_update_names_what_is_not_a_masked_parameter() -> None:
    sess = Session("acf-base", SessionOptions(formats="auto", verify=False))
    sess.load(CONV_LINEAR)
    with pytest.raises(BindError, match="'nope' is not a masked parameter of 'step' \\(masked "
                                        "parameters: v, w\\)"):
        sess.cost_mask_update({"nope": np.ones((2, 2))})
    with pytest.raises(BindError, match="'x' is not a masked parameter"):
        sess.cost_mask_update({"x": np.ones((2, 4, 6, 6))})
    with pytest.raises(BindError, match="'w': no step has run with it masked yet"):
        sess.cost_mask_update({"w": np.ones((8, 4, 3, 3))})


def test_a_verified_format_change_is_foreseen_too() -> None:
    """With verify (the default) the step runs the new program on the converted weight
    whichever program it keeps: the conversion is priced either way, as foreseen."""
    args = mlp_args()
    sess = Session("acf-small")
    sess.load(MLP, carry={"result3": "w1", "result4": "w2"})
    sess.set_params({"w1": args["w1"], "w2": args["w2"]})
    sess.bind_mask("w1", random_mask((48, 32), 0.8, 1))
    sess.run_step({"x": args["x"], "labels": args["labels"]})
    m2 = random_mask((48, 32), 0.05, 2)
    asked = sess.cost_mask_update({"w1": m2})
    sess.bind_mask("w1", m2)
    rep = sess.run_step({"x": args["x"], "labels": args["labels"]}).report
    assert [(e["from"], e["to"]) for e in rep.respecialized] == [("dense", "csr")]
    assert rep.mask_update == asked and asked["converted"] == {"w1": ["dense", "csr"]}


def test_the_optimizer_state_is_zeroed_where_a_connection_grows() -> None:
    """A mask update also brings each changed weight's optimizer state (the momentum the
    previous step left, in the format its program stored it in) to the new mask: zeroed
    where the mask grows a connection, kept elsewhere. The fabric's work for it is charged:
    the same update without the state costs fewer cycles."""
    sess = Session("acf-base", SessionOptions(formats="auto", verify=False))
    sess.load(CONV_LINEAR)
    mw, mv = _conv_masks(0.1, 0)
    _step(sess, mw, mv)
    loaded = sess._get(None)
    momentum, fmt = loaded.last_states["bv"]
    assert set(loaded.last_states) == {"bw", "bv"} and fmt == loaded.formats["v"] == "csr"
    _, mv2 = _conv_masks(0.1, 5)
    asked = sess.cost_mask_update({"w": mw, "v": mv2})
    assert asked["params"] == ["v"]

    text = mask_update_ir([((16, 32), "csr", "csr", (fmt,))])
    assert "graph.mask_apply %s0_0, %k0" in text
    program = compile_module(parse_module(text), sess.target)
    stored = conv_linear_args()["v"] * mv
    keep = 1 - ((mv2 != 0) & (mv == 0)).astype(np.float32)
    res = emulator.run(program.program, sess.target, program.bind([stored, mv2, momentum, keep]))
    assert res.report.total_cycles == asked["cycles"]
    zeroed = res.outputs[program.outputs[-1]]
    grown = (mv2 != 0) & (mv == 0)
    assert grown.any() and not zeroed[grown].any()
    np.testing.assert_array_equal(zeroed[~grown], momentum[~grown])
    alone = compile_module(parse_module(mask_update_ir([((16, 32), "csr", "csr")])), sess.target)
    without = emulator.run(alone.program, sess.target, alone.bind([stored, mv2])).report
    assert without.total_cycles < asked["cycles"]
    assert _step(sess, mw, mv2).mask_update == asked
