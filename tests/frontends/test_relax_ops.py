"""Forms of Relax ops the frontend must get exactly right, and the normalization, pooling
and elementwise converters, against TVM itself (``tvm.compile`` + the Relax VM on llvm):
strided slices with negative strides, selects at ties (``where`` of every comparison),
the bias-add fusion when the product is read again through an alias, comparisons as
function results; layer norm, batch norm (both forms), concat, silu, min, power, flip and
adaptive average pooling on the reference interpreter and compiled for acf-small and run on
the emulator. Skipped when apache-tvm (the ``tvm`` extra) is not installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import numpy as np
import pytest
from acf.compiler.interp import run_func

HAS_TVM = importlib.util.find_spec("tvm") is not None
pytestmark = pytest.mark.skipif(
    not HAS_TVM, reason="apache-tvm is not installed (pip install 'acf[tvm]')")
RTOL, ATOL = 1e-4, 1e-5

if HAS_TVM:
    from acf.frontends.relax import UnsupportedRelaxOpError, from_relax, relax_params, run_relax
    from tvm import relax

    op = relax.op


def _f32(*shape: int):
    return relax.TensorType(list(shape), "float32")


def _module(shapes: dict[str, tuple[int, ...]], build: Callable) -> object:
    """A one-function module: ``build(bb, *params)`` emits the bindings and returns the
    result expression (a tensor or a tuple)."""
    bb = relax.BlockBuilder()
    params = [relax.Var(name, _f32(*s)) for name, s in shapes.items()]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(build(bb, *params))
        bb.emit_func_output(out)
    return bb.get()


def _zero():
    return relax.const(np.float32(0), "float32")


def _args(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(np.float32) for s in shapes.values()]


def _ours(mod, args: list[np.ndarray]) -> list[np.ndarray]:
    return run_func(from_relax(mod).funcs[0], args)


def _assert_close(ours: list[np.ndarray], ref: list[np.ndarray]) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"result {i}: {a.shape} vs {b.shape}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"result {i}")


# --- the bias-add fusion and aliases -----------------------------------------------------
@pytest.mark.parametrize("alias", ["reshape", "astype"])
def test_linear_fusion_keeps_a_matmul_read_again_through_an_alias(alias) -> None:
    """``q`` (a same-shape reshape or same-type cast of the product) is the product's IR
    value under a second name: the add must not fuse the matmul away while ``q`` is read."""
    shapes = {"x": (4, 8), "w": (6, 8), "b": (6,)}

    def build(bb, x, w, b):
        p = bb.emit(op.matmul(x, bb.emit(op.permute_dims(w))))
        q = bb.emit(op.reshape(p, (4, 6)) if alias == "reshape" else op.astype(p, "float32"))
        s = bb.emit(op.add(q, b))
        return op.multiply(s, q)

    mod = _module(shapes, build)
    args = _args(shapes)
    _assert_close(_ours(mod, args), run_relax(mod, args))


def test_linear_fusion_still_applies_to_a_single_reader() -> None:
    shapes = {"x": (4, 8), "w": (6, 8), "b": (6,)}
    mod = _module(shapes, lambda bb, x, w, b: op.add(
        bb.emit(op.reshape(bb.emit(op.matmul(x, bb.emit(op.permute_dims(w)))), (4, 6))), b))
    names = [o.name for o in from_relax(mod).funcs[0].body.ops]
    assert "graph.linear" in names and "graph.matmul" not in names
    args = _args(shapes)
    _assert_close(_ours(mod, args), run_relax(mod, args))


# --- strided slices ---------------------------------------------------------------------
SLICES = [
    ([1], [7], [-9], [-1]),          # the whole axis reversed: the input's shape
    ([1], [6], [0], [-2]),
    ([1], [-1], [-100], [-3]),
    ([0, 1], [3, 1], [-5, 7], [-1, 2]),
    ([1, 0], [-2, 1], [2, 100], [-1, 1]),
    ([1], [-3], [100], [1]),
    ([1], [1], [8], [3]),
    ([0], [0], [4], [1]),            # the identity
]


@pytest.mark.parametrize("axes,begin,end,strides", SLICES)
def test_strided_slice_matches_tvm(axes, begin, end, strides) -> None:
    mod = _module({"x": (4, 8)}, lambda bb, x: op.strided_slice(x, axes, begin, end, strides))
    x = np.arange(32, dtype=np.float32).reshape(4, 8) - 10.5
    ref = run_relax(mod, [x])
    ours = _ours(mod, [x])
    assert ours[0].shape == ref[0].shape
    np.testing.assert_array_equal(ours[0], ref[0])


def test_strided_slice_without_strides_and_of_a_rank_3_tensor() -> None:
    mod = _module({"x": (2, 3, 5)}, lambda bb, x: op.add(
        bb.emit(op.strided_slice(x, [2, 0], [4, 1], [0, 2], [-2, 1])),
        bb.emit(op.strided_slice(x, [2], [1], [3]))))
    x = np.arange(30, dtype=np.float32).reshape(2, 3, 5)
    np.testing.assert_array_equal(_ours(mod, [x])[0], run_relax(mod, [x])[0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_flip_matches_tvm(axis) -> None:
    mod = _module({"x": (3, 4, 5)}, lambda bb, x: op.flip(x, axis))
    x = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    np.testing.assert_array_equal(_ours(mod, [x])[0], run_relax(mod, [x])[0])


# --- where at ties ------------------------------------------------------------------------
X = np.array([[-1.0, 0.0, 1.0, 0.0, 2.0, -0.0, 3.0, -2.0]], np.float32)
Y = np.array([[0.0, 0.0, 1.0, -1.0, 3.0, 0.0, 3.0, -2.0]], np.float32)


@pytest.mark.parametrize("kind", ["less", "greater", "less_equal", "greater_equal"])
@pytest.mark.parametrize("cond", ["x_0", "0_x", "x_y"])
@pytest.mark.parametrize("branches", ["g_0", "0_g", "g_h"])
def test_where_of_every_comparison_matches_tvm_at_ties(kind, cond, branches) -> None:
    """Exact zeros and equal operands are where a select by a strict sign test differs from
    a non-strict comparison (``where(x >= 0, g, 0)`` keeps g at x == 0)."""
    shapes = {"x": (1, 8), "y": (1, 8), "g": (1, 8), "h": (1, 8)}

    def build(bb, x, y, g, h):
        named = {"x": x, "y": y, "g": g, "h": h, "0": _zero()}
        lhs, rhs = (named[k] for k in cond.split("_"))
        a, b = (named[k] for k in branches.split("_"))
        c = bb.emit(getattr(op, kind)(lhs, rhs))
        return op.add(bb.emit(op.where(c, a, b)), y)  # a graph op on top: no bare argument

    mod = _module(shapes, build)
    args = [X, Y, np.arange(1, 9, dtype=np.float32)[None], -np.arange(1, 9, dtype=np.float32)[None]]
    np.testing.assert_array_equal(_ours(mod, args)[0], run_relax(mod, args)[0])


@pytest.mark.parametrize("branches", ["x_fill", "fill_x", "0_fill"])
def test_where_with_a_minus_infinity_branch_matches_tvm(branches) -> None:
    """A mask fill (``0_fill``: an additive mask): the select was a + (b - relu_backward(b,
    z)), -inf - -inf = NaN wherever the other branch was taken."""

    def build(bb, x, y):
        named = {"x": x, "0": _zero(), "fill": relax.const(np.float32(-np.inf), "float32")}
        a, b = (named[k] for k in branches.split("_"))
        c = bb.emit(op.greater(x, y))
        masked = bb.emit(op.where(c, a, b))
        return op.nn.softmax(bb.emit(op.add(masked, x)) if branches == "0_fill" else masked,
                             axis=-1)

    mod = _module({"x": (2, 4), "y": (2, 4)}, build)
    x = np.array([[1.0, -2.0, 0.0, 3.0], [0.5, 0.0, -1.0, 2.0]], np.float32)
    y = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, -1.0, -2.0, 1.0]], np.float32)
    np.testing.assert_allclose(_ours(mod, [x, y])[0], run_relax(mod, [x, y])[0], rtol=1e-6)


def test_relu_gradient_keeps_the_gradient_at_zero_as_tvm_does() -> None:
    """Relax's ReLU gradient is ``where(x < 0, 0, g)``: g passes where x == 0."""
    shapes = {"x": (2, 4), "w": (2, 4)}
    mod = _module(shapes, lambda bb, x, w: op.sum(
        bb.emit(op.multiply(bb.emit(op.nn.relu(x)), w))))
    mod = relax.transform.Gradient("main", require_grads=list(mod["main"].params[:1]))(mod)
    x = np.array([[0.0, -1.0, 2.0, 0.0], [-0.0, 3.0, 0.0, -2.0]], np.float32)
    w = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    ref = run_relax(mod, [x, w], "main_adjoint")
    assert ref[1][0, 0] == 1.0  # TVM's own convention at zero
    _assert_close(run_func(from_relax(mod, "main_adjoint").funcs[0], [x, w]), ref)


