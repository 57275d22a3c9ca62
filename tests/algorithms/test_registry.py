import pytest
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
