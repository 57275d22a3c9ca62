import pytest
import torch
from acf import algorithms

from tests.algorithms.helpers import mlp, sgd


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