# --- comparisons as results ---------------------------------------------------------------
def test_a_comparison_result_names_the_comparison() -> None:
    mod = _module({"x": (4, 8)}, lambda bb, x: op.less(x, _zero()))
    with pytest.raises(UnsupportedRelaxOpError) as err:
        from_relax(mod)
    assert err.value.op == "relax.less" and err.value.binding == "gv"
    assert "unsupported Relax op 'relax.less'" in str(err.value)


def test_a_comparison_read_by_another_op_names_both() -> None:
    mod = _module({"x": (4, 8)}, lambda bb, x: op.astype(
        bb.emit(op.greater_equal(x, _zero())), "float32"))
    with pytest.raises(UnsupportedRelaxOpError) as err:
        from_relax(mod)
    assert err.value.op == "relax.astype" and "relax.greater_equal" in str(err.value)


# --- normalization, pooling and elementwise converters: interpreter and emulator ---------
def _bn(training: bool, scale: bool = True, center: bool = True):
    shapes = {"x": (2, 3, 4, 5), "gamma": (3,), "beta": (3,), "mean": (3,), "var": (3,)}

    def build(bb, x, gamma, beta, mean, var):
        t = bb.emit(op.nn.batch_norm(x, gamma, beta, mean, var, axis=1, epsilon=1e-3,
                                     scale=scale, center=center, momentum=0.2,
                                     training=training))
        # results read through graph ops (not the parameters passed straight through)
        return relax.Tuple([bb.emit(relax.TupleGetItem(t, 0)),
                            bb.emit(op.multiply(bb.emit(relax.TupleGetItem(t, 1)), gamma)),
                            bb.emit(op.multiply(bb.emit(relax.TupleGetItem(t, 2)), beta))])
    return shapes, build


