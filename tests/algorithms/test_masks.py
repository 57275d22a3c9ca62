"""The binder boundary: eager enforcement and a runtime-style custom binder."""

import pytest
import torch
from acf import algorithms
from acf.algorithms import EagerBinder, MaskBinder

from tests.algorithms.helpers import fake_step, mlp, sgd

OPTIONS = {
    "static-random": {"density": 0.3},
    "static-magnitude": {"density": 0.3},
    "gmp": {"density": 0.3},
    "set": {"density": 0.3},
    "rigl": {"density": 0.3},
    "nm": {},
    "block": {"density": 0.3},
    "vector": {"density": 0.5},
}


@pytest.mark.parametrize("name", list(OPTIONS))
def test_masks_zero_the_weights_after_steps(name):
    model = mlp(32, 32, 16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    alg = algorithms.create(name, model, opt, t_end=8, delta_t=2, **OPTIONS[name])
    for t in range(10):
        fake_step(alg, seed=t)
        for n, p in alg.params.items():
            assert torch.all(p[~alg.masks[n]] == 0), (name, t, n)
    assert isinstance(alg.binder, EagerBinder)
    assert torch.equal(model[0].weight_mask, alg.masks["0.weight"])  # kept on the model
    assert "0.weight_mask" in model.state_dict()


def test_eager_binder_masks_grads_before_the_optimizer():
    model = mlp(16, 16)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    alg = algorithms.create("static-random", model, opt, density=0.25)
    fake_step(alg)
    state = opt.state[alg.params["0.weight"]]
    off = ~alg.masks["0.weight"]
    assert torch.all(state["exp_avg"][off] == 0) and torch.all(state["exp_avg_sq"][off] == 0)
    assert torch.any(state["exp_avg"][~off] != 0)


class RecordingBinder:
    """What a runtime does: receive masks as data, nothing else."""

    def __init__(self):
        self.calls: list[tuple[str, torch.Tensor]] = []

    def bind(self, param_name: str, mask: torch.Tensor) -> None:
        self.calls.append((param_name, mask))


def test_custom_binder_receives_initial_and_changed_masks():
    model = mlp(16, 16, 8)
    binder = RecordingBinder()
    assert isinstance(binder, MaskBinder)
    alg = algorithms.create(
        "rigl", model, sgd(model, lr=0.1), density=0.25, delta_t=3, t_end=9, binder=binder
    )
    assert [n for n, _ in binder.calls] == ["0.weight", "2.weight"]
    for t in range(12):
        fake_step(alg, seed=t)
    changed = [(e.step, e.layer) for e in alg.events]
    assert [n for n, _ in binder.calls[2:]] == [layer for _, layer in changed]
    for (name, mask), event in zip(binder.calls[2:], alg.events):
        assert mask.dtype == torch.bool and int(mask.sum()) == event.nnz
    # each bind hands over a fresh tensor; the last one is the current mask
    assert binder.calls[-1][1] is alg.masks[binder.calls[-1][0]]
    assert binder.calls[0][1] is not alg.masks["0.weight"]


def test_update_cost_record():
    model = mlp(16, 16)
    alg = algorithms.create("set", model, sgd(model), density=0.5, delta_t=2, t_end=6)
    for t in range(8):
        fake_step(alg, seed=t)
    cost = alg.update_cost()
    assert cost["update_steps"] == 3 and alg.update_steps == [2, 4, 6]
    assert cost["grown"] == cost["pruned"] == sum(e["grown"] for e in cost["events"])
    assert cost["layer_updates"] == len(alg.events) > 0


@pytest.mark.parametrize("name", ["static-random", "set", "rigl"])
def test_random_masks_are_on_the_parameter_device(name):
    """The binder contract: masks arrive on the parameter's device. The 'meta' device
    stands in for an accelerator; the random draw itself stays on the seeded CPU
    generator, so the same seed gives the same mask on every device."""
    with torch.device("meta"):
        model = mlp(16, 16, 4)
    binder = RecordingBinder()
    alg = algorithms.create(name, model, sgd(model), density=0.25, t_end=10, binder=binder)
    assert [(n, m.device.type) for n, m in binder.calls] == [("0.weight", "meta"),
                                                            ("2.weight", "meta")]
    assert all(m.device.type == "meta" for m in alg.masks.values())
    cpu = mlp(16, 16, 4)
    same = algorithms.create(name, cpu, sgd(cpu), density=0.25, t_end=10)
    assert same.masks["0.weight"].device == cpu[0].weight.device
    assert int(same.masks["0.weight"].sum()) == 64
