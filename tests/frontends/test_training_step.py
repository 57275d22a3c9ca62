"""End-to-end: capture a training step, convert it, verify it, interpret it with the graph
dialect's numpy interpreter and compare loss, output, every gradient, the updated parameters
and the updated batch-norm buffers with eager PyTorch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.compiler.printer import print_module
from acf.frontends.training_step import Binding, CapturedStep, capture_training_step
from torch.nn.attention import SDPBackend, sdpa_kernel

from .models import MLP, ResNet18, SmallCNN, TransformerBlock


def assert_close(actual: np.ndarray, expected: torch.Tensor, what: str) -> None:
    ref = expected.detach()
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    torch.testing.assert_close(torch.as_tensor(np.asarray(actual)).to(ref.dtype), ref,
                               rtol=1e-4, atol=1e-5 * max(scale, 1e-12), msg=lambda m: f"{what}: {m}")


def eager_step(model, inputs, labels, optimizer: str, options: dict, masks=None,
               loss_fn=F.cross_entropy):
    """One eager step on a copy: (loss, output, grads, params after, buffers after)."""
    m = copy.deepcopy(model).train()
    params = dict(m.named_parameters())
    with torch.no_grad():
        for name, mask in (masks or {}).items():
            params[name].mul_(mask)
    with sdpa_kernel(SDPBackend.MATH):
        out = m(*inputs)
        loss = loss_fn(out, labels)
        loss.backward()
    for name, mask in (masks or {}).items():
        params[name].grad.mul_(mask)
    grads = {n: p.grad.clone() for n, p in params.items()}
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    opt_cls(m.parameters(), **options).step()
    with torch.no_grad():
        for name, mask in (masks or {}).items():
            params[name].mul_(mask)
    return loss, out, grads, dict(m.named_parameters()), dict(m.named_buffers())


def check_step(model, inputs, labels, optimizer="sgd", options=None, masks=None,
               check_update=True, loss_fn=F.cross_entropy) -> CapturedStep:
    options = options or {"lr": 0.1}
    torch.manual_seed(0)
    step = capture_training_step(model, inputs, labels=labels, optimizer=optimizer,
                                 optimizer_options=options, masks=masks, loss_fn=loss_fn)
    text = print_module(step.module)
    assert print_module(parse_module(text, "step.acfir")) == text  # verifies, too
    masked_model = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in (masks or {}).items():
            dict(masked_model.named_parameters())[name].mul_(mask)
    got = step.unpack(run_func(step.func, step.bind(masked_model, inputs, labels, masks)))
    loss, out, grads, new_params, new_buffers = eager_step(model, inputs, labels, optimizer,
                                                           options, masks, loss_fn)
    assert_close(got[Binding("loss")], loss, "loss")
    assert_close(got[Binding("output")], out, "output")
    for name, g in grads.items():
        assert_close(got[Binding("grad", name)], g, f"grad of {name}")
    if check_update:
        for name, p in new_params.items():
            assert_close(got[Binding("param", name)], p, f"{name} after the step")
        for binding, value in got.items():
            if binding.kind == "buffer":
                assert_close(value, new_buffers[binding.name], f"buffer {binding.name}")
    return step


def test_mlp_sgd_step() -> None:
    torch.manual_seed(0)
    step = check_step(MLP(), (torch.randn(4, 8),), torch.tensor([0, 3, 1, 1]))
    names = [op.name for op in step.func.body.ops]
    assert names.count("graph.linear") == 2 and names.count("graph.sgd_update") == 4
    assert "graph.cross_entropy" in names and "graph.cross_entropy_backward" in names


def test_mlp_sgd_momentum_weight_decay_with_mask() -> None:
    torch.manual_seed(1)
    mask = (torch.rand(16, 8) > 0.5).float()
    step = check_step(MLP(), (torch.randn(4, 8),), torch.tensor([2, 0, 1, 3]),
                      options={"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
                      masks={"fc1.weight": mask})
    assert Binding("mask", "fc1.weight") in step.arguments
    assert Binding("momentum_buf", "fc2.bias") in step.results
    assert sum(op.name == "graph.mask_apply" for op in step.func.body.ops) == 3


@pytest.mark.parametrize("loss_fn", [
    lambda out, y: F.nll_loss(F.log_softmax(out, 1), y, reduction="sum"),  # fused, summed
    lambda out, y: F.nll_loss(out, y),  # no log_softmax before it: the composed form
    lambda out, y: F.mse_loss(out, out.detach() * 0.5),  # decomposed by the pinned table
], ids=["nll-sum", "nll-raw", "mse"])
def test_mlp_other_losses(loss_fn) -> None:
    torch.manual_seed(6)
    check_step(MLP(), (torch.randn(4, 8),), torch.tensor([0, 3, 1, 2]), loss_fn=loss_fn)


def test_mlp_adam_step() -> None:
    torch.manual_seed(2)
    step = check_step(MLP(), (torch.randn(4, 8),), torch.tensor([1, 2, 3, 0]), optimizer="adam",
                      options={"lr": 1e-2, "betas": (0.8, 0.99), "eps": 1e-6,
                               "weight_decay": 1e-2})
    assert Binding("adam_step") in step.arguments and Binding("adam_step") in step.results


def test_small_cnn_step_with_batch_norm_stats() -> None:
    torch.manual_seed(3)
    step = check_step(SmallCNN(), (torch.randn(2, 3, 8, 8),), torch.tensor([4, 1]),
                      options={"lr": 0.1, "momentum": 0.9})
    names = {op.name for op in step.func.body.ops}
    assert {"graph.conv2d", "graph.conv2d_backward_input", "graph.conv2d_backward_weight",
            "graph.batch_norm", "graph.batch_norm_backward", "graph.max_pool2d_backward",
            "graph.avg_pool2d_backward", "graph.relu_backward"} <= names
    buffers = {b.name for b in step.results if b.kind == "buffer"}
    assert buffers == {f"bn{i}.{s}" for i in (1, 2)
                       for s in ("running_mean", "running_var", "num_batches_tracked")}


def test_resnet18_gradients() -> None:
    torch.manual_seed(4)
    check_step(ResNet18(), (torch.randn(2, 3, 16, 16),), torch.tensor([3, 7]))


def test_transformer_block_gradients() -> None:
    torch.manual_seed(5)
    step = check_step(TransformerBlock(), (torch.randn(2, 5, 16),), torch.tensor([0, 2]),
                      optimizer="adam", options={"lr": 1e-3})
    names = {op.name for op in step.func.body.ops}
    assert {"graph.layer_norm", "graph.layer_norm_backward", "graph.softmax",
            "graph.softmax_backward", "graph.gelu", "graph.gelu_backward"} <= names


# --- resuming from a torch optimizer's state ----------------------------------------------
OPTIMIZERS = {
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True,
                                              weight_decay=1e-2),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
}
STATE_KINDS = ("momentum_buf", "adam_m", "adam_v", "adam_step")


def _eager_steps(model, opt, x, y, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()


@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_bind_resumes_from_the_torch_optimizers_state(kind) -> None:
    """3 eager steps, then 2 captured ones = 5 eager steps: bind starts from the state the
    optimizer holds (it started from zeros at step 1, losing the momentum and Adam's
    moments and bias-correction count)."""
    torch.manual_seed(0)
    model = MLP(6, 8, 3)
    x, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    ref = copy.deepcopy(model)
    _eager_steps(ref, OPTIMIZERS[kind](ref.parameters()), x, y, 5)
    opt = OPTIMIZERS[kind](model.parameters())
    _eager_steps(model, opt, x, y, 3)
    step = capture_training_step(model, (x,), labels=y, optimizer=opt)
    if kind.startswith("adam"):
        assert float(step.optimizer_state()[Binding("adam_step")]) == 4.0
    current = copy.deepcopy(model)
    state = None
    for _ in range(2):
        out = step.unpack(run_func(step.func, step.bind(current, (x,), y, state=state)))
        with torch.no_grad():
            for name, p in current.named_parameters():
                p.copy_(torch.from_numpy(out[Binding("param", name)]))
        state = {b: v for b, v in out.items() if b.kind in STATE_KINDS}
    for (name, p), (_, q) in zip(current.named_parameters(), ref.named_parameters()):
        assert_close(p.detach().numpy(), q, f"{kind}: {name} after 3 eager + 2 captured steps")


def test_bind_refuses_adam_parameters_at_different_step_counts() -> None:
    """The step has one adam_step: parameters torch has stepped a different number of
    times (one was frozen for a while) cannot all continue as eager would."""
    torch.manual_seed(0)
    model = MLP(6, 8, 3)
    x, y = torch.randn(4, 6), torch.tensor([0, 2, 1, 2])
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.fc1.weight.requires_grad_(False)
    _eager_steps(model, opt, x, y, 2)
    model.fc1.weight.requires_grad_(True)
    _eager_steps(model, opt, x, y, 1)
    step = capture_training_step(model, (x,), labels=y, optimizer=opt)
    with pytest.raises(ValueError, match=r"different numbers of steps \(fc1.weight: 1, "
                                         r"fc1.bias: 3"):
        step.bind(model, (x,), y)
    state = {Binding("adam_step"): 4.0}  # the caller's choice is taken as it is
    assert float(step.bind(model, (x,), y, state=state)[-1]) == 4.0
