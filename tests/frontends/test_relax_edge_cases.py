"""Forms of Relax ops that used to convert to wrong numbers or fail with a traceback,
against TVM itself (``tvm.compile`` + the Relax VM on llvm): ``nll_loss`` with an
``ignore_index`` naming a class (forward and Relax's gradient), ``where`` whose taken zero
branch meets an infinite other branch, reductions over an empty axis list, the gradient of
``power``, IEEE ``pow`` at -0, crops of a weight-gradient convolution, broadcasting
``maximum``/``minimum`` on the emulator, integer results from the emulator, regression
losses in a training step, 0-d arguments of ``run_relax``, and the refusals that must name
the Relax op and its binding. Skipped when apache-tvm (the ``tvm`` extra) is not installed.
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
RTOL, ATOL = 1e-5, 1e-6

if HAS_TVM:
    from acf.frontends.relax import (
        UnsupportedRelaxOpError,
        from_relax,
        relax_gradient_module,
        relax_params,
        relax_training_step,
        run_relax,
    )
    from tvm import relax

    op = relax.op


def _tensor(shape: tuple[int, ...], dtype: str = "float32"):
    return relax.TensorType(list(shape), dtype)


def _module(params: dict[str, tuple[tuple[int, ...], str]], build: Callable) -> object:
    """A one-function module of parameters ``name: (shape, dtype)``; ``build(bb, *params)``
    emits the bindings and returns the result expression."""
    bb = relax.BlockBuilder()
    args = [relax.Var(name, _tensor(shape, dtype)) for name, (shape, dtype) in params.items()]
    with bb.function("main", args):
        with bb.dataflow():
            out = bb.emit_output(build(bb, *args))
        bb.emit_func_output(out)
    return bb.get()


def _f32(*shape: int) -> tuple[tuple[int, ...], str]:
    return shape, "float32"


def _assert_close(ours: list[np.ndarray], ref: list[np.ndarray], rtol: float = RTOL,
                  atol: float = ATOL) -> None:
    assert len(ours) == len(ref)
    for i, (a, b) in enumerate(zip(ours, ref)):
        a = np.asarray(a)
        assert a.shape == b.shape, f"result {i}: {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"result {i}: {a.dtype} vs {b.dtype}"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"result {i}")


@pytest.fixture(scope="module")
def session():
    from acf.runtime import Session

    return Session("acf-small")


# --- nll_loss with an ignore_index naming a class ---------------------------------------
def _nll_module(reduction: str, ignore_index: int):
    def build(bb, x, t):
        logp = bb.emit(op.nn.log_softmax(x))
        return op.nn.nll_loss(logp, t, reduction=reduction, ignore_index=ignore_index)

    return _module({"x": _f32(4, 5), "t": ((4,), "int64")}, build)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("ignore_index", [1, -100, 7])
def test_nll_loss_leaves_out_the_ignored_class_as_tvm_does(reduction, ignore_index,
                                                            session) -> None:
    """The mean divides by the rows kept (2.3727, not 1.8585: the ignored rows were
    counted); an index outside the classes ignores nothing."""
    mod = _nll_module(reduction, ignore_index)
    args = [np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32),
            np.array([1, 1, 2, 3], np.int64)]
    ref = run_relax(mod, args)
    module = from_relax(mod)
    _assert_close(run_func(module.funcs[0], args), ref)
    session.load(module, name=f"nll_{reduction}_{ignore_index % 100}")
    _assert_close(session.run_step(args).values, ref)


def test_nll_loss_of_only_ignored_rows_is_nan_as_in_tvm() -> None:
    mod = _nll_module("mean", 2)
    args = [np.zeros((4, 5), np.float32), np.full(4, 2, np.int64)]
    assert np.isnan(run_relax(mod, args)[0])
    assert np.isnan(run_func(from_relax(mod).funcs[0], args)[0])


if HAS_TVM:
    import torch
    from torch import nn
    from tvm.relax.frontend.torch import from_exported_program
    from tvm.relax.training.loss import (
        CategoricalCrossEntropyLoss,
        CrossEntropyLoss,
        L1Loss,
        MSELoss,
    )


def _linear_module(seed: int = 0):
    torch.manual_seed(seed)
    x = np.random.default_rng(seed).standard_normal((4, 8)).astype(np.float32)
    mod = from_exported_program(torch.export.export(nn.Linear(8, 3), (torch.from_numpy(x),)),
                                keep_params_as_input=True)
    return mod, [x, *relax_params(mod)]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_training_step_with_an_ignored_class_matches_tvm(reduction, session) -> None:
    """Relax's ``nll_loss_backward`` gives the ignored rows no gradient (the weight's
    gradient was off by 0.41)."""
    mod, args = _linear_module()
    args = [*args, np.array([1, 1, 0, 2], np.int64)]
    loss = CrossEntropyLoss(reduction=reduction, ignore_index=1)
    grad_mod, adjoint = relax_gradient_module(mod, loss=loss)
    ref = run_relax(grad_mod, args, adjoint)
    step = relax_training_step(mod, loss=CrossEntropyLoss(reduction=reduction, ignore_index=1))
    _assert_close(run_func(step.funcs[0], args), ref)
    session.load(step, name=f"ignored_class_step_{reduction}")
    _assert_close(session.run_step(args).values, ref, rtol=1e-4, atol=1e-6)


# --- regression and categorical losses get the targets they take --------------------------
@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_training_step_with_a_regression_loss_matches_tvm(loss, session) -> None:
    """Targets were always int64 labels: MSELoss and L1Loss raised TVM's TypeError
    (subtract of float32 predictions and int64 targets); they take float targets shaped
    like the predictions."""
    mod, args = _linear_module(1)
    targets = np.random.default_rng(1).standard_normal((4, 3)).astype(np.float32)
    make = MSELoss if loss == "mse" else L1Loss
    grad_mod, adjoint = relax_gradient_module(mod, loss=make())
    ref = run_relax(grad_mod, [*args, targets], adjoint)
    step = relax_training_step(mod, loss=make())
    assert step.funcs[0].arguments[-1].type.shape == (4, 3)
    assert step.funcs[0].arguments[-1].type.element == "f32"
    _assert_close(run_func(step.funcs[0], [*args, targets]), ref)
    session.load(step, name=f"regression_step_{loss}")
    _assert_close(session.run_step([*args, targets]).values, ref, rtol=1e-4, atol=1e-6)


def test_categorical_cross_entropy_gets_one_hot_integer_targets() -> None:
    """Its targets are int64 rows shaped like the predictions (TVM computes the loss); the
    conversion refuses their cast to float32, naming it."""
    mod, args = _linear_module(2)
    targets = np.eye(3, dtype=np.int64)[[0, 2, 1, 2]]
    grad_mod, adjoint = relax_gradient_module(mod, loss=CategoricalCrossEntropyLoss())
    loss, *grads = run_relax(grad_mod, [*args, targets], adjoint)
    assert np.isfinite(loss) and len(grads) == 2
    with pytest.raises(UnsupportedRelaxOpError, match=r"'relax.astype' \(binding '\w+'\): "
                                                      r"cast tensor<4x3xi64> to tensor<4x3xf32>"):
        relax_training_step(mod, loss=CategoricalCrossEntropyLoss())


# --- where with a zero branch and an infinite other branch -------------------------------
@pytest.mark.parametrize("kind", ["less", "greater_equal"])
def test_where_zero_branch_is_exact_where_the_other_is_infinite(kind, session) -> None:
    """``where(x < 0, 0, log(x))`` at x = -1 is 0 (TVM): the select was
    ``b - relu_backward(b, -x)``, NaN - NaN = NaN there (and inf - inf for log(0))."""
    def build(bb, x):
        cond = bb.emit(getattr(op, kind)(x, relax.const(np.float32(0))))
        log = bb.emit(op.log(x))
        zero = relax.const(np.float32(0))
        return op.where(cond, zero, log) if kind == "less" else op.where(cond, log, zero)

    mod = _module({"x": _f32(6)}, build)
    x = np.array([-1.0, 0.0, -0.0, 1.0, 2.0, np.inf], np.float32)
    ref = run_relax(mod, [x])
    module = from_relax(mod)
    assert not np.isnan(ref[0][0])
    np.testing.assert_array_equal(run_func(module.funcs[0], [x])[0], ref[0])
    session.load(module, name=f"where_zero_{kind}")
    np.testing.assert_array_equal(session.run_step([x]).values[0], ref[0])


# --- reductions over an empty axis list ----------------------------------------------------
@pytest.mark.parametrize("kind", ["sum", "mean", "max", "min"])
def test_reduction_over_no_axes_is_the_identity(kind, session) -> None:
    """``axis=[]`` reduces nothing in Relax (it was read as every axis: "internal error:
    converted to tensor<f32>"); no axis at all still reduces every axis."""
    mod = _module({"x": _f32(2, 3)}, lambda bb, x: relax.Tuple([
        bb.emit(op.multiply(bb.emit(getattr(op, kind)(x, axis=[])), x)),
        bb.emit(getattr(op, kind)(x))]))
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    ref = run_relax(mod, [x])
    assert ref[0].shape == (2, 3) and ref[1].shape == ()
    module = from_relax(mod)
    _assert_close(run_func(module.funcs[0], [x]), ref)
    session.load(module, name=f"no_axes_{kind}")
    _assert_close(session.run_step([x]).values, ref, rtol=1e-5, atol=1e-6)


# --- power: its gradient, and pow's zero signs ---------------------------------------------
@pytest.mark.parametrize("p", [2.0, 3.0, 0.5, -1.0])
def test_power_gradient_matches_tvm(p) -> None:
    """Relax's gradient of ``x ** p`` is ``p * x ** subtract(p, 1.0)``: the exponent is a
    binding of constants, folded so ``power`` sees a constant (always refused before)."""
    mod = _module({"x": _f32(4, 3)}, lambda bb, x: op.sum(
        bb.emit(op.power(x, relax.const(np.float32(p))))))
    mod = relax.transform.Gradient("main")(mod)
    x = np.abs(np.random.default_rng(3).standard_normal((4, 3))).astype(np.float32) + 0.25
    ref = run_relax(mod, [x], "main_adjoint")
    _assert_close(run_func(from_relax(mod, "main_adjoint").funcs[0], [x]), ref, rtol=1e-5)


def test_constant_arithmetic_folds_to_a_constant() -> None:
    mod = _module({"x": _f32(3)}, lambda bb, x: op.multiply(x, bb.emit(op.subtract(
        relax.const(np.float32(3)), relax.const(np.float32(1))))))
    names = [o.name for o in from_relax(mod).funcs[0].body.ops]
    assert "graph.sub" not in names
    x = np.array([1.0, -2.0, 0.5], np.float32)
    np.testing.assert_array_equal(run_func(from_relax(mod).funcs[0], [x])[0],
                                  run_relax(mod, [x])[0])


@pytest.mark.parametrize("p", [0.5, -0.5, -1.0, -2.0, 3.0])
def test_power_at_signed_zeros_is_ieee_pow(p, session) -> None:
    """pow(-0, -0.5) is +inf (rsqrt(-0) is -inf) and pow(-0, 0.5) is +0 (sqrt(-0) is -0)."""
    mod = _module({"x": _f32(6)}, lambda bb, x: op.power(x, relax.const(np.float32(p))))
    x = np.array([-0.0, 0.0, -1.0, np.inf, 4.0, 0.25], np.float32)
    ref = run_relax(mod, [x])[0]
    module = from_relax(mod)
    session.load(module, name=f"pow_zero_{p}")
    for ours in (run_func(module.funcs[0], [x])[0], session.run_step([x]).values[0]):
        np.testing.assert_allclose(ours, ref, rtol=1e-6)
        zeros_and_infs = (ref == 0) | np.isinf(ref)
        np.testing.assert_array_equal(np.signbit(ours)[zeros_and_infs],
                                      np.signbit(ref)[zeros_and_infs])


# --- crops of a weight-gradient convolution ------------------------------------------------
@pytest.mark.parametrize("begin,end", [([0, 0], [2, 2]), ([1, 0], [3, 3]), ([0, 0], [3, 3])])
def test_crop_of_a_weight_gradient_convolution_matches_tvm(begin, end, session) -> None:
    """A crop that is not Relax's own stride crop was re-emitted as a smaller weight
    gradient, whose output gradient has another shape: a ShapeError traceback."""
    def build(bb, x, g):
        wg = bb.emit(op.nn.conv2d(x, g, data_layout="CNHW", kernel_layout="IOHW",
                                  out_layout="CNHW"))
        return op.strided_slice(wg, [2, 3], begin, end)

    mod = _module({"x": _f32(2, 3, 5, 5), "g": _f32(2, 4, 3, 3)}, build)
    rng = np.random.default_rng(4)
    args = [rng.standard_normal((2, 3, 5, 5)).astype(np.float32),
            rng.standard_normal((2, 4, 3, 3)).astype(np.float32)]
    ref = run_relax(mod, args)
    module = from_relax(mod)
    _assert_close(run_func(module.funcs[0], args), ref, rtol=1e-5, atol=1e-5)
    session.load(module, name=f"wgrad_crop_{begin[0]}_{end[0]}")
    _assert_close(session.run_step(args).values, ref, rtol=1e-4, atol=1e-5)


# --- maximum and minimum broadcasting on the emulator --------------------------------------
@pytest.mark.parametrize("kind", ["maximum", "minimum"])
@pytest.mark.parametrize("other", [(2, 1, 4), (3, 1), (1, 3, 1)])
def test_maximum_and_minimum_broadcast_on_the_emulator(kind, other, session) -> None:
    """The emulator's elementwise kernels broadcast rows and columns only: an operand such
    as [2, 1, 4] against [2, 3, 4] was a CodegenError ("broadcast ... not supported")."""
    mod = _module({"x": _f32(2, 3, 4), "y": _f32(*other)},
                  lambda bb, x, y: getattr(op, kind)(x, y))
    rng = np.random.default_rng(5)
    args = [rng.standard_normal((2, 3, 4)).astype(np.float32),
            rng.standard_normal(other).astype(np.float32)]
    ref = run_relax(mod, args)
    session.load(from_relax(mod), name=f"{kind}_{'x'.join(map(str, other))}")
    _assert_close(session.run_step(args).values, ref)


# --- integer results -------------------------------------------------------------------------
def test_integer_results_come_back_as_int64_from_the_emulator(session) -> None:
    """TVM returns int64; the emulator's results came back as float32."""
    mod = _module({"x": _f32(2, 3), "t": ((2, 3), "int64")}, lambda bb, x, t: relax.Tuple([
        bb.emit(op.multiply(x, x)), bb.emit(op.add(t, t)), bb.emit(op.sum(t, axis=[1]))]))
    args = [np.ones((2, 3), np.float32), np.array([[1, -2, 3], [4, 5, -6]], np.int64)]
    ref = run_relax(mod, args)
    session.load(from_relax(mod), name="integer_results")
    _assert_close(session.run_step(args).values, ref)


# --- refusals name the Relax op and the binding --------------------------------------------
def _refusal(mod) -> UnsupportedRelaxOpError:
    with pytest.raises(UnsupportedRelaxOpError) as err:
        from_relax(mod)
    return err.value


@pytest.mark.parametrize("name,build,shapes,what", [
    ("relax.matmul", lambda bb, a, b: op.matmul(a, b), [(2, 3), (3, 4)],
     "operand #0 of 'graph.matmul' must have f32 elements"),
    ("relax.nn.conv2d", lambda bb, a, b: op.nn.conv2d(a, b), [(1, 2, 5, 5), (3, 2, 3, 3)],
     "must have f32 elements"),
    ("relax.nn.max_pool2d", lambda bb, a, b: op.add(bb.emit(op.nn.max_pool2d(a, 2)), b),
     [(1, 2, 4, 4), (1, 2, 3, 3)], "must have f32 elements"),
    ("relax.nn.avg_pool2d", lambda bb, a, b: op.add(bb.emit(op.nn.avg_pool2d(a, 2)), b),
     [(1, 2, 4, 4), (1, 2, 3, 3)], "must have f32 elements"),
])
def test_an_integer_form_the_dialect_rejects_names_op_and_binding(name, build, shapes,
                                                                   what) -> None:
    """A raw VerifyError from the graph dialect, naming neither, before."""
    params = {"a": (shapes[0], "int64"), "b": (shapes[1], "int64")}
    err = _refusal(_module(params, build))
    assert err.op == name and err.binding is not None
    assert str(err).startswith(f"unsupported Relax op '{name}' (binding '{err.binding}'): "
                               "no graph-dialect lowering of this form (")
    assert what in str(err)


def test_a_result_type_the_fabric_lacks_names_op_and_binding() -> None:
    """It said ``unsupported Relax op '?'``, no binding."""
    mod = _module({"x": _f32(2, 3)}, lambda bb, x: op.astype(
        bb.emit(op.exp(bb.emit(op.astype(x, "float16"), name_hint="h"))), "float32"))
    err = _refusal(mod)
    assert str(err) == ("unsupported Relax op 'relax.astype' (binding 'h'): the result has "
                        "element type float16 (the fabric model has f32, i64, i1)")


def test_a_parameter_type_the_fabric_lacks_names_the_parameter() -> None:
    err = _refusal(_module({"x": ((2, 3), "float16")}, lambda bb, x: op.exp(x)))
    assert str(err) == ("unsupported Relax op 'relax.Function' (binding 'x'): parameter 'x' "
                        "has element type float16 (the fabric model has f32, i64, i1)")


def test_control_flow_and_shape_bindings_name_their_expression() -> None:
    bb = relax.BlockBuilder()
    x = relax.Var("x", _tensor((2, 3)))
    c = relax.Var("c", _tensor((), "bool"))
    with bb.function("main", [x, c]):
        v = bb.emit(relax.If(c, bb.normalize(op.exp(x)), bb.normalize(op.log(x))))
        bb.emit_func_output(v)
    err = _refusal(bb.get())
    assert err.op == "relax.If" and err.binding is not None
    assert "If expression has no graph-dialect lowering" in str(err)

    bb = relax.BlockBuilder()
    x = relax.Var("x", _tensor((2, 3)))
    with bb.function("main", [x]):
        s = bb.emit(relax.ShapeExpr([3, 2]), name_hint="s")
        bb.emit_func_output(bb.emit(op.reshape(x, s)))
    err = _refusal(bb.get())
    assert (err.op, err.binding) == ("relax.ShapeExpr", "s")


# --- run_relax --------------------------------------------------------------------------------
def test_run_relax_keeps_a_0d_argument_0d() -> None:
    """np.ascontiguousarray made it 1-d: TVM refused it (expect ndim 0, got 1)."""
    mod = _module({"x": _f32()}, lambda bb, x: op.exp(x))
    out = run_relax(mod, [np.array(1.0, np.float32)])
    assert out[0].shape == ()
    np.testing.assert_allclose(out[0], np.exp(np.float32(1.0)), rtol=1e-6)
