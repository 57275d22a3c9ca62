"""N:M, SR-STE, block and vector masks."""

import pytest
import torch
from acf import algorithms
from acf.algorithms.structure import as_matrix, as_taps, from_matrix, from_taps
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
        # all blocks are full: the count is the multiple of a block nearest the target
        target, size = round(0.25 * mask.numel()), block[0] * block[1]
        nearest = min(range(0, mask.numel() + 1, size), key=lambda c: abs(c - target))
        assert int(mask.sum()) == nearest


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


def per_tap_runs(mask, length):
    """Runs of ``length`` consecutive input channels at each (out, kh, kw) of a conv mask."""
    return mask.permute(0, 2, 3, 1).reshape(-1, length)


def test_nm_on_conv_groups_input_channels_per_tap():
    """Zhou et al. 2021 / ASP, and the conv kernel's per-tap GEMMs reducing over Cin: every
    group is M consecutive input channels at one (out, kh, kw), holding its N largest."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, 4, 3, bias=False))
    w = model[0].weight.detach().clone()
    alg = algorithms.create("nm", model, sgd(model), n=2, m=4, exclude_first_conv=False)
    groups = per_tap_runs(alg.masks["0.weight"], 4)
    assert groups.shape == (4 * 3 * 3 * 2, 4)
    assert torch.all(groups.sum(1) == 2)
    scores = per_tap_runs(w.abs(), 4)
    kept_min = scores.masked_fill(~groups, float("inf")).amin(1)
    dropped_max = scores.masked_fill(groups, -1.0).amax(1)
    assert torch.all(kept_min >= dropped_max)


def test_nm_on_conv_needs_whole_groups_of_input_channels():
    """6 input channels x 2 x 2 taps is 24 inputs, a multiple of 4, but a tap's 6 channels
    are not: a group would be partial."""
    model = nn.Sequential(nn.Conv2d(6, 4, 2))
    with pytest.raises(ValueError, match="'0.weight' has 6 input channels per kernel tap, "
                                         "not a multiple of M=4"):
        algorithms.create("nm", model, sgd(model), n=2, m=4, exclude_first_conv=False)


def test_conv_matrix_view_is_input_channel_fastest_per_tap():
    w = torch.arange(4 * 6 * 2 * 3).reshape(4, 6, 2, 3)
    mat = as_matrix(w)
    assert mat.shape == (4, 2 * 3 * 6)
    # column (kh * kw_size + kw) * Cin + c holds W[o, c, kh, kw]
    assert mat[1, (1 * 3 + 2) * 6 + 5] == w[1, 5, 1, 2]
    assert torch.equal(from_matrix(mat, w.shape), w)
    assert torch.equal(from_taps(as_taps(w), w.shape), w)
    assert torch.equal(as_taps(w)[1 * 3 + 2], w[:, :, 1, 2])


def test_vector_granules_on_conv_follow_the_per_tap_gemm():
    """``lookahead`` vectors are consecutive input channels of one tap; ``out`` vectors
    consecutive output channels at one (input channel, tap)."""
    model = nn.Sequential(nn.Conv2d(8, 8, 3, bias=False))
    alg = algorithms.create("vector", model, sgd(model), density=0.5, vector_from="lookahead",
                            target="acf-small", schedule="static", exclude_first_conv=False)
    runs = per_tap_runs(alg.masks["0.weight"], 4).float()
    assert torch.all(runs.amin(1) == runs.amax(1))
    assert int(alg.masks["0.weight"].sum()) == 8 * 8 * 9 // 2
    model = nn.Sequential(nn.Conv2d(8, 8, 3, bias=False))
    alg = algorithms.create("vector", model, sgd(model), density=0.5, vector_length=4,
                            axis="out", schedule="static", exclude_first_conv=False)
    runs = alg.masks["0.weight"].permute(1, 2, 3, 0).reshape(-1, 4).float()
    assert torch.all(runs.amin(1) == runs.amax(1))


def test_conv_blocks_stay_inside_one_tap():
    """With 6 input channels and 4-wide blocks, each tap has a full and a 2-wide edge block;
    no block mixes channels of two taps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(6, 4, 3, bias=False))
    alg = algorithms.create("block", model, sgd(model), density=0.5, block=(4, 4),
                            schedule="static", exclude_first_conv=False)
    taps = as_taps(alg.masks["0.weight"]).float()  # (9, 4, 6)
    for cols in (slice(0, 4), slice(4, 6)):
        tile = taps[:, :, cols]
        assert torch.all(tile.amin(dim=(1, 2)) == tile.amax(dim=(1, 2)))


def test_block_density_counts_weights_not_blocks():
    """10 x 10 in 4 x 4 blocks: four full blocks of 16, edge blocks of 8 and 4. At 0.5 the
    four largest (full) blocks would be 64 weights; the nearest prefix to 50 is 48."""
    lin = nn.Linear(10, 10, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.rand(10, 10, generator=torch.Generator().manual_seed(0)) * 0.1)
        lin.weight[:8, :8] += torch.arange(64.0).reshape(8, 8) / 64 + 1.0
    model = nn.Sequential(lin)
    alg = algorithms.create("block", model, sgd(model), density=0.5, block=(4, 4),
                            schedule="static")
    mask = alg.masks["0.weight"]
    assert int(mask.sum()) == 48
    assert not mask[:4, :4].any()  # the weakest full block is the one left out
    assert mask[4:8, :8].all() and mask[:4, 4:8].all()
    assert not mask[8:].any() and not mask[:, 8:].any()
    # edge blocks ranked first (8, 8, 8, 8 and the 2 x 2 corner's 4, 36 weights), then one
    # full block reaches 52 exactly; counting blocks, round(0.52 * 9) = 5 gave 36
    with torch.no_grad():
        lin.weight.fill_(0.1)
        lin.weight[8:, :] = 1.0
        lin.weight[:, 8:] = 1.0
    alg = algorithms.create("block", model, sgd(model), density=0.52, block=(4, 4),
                            schedule="static")
    assert int(alg.masks["0.weight"].sum()) == 52
    assert alg.masks["0.weight"][8:].all() and alg.masks["0.weight"][:, 8:].all()
