import pytest
import torch
from acf import algorithms

from tests.algorithms.helpers import fake_step, mlp, sgd


def cubic(t, t0, t_end, dt, s_i, s_f):
    if t <= t0:
        return s_i
    if t >= t_end:
        return s_f
    last = t0 + (t - t0) // dt * dt
    return s_f + (s_i - s_f) * (1 - (last - t0) / (t_end - t0)) ** 3


@pytest.mark.parametrize("s_i", [0.0, 0.2])
def test_gmp_follows_cubic_schedule(s_i):
    model = mlp(50, 40, 30)
    alg = algorithms.create(
        "gmp",
        model,
        sgd(model, lr=0.01),
        density=0.1,
        t_start=10,
        t_end=50,
        delta_t=10,
        initial_sparsity=s_i,
    )
    numel = {n: p.numel() for n, p in alg.params.items()}
    for t in range(61):
        if t:
            fake_step(alg, seed=t)
        for n, m in alg.masks.items():
            want = round((1 - cubic(t, 10, 50, 10, s_i, 0.9)) * numel[n])
            assert int(m.sum()) == want, (t, n)
    # explicit points of the formula s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3
    assert alg.sparsity_at("0.weight", 20) == pytest.approx(0.9 + (s_i - 0.9) * 0.75**3)
    # between updates the last update's sparsity holds
    assert alg.sparsity_at("0.weight", 35) == pytest.approx(0.9 + (s_i - 0.9) * 0.5**3)
    assert alg.update_steps == [10, 20, 30, 40, 50]


def test_gmp_never_revives_pruned_weights():
    model = mlp(40, 40)
    alg = algorithms.create("gmp", model, sgd(model, lr=0.1), density=0.2, t_end=40, delta_t=5)
    prev = alg.masks["0.weight"].clone()
    for t in range(45):
        fake_step(alg, seed=t)
        assert not torch.any(alg.masks["0.weight"] & ~prev)
        prev = alg.masks["0.weight"].clone()
