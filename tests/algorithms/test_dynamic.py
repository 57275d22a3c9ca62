"""RigL and SET: exact prune/grow sets, density preservation, dense-gradient requests."""

import math

import pytest
import torch
from acf import algorithms

from tests.algorithms.helpers import fake_step, mlp, sgd


def expected_rigl_mask(old, weight, grad, fraction):
    """Reference: drop the k smallest |w| among active, grow the k largest |g| elsewhere."""
    old, w, g = old.flatten(), weight.abs().flatten(), grad.abs().flatten()
    active = torch.nonzero(old).flatten()
    k = round(fraction * len(active))
    keep = active[torch.argsort(w[active])][k:]
    new = torch.zeros_like(old)
    new[keep] = True
    candidates = torch.nonzero(~new).flatten()
    new[candidates[torch.argsort(g[candidates], descending=True)][:k]] = True
    return new.reshape(weight.shape), k


def test_rigl_grows_where_dense_grad_is_largest_and_keeps_density():
    model = mlp(24, 32, 16)
    opt = sgd(model, lr=0.1)
    alg = algorithms.create("rigl", model, opt, density=0.2, delta_t=1, t_end=8, alpha=0.4)
    counts = {n: int(m.sum()) for n, m in alg.masks.items()}
    for step in range(8):
        old = {n: m.clone() for n, m in alg.masks.items()}
        grads = {n: torch.randn(p.shape) for n, p in model.named_parameters()}
        assert alg.needs_dense_grad(step)
        for n, p in model.named_parameters():
            p.grad = grads[n].clone()
        opt.step()  # grads masked before, so grown (zero) weights move off zero: no ties
        weights = {n: p.detach().clone() for n, p in alg.params.items()}
        alg.step()
        fraction = 0.4 / 2 * (1 + math.cos(math.pi * (step + 1) / 8))
        for n, p in alg.params.items():
            want, k = expected_rigl_mask(old[n], weights[n], grads[n], fraction)
            assert k > 0 or step == 7  # the cosine decay reaches 0 at t_end
            assert torch.equal(alg.masks[n], want), (step, n)
            assert int(alg.masks[n].sum()) == counts[n]
            newly = alg.masks[n] & ~old[n]
            assert torch.all(p[newly] == 0)  # grown weights start at zero
            assert torch.all(p[~alg.masks[n]] == 0)
    assert not alg.needs_dense_grad(8)  # t_end reached


def test_rigl_dense_grad_only_on_update_steps():
    model = mlp(16, 16)
    alg = algorithms.create("rigl", model, sgd(model), density=0.3, delta_t=5, t_end=20)
    wants = [alg.needs_dense_grad(t) for t in range(30)]
    assert [t for t, w in enumerate(wants) if w] == [4, 9, 14, 19]
    for t in range(30):
        fake_step(alg, seed=t)
    assert alg.update_steps == [5, 10, 15, 20]
    assert {e.step for e in alg.events} <= {5, 10, 15, 20}
    for e in alg.events:
        assert e.grown == e.pruned and e.nnz == round(0.3 * e.numel)


def test_set_regrows_at_random():
    def run(seed):
        model = mlp(32, 32, seed=1)
        alg = algorithms.create(
            "set", model, sgd(model), density=0.25, delta_t=1, t_end=10, zeta=0.3, seed=seed
        )
        before = {n: m.clone() for n, m in alg.masks.items()}
        fake_step(alg, seed=7)
        return alg, before

    a, a0 = run(0)
    a2, _ = run(0)
    b, _ = run(1)
    name = "0.weight"
    grown_a = a.masks[name] & ~a0[name]
    assert torch.equal(a.masks[name], a2.masks[name])  # seeded: repeatable
    b0 = b.masks[name]
    assert not torch.equal(a.masks[name], b0)
    ev_a, ev_b = a.events[0], b.events[0]
    # the same initial masks and weights, only the regrowth draw differs: as many
    # connections are dropped, other ones grown (a fixed grow order would grow the same)
    model = mlp(32, 32, seed=1)
    c = algorithms.create("set", model, sgd(model), density=0.25, delta_t=1, t_end=10,
                          zeta=0.3, seed=0)
    assert torch.equal(c.masks[name], a0[name])
    c.generator.manual_seed(12345)
    fake_step(c, seed=7)
    assert c.events[0].pruned == ev_a.pruned
    grown_c = c.masks[name] & ~a0[name]
    assert int(grown_c.sum()) == int(grown_a.sum()) > 0 and not torch.equal(grown_c, grown_a)
    assert int(a.masks[name].sum()) == int(a0[name].sum()) == round(0.25 * 32 * 32)
    assert ev_a.grown == int(grown_a.sum()) and ev_a.grown > 0
    # same prune count on the same weights; SET drops the smallest magnitudes
    k = round(0.3 * int(a0[name].sum()))
    dropped = a0[name] & ~a.masks[name]
    assert ev_a.pruned <= k and ev_b.pruned <= k
    assert not a.needs_dense_grad(0)
    assert dropped.sum() == ev_a.pruned