def _positive_var(args: list[np.ndarray]) -> list[np.ndarray]:
    args[4] = np.abs(args[4]) + 0.5
    return args


CASES: dict[str, tuple[dict, Callable, Callable | None]] = {
    "layer_norm_last": ({"x": (2, 3, 4), "g": (4,), "b": (4,)},
                        lambda bb, x, g, b: op.nn.layer_norm(x, g, b, axes=[-1]), None),
    "layer_norm_two": ({"x": (2, 3, 4), "g": (3, 4), "b": (3, 4)},
                       lambda bb, x, g, b: op.nn.layer_norm(x, g, b, axes=[1, 2], epsilon=1e-3),
                       None),
    "batch_norm_eval": (*_bn(False), _positive_var),
    "batch_norm_eval_plain": (*_bn(False, scale=False, center=False), _positive_var),
    "batch_norm_train": (*_bn(True), _positive_var),
    "batch_norm_train_plain": (*_bn(True, scale=False, center=False), _positive_var),
    "concat": ({"a": (2, 3), "b": (2, 5), "c": (2, 1)},
               lambda bb, a, b, c: op.concat([a, b, c], axis=-1), None),
    "concat_rows": ({"a": (2, 3), "b": (4, 3)},
                    lambda bb, a, b: op.concat([a, b], axis=0), None),
    "silu": ({"x": (3, 7)}, lambda bb, x: op.nn.silu(x), None),
    "min_axis": ({"x": (3, 4, 5)}, lambda bb, x: op.min(x, axis=[1]), None),
    "min_keepdims": ({"x": (3, 4, 5)}, lambda bb, x: op.min(x, axis=[0, 2], keepdims=True),
                     None),
    "min_all": ({"x": (3, 4)}, lambda bb, x: op.min(x), None),
    "power": ({"x": (2, 6)}, lambda bb, x: relax.Tuple([
        bb.emit(op.power(x, relax.const(np.float32(p), "float32"))) for p in (1, 2, 3, 4, -1, -2)]),
        None),
    "power_roots": ({"x": (2, 6)}, lambda bb, x: relax.Tuple([
        bb.emit(op.power(bb.emit(op.abs(x)), relax.const(np.float32(p), "float32")))
        for p in (0.5, -0.5, 0.0)]), None),
    "flip": ({"x": (2, 3, 4)}, lambda bb, x: op.flip(x, 1), None),
    "reversed_slice": ({"x": (2, 6)},
                       lambda bb, x: op.strided_slice(x, [1], [5], [0], [-2]), None),
    "adaptive_avg_pool_bins": ({"x": (2, 3, 8, 8)},
                               lambda bb, x: op.nn.adaptive_avg_pool2d(x, (3, 5)), None),
    "adaptive_avg_pool_divides": ({"x": (2, 3, 8, 6)},
                                  lambda bb, x: op.nn.adaptive_avg_pool2d(x, (4, 2)), None),
    "adaptive_avg_pool_global": ({"x": (2, 3, 5, 7)},
                                 lambda bb, x: op.nn.adaptive_avg_pool2d(x, 1), None),
    "adaptive_avg_pool_one_dim": ({"x": (1, 2, 6, 9)},
                                  lambda bb, x: op.nn.adaptive_avg_pool2d(x, (4, 9)), None),
}


