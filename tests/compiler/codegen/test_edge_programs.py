"""Programs at the edges of what the compiler takes: each either equals the interpreter on
the emulator or is refused at the op with a located error (none compiles to wrong results,
as each of these once did)."""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen import CompileOptions, compile_module
from acf.compiler.diagnostics import IRError
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.isa.target import load_target

CSR = "#sparse<{map = (i, j) -> (i : dense, j : compressed)}>"


def run_both(text: str, args: list[np.ndarray], target: str = "acf-small", **options):
    t = load_target(target)
    c = compile_module(parse_module(text), t, CompileOptions(**options))
    res = emulator.run(c.program, t, c.bind(args))
    got = [res.outputs[n] for n in c.outputs]
    want = run_func(parse_module(text).funcs[0], args)
    return got, want, c


def refused(text: str) -> str:
    with pytest.raises(IRError) as info:
        compile_module(parse_module(text, "e.acfir"), load_target("acf-small"))
    return str(info.value)


@pytest.mark.parametrize("name", ["result0", "const0", "hyper"])
def test_an_argument_named_like_the_programs_own_tensors_is_refused(name: str) -> None:
    """It used to share the symbol: %result0 + %b read the result buffer (error 0.64)."""
    text = (f"graph.func @f(%{name}: tensor<2x3xf32>, %b: tensor<2x3xf32>) -> (tensor<2x3xf32>) {{\n"
            f"  %y = graph.add %{name}, %b : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x3xf32>\n"
            "  graph.return %y : tensor<2x3xf32>\n}\n")
    assert f"e.acfir:1:1: error: 'graph.func': argument '%{name}' takes a name the program gives " \
           "its own tensors" in refused(text)


ADAM = """graph.func @f(%p: tensor<2x3xf32>, %g: tensor<2x3xf32>, %m: tensor<2x3xf32>, %v: tensor<2x3xf32>{extra}) -> (tensor<2x3xf32>) {{
  {step}
  %np, %nm, %nv = graph.adam_update %p, %g, %m, %v, %s {{lr = 0.1}} : tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>, tensor<f32> -> tensor<2x3xf32>, tensor<2x3xf32>, tensor<2x3xf32>
  graph.return %np : tensor<2x3xf32>
}}
"""


def test_adam_with_a_constant_step_corrects_for_that_step() -> None:
    """A constant step's bias corrections are the constant's (they were step 1's: error
    0.048 at step 5), in bind and in the binary's own data."""
    text = ADAM.format(extra="", step="%s = graph.constant {value = dense<5.0> : tensor<f32>} : () -> tensor<f32>")
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal((2, 3)).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal((2, 3))).astype(np.float32)
    got, want, c = run_both(text, [p, g, m, v])
    np.testing.assert_allclose(got[0].reshape(2, 3), want[0], rtol=1e-5, atol=1e-6)
    res = emulator.run(c.program, load_target("acf-small"), {"p": p, "g": g, "m": m, "v": v})
    np.testing.assert_allclose(res.outputs["result0"].reshape(2, 3), want[0], rtol=1e-5, atol=1e-6)


def test_adam_with_a_step_computed_on_the_fabric_is_refused() -> None:
    text = ADAM.format(extra=", %t: tensor<f32>",
                       step="%s = graph.add %t, %t : tensor<f32>, tensor<f32> -> tensor<f32>")
    assert "error: 'graph.adam_update': the step operand must be a function argument or a " \
           "constant" in refused(text)


def test_indices_passed_one_hot_cannot_be_read_as_values_too() -> None:
    """The runtime binds them one-hot: a reshape of them read one-hot data (error 3)."""
    text = """graph.func @f(%a: tensor<6xi64>) -> (tensor<6x4xf32>, tensor<2x3xi64>) {
  %y = graph.one_hot %a {classes = 4} : tensor<6xi64> -> tensor<6x4xf32>
  %z = graph.reshape %a {shape = [2, 3]} : tensor<6xi64> -> tensor<2x3xi64>
  graph.return %y, %z : tensor<6x4xf32>, tensor<2x3xi64>
}
"""
    assert ("e.acfir:3:8: error: 'graph.reshape': '%a' is passed one-hot (for its cross_entropy "
            "or one_hot use) and cannot also be read as values here") in refused(text)


def test_integer_division_is_refused() -> None:
    """The fabric divides in fp32: [5, 7, 9] / [2, 2, 4] gave [2.5 3.5 2.25], not [2 3 2]."""
    text = """graph.func @f(%a: tensor<3xi64>, %b: tensor<3xi64>) -> (tensor<3xi64>) {
  %y = graph.div %a, %b : tensor<3xi64>, tensor<3xi64> -> tensor<3xi64>
  graph.return %y : tensor<3xi64>
}
"""
    assert "e.acfir:2:8: error: 'graph.div': integer division (tensor<3xi64>)" in refused(text)


