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
