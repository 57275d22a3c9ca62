"""Relax modules from TVM's ONNX importer convert, run and train like the PyTorch importer's.

The models are built with ``onnx.helper`` (no exporter involved): an MLP whose first layer is
an ONNX ``Gemm`` with ``transB`` (weights stored [out, in], as torch keeps them) and a small
conv net (Conv with padding and stride, Relu, MaxPool, Flatten, Gemm). Forward results and
the training step's gradients are checked against TVM's own compiled Relax (the same
reference as tests/frontends/test_relax.py), the step also on the emulator.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'acf[test]')")
if importlib.util.find_spec("tvm") is None:
    pytest.skip("apache-tvm is not installed (pip install 'acf[tvm]')", allow_module_level=True)

from acf.compiler.interp import run_func  # noqa: E402
from acf.frontends.relax import (  # noqa: E402
    from_relax,
    relax_gradient_module,
    relax_params,
    relax_training_step,
    run_relax,
)
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

RTOL, ATOL = 1e-4, 1e-6


def _model(nodes, x_shape, y_shape, params: dict[str, np.ndarray]):
    graph = helper.make_graph(
        nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
        initializer=[numpy_helper.from_array(v, k) for k, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def _mlp(rng):
    params = {"w1": rng.standard_normal((16, 8)).astype(np.float32) * 0.3,
              "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
              "w2": rng.standard_normal((16, 4)).astype(np.float32) * 0.3}
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    return _model(nodes, (4, 8), (4, 4), params), (4, 8)


def _convnet(rng):
    params = {"k": rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.3,
              "kb": rng.standard_normal(4).astype(np.float32) * 0.1,
              "w": rng.standard_normal((5, 16)).astype(np.float32) * 0.3,
              "b": rng.standard_normal(5).astype(np.float32) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    return _model(nodes, (2, 3, 8, 8), (2, 5), params), (2, 3, 8, 8)


def _imported(build, seed: int = 0):
    from tvm.relax.frontend.onnx import from_onnx

    rng = np.random.default_rng(seed)
    model, x_shape = build(rng)
    mod = from_onnx(model, keep_params_in_input=True)
    x = rng.standard_normal(x_shape).astype(np.float32)
    return mod, [x, *relax_params(mod)]


def _assert_close(ours, ref) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"result {i}: {a.shape} vs {b.shape}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"result {i}")


@pytest.mark.parametrize("build,ops", [
    (_mlp, {"graph.linear": 1, "graph.matmul": 1, "graph.relu": 1}),
    (_convnet, {"graph.conv2d": 1, "graph.max_pool2d": 1, "graph.linear": 1}),
])
def test_onnx_module_forward_matches_tvm(build, ops) -> None:
    mod, args = _imported(build)
    func = from_relax(mod).funcs[0]
    names = [op.name for op in func.body.ops]
    assert {op: names.count(op) for op in ops} == ops
    assert [a.name_hint for a in func.arguments][0] == "x"
    _assert_close(run_func(func, args), run_relax(mod, args))


@pytest.mark.parametrize("build,classes", [(_mlp, 4), (_convnet, 5)])
def test_onnx_module_trains_on_the_emulator(build, classes) -> None:
    """Relax's Gradient pass over the imported module, compiled and emulated: the loss and
    every parameter gradient equal TVM's."""
    from acf.runtime import Session

    mod, args = _imported(build, seed=1)
    labels = np.arange(args[0].shape[0], dtype=np.int64) % classes
    grad_mod, adjoint = relax_gradient_module(mod)
    want = run_relax(grad_mod, [*args, labels], adjoint)
    sess = Session("acf-small")
    sess.load(relax_training_step(mod), name="onnx_step")
    res = sess.run_step([*args, labels])
    _assert_close(res.values, want)
    assert len(want) == 1 + len(args) - 1  # the loss, then one gradient per parameter
    assert all(np.abs(g).max() > 0 for g in want[1:])  # every parameter is trained
