import numpy as np
import pytest
import torch
from acf import algorithms

from tests.algorithms.helpers import fake_step, mlp, sgd


def test_names():
    assert algorithms.NAMES == (
        "static-random",
        "static-magnitude",
        "gmp",
        "set",
        "rigl",
        "nm",
        "nm-srste",
        "block",
        "vector",
    )


def test_unknown_name_lists_choices():
    model = mlp(8, 8)
    with pytest.raises(ValueError) as err:
        algorithms.create("rig-l", model, sgd(model))
    for name in algorithms.NAMES:
        assert name in str(err.value)


@pytest.mark.parametrize("density", [-0.1, 1.5])
@pytest.mark.parametrize("name", ["static-random", "rigl", "set", "gmp", "block"])
def test_impossible_density(name, density):
    model = mlp(8, 8)
    with pytest.raises(ValueError, match=r"density .* must be in \[0, 1\]"):
        algorithms.create(name, model, sgd(model), density=density, t_end=10)


@pytest.mark.parametrize("n,m", [(5, 4), (-1, 4), (2, 0)])
def test_impossible_nm(n, m):
    model = mlp(8, 8)
    with pytest.raises(ValueError, match="N:M needs"):
        algorithms.create("nm", model, sgd(model), n=n, m=m)


def test_nm_density_must_match():
    model = mlp(8, 8)
    with pytest.raises(ValueError, match="N/M"):
        algorithms.create("nm", model, sgd(model), density=0.3, n=2, m=4)


def test_other_bad_options():
    model = mlp(8, 8, 4)
    with pytest.raises(ValueError, match="distribution"):
        algorithms.create("static-random", model, sgd(model), distribution="er")
    with pytest.raises(ValueError, match="missing"):
        algorithms.create("static-random", model, sgd(model), density={"0.weight": 0.5})
    with pytest.raises(ValueError, match="t_end"):
        algorithms.create("rigl", model, sgd(model))
    with pytest.raises(ValueError, match="vector_from"):
        algorithms.create("vector", model, sgd(model), vector_from="lanes", t_end=5)
    with pytest.raises(ValueError, match="schedule"):
        algorithms.create("block", model, sgd(model), schedule="once", t_end=5)


@pytest.mark.parametrize(("build", "options", "match"), [
    (lambda: torch.nn.Sequential(torch.nn.Linear(3, 2)),
     {"n": 2, "m": 4}, r"'0.weight' has 3 inputs per output, not a multiple of M=4"),
    (lambda: mlp(8, 8), {"n": 2, "m": 4, "density": {"0.weight": 0.5}},
     "a per-layer density does not apply"),
    (lambda: mlp(8, 8), {"n": 2, "m": 4, "distribution": "erk"}, "distribution='erk' does not apply"),
    (lambda: mlp(8, 8), {"n": 2, "m": 4, "params": ["0.bias"]}, "'0.bias' is 1-D"),
])
def test_nm_options_that_cannot_hold_exactly_n_of_m(build, options, match):
    """A partial group, a per-layer density, a distribution or a vector would not give
    exactly N of every M; each is refused instead of silently giving other densities."""
    model = build()
    with pytest.raises(ValueError, match=match):
        algorithms.create("nm", model, sgd(model), **options)


def test_no_parameter_to_sparsify_is_an_error():
    model = torch.nn.Sequential(torch.nn.ReLU())
    with pytest.raises(ValueError, match="no parameter to sparsify"):
        algorithms.create("static-random", model, torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1),
                          density=0.1)


def test_a_layer_smaller_than_its_blocks_keeps_one_block():
    """block 8x8 on a 2 x 3 layer at 50 %: one (partial) block kept, not the layer pruned
    whole (round(0.5 * 1 block) was 0)."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    alg = algorithms.create("block", model, sgd(model), density=0.5, block=(8, 8), schedule="static")
    assert bool(alg.masks["0.weight"].all())


@pytest.mark.parametrize(("name", "options", "match"), [
    ("rigl", {"t_end": 10, "delta_t": 2.5}, r"delta_t must be an integer >= 1, got 2\.5"),
    ("gmp", {"t_end": 10, "t_start": -5}, r"t_start must be an integer >= 0, got -5"),
    ("gmp", {"t_end": 7.5}, r"t_end must be an integer >= 0, got 7\.5"),
    ("static-random", {"params": []}, r"params=\[\] names no parameters to sparsify"),
    ("vector", {"t_end": 4, "vector_length": 2.7}, r"vector_length must be an integer >= 1, got 2\.7"),
    ("nm", {"n": True, "m": 4}, r"N:M needs integers .*, got N=True, M=4"),
    ("block", {"t_end": 4, "block": (4, 0)}, r"block must be a positive integer or two of them, got \(4, 0\)"),
    ("block", {"t_end": 4, "block": 2.5}, r"block must be a positive integer or two of them, got 2\.5"),
    ("rigl", {"t_end": 4, "density": None}, r"density for the model must be a number in \[0, 1\], got None"),
])
def test_bad_options_are_named(name, options, match):
    """Each bad value is refused at construction, naming the option and the value, instead
    of being truncated, replaced by a default or failing inside torch."""
    model = mlp(16, 16, 4)
    with pytest.raises(ValueError, match=match):
        algorithms.create(name, model, sgd(model), **options)


def test_integer_like_options_are_accepted():
    """numpy integers are counts; one integer is a square block."""
    model = mlp(16, 16, 4)
    alg = algorithms.create("nm", model, sgd(model), n=np.int64(2), m=np.int64(4))
    assert (alg.n, alg.m) == (2, 4) and type(alg.n) is int
    assert alg.density_report()["density"] == 0.5
    model = mlp(16, 16, 4)
    alg = algorithms.create("block", model, sgd(model), block=4, density=0.25, schedule="static")
    assert alg.group == (4, 4)


@pytest.mark.parametrize(("name", "options", "ignored"), [
    ("static-random", {"density": 0.5, "delta_t": 5, "t_end": 10}, ("delta_t", "t_end")),
    ("static-magnitude", {"density": 0.5, "t_start": 2}, ("t_start",)),
    ("nm", {"t_end": 10}, ("t_end",)),
    ("nm-srste", {"delta_t": 7, "t_start": 3, "t_end": 5}, ("delta_t", "t_start", "t_end")),
    ("block", {"density": 0.5, "schedule": "static", "delta_t": 3}, ("delta_t",)),
    ("rigl", {"density": 0.5, "delta_t": 3, "t_end": 9}, ()),
    ("gmp", {"density": 0.5, "delta_t": 3, "t_start": 1, "t_end": 9}, ()),
])
def test_ignored_schedule_options_are_listed(name, options, ignored):
    """Schedule options are accepted by every algorithm (train() and the accuracy runs pass
    them to all) and those an algorithm ignores are listed, not silently dropped."""
    model = mlp(16, 16, 4)
    alg = algorithms.create(name, model, sgd(model), **options)
    assert alg.ignored_options == ignored
    for t in range(12):
        fake_step(alg, seed=t)
    if name == "nm-srste":  # remasks after every step, whatever t_start/t_end say
        assert alg.update_steps == list(range(1, 13))
    elif ignored:
        assert alg.update_steps == []
