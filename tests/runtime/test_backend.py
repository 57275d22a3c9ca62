"""torch.compile(backend="acf"): forward output and .grad from the fabric match eager."""

from __future__ import annotations

import copy
import json

import pytest

torch = pytest.importorskip("torch")
backend = pytest.importorskip("acf.frontends.backend")


def assert_matches_eager(out, want, model, ref, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """The fabric's output and every parameter's .grad against eager's."""
    torch.testing.assert_close(out, want, rtol=rtol, atol=atol)
    for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def classifier_matches_eager(make, x, y, seed: int) -> None:
    """``make()`` compiled for the fabric: output and every .grad of a cross-entropy step
    match eager's, and a forward and a backward graph ran on the fabric (not eagerly)."""
    import torch.nn.functional as F

    torch.manual_seed(seed)
    model = make()
    ref = copy.deepcopy(model)
    before = len(backend.REPORTS)
    out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(x)
    F.cross_entropy(out, y).backward()
    want = ref(x)
    F.cross_entropy(want, y).backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)
    assert len(backend.REPORTS) == before + 2  # one forward and one backward ran here
    assert all(r.variant != "host" for r in backend.REPORTS[-2:])


def test_mlp_forward_and_grads_match_eager(tmp_path) -> None:
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 10))
    ref = copy.deepcopy(model)
    x, y = torch.randn(8, 32), torch.randint(0, 10, (8,))
    path = tmp_path / "report.json"
    cmodel = torch.compile(model, backend="acf", options={"target": "acf-small",
                                                           "report": str(path)})
    out = cmodel(x)
    F.cross_entropy(out, y).backward()
    want = ref(x)
    F.cross_entropy(want, y).backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)
    steps = json.loads(path.read_text())["steps"]
    assert [s["program"].rstrip("0123456789") for s in steps[-2:]] == ["forward", "backward"]
    assert all(s["total_cycles"] > 0 for s in steps[-2:])


def test_unknown_option_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown option.*'colour'.*valid options: dtype, "
                                         "fallback, pipeline, report, skip_policy, target"):
        backend.parse_options({"colour": "red"})
    with pytest.raises(ValueError, match="fallback must be"):
        backend.parse_options({"fallback": "maybe"})


@pytest.mark.parametrize("first", ["", "import acf", "import acf.frontends.backend"])
def test_backend_is_found_by_name_whatever_was_imported_first(first: str) -> None:
    """A fresh interpreter: Dynamo finds "acf" through the package's entry point, or through
    the import that registered it; either way one registration, and the result is right."""
    import subprocess
    import sys

    code = (f"{first}\nimport torch\ntorch.manual_seed(0)\n"
            "m = torch.nn.Linear(8, 4); x = torch.randn(2, 8)\n"
            "y = torch.compile(m, backend='acf', options={'target': 'acf-small'})(x)\n"
            "print(float((y - m(x)).abs().max()))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.split()[-1]) < 1e-5


def test_cnn_with_batch_norm_and_max_pool_trains_through_the_backend() -> None:
    """The forward graph Dynamo splits off returns max pooling's indices (saved for the
    backward) and batch norm's updated step counter (a 0-d tensor): the indices come from
    the pool input the fabric returns, the counter keeps torch's 0-d shape."""
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.GELU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5))
    ref = copy.deepcopy(model)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(x)
    F.cross_entropy(out, y).backward()
    want = ref(x)
    F.cross_entropy(want, y).backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)
    bn, bn_ref = model[1], ref[1]
    assert bn.num_batches_tracked.shape == () and int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, bn_ref.running_mean)
    torch.testing.assert_close(bn.running_var, bn_ref.running_var)
    assert [r.program.rstrip("0123456789") for r in backend.REPORTS[-2:]] == ["forward", "backward"]


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_torch_transformer_encoder_layer_through_the_backend(dropout: float) -> None:
    """Dynamo hands over attention as scaled_dot_product_attention; traced on the math
    backend it arrives as bmm + softmax (the CPU flash kernel has no lowering), and the
    packed q/k/v projection is split by slices. With dropout (on the attention weights,
    after attention and in the feed-forward block) the keep-masks are drawn as eager draws
    them, one of them over a transposed input: the same seed gives eager's numbers."""
    from torch import nn
    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(1)
    model = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32,
                                       dropout=dropout, batch_first=True)
    ref = copy.deepcopy(model)
    x = torch.randn(2, 5, 16)
    cmodel = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)
    torch.manual_seed(3)
    out = cmodel(x)
    out.pow(2).mean().backward()
    torch.manual_seed(3)
    with sdpa_kernel(SDPBackend.MATH):  # eager's CPU flash kernel draws its own way
        want = ref(x)
    want.pow(2).mean().backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)
    assert all(r.variant != "host" for r in backend.REPORTS[-2:])  # both graphs on the fabric


