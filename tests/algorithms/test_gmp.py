import pytest
import torch
from acf import algorithms

from tests.algorithms.helpers import fake_step, mlp, sgd


def cubic(t, t0, t_end, dt, s_i, s_f):
    """Zhu & Gupta's schedule: dense before t0, s_i at t0, s_f from t_end on."""
    if t >= t_end:
        return s_f
    if t < t0:
        return 0.0
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


@pytest.mark.parametrize("t0", [0, 5])
def test_gmp_t_end_equal_to_t_start_prunes_once_to_final(t0):
    """t_end == t_start is one-shot pruning at t_start: dense before, the final density
    from t_start on (the span-0 schedule used to stay at the initial sparsity forever)."""
    model = mlp(32, 32, 4)
    alg = algorithms.create("gmp", model, sgd(model), density=0.1, t_start=t0, t_end=t0,
                            delta_t=1)
    assert alg.sparsity_at("0.weight", t0) == pytest.approx(0.9)
    for t in range(1, t0 + 4):
        if t <= t0:
            assert alg.density_report()["density"] == 1.0
        fake_step(alg, seed=t)
    assert alg.density_report()["nnz"] == round(0.1 * 32 * 32) + round(0.1 * 32 * 4)
    assert alg.update_steps == ([t0] if t0 else [])


def test_gmp_initial_sparsity_starts_at_t_start():
    """Zhu & Gupta: the model is dense before t0 and is pruned to s_i at t0."""
    model = mlp(20, 20)
    alg = algorithms.create("gmp", model, sgd(model), density=0.1, t_start=3, t_end=9,
                            delta_t=3, initial_sparsity=0.5)
    assert int(alg.masks["0.weight"].sum()) == 400
    for t in range(1, 4):
        fake_step(alg, seed=t)
    assert alg.update_steps == [3]
    assert int(alg.masks["0.weight"].sum()) == 200


@pytest.mark.parametrize("density", [0.05, 0.15, 0.35, 0.45, 0.55, 0.85])
@pytest.mark.parametrize("out_features", [1, 3, 7])
def test_gmp_ends_at_the_count_of_the_other_algorithms(density, out_features):
    """The final count is nnz_target: computed as (1 - (1 - d)) * numel it used to differ
    by one (Linear(10, 1) at 0.05: 1 weight under gmp, 0 under the others)."""
    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(10, out_features))

    model = make()
    alg = algorithms.create("gmp", model, sgd(model), density=density, t_end=4, delta_t=2)
    other = make()
    static = algorithms.create("static-magnitude", other, sgd(other), density=density)
    for t in range(5):
        fake_step(alg, seed=t)
    numel = 10 * out_features
    assert alg.update_steps == [2, 4]
    assert int(alg.masks["0.weight"].sum()) == alg.nnz_target("0.weight")
    assert alg.nnz_target("0.weight") == int(static.masks["0.weight"].sum())
    assert alg.nnz_at("0.weight", 4) == alg.nnz_target("0.weight")
    # the intermediate count follows the cubic schedule (never below the final count)
    mid = round((1 - cubic(2, 0, 4, 2, 0.0, 1 - density)) * numel)
    assert alg.nnz_at("0.weight", 2) == max(mid, alg.nnz_target("0.weight"))
