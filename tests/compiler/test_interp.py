"""The numpy interpreter against eager PyTorch, one op at a time (fp32)."""

from __future__ import annotations

import numpy as np
import pytest
from acf.compiler.dialect import registered_ops
from acf.compiler.interp import SEMANTICS, run_func
from acf.compiler.ir import TensorType
from acf.compiler.parser import parse_module

torch = pytest.importorskip("torch")
F = torch.nn.functional
RNG = np.random.default_rng(0)


def t(shape: tuple[int, ...], element: str = "f32") -> str:
    return str(TensorType(shape, element))


def run_op(
    op: str,
    args: list[np.ndarray],
    results: list[tuple[int, ...]],
    attrs: str = "",
    elements: list[str] | None = None,
) -> list[np.ndarray]:
    """Wrap one op in a function, parse and verify it, and interpret it."""
    elements = elements or ["i64" if a.dtype == np.int64 else "f32" for a in args]
    arg_types = [t(a.shape, e) for a, e in zip(args, elements)]
    params = ", ".join(f"%a{i}: {ty}" for i, ty in enumerate(arg_types))
    res_types = [t(s) for s in results]
    names = ", ".join(f"%r{i}" for i in range(len(results)))
    text = (
        f"graph.func @f({params}) -> ({', '.join(res_types)}) {{\n"
        f"  {names} = graph.{op} {', '.join(f'%a{i}' for i in range(len(args)))}"
        f"{' ' + attrs if attrs else ''} : {', '.join(arg_types)} -> {', '.join(res_types)}\n"
        f"  graph.return {names} : {', '.join(res_types)}\n}}\n"
    )
    return run_func(parse_module(text).funcs[0], args)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def close(ours: np.ndarray, theirs: torch.Tensor, atol: float = 1e-5) -> None:
    assert ours.dtype == theirs.detach().numpy().dtype
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-5, atol=atol)


def test_every_op_has_semantics() -> None:
    missing = [
        op.name for op in registered_ops() if op.name not in SEMANTICS and op.name != "graph.return"
    ]
    run_op("relu", [rand(2)], [(2,)])  # loads the conv semantics module
    missing = [n for n in missing if n not in SEMANTICS]
    assert missing == []