def test_dropout_through_the_backend_draws_torchs_masks() -> None:
    """The forward's keep-masks are drawn with torch's generator in graph order, as eager
    dropout draws them: with the same seed, outputs and gradients equal eager's."""
    from torch import nn

    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4),
                          nn.Dropout(0.5))
    ref = copy.deepcopy(model)
    x = torch.randn(4, 8)
    cmodel = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)
    torch.manual_seed(7)
    out = cmodel(x)
    out.pow(2).sum().backward()
    torch.manual_seed(7)
    want = ref(x)
    want.pow(2).sum().backward()
    assert 0 < int((want == 0).sum()) < want.numel()  # some dropped, some kept
    assert_matches_eager(out, want, model, ref, rtol=1e-5, atol=1e-6)
    assert all(r.variant != "host" for r in backend.REPORTS[-2:])


def test_token_ids_saved_for_the_backward_stay_on_the_host() -> None:
    """Token ids reach the fabric one-hot; the forward graph also returns them (saved for
    the embedding's backward), and that output is the caller's own tensor, so the tables'
    gradients match eager."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ..frontends.models import TinyBert

    torch.manual_seed(0)
    model = TinyBert()
    ref = copy.deepcopy(model)
    ids, y = torch.randint(0, 30, (2, 6)), torch.tensor([0, 2])
    out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(ids)
    F.cross_entropy(out, y).backward()
    with sdpa_kernel(SDPBackend.MATH):
        want = ref(ids)
    F.cross_entropy(want, y).backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)


def test_recurrent_layers_run_on_the_fabric_not_eagerly() -> None:
    """Dynamo would run nn.LSTM / nn.GRU eagerly, outside the graph the backend is given
    (so the fabric would never see them); importing the backend lets Dynamo trace them, and
    their per-step GEMMs run on the fabric: forward and backward match eager, and the
    forward program issues at least every MAC of the recurrent layers."""
    from ..frontends.models import RecurrentClassifier

    classifier_matches_eager(RecurrentClassifier, torch.randn(2, 5, 8), torch.tensor([0, 2]), 4)
    fwd, bwd = backend.REPORTS[-2:]
    assert (fwd.program.rstrip("0123456789"), bwd.program.rstrip("0123456789")) == ("forward", "backward")
    steps, batch, d, h = 5, 2, 8, 12  # LSTM layers 0 and 1, then the GRU: per-step x and h GEMMs
    recurrent_macs = steps * batch * (4 * h * (d + h) + 4 * h * (h + h) + 3 * h * (h + h))
    assert fwd.issued_macs >= recurrent_macs


def test_composed_activations_and_group_norm_through_the_backend() -> None:
    """The activation compositions and the decomposed group norm on the torch.compile
    path: outputs and every gradient match eager (to 1e-5 of each tensor's largest
    element: the wide pre-activations give gradients up to ~0.5, and exp(x) - 1 stands
    in for expm1)."""
    import torch.nn.functional as F

    from ..frontends.models import GroupNormConvNet, MoreActivationsMLP

    for make, shape in ((MoreActivationsMLP, (4, 8)), (GroupNormConvNet, (2, 3, 4, 8))):
        torch.manual_seed(5)
        model = make()
        ref = copy.deepcopy(model)
        x, y = torch.randn(*shape), torch.tensor([0, 2, 1, 0])[:shape[0]]
        out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(x)
        F.cross_entropy(out, y).backward()
        want = ref(x)
        F.cross_entropy(want, y).backward()
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-5)
        for (name, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5 * float(q.grad.abs().max()),
                                       msg=name)
        assert all(r.variant != "host" for r in backend.REPORTS[-2:])


def test_transposed_convolutions_and_adaptive_max_pooling_through_the_backend() -> None:
    """Adaptive max pooling saves its indices for the backward: the backend computes them on
    the host from the pool input, as for max pooling; transposed convolutions run as input
    gradients."""
    from ..frontends.models import EncoderDecoderNet

    classifier_matches_eager(EncoderDecoderNet, torch.randn(2, 3, 8, 8), torch.tensor([1, 2]), 6)


def test_upsampling_through_the_backend() -> None:
    """The forward saves the upsampling's index tensors (host-folded constants) for the
    backward, whose scatter-adds take them as one-hot arguments: gradients match eager."""
    from ..frontends.models import UpsampleNet

    classifier_matches_eager(UpsampleNet, torch.randn(2, 3, 8, 8), torch.tensor([1, 0]), 7)


def test_tensor_constants_and_row_gathers_through_the_backend() -> None:
    """A tensor literal in the model reaches the backend as a constant (read from the real
    tensor, not the fake one Dynamo compiles under); rows gathered with it, a repeated
    index among them, get their gradients summed as eager does."""
    from torch import nn

    class Gather(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = torch.tensor([1.0, -2.0, 0.5, 3.0])
            return self.fc(x)[torch.tensor([3, 0, 0, 2])] * scale

    torch.manual_seed(8)
    model = Gather()
    ref = copy.deepcopy(model)
    x = torch.randn(5, 8)
    out = torch.compile(model, backend="acf", options={"target": "acf-small"}, dynamic=False)(x)
    out.pow(2).sum().backward()
    want = ref(x)
    want.pow(2).sum().backward()
    assert_matches_eager(out, want, model, ref, rtol=1e-4, atol=1e-5)
    assert all(r.variant != "host" for r in backend.REPORTS[-2:])


def test_log_sigmoid_through_the_backend() -> None:
    """Log-sigmoid and its backward (the CPU kernel's formula); the buffer it returns beside
    its output, which the backward does not read, comes back from the host."""
    from torch import nn

    def make() -> nn.Module:
        return nn.Sequential(nn.Linear(8, 16), nn.LogSigmoid(), nn.Linear(16, 3))

    classifier_matches_eager(make, 4 * torch.randn(4, 8), torch.tensor([0, 2, 1, 0]), 9)


def test_adaptive_average_pooling_whose_bins_do_not_divide_the_input() -> None:
    """5x4 -> 3x3 (overlapping bins of unequal length) and then -> 7x7 (each output a copy
    of one input): GEMMs with the bins' averaging matrices, forward and backward."""
    from torch import nn

    def make() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(3), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(7), nn.Flatten(), nn.Linear(4 * 49, 3))

    classifier_matches_eager(make, torch.randn(2, 3, 5, 4), torch.tensor([2, 0]), 10)


