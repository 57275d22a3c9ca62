"""Checkpoints, skipped optimizer steps (AMP), hook removal and model moves."""

import copy
import io

import pytest
import torch
from acf import algorithms
from torch import nn

OPTIONS = {
    "rigl": {"density": 0.3, "delta_t": 4, "t_end": 25},
    "set": {"density": 0.3, "delta_t": 4, "t_end": 25},
    "gmp": {"density": 0.2, "delta_t": 4, "t_end": 25},
    "block": {"density": 0.25, "block": 4, "delta_t": 4, "t_end": 25},
    "nm-srste": {"n": 2, "m": 4},
    "static-random": {"density": 0.3},
}


def build(name, init_seed=0):
    torch.manual_seed(init_seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    return model, opt, algorithms.create(name, model, opt, **OPTIONS[name])


def train(model, opt, alg, steps):
    """Real iterations; the batch depends only on the iteration index."""
    for t in steps:
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(16, 16, generator=g), torch.randint(0, 8, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        alg.step()


@pytest.mark.parametrize("name", list(OPTIONS))
def test_resume_continues_as_an_uninterrupted_run(name):
    """30 iterations straight == 15, a checkpoint of model, optimizer and algorithm
    loaded into freshly built objects (other initial weights), then 15 more."""
    model, opt, alg = build(name)
    train(model, opt, alg, range(30))

    first, first_opt, first_alg = build(name)
    train(first, first_opt, first_alg, range(15))
    buf = io.BytesIO()
    torch.save({"model": first.state_dict(), "optimizer": first_opt.state_dict(),
                "algorithm": first_alg.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf)
    resumed, resumed_opt, resumed_alg = build(name, init_seed=1)
    resumed.load_state_dict(ckpt["model"])
    resumed_opt.load_state_dict(ckpt["optimizer"])
    resumed_alg.load_state_dict(ckpt["algorithm"])
    train(resumed, resumed_opt, resumed_alg, range(15, 30))

    assert resumed_alg.step_count == alg.step_count == 30
    assert resumed_alg.events == alg.events and resumed_alg.update_steps == alg.update_steps
    for n in alg.params:
        assert torch.equal(resumed_alg.masks[n], alg.masks[n]), n
    want = model.state_dict()
    for key, value in resumed.state_dict().items():  # weights and mask buffers
        assert torch.equal(value, want[key]), key
    if name == "nm-srste":
        for n in alg.params:
            assert torch.equal(resumed_alg.dense[n], alg.dense[n])


def test_load_state_dict_refuses_another_algorithm():
    _, _, rigl = build("rigl")
    _, _, gmp = build("gmp")
    with pytest.raises(ValueError, match="'rigl' cannot be loaded into 'gmp'"):
        gmp.load_state_dict(rigl.state_dict())


def test_gmp_never_revives_weights_when_its_step_count_is_wrong():
    """Loading only the model into a fresh GMP (step_count 0) used to regrow the pruned
    weights to the early schedule's count: updates now only ever choose among the active
    positions."""
    torch.manual_seed(0)

    def make():
        m = nn.Sequential(nn.Linear(16, 30), nn.ReLU(), nn.Linear(30, 8))
        o = torch.optim.SGD(m.parameters(), lr=0.1)
        return m, o, algorithms.create("gmp", m, o, density=0.1, delta_t=5, t_end=30)

    model, opt, alg = make()
    train(model, opt, alg, range(30))
    saved = {n: m.clone() for n, m in alg.masks.items()}
    fresh, fresh_opt, fresh_alg = make()
    fresh.load_state_dict(model.state_dict())
    train(fresh, fresh_opt, fresh_alg, range(10))
    assert fresh_alg.update_steps == [5, 10]
    for n, mask in fresh_alg.masks.items():
        assert not torch.any(mask & ~saved[n]), n


def scaled_step(model, opt, alg, scaler, x, poison=False):
    """One AMP-style iteration; ``poison`` makes the gradients infinite, so GradScaler
    skips ``opt.step()``."""
    opt.zero_grad()
    loss = model(x).pow(2).sum() * (float("inf") if poison else 1.0)
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    return alg.step()


def test_srste_keeps_its_dense_weights_when_the_optimizer_step_is_skipped():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    alg = algorithms.create("nm-srste", model, opt, n=2, m=4)
    scaler = torch.amp.GradScaler("cpu")
    x = torch.randn(5, 8)
    dense, mask = alg.dense["0.weight"].clone(), alg.masks["0.weight"].clone()
    assert int((dense[~mask] != 0).sum()) == 16  # the pruned weights live on densely
    scaled_step(model, opt, alg, scaler, x, poison=True)
    assert torch.equal(alg.dense["0.weight"], dense)  # was overwritten by W * M
    assert torch.equal(alg.masks["0.weight"], mask)
    assert torch.equal(model[0].weight.detach(), dense * mask)
    assert alg.skipped_updates == [1] and alg.update_steps == []
    scaled_step(model, opt, alg, scaler, x)  # a finite step trains the dense weights again
    assert alg.update_steps == [2]
    assert not torch.equal(alg.dense["0.weight"], dense)
    assert int((alg.dense["0.weight"][~alg.masks["0.weight"]] != 0).sum()) == 16


def test_rigl_skips_the_update_whose_optimizer_step_was_skipped():
    """A GradScaler-skipped step leaves no finite dense gradient: the update due then is
    skipped with a warning (it used to raise), and the next one runs as scheduled."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    alg = algorithms.create("rigl", model, opt, density=0.3, delta_t=2, t_end=20)
    scaler = torch.amp.GradScaler("cpu")
    x = torch.randn(4, 16)
    scaled_step(model, opt, alg, scaler, x)
    before = {n: m.clone() for n, m in alg.masks.items()}
    with pytest.warns(RuntimeWarning, match="mask update due at step 2 is skipped"):
        assert scaled_step(model, opt, alg, scaler, x, poison=True) == []
    assert alg.skipped_updates == [2] and alg.update_steps == []
    assert all(torch.equal(alg.masks[n], before[n]) for n in before)
    scaled_step(model, opt, alg, scaler, x)
    assert scaled_step(model, opt, alg, scaler, x) != []
    assert alg.update_steps == [4]


def test_rigl_names_the_weight_without_a_gradient():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    alg = algorithms.create("rigl", model, opt, density=0.5, delta_t=1, t_end=10)
    model[2].weight.grad = torch.ones_like(model[2].weight)  # 0.weight gets none
    opt.step()
    with pytest.raises(RuntimeError, match="dense gradient of 0.weight.*params="):
        alg.step()


def hooks(opt):
    return len(opt._optimizer_step_pre_hooks) + len(opt._optimizer_step_post_hooks)


@pytest.mark.parametrize("name", ["rigl", "nm-srste", "static-random"])
def test_close_removes_every_optimizer_hook(name):
    model, opt, alg = build(name)
    assert hooks(opt) > 0
    alg.close()
    assert hooks(opt) == 0
    # another algorithm on the same optimizer only adds its own hooks
    again = algorithms.create("static-random", model, opt, density=1.0)
    n = hooks(opt)
    again.close()
    assert n > 0 and hooks(opt) == 0


def test_binder_detach_stops_sparse_training():
    """EagerBinder.detach() also removes the algorithm's hook: SR-STE's pre-hook used to go
    on copying its stale dense weights into the model before every dense step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4, bias=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    alg = algorithms.create("nm-srste", model, opt, n=2, m=4)
    x = torch.randn(5, 8)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        alg.step()
    alg.binder.detach()
    assert hooks(opt) == 0
    reference = copy.deepcopy(model)
    reference_opt = torch.optim.SGD(reference.parameters(), lr=0.01)
    for _ in range(4):
        for m, o in ((model, opt), (reference, reference_opt)):
            o.zero_grad()
            m(x).pow(2).sum().backward()
            o.step()
        assert torch.equal(model[0].weight, reference[0].weight)


def test_masks_follow_the_model_buffers():
    """model.to(device) replaces the mask buffers (``_apply`` with a clone stands in for a
    device move); a checkpoint loaded afterwards writes into the new buffers. The mask
    enforced must be the model's (the old one was, leaving weights non-zero where the
    model's mask is 0)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 30), nn.ReLU(), nn.Linear(30, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    alg = algorithms.create("static-random", model, opt, density=0.2, seed=0)
    model._apply(lambda t: t.clone())
    assert alg.masks["0.weight"] is model[0].weight_mask
    assert alg.binder.masks["0.weight"] is model[0].weight_mask
    other = nn.Sequential(nn.Linear(16, 30), nn.ReLU(), nn.Linear(30, 8))
    other_alg = algorithms.create("static-random", other, torch.optim.SGD(other.parameters(),
                                  lr=0.1), density=0.2, seed=99)
    model.load_state_dict(other.state_dict())
    assert torch.equal(alg.masks["0.weight"], other_alg.masks["0.weight"])
    train(model, opt, alg, range(1))
    for n, mask in alg.masks.items():
        assert torch.equal(mask, other_alg.masks[n])
        assert int((alg.params[n][~mask] != 0).sum()) == 0, n


@pytest.mark.parametrize("name", ["rigl", "gmp", "nm-srste"])
def test_masks_survive_a_dtype_change(name):
    """``model.double()`` leaves the bool buffers alone; a cast of every tensor turns them
    into floats, which are read back as bool masks."""
    model, opt, alg = build(name)
    train(model, opt, alg, range(3))
    model.double()
    model._apply(lambda t: t.float() if t.dtype == torch.bool else t)
    assert model[0].weight_mask.dtype == torch.float32
    for t in range(3, 12):
        g = torch.Generator().manual_seed(t)
        x, y = torch.randn(16, 16, generator=g).double(), torch.randint(0, 8, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        alg.step()
    assert alg.update_steps
    for n, mask in alg.masks.items():
        assert mask.dtype == torch.bool and alg.params[n].dtype == torch.float64
        if alg.masks_weights:
            assert int((alg.params[n][~mask] != 0).sum()) == 0, n