def test_set_drops_smallest_magnitudes():
    model = mlp(32, 32, seed=3)
    alg = algorithms.create("set", model, sgd(model), density=0.5, delta_t=1, t_end=10, zeta=0.2)
    old = alg.masks["0.weight"].clone()
    w = alg.params["0.weight"].detach().abs().clone()
    fake_step(alg)  # lr = 0: the weights SET ranks are w
    dropped = old & ~alg.masks["0.weight"]
    k = round(0.2 * int(old.sum()))
    # dropped positions are among the k smallest active magnitudes (some of those k may
    # have been regrown at random, so fewer than k can be missing)
    assert 0 < int(dropped.sum()) <= k
    assert w[dropped].max() <= torch.sort(w[old]).values[k - 1]


def test_only_new_connections_restart_from_zero():
    """The RigL reference code (reinit_when_same=False): a connection grown where the mask
    was off starts at zero with zero momentum; a just-dropped weight grown again keeps its
    value and momentum; the event counts only the positions that flipped."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 1, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    alg = algorithms.create("rigl", model, opt, density=0.5, delta_t=1, t_end=100, alpha=1.0)
    weight = alg.params["0.weight"]
    old = alg.masks["0.weight"].clone()
    (kept, dropped), (new, off) = old[0].nonzero().flatten(), (~old[0]).nonzero().flatten()
    with torch.no_grad():
        weight.copy_(torch.tensor([[0.5, 0.1, 0.2, 0.3]]) * old)
    opt.state[weight]["momentum_buffer"] = torch.ones_like(weight)
    # drop fraction ~1: both active weights are dropped; the two largest gradients regrow
    # one of them and one position that was off
    grad = torch.zeros_like(weight)
    grad[0, kept], grad[0, new] = 10.0, 9.0
    weight.grad = grad
    value = float(weight.detach()[0, kept])
    opt.step()  # lr 0: the weights stay; momentum 0.9 + masked gradient
    (event,) = alg.step()
    assert alg.masks["0.weight"][0].nonzero().flatten().tolist() == sorted([int(kept), int(new)])
    momentum = opt.state[weight]["momentum_buffer"][0]
    assert float(weight.detach()[0, kept]) == value and float(momentum[kept]) == pytest.approx(10.9)
    assert float(weight.detach()[0, new]) == 0.0 and float(momentum[new]) == 0.0
    assert float(weight.detach()[0, dropped]) == 0.0  # masked by the binder
    assert (event.grown, event.pruned, event.nnz) == (1, 1, 2)
    assert int(off) not in alg.masks["0.weight"][0].nonzero().flatten().tolist()


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_a_dense_layer_is_left_untouched(name):
    """ERK makes the small first layer dense (density 1): its update drops and regrows the
    same positions, so neither its weights nor its momentum may change (77 of its 256
    weights used to be zeroed after one update)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    alg = algorithms.create(name, net, opt, density=0.3, distribution="erk", delta_t=2,
                            t_end=100)
    assert alg.densities["0.weight"] == 1.0
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    events = []
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        before = net[0].weight.detach().clone(), opt.state[net[0].weight]["momentum_buffer"].clone()
        events += alg.step()
    assert alg.update_steps == [2] and any(e.layer == "2.weight" for e in events)
    assert not [e for e in events if e.layer == "0.weight"]
    assert int((net[0].weight == 0).sum()) == 0
    assert torch.equal(net[0].weight.detach(), before[0])
    assert torch.equal(opt.state[net[0].weight]["momentum_buffer"], before[1])


def frozen_first_layer():
    model = mlp(16, 16, 4)
    model[0].weight.requires_grad_(False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return model, opt


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_frozen_weights_are_left_out(name):
    """A frozen weight has no gradient to grow from (RigL stopped mid-training) and could
    never move off a zero regrowth (SET), so neither selects it."""
    model, opt = frozen_first_layer()
    frozen = model[0].weight.detach().clone()
    alg = algorithms.create(name, model, opt, density=0.25, delta_t=2, t_end=8)
    assert list(alg.params) == ["2.weight"]
    for t in range(6):
        opt.zero_grad()
        model(torch.randn(8, 16, generator=torch.Generator().manual_seed(t))).pow(2).sum().backward()
        opt.step()
        alg.step()
    assert alg.update_steps == [2, 4, 6]
    assert torch.equal(model[0].weight.detach(), frozen)
    with pytest.raises(ValueError, match=r"\['0.weight'\] have requires_grad=False"):
        algorithms.create(name, model, opt, density=0.25, t_end=8, params=["0.weight"])