def test_grouped_weight_gradient_with_a_mask() -> None:
    """split-groups used to fail unpacking the mask operand."""
    text = """graph.func @f(%g: tensor<1x2x3x3xf32>, %x: tensor<1x2x3x3xf32>, %m: tensor<2x1x1x1xf32>) -> (tensor<2x1x1x1xf32>) {
  %gw = graph.conv2d_backward_weight %g, %x, %m {weight_shape = [2, 1, 1, 1], groups = 2} : tensor<1x2x3x3xf32>, tensor<1x2x3x3xf32>, tensor<2x1x1x1xf32> -> tensor<2x1x1x1xf32>
  graph.return %gw : tensor<2x1x1x1xf32>
}
"""
    rng = np.random.default_rng(1)
    g, x = (rng.standard_normal((1, 2, 3, 3)).astype(np.float32) for _ in range(2))
    mask = np.array([1, 0], np.float32).reshape(2, 1, 1, 1)
    got, want, _ = run_both(text, [g, x, mask])
    np.testing.assert_allclose(got[0].reshape(want[0].shape), want[0], rtol=1e-5, atol=1e-6)
    assert want[0][1].item() == 0 and want[0][0].item() != 0


@pytest.mark.parametrize("op", ["add", "mul", "maximum", "mask_apply"])
def test_elementwise_with_a_packed_second_operand(op: str) -> None:
    """The tiles follow the packed operand's grid (a dense first operand set them: an
    internal error at the packed load)."""
    text = f"""graph.func @f(%w: tensor<60x70xf32>, %m: tensor<60x70xf32, {CSR}>) -> (tensor<60x70xf32>) {{
  %y = graph.{op} %w, %m : tensor<60x70xf32>, tensor<60x70xf32, {CSR}> -> tensor<60x70xf32>
  graph.return %y : tensor<60x70xf32>
}}
"""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((60, 70)).astype(np.float32)
    m = (rng.standard_normal((60, 70)) * (rng.random((60, 70)) < 0.3)).astype(np.float32)
    got, want, _ = run_both(text, [w, m])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("target", ["acf-small", "acf-base"])
def test_adam_keeping_a_sparse_pattern_fits_with_the_tilers_side(target: str) -> None:
    """Nine packed tiles did not fit the scratchpad at the tiler's side on any target; the
    side now shrinks until they do."""
    text = f"""graph.func @f(%p: tensor<2x4xf32, {CSR}>, %g: tensor<2x4xf32>, %m: tensor<2x4xf32>, %v: tensor<2x4xf32>, %s: tensor<f32>) -> (tensor<2x4xf32, {CSR}>) {{
  %np, %nm, %nv = graph.adam_update %p, %g, %m, %v, %s {{lr = 0.1}} : tensor<2x4xf32, {CSR}>, tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>, tensor<f32> -> tensor<2x4xf32, {CSR}>, tensor<2x4xf32>, tensor<2x4xf32>
  graph.return %np : tensor<2x4xf32, {CSR}>
}}
"""
    rng = np.random.default_rng(3)
    p = (rng.standard_normal((2, 4)) * (rng.random((2, 4)) < 0.5)).astype(np.float32)
    g, m = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    v = np.abs(rng.standard_normal((2, 4))).astype(np.float32)
    got, want, _ = run_both(text, [p, g, m, v, np.float32(2.0)], target)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert (got[0][p == 0] == 0).all()


@pytest.mark.parametrize("op", ["mul", "sub", "div", "maximum"])
def test_both_operands_broadcast(op: str) -> None:
    """[3, 1] op [1, 5]: the first operand is broadcast to the result first (the kernels
    stream one operand and broadcast the other; this was refused)."""
    text = f"""graph.func @f(%a: tensor<3x1xf32>, %b: tensor<1x5xf32>) -> (tensor<3x5xf32>) {{
  %y = graph.{op} %a, %b : tensor<3x1xf32>, tensor<1x5xf32> -> tensor<3x5xf32>
  graph.return %y : tensor<3x5xf32>
}}
"""
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 1)).astype(np.float32), rng.uniform(0.5, 2, (1, 5)).astype(np.float32)
    got, want, _ = run_both(text, [a, b])
    np.testing.assert_allclose(got[0].reshape(3, 5), want[0], rtol=1e-6)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1])
def test_softmax_over_an_axis_other_than_the_last(op: str, axis: int) -> None:
    """Transposed so the axis comes last, then back (the kernels reduce rows; this was
    refused), forward and backward."""
    text = f"""graph.func @f(%x: tensor<2x5x3xf32>, %g: tensor<2x5x3xf32>) -> (tensor<2x5x3xf32>, tensor<2x5x3xf32>) {{
  %y = graph.{op} %x {{axis = {axis}}} : tensor<2x5x3xf32> -> tensor<2x5x3xf32>
  %gx = graph.{op}_backward %g, %y {{axis = {axis}}} : tensor<2x5x3xf32>, tensor<2x5x3xf32> -> tensor<2x5x3xf32>
  graph.return %y, %gx : tensor<2x5x3xf32>, tensor<2x5x3xf32>
}}
"""
    rng = np.random.default_rng(5)
    x, g = (rng.standard_normal((2, 5, 3)).astype(np.float32) for _ in range(2))
    got, want, _ = run_both(text, [x, g])
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.reshape(b.shape), b, rtol=1e-5, atol=1e-6)
