"""N:M, SR-STE, block and vector masks."""

import pytest
import torch
from acf import algorithms
from acf.algorithms.structure import as_matrix
from acf.isa.target import load_target
from torch import nn

from tests.algorithms.helpers import fake_step, mlp, sgd


def conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(16, 32), nn.Linear(32, 16))


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (1, 2)])
def test_nm_exactly_n_per_group(n, m):
    model = conv_net()
    alg = algorithms.create("nm", model, sgd(model, lr=0.1), n=n, m=m, exclude_first_conv=False)
    assert set(alg.masks) == {"0.weight", "2.weight", "3.weight"}
    for _ in range(3):
        fake_step(alg)
    for name, mask in alg.masks.items():
        groups = as_matrix(mask).reshape(mask.shape[0], -1, m)
        assert torch.all(groups.sum(-1) == n), name
        w = as_matrix(alg.params[name].detach()).reshape(mask.shape[0], -1, m)
        assert torch.all((w != 0).sum(-1) <= n)
    assert alg.density_report()["density"] == pytest.approx(n / m)
    assert alg.update_steps == []


def test_nm_keeps_largest_in_group():
    model = mlp(8, 2)
    with torch.no_grad():
        model[0].weight.copy_(
            torch.tensor([[1, -5, 3, 0.5, 9, 8, -7, 1], [0, 0, 1, 2, 4, 3, 2, 1]])
        )
    alg = algorithms.create("nm", model, sgd(model), n=2, m=4)
    want = torch.tensor([[0, 1, 1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(alg.masks["0.weight"], want)


def test_srste_refines_gradients_of_pruned_weights():
    model = mlp(16, 8)
    lam = 0.1
    alg = algorithms.create("nm-srste", model, sgd(model, lr=1.0), n=2, m=4, lambda_w=lam)
    assert alg.needs_dense_grad(0) and alg.needs_dense_grad(123)
    assert not alg.masks_grads(0)
    mask = alg.masks["0.weight"].clone()
    dense = alg.dense["0.weight"].clone()
    p = alg.params["0.weight"]
    assert torch.equal(p.detach(), dense * mask)  # forward sees W * M
    grad = torch.randn(p.shape)
    p.grad = grad.clone()
    model[0].bias.grad = torch.zeros_like(model[0].bias)
    alg.optimizer.step()
    # SGD lr=1: W' = W - (g + lambda * (1 - M) * W); pruned weights moved too
    want = dense - grad - lam * dense * ~mask
    assert torch.allclose(p.detach(), want)
    assert torch.allclose(p.grad[~mask], grad[~mask] + lam * dense[~mask])
    assert torch.equal(p.grad[mask], grad[mask])
    alg.step()
    assert torch.allclose(alg.dense["0.weight"], want)
    new_mask = alg.masks["0.weight"]
    assert torch.all(as_matrix(new_mask).reshape(8, -1, 4).sum(-1) == 2)
    assert torch.allclose(p.detach(), want * new_mask)
    assert torch.all(p.detach()[~new_mask] == 0)


def assert_constant_on_tiles(mask, br, bc):
    mat = as_matrix(mask)
    rows, cols = mat.shape
    assert rows % br == 0 and cols % bc == 0
    tiles = mat.reshape(rows // br, br, cols // bc, bc).float()
    assert torch.all(tiles.amin(dim=(1, 3)) == tiles.amax(dim=(1, 3)))


@pytest.mark.parametrize("block", [(4, 4), (2, 8), (4, 1)])
@pytest.mark.parametrize("schedule", ["static", "gmp"])
def test_block_masks_constant_per_block(block, schedule):
    model = conv_net()
    alg = algorithms.create(
        "block",
        model,
        sgd(model, lr=0.1),
        density=0.25,
        block=block,
        schedule=schedule,
        t_end=6,
        delta_t=2,
        exclude_first_conv=False,
    )
    for t in range(8):
        fake_step(alg, seed=t)
    for name, mask in alg.masks.items():
        assert_constant_on_tiles(mask, *block)
        assert torch.all(alg.params[name][~mask] == 0)
        tiles = mask.numel() // (block[0] * block[1])
        assert int(mask.sum()) == round(0.25 * tiles) * block[0] * block[1]


def test_block_ranks_by_l1():
    model = mlp(8, 8)
    with torch.no_grad():
        model[0].weight.fill_(0.01)
        model[0].weight[4:8, 0:4] = 1.0
    alg = algorithms.create("block", model, sgd(model), density=0.25, schedule="static")
    want = torch.zeros(8, 8, dtype=torch.bool)
    want[4:8, 0:4] = True
    assert torch.equal(alg.masks["0.weight"], want)


def test_vector_masks_follow_target_lanes():
    model = mlp(64, 32, 48)
    target = load_target("acf-base")
    alg = algorithms.create("vector", model, sgd(model, lr=0.1), density=0.5, t_end=4, delta_t=1)
    assert alg.vector_length == target.cluster.pe_cols and alg.axis == "out"
    for t in range(5):
        fake_step(alg, seed=t)
    for name, mask in alg.masks.items():
        assert_constant_on_tiles(mask, target.cluster.pe_cols, 1)
        assert alg.density_report()["layers"][name]["density"] == pytest.approx(0.5)


def test_vector_length_from_config_and_lookahead():
    model = mlp(64, 32)
    narrow = load_target("acf-base", overrides={"cluster.pe_cols": 8})
    alg = algorithms.create(
        "vector", model, sgd(model), density=0.5, target=narrow, schedule="static"
    )
    assert alg.vector_length == 8
    assert_constant_on_tiles(alg.masks["0.weight"], 8, 1)
    model = mlp(64, 32)
    alg = algorithms.create(
        "vector", model, sgd(model), density=0.5, vector_from="lookahead", schedule="static"
    )
    assert alg.axis == "in" and alg.vector_length == load_target("acf-base").cluster.lookahead
    assert_constant_on_tiles(alg.masks["0.weight"], 1, alg.vector_length)
