"""The TVM Relax frontend against TVM itself: Relax modules (from TVM's PyTorch importer and
from the block builder) convert to the graph dialect, and the reference interpreter (and the
emulator) reproduce what ``tvm.compile`` + the Relax VM compute, forward and through
Relax's own ``Gradient`` pass. Skipped when apache-tvm (the ``tvm`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.compiler.printer import print_module

HAS_TVM = importlib.util.find_spec("tvm") is not None
requires_tvm = pytest.mark.skipif(
    not HAS_TVM, reason="apache-tvm is not installed (pip install 'acf[tvm]')")
RTOL, ATOL = 1e-4, 1e-6


def test_importing_the_frontend_does_not_import_tvm() -> None:
    code = ("import sys, acf.frontends.relax, acf.frontends.relax_ops; "
            "assert 'tvm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


if HAS_TVM:
    import torch
    from acf.frontends.relax import (
        UnsupportedRelaxOpError,
        from_relax,
        relax_gradient_module,
        relax_params,
        relax_training_step,
        run_relax,
    )
    from torch import nn
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    class ConvNet(nn.Module):
        """No batch norm (Relax has no gradient for it); a strided conv whose stride does
        not divide its input (Relax crops an oversized weight gradient)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
            self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
            self.fc = nn.Linear(6 * 2 * 2, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
            y = nn.functional.avg_pool2d(torch.relu(self.conv2(y)), 1)
            return self.fc(y.flatten(1))


def _imported(model_cls: type, shape: tuple[int, ...], seed: int = 0):
    torch.manual_seed(seed)
    model = model_cls()
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    ep = torch.export.export(model, (torch.from_numpy(x),))
    mod = from_exported_program(ep, keep_params_as_input=True)
    return mod, [x, *relax_params(mod)]


def _assert_close(ours: list[np.ndarray], ref: list[np.ndarray]) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"result {i}: {a.shape} vs {b.shape}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"result {i}")


@pytest.fixture(scope="module")
def mlp():
    return _imported(MLP, (4, 8))


@pytest.fixture(scope="module")
def convnet():
    return _imported(ConvNet, (2, 3, 8, 8), seed=1)


@requires_tvm
def test_mlp_forward_matches_tvm(mlp) -> None:
    mod, args = mlp
    module = from_relax(mod)
    func = module.funcs[0]
    assert [a.name_hint for a in func.arguments] == [
        "x", "p_fc1_weight", "p_fc1_bias", "p_fc2_weight", "p_fc2_bias"]
    names = [op.name for op in func.body.ops]
    assert names.count("graph.linear") == 2 and "graph.transpose" not in names
    _assert_close(run_func(func, args), run_relax(mod, args))
    assert print_module(parse_module(print_module(module))) == print_module(module)


@requires_tvm
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mlp_gradients_match_tvm(mlp, reduction) -> None:
    mod, args = mlp
    labels = np.array([0, 3, 1, 3], np.int64)
    grad_mod, adjoint = relax_gradient_module(mod, reduction=reduction)
    step = relax_training_step(mod, reduction=reduction)
    func = step.funcs[0]
    assert func.sym_name == "train_step" and len(func.function_result_types) == 5
    names = {op.name for op in func.body.ops}
    assert {"graph.cross_entropy", "graph.cross_entropy_backward",
            "graph.relu_backward"} <= names
    ours = run_func(func, [*args, labels])
    ref = run_relax(grad_mod, [*args, labels], adjoint)
    _assert_close(ours, ref)
    expected = torch.nn.functional.cross_entropy(
        _torch_mlp(args)(torch.from_numpy(args[0])), torch.from_numpy(labels),
        reduction=reduction)
    np.testing.assert_allclose(ours[0], expected.detach().numpy(), rtol=RTOL)


def _torch_mlp(args: list[np.ndarray]) -> nn.Module:
    model = MLP()
    with torch.no_grad():
        for p, v in zip(model.parameters(), args[1:]):
            p.copy_(torch.from_numpy(v))
    return model


@requires_tvm
def test_convnet_forward_and_gradients_match_tvm(convnet) -> None:
    mod, args = convnet
    _assert_close(run_func(from_relax(mod).funcs[0], args), run_relax(mod, args))
    labels = np.array([4, 1], np.int64)
    grad_mod, adjoint = relax_gradient_module(mod)
    step = from_relax(grad_mod, adjoint)
    names = {op.name for op in step.funcs[0].body.ops}
    assert {"graph.conv2d_backward_weight", "graph.conv2d_backward_input",
            "graph.max_pool2d_backward", "graph.avg_pool2d_backward"} <= names
    _assert_close(run_func(step.funcs[0], [*args, labels]),
                  run_relax(grad_mod, [*args, labels], adjoint))


def _block_builder_module():
    """A hand-built Relax function: elementwise math (tanh, sigmoid, log, abs, maximum and
    minimum too), reductions,
    softmax and a soft-label cross entropy, differentiated by Relax's Gradient pass."""
    op = relax.op
    f32 = lambda *s: relax.TensorType(list(s), "float32")
    bb = relax.BlockBuilder()
    x, w, b, y = (relax.Var("x", f32(4, 8)), relax.Var("w", f32(6, 8)), relax.Var("b", f32(6)),
                  relax.Var("y", f32(4, 6)))
    with bb.function("main", [x, w, b, y]):
        with bb.dataflow():
            h = bb.emit(op.add(bb.emit(op.matmul(x, bb.emit(op.permute_dims(w)))), b))
            c = bb.emit(op.subtract(h, bb.emit(op.mean(h, axis=[1], keepdims=True))))
            c = bb.emit(op.multiply(c, relax.const(0.5, "float32")))
            scale = bb.emit(op.sqrt(bb.emit(op.add(bb.emit(op.exp(b)),
                                                   relax.const(1.0, "float32")))))
            s = bb.emit(op.nn.softmax(bb.emit(op.divide(c, scale))))
            s = bb.emit(op.nn.relu(bb.emit(op.subtract(s, relax.const(0.1, "float32")))))
            s = bb.emit(op.add(s, bb.emit(op.multiply(bb.emit(op.tanh(c)), bb.emit(op.sigmoid(h))))))
            one = relax.const(1.0, "float32")
            s = bb.emit(op.add(s, bb.emit(op.log(bb.emit(op.add(bb.emit(op.abs(c)), one))))))
            s = bb.emit(op.maximum(s, bb.emit(op.minimum(h, relax.const(0.2, "float32")))))
            logp = bb.emit(op.nn.log_softmax(s))
            loss = bb.emit_output(op.nn.cross_entropy_with_logits(logp, y))
        bb.emit_func_output(loss)
    mod = relax.transform.Gradient("main", require_grads=[w, b])(bb.get())
    rng = np.random.default_rng(2)
    args = [rng.standard_normal(s).astype(np.float32) for s in [(4, 8), (6, 8), (6,)]]
    args.append(rng.dirichlet(np.ones(6), 4).astype(np.float32))
    return mod, args


@requires_tvm
@pytest.mark.parametrize("func_name", ["main", "main_adjoint"])
def test_block_builder_module_matches_tvm(func_name) -> None:
    mod, args = _block_builder_module()
    module = from_relax(mod, func_name)
    _assert_close(run_func(module.funcs[0], args), run_relax(mod, args, func_name))


@requires_tvm
def test_unsupported_op_names_the_relax_op() -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType([2, 3], "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            s = bb.emit(relax.op.cumsum(x, axis=1), name_hint="squashed")
            out = bb.emit_output(relax.op.nn.relu(s))
        bb.emit_func_output(out)
    with pytest.raises(UnsupportedRelaxOpError) as err:
        from_relax(bb.get())
    assert err.value.op == "relax.cumsum" and err.value.binding == "squashed"
    assert "unsupported Relax op 'relax.cumsum'" in str(err.value)


@requires_tvm
def test_mlp_forward_and_training_step_on_the_emulator(mlp) -> None:
    from acf.runtime import Session

    mod, args = mlp
    sess = Session("acf-small")
    sess.load(from_relax(mod), name="mlp_forward")
    res = sess.run_step(args)
    _assert_close(res.values, run_relax(mod, args))
    assert res.report.total_cycles > 0

    labels = np.array([2, 0, 1, 3], np.int64)
    grad_mod, adjoint = relax_gradient_module(mod)
    sess.load(relax_training_step(mod), name="mlp_step")
    res = sess.run_step([*args, labels])
    _assert_close(res.values, run_relax(grad_mod, [*args, labels], adjoint))
