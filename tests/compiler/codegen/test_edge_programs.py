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


def _tensor(shape: tuple[int, ...], fmt: str = "dense") -> str:
    from acf.compiler.sparse_encoding import format_to_encoding

    enc = format_to_encoding(fmt)
    return f"tensor<{'x'.join(map(str, shape))}xf32{'' if enc is None else ', ' + str(enc)}>"


_BROADCASTS = {"col": ((3, 1), (3, 5)), "scalar": ((1, 1), (4, 4)), "scalar-to-col": ((1, 1), (3, 1)),
               "wide-row": ((1, 300), (3, 300)), "channel": ((1, 4, 1, 1), (2, 4, 3, 3))}
#: every format with every broadcast, but block-CSR only on 2-D tensors (its blocks are 2-D)
_PACKED_BROADCASTS = [pytest.param(fmt, small, shape, id=f"{fmt}-{name}")
                      for fmt in ("csr", "csc", "coo", "bitmap", "bcsr4x4")
                      for name, (small, shape) in _BROADCASTS.items()
                      if len(small) == 2 or fmt != "bcsr4x4"]


@pytest.mark.parametrize("fmt, small, shape", _PACKED_BROADCASTS)
@pytest.mark.parametrize("op, sparse_first", [("add", False), ("sub", True), ("div", True),
                                              ("maximum", False)])