def _case(name: str):
    shapes, build, fix = CASES[name]
    args = _args(shapes, seed=len(name))
    return _module(shapes, build), fix(args) if fix else args


@pytest.fixture(scope="module")
def session():
    from acf.runtime import Session

    return Session("acf-small")


@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_matches_tvm_on_the_interpreter_and_the_emulator(name, session) -> None:
    mod, args = _case(name)
    ref = run_relax(mod, args)
    _assert_close(_ours(mod, args), ref)
    session.load(from_relax(mod), name=name)
    res = session.run_step(args)
    _assert_close(res.values, ref)
    assert res.report.total_cycles > 0


def test_batch_norm_eval_is_a_channel_scale_and_shift() -> None:
    mod, _ = _case("batch_norm_eval")
    names = {o.name for o in from_relax(mod).funcs[0].body.ops}
    assert "graph.batch_norm" not in names


@pytest.mark.parametrize("build,what", [
    (lambda bb, x: op.power(x, relax.const(np.float32(1.5), "float32")), "exponent 1.5"),
    (lambda bb, x: op.power(x, x), "not a constant"),
    (lambda bb, x: op.nn.layer_norm(x, relax.const(np.ones(4, np.float32)),
                                    relax.const(np.zeros(4, np.float32)), axes=[-1],
                                    center=False), "center=False"),
    (lambda bb, x: op.nn.layer_norm(x, relax.const(np.ones(3, np.float32)),
                                    relax.const(np.zeros(3, np.float32)), axes=[0]),
     "only the trailing dims"),
])
def test_unsupported_forms_name_the_op(build, what) -> None:
    mod = _module({"x": (3, 4)}, build)
    with pytest.raises(UnsupportedRelaxOpError, match=what) as err:
        from_relax(mod)
    assert err.value.op.startswith("relax.")


# --- the PyTorch importer's forms ----------------------------------------------------------
if HAS_TVM:
    import torch
    from torch import nn
    from tvm.relax.frontend.torch import from_exported_program

    class PoolNormNet(nn.Module):
        """Batch norm, SiLU, adaptive pooling whose bins do and do not divide the input,
        concat, layer norm, a square and a flip, as TVM's PyTorch importer writes them."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.ln = nn.LayerNorm(4 * 9 + 4 * 16)
            self.fc = nn.Linear(4 * 9 + 4 * 16, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = nn.functional.silu(self.bn(self.conv(x)))
            a = nn.functional.adaptive_avg_pool2d(y, (3, 3)).flatten(1)
            b = nn.functional.adaptive_avg_pool2d(y, 4).flatten(1)
            h = self.fc(self.ln(torch.cat([a, b], dim=1)))
            return torch.pow(h, 2) + torch.flip(h, [1])


@pytest.mark.parametrize("training", [False, True])
def test_pytorch_model_with_norms_and_pooling_matches_tvm(training, session) -> None:
    torch.manual_seed(0)
    model = PoolNormNet()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    model.train(training)
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    mod = from_exported_program(torch.export.export(model, (torch.from_numpy(x),)),
                                keep_params_as_input=True)
    args = [x, *relax_params(mod)]
    ref = run_relax(mod, args)
    module = from_relax(mod)
    _assert_close(run_func(module.funcs[0], args), ref)
    session.load(module, name=f"pool_norm_{training}")
    _assert_close(session.run_step(args).values, ref)
