"""Data loaders and the training loop (short runs on bundled data)."""

import pytest
import torch
from acf.algorithms.data import load_dataset
from acf.algorithms.train import train


def test_digits_shapes():
    d = load_dataset("digits")
    assert d.input_shape == (1, 8, 8) and d.num_classes == 10
    assert len(d.y_train) + len(d.y_test) == 1797
    assert d.x_train.dtype == torch.float32 and float(d.x_train.max()) <= 1.0


def test_mnist1d_is_generated_locally(monkeypatch):
    import requests

    def no_network(*a, **k):
        raise AssertionError("mnist1d must not download")

    monkeypatch.setattr(requests, "get", no_network)
    state = torch.from_numpy(__import__("numpy").random.get_state()[1].copy())
    d = load_dataset("mnist1d")
    assert d.input_shape == (1, 1, 40) and d.num_classes == 10
    assert len(d.y_train) == 4000 and len(d.y_test) == 1000
    assert torch.equal(state, torch.from_numpy(__import__("numpy").random.get_state()[1]))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="digits"):
        load_dataset("cifar")


def test_dense_mlp_learns_digits():
    r = train(None, steps=250, eval_every=50)
    assert r.final_accuracy > 0.8
    assert [s for s, _ in r.curve] == [50, 100, 150, 200, 250]
    assert all(r.dense_grad) and r.mask_updates == 0


def test_rigl_run_records_updates_and_dense_grad_steps():
    seen = []
    r = train(
        "rigl",
        0.3,
        120,
        eval_every=60,
        delta_t=20,
        t_end=100,
        step_hook=lambda step, model, alg: seen.append(step) or (step if step % 50 == 0 else None),
    )
    assert seen == list(range(120)) and r.hook_records == [0, 50, 100]
    assert [t for t, d in enumerate(r.dense_grad) if d] == [19, 39, 59, 79, 99]
    assert r.mask_updates == 5 and r.mask_update_events > 0
    assert r.density["density"] == pytest.approx(0.3, abs=1e-3)
    assert r.final_accuracy > 0.5


def test_training_is_deterministic():
    a = train("set", 0.3, 60, eval_every=30)
    b = train("set", 0.3, 60, eval_every=30)
    assert a.curve == b.curve and a.update_cost == b.update_cost


def test_srste_wants_dense_grads_every_step_and_cnn_runs():
    r = train("nm-srste", None, 40, model="cnn", eval_every=40, n=2, m=4)
    assert all(r.dense_grad) and len(r.dense_grad) == 40
    assert r.density["density"] == pytest.approx(0.5)
    assert 0.0 <= r.final_accuracy <= 1.0