def test_a_packed_operand_broadcast_is_decoded(fmt: str, small, shape, op: str,
                                               sparse_first: bool) -> None:
    """A sparse operand broadcast as a column, a channel vector or one element was read as
    if dense ([3, 1] csr + [3, 5] gave 9.4e-38 for 1); a wide row was an internal error.
    The kernel decodes it to dense scratch first."""
    sparse_t, dense_t, out_t = _tensor(small, fmt), _tensor(shape), _tensor(shape)
    a_t, b_t = (sparse_t, dense_t) if sparse_first else (dense_t, sparse_t)
    text = f"""graph.func @f(%a: {a_t}, %b: {b_t}) -> ({out_t}) {{
  %y = graph.{op} %a, %b : {a_t}, {b_t} -> {out_t}
  graph.return %y : {out_t}
}}
"""
    rng = np.random.default_rng(6)
    small_v = rng.uniform(0.5, 2, small).astype(np.float32)
    small_v.flat[-1] = 0 if op != "div" else small_v.flat[-1]  # a stored zero where allowed
    big_v = rng.standard_normal(shape).astype(np.float32)
    args = [small_v, big_v] if sparse_first else [big_v, small_v]
    got, want, _ = run_both(text, args)
    np.testing.assert_allclose(got[0].reshape(want[0].shape), want[0], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mask_fmt", ["dense", "csr", "bitmap"])
@pytest.mark.parametrize("ws, groups", [((4, 2, 1, 1), 2), ((6, 2, 3, 3), 3), ((2, 1, 3, 3), 2)],
                         ids=["two-groups", "three-groups-3x3", "depthwise"])
def test_grouped_masked_weight_gradient(mask_fmt: str, ws, groups: int) -> None:
    """split-groups took the weight gradient's two operands only (too many values to
    unpack with a mask of more than one input channel per group); a depthwise one with a
    csr mask was an unlocated internal error at the rank-4 packed mask."""
    o, cg, kh, kw = ws
    xs, gs = (1, cg * groups, 4, 4), (1, o, 4, 4)
    m_t, w_t = _tensor(ws, mask_fmt), _tensor(ws)
    text = f"""graph.func @f(%g: {_tensor(gs)}, %x: {_tensor(xs)}, %m: {m_t}) -> ({w_t}) {{
  %gw = graph.conv2d_backward_weight %g, %x, %m {{weight_shape = {list(ws)}, padding = [{kh // 2}, {kw // 2}], groups = {groups}}} : {_tensor(gs)}, {_tensor(xs)}, {m_t} -> {w_t}
  graph.return %gw : {w_t}
}}
"""
    rng = np.random.default_rng(7)
    g, x = rng.standard_normal(gs).astype(np.float32), rng.standard_normal(xs).astype(np.float32)
    mask = (rng.random(ws) < 0.5).astype(np.float32)
    got, want, _ = run_both(text, [g, x, mask])
    np.testing.assert_allclose(got[0].reshape(ws), want[0], rtol=1e-5, atol=1e-5)
    assert (want[0][mask == 0] == 0).all() and (want[0][mask != 0] != 0).all()


def test_grouped_conv_with_a_sparse_weight_is_refused_at_the_conv() -> None:
    """The refusal came from a 'graph.slice' the rewrite made, at '<unknown>'."""
    text = f"""graph.func @f(%x: tensor<1x4x3x3xf32>, %w: tensor<4x2x1x1xf32, {CSR}>) -> (tensor<1x4x3x3xf32>) {{
  %y = graph.conv2d %x, %w {{groups = 2}} : tensor<1x4x3x3xf32>, tensor<4x2x1x1xf32, {CSR}> -> tensor<1x4x3x3xf32>
  graph.return %y : tensor<1x4x3x3xf32>
}}
"""
    assert refused(text).splitlines()[0] == (
        "e.acfir:2:8: error: 'graph.conv2d': grouped convolutions need dense-stored operands, "
        "as ungrouped ones do (each group convolves a slice of them): '%w' is stored csr")


def test_an_op_inserted_by_a_rewrite_is_located_at_the_op_it_replaces() -> None:
    """broadcast_to of a csr column (both operands broadcast) was refused at '<unknown>'."""
    text = f"""graph.func @f(%a: tensor<3x1xf32, {CSR}>, %b: tensor<1x5xf32>) -> (tensor<3x5xf32>) {{
  %y = graph.sub %a, %b : tensor<3x1xf32, {CSR}>, tensor<1x5xf32> -> tensor<3x5xf32>
  graph.return %y : tensor<3x5xf32>
}}
"""
    assert refused(text).startswith("e.acfir:2:8: error: 'graph.broadcast_to': ")


@pytest.mark.parametrize("op, fa, fb, fo", [("mask_apply", "dense", "csr", "dense"),
                                            ("mask_apply", "bitmap", "dense", "dense"),
                                            ("add", "dense", "dense", "csr"),
                                            ("mul", "csr", "dense", "csr")])
def test_rank4_elementwise_with_packed_tensors(op: str, fa: str, fb: str, fo: str) -> None:
    """Packed tiles of a rank-4 tensor cover dim 0 x the others; the dense operands were
    read in their own view (leading dims x last): wrong values, or an internal error."""
    shape = (2, 3, 3, 3)
    ta, tb, to = _tensor(shape, fa), _tensor(shape, fb), _tensor(shape, fo)
    text = f"""graph.func @f(%a: {ta}, %b: {tb}) -> ({to}) {{
  %y = graph.{op} %a, %b : {ta}, {tb} -> {to}
  graph.return %y : {to}
}}
"""
    rng = np.random.default_rng(8)
    a, b = (rng.standard_normal(shape) * (rng.random(shape) < 0.5) for _ in range(2))
    got, want, _ = run_both(text, [a.astype(np.float32), b.astype(np.float32)])
    np.testing.assert_allclose(got[0].reshape(shape), want[0], rtol=1e-6)


def test_a_row_broadcast_onto_a_rank4_packed_tensor_is_refused() -> None:
    t4 = _tensor((2, 4, 3, 3), "csr")
    text = f"""graph.func @f(%a: {t4}, %b: tensor<3xf32>) -> (tensor<2x4x3x3xf32>) {{
  %y = graph.add %a, %b : {t4}, tensor<3xf32> -> tensor<2x4x3x3xf32>
  graph.return %y : tensor<2x4x3x3xf32>
}}
"""
    assert refused(text).splitlines()[0] == (
        "e.acfir:2:8: error: 'graph.add': a row broadcast onto a tensor of rank 4 stored sparse "
        "is not supported (its packed tiles are dim 0 x the other dims)")


def _nm_mask_program(fmt: str, cols: int) -> tuple[str, list[np.ndarray]]:
    n, m = (int(v) for v in fmt[2:].split(":"))
    t, tm = _tensor((4, cols)), _tensor((4, cols), fmt)
    text = f"""graph.func @f(%w: {t}, %m: {tm}) -> ({tm}) {{
  %y = graph.mask_apply %w, %m : {t}, {tm} -> {tm}
  graph.return %y : {tm}
}}
"""
    mask = np.zeros((4, cols), np.float32)
    for r in range(4):
        for g in range(cols // m):
            mask[r, g * m + (np.arange(n) + r) % m] = 1
    w = np.random.default_rng(9).standard_normal((4, cols)).astype(np.float32)
    return text, [w, mask]


@pytest.mark.parametrize("tile, side", [(3, "tile 3"), (6, "tile 6"),
                                        ((3, 5, 7), "tile 3x5x7 (packed side 3)")])
def test_a_forced_tile_that_splits_nm_groups_is_refused(tile, side: str) -> None:
    """Packing the N:M tensor in 3-wide tiles was a FormatError traceback."""
    text, _ = _nm_mask_program("nm2:4", 8)
    with pytest.raises(IRError) as info:
        compile_module(parse_module(text, "e.acfir"), load_target("acf-small"),
                       CompileOptions(tile=tile))
    assert str(info.value).splitlines()[0] == (
        f"e.acfir:2:8: error: 'graph.mask_apply': {side} splits the groups of 4 columns of "
        "'%m', stored N:M with M = 4 (a packed tile holds whole groups): use a tile side that "
        "is a multiple of 4, or at least 8")


@pytest.mark.parametrize("fmt, cols", [("nm2:8", 64), ("nm1:8", 120)])
def test_the_tilers_side_keeps_nm_groups_whole(fmt: str, cols: int) -> None:
    """acf-small's side 52 split groups of 8 (a FormatError traceback); the tiler now takes
    the largest multiple of the groups (48), and a tile of 8 is accepted when forced."""
    text, args = _nm_mask_program(fmt, cols)
    got, want, c = run_both(text, args)
    np.testing.assert_array_equal(got[0], want[0])
    assert c.tiling is not None and c.tiling.t == 48
    got, want, c = run_both(text, args, tile=8)
    np.testing.assert_array_equal(got[0], want[0])


def test_groups_wider_than_the_tilers_side_are_refused_naming_that_side() -> None:
    """nm1:64's groups are wider than acf-small's side of 52, so no multiple of them fits:
    the refusal names the tiler's side (no tile was forced, so there is none to name)."""
    text, _ = _nm_mask_program("nm1:64", 128)
    with pytest.raises(IRError) as info:
        compile_module(parse_module(text, "e.acfir"), load_target("acf-small"))
    assert str(info.value).splitlines()[0] == (
        "e.acfir:2:8: error: 'graph.mask_apply': the tiler's side 52 splits the groups of 64 "
        "columns of '%m', stored N:M with M = 64 (a packed tile holds whole groups): use a "
        "tile side that is a multiple of 64, or at least 128")


def test_integer_mean_is_refused() -> None:
    """The mean divides in fp32: the mean of [1, 2] gave 1.5 where the i64 result is 1."""
    text = """graph.func @f(%a: tensor<2x2xi64>) -> (tensor<2xi64>) {
  %y = graph.reduce_mean %a {axes = [1], keepdim = false} : tensor<2x2xi64> -> tensor<2xi64>
  graph.return %y : tensor<2xi64>
}
"""
    assert refused(text).splitlines()[0] == (
        "e.acfir:2:8: error: 'graph.reduce_mean': integer mean (tensor<2xi64>): the fabric "
        "computes in fp32, where it is true division; no ACF kernel divides integers")


def test_integer_sums_are_exact_below_two_to_the_24() -> None:
    """Integer add, sub, mul and sums compile (a batch-norm step counts its batches in an
    i64) and are exact while the values stay within fp32's 2^24; beyond, fp32 rounds them
    (the documented limit of _integer_arithmetic_refusal, not refused)."""
    text = """graph.func @f(%a: tensor<2x3xi64>, %b: tensor<2x3xi64>) -> (tensor<2x3xi64>, tensor<2xi64>) {
  %s = graph.sub %a, %b : tensor<2x3xi64>, tensor<2x3xi64> -> tensor<2x3xi64>
  %p = graph.mul %s, %b : tensor<2x3xi64>, tensor<2x3xi64> -> tensor<2x3xi64>
  %y = graph.add %p, %a : tensor<2x3xi64>, tensor<2x3xi64> -> tensor<2x3xi64>
  %r = graph.reduce_sum %y {axes = [1], keepdim = false} : tensor<2x3xi64> -> tensor<2xi64>
  graph.return %y, %r : tensor<2x3xi64>, tensor<2xi64>
}
"""
    a = np.array([[2**22 + 1, 7, -9], [0, 123, 4095]], np.int64)
    b = np.array([[1, 2, 3], [-4, 1, 2]], np.int64)
    got, want, _ = run_both(text, [a, b])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.asarray(g).reshape(w.shape), w)
