"""The eager references with replayed ReLU decisions, and observed ReLU outputs of a step."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from acf.compiler.interp import run_func
from acf.frontends.reference import ReluDecisions, flips, reference_gradients
from acf.frontends.training_step import Binding, capture_training_step

from .models import SmallCNN, cancelling_mlp


def rel_l2(have: dict, want: dict) -> float:
    return max(float(np.linalg.norm(have[n] - w) / max(np.linalg.norm(w), 1e-30))
               for n, w in want.items())


def test_replaying_fp64_decisions_gives_the_fp64_gradients() -> None:
    torch.manual_seed(0)
    model, x, y = SmallCNN(), torch.randn(2, 3, 8, 8), torch.tensor([1, 4])
    recorded = ReluDecisions()
    exact = reference_gradients(model, (x,), y, dtype=torch.float64, decisions=recorded)
    assert len(recorded.recorded) == 2 and recorded.recorded[0].shape == (2, 8, 8, 8)
    replayed = reference_gradients(model, (x,), y, dtype=torch.float64,
                                   decisions=ReluDecisions(recorded.recorded))
    for name, g in exact.items():
        np.testing.assert_array_equal(replayed[name], g, err_msg=name)
    # One flipped decision where the gradient flows changes the gradients below it.
    flipped = [d.copy() for d in recorded.recorded]
    flipped[1][0, 0, 1, 1] = not flipped[1][0, 0, 1, 1]
    moved = reference_gradients(model, (x,), y, dtype=torch.float64,
                                decisions=ReluDecisions(flipped))
    assert flips(flipped, recorded.recorded) == 1
    assert rel_l2(moved, exact) > 1e-3


def test_a_cancelling_sum_flips_eager_fp32_and_replay_explains_it() -> None:
    model, x, y = cancelling_mlp()
    d64, d32 = ReluDecisions(), ReluDecisions()
    exact = reference_gradients(model, (x,), y, dtype=torch.float64, decisions=d64)
    eager = reference_gradients(model, (x,), y, dtype=torch.float32, decisions=d32)
    assert d64.recorded[0][0, 0] and not d32.recorded[0][0, 0]
    assert flips(d32.recorded, d64.recorded) == 1
    assert rel_l2(eager, exact) > 0.1  # eager fp32 itself fails a plain fp64 comparison
    matched = reference_gradients(model, (x,), y, dtype=torch.float64,
                                  decisions=ReluDecisions(d32.recorded))
    assert rel_l2(eager, matched) < 1e-6


def test_decisions_that_do_not_fit_the_model_are_refused() -> None:
    model, x, y = cancelling_mlp()
    with pytest.raises(ValueError, match=r"ReLU call 0: replayed decisions \(3,\) do not fit "
                                         r"the input \(4, 2\)"):
        reference_gradients(model, (x,), y, decisions=ReluDecisions([np.ones(3)]))
    with pytest.raises(ValueError, match="only 1 ReLU calls, more decisions given"):
        reference_gradients(model, (x,), y, decisions=ReluDecisions([np.ones((4, 2))] * 2))
    with pytest.raises(ValueError, match="ReLU call 0: replayed decisions None"):
        reference_gradients(model, (x,), y, decisions=ReluDecisions([]))


def test_observed_relu_outputs_are_extra_results() -> None:
    torch.manual_seed(1)
    model, x, y = SmallCNN(), torch.randn(2, 3, 8, 8), torch.tensor([0, 3])
    step = capture_training_step(model, (x,), labels=y, optimizer="sgd")
    n_before = len(step.results)
    added = step.observe("graph.relu")
    assert added == [Binding("observed", "relu0"), Binding("observed", "relu1")]
    assert step.results[n_before:] == added
    got = step.unpack(run_func(step.func, step.bind(model, (x,), y)))
    rec = ReluDecisions()
    with torch.no_grad(), rec.active():
        copy.deepcopy(model)(x)
    for binding, decided in zip(added, rec.recorded):
        np.testing.assert_array_equal(got[binding] > 0, decided, err_msg=binding.name)
    with torch.no_grad():
        first = torch.relu(copy.deepcopy(model).bn1(model.conv1(x)))
    np.testing.assert_allclose(got[added[0]], first.numpy(), rtol=1e-5, atol=1e-6)
    assert got[Binding("loss")].shape == ()  # the step's own results are unchanged
