"""A mask change between steps is costed on the fabric and reported apart from the step."""

from __future__ import annotations

import json

import pytest
from acf.runtime import BindError, Session, SessionOptions

from .programs import CONV_LINEAR, conv_linear_args
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
