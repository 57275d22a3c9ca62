import pytest
import torch
from acf import algorithms
from acf.algorithms import erk_densities, sparsifiable
from torch import nn

from tests.algorithms.helpers import sgd


def net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3),
        nn.Conv2d(16, 32, 3),
        nn.Conv2d(32, 64, 3),
        nn.Flatten(),
        nn.Linear(64, 256),
        nn.Linear(256, 512),
        nn.Linear(512, 10),
    )


def test_default_selection_and_options():
    model = net()
    assert sparsifiable(model) == ["1.weight", "2.weight", "4.weight", "5.weight", "6.weight"]
    assert sparsifiable(model, exclude_first_conv=False, exclude_last_linear=True) == [
        "0.weight",
        "1.weight",
        "2.weight",
        "4.weight",
        "5.weight",
    ]


@pytest.mark.parametrize("density", [0.05, 0.1, 0.3, 0.6])
def test_erk_overall_density_and_order(density):
    model = net()
    alg = algorithms.create("static-random", model, sgd(model), density=density, distribution="erk")
    report = alg.density_report()
    assert abs(report["density"] - density) < 1e-3
    ratio = {n: sum(p.shape) / p.numel() for n, p in alg.params.items()}
    by_size = sorted(alg.params, key=lambda n: ratio[n])
    dens = [alg.densities[n] for n in by_size]
    assert dens == sorted(dens)  # larger ERK ratio (smaller layer) -> larger density
    assert alg.densities["6.weight"] > alg.densities["5.weight"]
    assert all(0.0 <= d <= 1.0 for d in alg.densities.values())


def test_erk_caps_dense_layers_and_rescales():
    shapes = {"big": torch.Size([1000, 1000]), "small": torch.Size([10, 10])}
    d = erk_densities(shapes, 0.5)
    assert d["small"] == 1.0
    total = 1000 * 1000 + 100
    assert abs((d["big"] * 1e6 + 100) / total - 0.5) < 1e-9


def test_uniform_and_per_layer():
    model = net()
    alg = algorithms.create("static-magnitude", model, sgd(model), density=0.25)
    for name, layer in alg.density_report()["layers"].items():
        assert layer["nnz"] == round(0.25 * layer["numel"]), name
    per = {n: 0.1 * (i + 1) for i, n in enumerate(sparsifiable(model))}
    other = net()
    alg = algorithms.create("static-random", other, sgd(other), density=per)
    for name, layer in alg.density_report()["layers"].items():
        assert layer["nnz"] == round(per[name] * layer["numel"])


class Tied(nn.Module):
    """``b`` reuses ``a``'s weight (tied weights, as in a shared embedding)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b, self.c = nn.Linear(16, 16), nn.Linear(16, 16), nn.Linear(16, 4)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.c(self.b(self.a(x)))


def test_a_shared_weight_gets_one_mask():
    model = Tied()
    assert sparsifiable(model) == ["a.weight", "c.weight"]
    alg = algorithms.create("static-random", model, sgd(model), density=0.5)
    assert list(alg.masks) == ["a.weight", "c.weight"]
    assert int((model.b.weight != 0).sum()) == 128  # the same tensor, masked once
    # naming it through either module resolves to the one parameter
    other = Tied()
    alg = algorithms.create("static-random", other, sgd(other), density=0.5,
                            params=["b.weight", "a.weight"])
    assert list(alg.params) == ["a.weight"] and alg.params["a.weight"] is other.b.weight


class TiedDecoder(nn.Module):
    """An autoencoder whose decoder (the last Linear) reuses the encoder's weight."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(16, 16, bias=False)
        self.mid = nn.Linear(16, 16)
        self.dec = nn.Linear(16, 16, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x):
        return self.dec(torch.relu(self.mid(torch.relu(self.enc(x)))))


def test_exclude_last_linear_excludes_its_tied_weight():
    """The excluded weight is the tensor, not the module name: it used to be sparsified
    through the encoder, which shares it."""
    model = TiedDecoder()
    assert sparsifiable(model, exclude_last_linear=True) == ["mid.weight"]
    assert sparsifiable(model) == ["enc.weight", "mid.weight"]
    alg = algorithms.create("static-random", model, sgd(model), density=0.25,
                            exclude_last_linear=True)
    assert list(alg.params) == ["mid.weight"]
    assert bool((model.dec.weight != 0).all())


def test_a_per_layer_density_may_name_a_tied_alias():
    """``params`` accepts any alias of a tied weight, and so does a density mapping; naming
    the weight twice is refused."""
    model = TiedDecoder()
    alg = algorithms.create("static-random", model, sgd(model), density={"dec.weight": 0.5},
                            params=["dec.weight"])
    assert alg.densities == {"enc.weight": 0.5}
    assert int(alg.masks["enc.weight"].sum()) == 128
    alg = algorithms.create("static-random", model, sgd(model),
                            density={"dec.weight": 0.5, "mid.weight": 0.25})
    assert alg.densities == {"enc.weight": 0.5, "mid.weight": 0.25}
    with pytest.raises(ValueError, match="'enc.weight' twice"):
        algorithms.create("static-random", model, sgd(model), params=["enc.weight"],
                          density={"enc.weight": 0.5, "dec.weight": 0.5})


@pytest.mark.parametrize("distribution", ["erk", "uniform"])
@pytest.mark.parametrize("density", [0.01, 0.1, 0.5, 0.9, 0.99])
def test_one_density_gives_exactly_the_total_count(distribution, density):
    """Per-layer rounding missed the total (ResNet-18, width 16, ERK 0.5: 349,526 of
    349,528); largest-remainder rounding hits it, each layer at the floor or ceiling of
    its share."""
    from acf.algorithms.models import ResNet18

    model = ResNet18(width=16)
    alg = algorithms.create("static-random", model, sgd(model), density=density,
                            distribution=distribution, exclude_first_conv=False)
    numel = {n: p.numel() for n, p in alg.params.items()}
    assert sum(alg.nnz_target(n) for n in numel) == round(density * sum(numel.values()))
    assert alg.density_report()["nnz"] == round(density * sum(numel.values()))
    for n, size in numel.items():
        share = alg.densities[n] * size
        assert 0 <= alg.nnz_target(n) <= size
        assert abs(alg.nnz_target(n) - share) < 1 + 1e-6, n


def test_largest_remainder_respects_caps_and_breaks_ties_by_order():
    from acf.algorithms.base import largest_remainder

    # quotas 1.5 + 1.5 + 1.0 = 4: one of the tied halves rounds up, the earlier one
    assert largest_remainder({"a": 1.5, "b": 1.5, "c": 1.0}, {"a": 9, "b": 9, "c": 9}, 4) == {
        "a": 2, "b": 1, "c": 1}
    # a layer at its cap takes no more; float error in a quota is absorbed
    assert largest_remainder({"a": 3.0, "b": 0.4, "c": 0.6 - 1e-12},
                             {"a": 3, "b": 5, "c": 5}, 4) == {"a": 3, "b": 0, "c": 1}
    assert largest_remainder({"a": 2.0000000001, "b": 2.0000000001}, {"a": 2, "b": 3}, 4) == {
        "a": 2, "b": 2}