def test_comparisons_where_clamp_and_a_padding_mask_through_the_backend() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from ..frontends.models import MaskedAttentionNet

    with sdpa_kernel(SDPBackend.MATH):  # eager's reference on the backend's attention path
        classifier_matches_eager(MaskedAttentionNet, torch.randn(2, 5, 8), torch.tensor([2, 1]), 11)


def test_integer_outputs_keep_eagers_dtype() -> None:
    """An integer result computed on the fabric (``t + 1``, ``t.sum()``) came back as
    float32; eager returns int64 (int32 stays int32)."""
    def f(x, t, u):
        return x * 2, t + 1, t.sum(), u * 3

    x, t = torch.randn(3), torch.tensor([1, 2, 3])
    u = torch.tensor([4, -5], dtype=torch.int32)
    torch._dynamo.reset()
    got = torch.compile(f, backend="acf", dynamic=False)(x, t, u)
    want = f(x, t, u)
    assert [g.dtype for g in got] == [w.dtype for w in want] == [
        torch.float32, torch.int64, torch.int64, torch.int32]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("other", [(2, 1, 4), (3, 1)])
def test_maximum_and_minimum_of_a_broadcast_operand_through_the_backend(other) -> None:
    """[2, 1, 4] or [3, 1] against [2, 3, 4] failed to compile ("broadcast ... is not
    supported"): the runtime now expands such an operand as it does for add and mul."""
    def f(x, y):
        return torch.maximum(x, y) * 2 + torch.minimum(y, x)

    x, y = torch.randn(2, 3, 4), torch.randn(*other)
    torch._dynamo.reset()
    got = torch.compile(f, backend="acf", dynamic=False)(x, y)
    torch.testing.assert_close(got, f(x, y))
    assert backend.REPORTS[-1].variant != "host"
