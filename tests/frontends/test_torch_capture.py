"""aot_autograd capture: placeholder mapping, mutated buffers, saved-tensor plumbing."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from acf.frontends.torch_capture import GraphInput, module_path
from acf.frontends.training_step import capture_training_step

from .models import SmallCNN, TransformerBlock


def test_inputs_mutations_and_saved_tensors_of_a_cnn() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    before = copy.deepcopy(model.state_dict())
    step = capture_training_step(model, (torch.randn(2, 3, 8, 8),), labels=torch.tensor([0, 1]))
    g = step.graphs
    assert GraphInput("param", "conv1.weight") in g.inputs
    assert GraphInput("input", "labels") in g.inputs and GraphInput("input", "input0") in g.inputs
    mutated = {g.inputs[i].name for i in g.mutated_inputs}
    assert mutated == {f"bn{i}.{s}" for i in (1, 2)
                       for s in ("running_mean", "running_var", "num_batches_tracked")}
    assert g.num_user_outputs == 2 and g.tangent_outputs == [0]  # loss only; output detached
    bw_inputs = [n for n in g.backward.graph.nodes if n.op == "placeholder"]
    assert len(bw_inputs) == g.num_saved + 1
    fw_out = next(n for n in g.forward.graph.nodes if n.op == "output").args[0]
    assert len(fw_out[g.saved_slice]) == g.num_saved
    # capture works on a copy: the model's parameters, statistics and grads are untouched
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_attention_is_captured_on_the_math_backend() -> None:
    torch.manual_seed(0)
    step = capture_training_step(TransformerBlock(), (torch.randn(2, 3, 16),),
                                 labels=torch.tensor([0, 1]), loss_fn=F.cross_entropy)
    targets = {str(n.target) for gm in (step.graphs.forward, step.graphs.backward)
               for n in gm.graph.nodes if n.op == "call_function"}
    assert "aten.bmm.default" in targets
    assert not any("flash" in t or "scaled_dot_product" in t for t in targets)


def test_module_paths_from_dynamo_sources() -> None:
    assert module_path("L['self']._modules['layer1']._modules['0'].conv1") == "layer1.0.conv1"
    assert module_path("L['self'].model.layer2[1].bn", "model") == "layer2.1.bn"


def test_int32_token_ids_are_captured_as_the_fabrics_integers() -> None:
    """int32 ids (which nn.Embedding takes) and their .long(): the capture raised a
    KeyError on the dtype, the conversion was refused; the step equals the int64 one's."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Flatten(), torch.nn.Linear(20, 3))
    ids = torch.randint(0, 10, (2, 5))
    y = torch.tensor([0, 2])
    wide = capture_training_step(model, (ids,), labels=y)
    narrow = capture_training_step(model, (ids.to(torch.int32),), labels=y)
    types = [[a.type for a in s.module.funcs[0].arguments] for s in (wide, narrow)]
    assert types[0] == types[1] and any(t.element == "i64" for t in types[1])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_an_ignore_index_that_is_a_class_leaves_its_rows_out(reduction) -> None:
    """cross_entropy(ignore_index=c) for a class c drops the rows labelled c from the loss,
    the mean's count and the gradient, as eager does (it was refused); an index outside
    the classes (PyTorch's -100) ignores nothing. Captured and through torch.compile."""
    import acf.frontends.backend  # noqa: F401  (registers backend="acf")
    from acf.compiler.interp import run_func
    from acf.frontends.training_step import Binding

    def loss_fn(o, t):
        return F.cross_entropy(o, t, ignore_index=0, reduction=reduction)

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(5, 4), torch.tensor([0, 2, 0, 1, 2])
    ref = copy.deepcopy(model)
    want = loss_fn(ref(x), y)
    want.backward()
    assert abs(want.item() - F.cross_entropy(ref(x), y, reduction=reduction).item()) > 0.01
    step = capture_training_step(model, (x,), labels=y, loss_fn=loss_fn, optimizer="sgd",
                                 optimizer_options={"lr": 0.1})
    out = step.unpack(run_func(step.func, step.bind(model, (x,), y)))
    torch.testing.assert_close(torch.from_numpy(out[Binding("loss")]), want.detach())
    for name, p in ref.named_parameters():
        torch.testing.assert_close(torch.from_numpy(out[Binding("grad", name)]), p.grad,
                                   rtol=1e-5, atol=1e-6)
    fabric = copy.deepcopy(model)
    torch._dynamo.reset()
    got = torch.compile(lambda a, t: loss_fn(fabric(a), t), backend="acf", dynamic=False)(x, y)
    got.backward()
    torch.testing.assert_close(got, want)
    for (name, p), (_, q) in zip(fabric.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    capture_training_step(model, (x,), labels=y,
                          loss_fn=lambda o, t: F.cross_entropy(o, t, ignore_index=-100))