@pytest.mark.parametrize(
    "groups,stride,padding,dilation", [(1, 1, 0, 1), (2, 2, 1, 1), (1, 2, 2, 2)]
)
def test_conv2d_and_its_gradients(groups: int, stride: int, padding: int, dilation: int) -> None:
    x = torch.tensor(rand(2, 4, 7, 6), requires_grad=True)
    w = torch.tensor(rand(6, 4 // groups, 3, 3), requires_grad=True)
    out = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    g = torch.tensor(rand(*out.shape))
    out.backward(g)
    conv = (
        f"{{stride = [{stride}, {stride}], padding = [{padding}, {padding}], "
        f"dilation = [{dilation}, {dilation}], groups = {groups}"
    )
    close(
        run_op("conv2d", [x.detach().numpy(), w.detach().numpy()], [out.shape], conv + "}")[0], out
    )
    gx = run_op(
        "conv2d_backward_input",
        [g.numpy(), w.detach().numpy()],
        [x.shape],
        conv + f", input_shape = {list(x.shape)}}}",
    )[0]
    close(gx, x.grad)
    gw = run_op(
        "conv2d_backward_weight",
        [g.numpy(), x.detach().numpy()],
        [w.shape],
        conv + f", weight_shape = {list(w.shape)}}}",
    )[0]
    close(gw, w.grad, atol=1e-4)


def test_batch_norm_training_forward_and_backward() -> None:
    x = torch.tensor(rand(4, 3, 5, 5), requires_grad=True)
    w = torch.tensor(rand(3), requires_grad=True)
    b = torch.tensor(rand(3), requires_grad=True)
    out = F.batch_norm(x, None, None, w, b, training=True, eps=1e-5)
    g = torch.tensor(rand(*out.shape))
    out.backward(g)
    args = [x.detach().numpy(), w.detach().numpy(), b.detach().numpy()]
    y, mean, invstd = run_op("batch_norm", args, [x.shape, (3,), (3,)])
    close(y, out, atol=1e-5)
    gx, gw, gb = run_op(
        "batch_norm_backward", [g.numpy(), args[0], args[1], mean, invstd], [x.shape, (3,), (3,)]
    )
    close(gx, x.grad, atol=1e-4)
    close(gw, w.grad, atol=1e-4)
    close(gb, b.grad, atol=1e-4)


def test_layer_norm_forward_and_backward() -> None:
    x = torch.tensor(rand(3, 4, 6), requires_grad=True)
    w = torch.tensor(rand(6), requires_grad=True)
    b = torch.tensor(rand(6), requires_grad=True)
    out = F.layer_norm(x, (6,), w, b, eps=1e-5)
    g = torch.tensor(rand(*out.shape))
    out.backward(g)
    args = [x.detach().numpy(), w.detach().numpy(), b.detach().numpy()]
    y, mean, rstd = run_op("layer_norm", args, [x.shape, (3, 4, 1), (3, 4, 1)])
    close(y, out)
    gx, gw, gb = run_op(
        "layer_norm_backward", [g.numpy(), args[0], mean, rstd, args[1]], [x.shape, (6,), (6,)]
    )
    close(gx, x.grad, atol=1e-4)
    close(gw, w.grad, atol=1e-4)
    close(gb, b.grad, atol=1e-4)


@pytest.mark.parametrize("kind,padding", [("max", 0), ("max", 1), ("avg", 0), ("avg", 1)])
def test_pooling_forward_and_backward(kind: str, padding: int) -> None:
    x = torch.tensor(rand(2, 3, 7, 7), requires_grad=True)
    fn = F.max_pool2d if kind == "max" else F.avg_pool2d
    out = fn(x, 3, stride=2, padding=padding)
    g = torch.tensor(rand(*out.shape))
    out.backward(g)
    attrs = f"{{kernel_size = [3, 3], stride = [2, 2], padding = [{padding}, {padding}]}}"
    xn = x.detach().numpy()
    close(run_op(f"{kind}_pool2d", [xn], [out.shape], attrs)[0], out)
    close(run_op(f"{kind}_pool2d_backward", [g.numpy(), xn], [x.shape], attrs)[0], x.grad)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_and_backward(approximate: str) -> None:
    x = torch.tensor(rand(5, 4), requires_grad=True)
    out = F.gelu(x, approximate=approximate)
    g = torch.tensor(rand(5, 4))
    out.backward(g)
    attrs = f'{{approximate = "{approximate}"}}'
    close(run_op("gelu", [x.detach().numpy()], [x.shape], attrs)[0], out)
    close(run_op("gelu_backward", [g.numpy(), x.detach().numpy()], [x.shape], attrs)[0], x.grad)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family(name: str) -> None:
    x = torch.tensor(rand(4, 5), requires_grad=True)
    out = getattr(F, name)(x, dim=1)
    g = torch.tensor(rand(4, 5))
    out.backward(g)
    close(run_op(name, [x.detach().numpy()], [x.shape], "{axis = 1}")[0], out)
    back = run_op(f"{name}_backward", [g.numpy(), out.detach().numpy()], [x.shape], "{axis = 1}")
    close(back[0], x.grad)


def test_cross_entropy_and_backward() -> None:
    logits = torch.tensor(rand(6, 5), requires_grad=True)
    labels = torch.tensor(RNG.integers(0, 5, 6))
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    ours = run_op("cross_entropy", [logits.detach().numpy(), labels.numpy()], [()])[0]
    close(ours, loss)
    grad = run_op(
        "cross_entropy_backward",
        [np.ones((), np.float32), logits.detach().numpy(), labels.numpy()],
        [(6, 5)],
    )
    close(grad[0], logits.grad)


def test_sgd_matches_torch_optimizer() -> None:
    p = torch.tensor(rand(4, 3), requires_grad=True)
    grad = rand(4, 3)
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    p0 = p.detach().numpy().copy()
    buf = np.zeros_like(p0)
    for _ in range(2):
        p.grad = torch.tensor(grad)
        opt.step()
        p0, buf = run_op(
            "sgd_update",
            [p0, grad, buf],
            [p0.shape, p0.shape],
            "{lr = 0.1, momentum = 0.9, weight_decay = 0.01}",
        )
    close(p0, p)


def test_adam_matches_torch_optimizer() -> None:
    p = torch.tensor(rand(4, 3), requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.01, weight_decay=0.1)
    p0, m, v = p.detach().numpy().copy(), np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
    for step in (1, 2, 3):
        grad = rand(4, 3)
        p.grad = torch.tensor(grad)
        opt.step()
        p0, m, v = run_op(
            "adam_update",
            [p0, grad, m, v, np.asarray(step, np.float32)],
            [p0.shape] * 3,
            "{lr = 0.01, weight_decay = 0.1}",
        )
    close(p0, p)


def test_linear_matmul_and_reductions() -> None:
    x, w, b = rand(3, 5), rand(4, 5), rand(4)
    close(run_op("linear", [x, w, b], [(3, 4)])[0], F.linear(*map(torch.tensor, (x, w, b))))
    close(
        run_op("matmul", [x, w], [(3, 4)], "{transpose_b = true}")[0],
        torch.tensor(x) @ torch.tensor(w).T,
    )
    close(
        run_op("reduce_mean", [x], [(3, 1)], "{axes = [-1], keepdim = true}")[0],
        torch.tensor(x).mean(-1, keepdim=True),
    )
    close(run_op("reduce_max", [x], [(5,)], "{axes = [0]}")[0], torch.tensor(x).amax(0))
