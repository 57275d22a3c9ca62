"""Codegen: graph IR -> ACF program, checked against the numpy interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen import CodegenError, compile_module
from acf.compiler.parser import parse_module
from acf.isa.asm import assemble
from acf.isa.disasm import disassemble
from acf.isa.target import load_target

from .helpers import (
    CSR,
    check_close,
    check_tokens,
    compile_text,
    expected,
    run_reference,
    sparse_weight,
)

MLP = CSR + """
graph.func @train_step(%x: tensor<8x64xf32>, %w: tensor<40x64xf32, #csr>, %mask: tensor<40x64xf32, #csr>, %gy: tensor<8x40xf32>, %buf: tensor<40x64xf32>) -> (tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32>, tensor<40x64xf32, #csr>, tensor<40x64xf32>) {
  %h = graph.linear %x, %w : tensor<8x64xf32>, tensor<40x64xf32, #csr> -> tensor<8x40xf32> loc("mlp.py":10:5 layer "fc1")
  %y = graph.relu %h : tensor<8x40xf32> -> tensor<8x40xf32> loc("mlp.py":11:5 layer "act1")
  %gh = graph.relu_backward %gy, %h : tensor<8x40xf32>, tensor<8x40xf32> -> tensor<8x40xf32>
  %gx = graph.matmul %gh, %w : tensor<8x40xf32>, tensor<40x64xf32, #csr> -> tensor<8x64xf32>
  %gw = graph.sddmm %gh, %x, %mask {transpose_a = true} : tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32, #csr> -> tensor<40x64xf32> loc("mlp.py":12:1 layer "fc1.wgrad")
  %nw, %nb = graph.sgd_update %w, %gw, %buf {lr = 0.1, momentum = 0.9, weight_decay = 0.01} : tensor<40x64xf32, #csr>, tensor<40x64xf32>, tensor<40x64xf32> -> tensor<40x64xf32, #csr>, tensor<40x64xf32>
  graph.return %y, %gx, %gw, %nw, %nb : tensor<8x40xf32>, tensor<8x64xf32>, tensor<40x64xf32>, tensor<40x64xf32, #csr>, tensor<40x64xf32>
}
"""


def mlp_args(density: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    w, mask = sparse_weight(rng, (40, 64), density)
    x = np.maximum(rng.standard_normal((8, 64)), 0).astype(np.float32)
    gy = rng.standard_normal((8, 40)).astype(np.float32)
    buf = (rng.standard_normal((40, 64)) * mask).astype(np.float32)
    return [x, w, mask, gy, buf]


@pytest.mark.parametrize("density", [1.0, 0.5, 0.1])
@pytest.mark.parametrize("tile", [0, 16])
def test_mlp_layer_forward_backward_sgd(density: float, tile: int) -> None:
    c = compile_text(MLP, tile=tile)
    args = mlp_args(density)
    for got, want in zip(run_reference(c, args), expected(MLP, args)):
        check_close(got, want)
    check_tokens(c.program)
    text = disassemble(c.program)
    assert "sddmm c" in text and "csr" in text
    assert assemble(text).instructions == c.program.instructions


def test_symbols_debug_info_and_summary() -> None:
    c = compile_text(MLP)
    syms = c.program.symbols
    assert c.inputs == ["x", "w", "mask", "gy", "buf"]
    assert c.outputs == [f"result{i}" for i in range(5)]
    assert syms["w"].fmt == "csr" and syms["w"].tile == c.tiling.shape
    assert syms["result3"].fmt == "csr" and syms["x"].fmt == "dense"
    assert all(s.addr % 64 == 0 for s in syms.values())
    assert "hyper" in syms and c.hyper.slots[0].names[0] == "lr"
    assert len(c.program.debug) >= len(c.program) - 1  # all but the final halt
    layers = {loc.layer for loc in c.program.debug.values()}
    assert {"fc1", "act1", "fc1.wgrad"} <= layers
    wgrad = [i for i, loc in c.program.debug.items() if loc.layer == "fc1.wgrad"]
    assert any(c.program.instructions[i].mnemonic == "sddmm" for i in wgrad)
    by_op = {s.name: s for s in c.summary}
    assert by_op["graph.linear"].macs == 8 * 40 * 64
    assert by_op["graph.sddmm"].macs == 40 * 64 * 8
    assert all(s.instructions > 0 for s in c.summary)


SOFTMAX_CE = """
graph.func @loss(%z: tensor<12x10xf32>, %labels: tensor<12xi64>, %g: tensor<12x10xf32>) -> (tensor<12x10xf32>, tensor<12x10xf32>, tensor<f32>, tensor<12x10xf32>, tensor<12x10xf32>, tensor<12x10xf32>) {
  %s = graph.softmax %z : tensor<12x10xf32> -> tensor<12x10xf32>
  %ls = graph.log_softmax %z : tensor<12x10xf32> -> tensor<12x10xf32>
  %loss = graph.cross_entropy %z, %labels : tensor<12x10xf32>, tensor<12xi64> -> tensor<f32>
  %gz = graph.cross_entropy_backward %loss, %z, %labels : tensor<f32>, tensor<12x10xf32>, tensor<12xi64> -> tensor<12x10xf32>
  %gs = graph.softmax_backward %g, %s : tensor<12x10xf32>, tensor<12x10xf32> -> tensor<12x10xf32>
  %gl = graph.log_softmax_backward %g, %ls : tensor<12x10xf32>, tensor<12x10xf32> -> tensor<12x10xf32>
  graph.return %s, %ls, %loss, %gz, %gs, %gl : tensor<12x10xf32>, tensor<12x10xf32>, tensor<f32>, tensor<12x10xf32>, tensor<12x10xf32>, tensor<12x10xf32>
}
"""


def test_softmax_cross_entropy() -> None:
    rng = np.random.default_rng(1)
    args = [rng.standard_normal((12, 10)).astype(np.float32) * 3,
            rng.integers(0, 10, 12), rng.standard_normal((12, 10)).astype(np.float32)]
    c = compile_text(SOFTMAX_CE)
    assert c.onehot == {"labels": 10}
    assert c.program.symbols["labels"].shape == (12, 10)
    for got, want in zip(run_reference(c, args), expected(SOFTMAX_CE, args)):
        check_close(got, want)
    check_tokens(c.program)


REDUCE = """
graph.func @red(%x: tensor<6x5x70xf32>) -> (tensor<6x5xf32>, tensor<5x70xf32>, tensor<f32>, tensor<6x5x1xf32>) {
  %a = graph.reduce_sum %x {axes = [2]} : tensor<6x5x70xf32> -> tensor<6x5xf32>
  %b = graph.reduce_max %x {axes = [0]} : tensor<6x5x70xf32> -> tensor<5x70xf32>
  %c = graph.reduce_mean %x : tensor<6x5x70xf32> -> tensor<f32>
  %d = graph.reduce_mean %x {axes = [-1], keepdim = true} : tensor<6x5x70xf32> -> tensor<6x5x1xf32>
  graph.return %a, %b, %c, %d : tensor<6x5xf32>, tensor<5x70xf32>, tensor<f32>, tensor<6x5x1xf32>
}
"""


@pytest.mark.parametrize("tile", [0, 8])
def test_reductions(tile: int) -> None:
    x = np.random.default_rng(2).standard_normal((6, 5, 70)).astype(np.float32)
    c = compile_text(REDUCE, tile=tile)
    for got, want in zip(run_reference(c, [x]), expected(REDUCE, [x])):
        check_close(got, want)
    check_tokens(c.program)


ELEMENTWISE = """
graph.func @ew(%a: tensor<9x70xf32>, %row: tensor<70xf32>, %col: tensor<9x1xf32>, %s: tensor<f32>) -> (tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>) {
  %0 = graph.add %a, %row : tensor<9x70xf32>, tensor<70xf32> -> tensor<9x70xf32>
  %1 = graph.sub %col, %a : tensor<9x1xf32>, tensor<9x70xf32> -> tensor<9x70xf32>
  %2 = graph.div %a, %s : tensor<9x70xf32>, tensor<f32> -> tensor<9x70xf32>
  %3 = graph.mul %row, %a : tensor<70xf32>, tensor<9x70xf32> -> tensor<9x70xf32>
  %4 = graph.exp %a : tensor<9x70xf32> -> tensor<9x70xf32>
  %5 = graph.mask_apply %a, %4 : tensor<9x70xf32>, tensor<9x70xf32> -> tensor<9x70xf32>
  %6 = graph.div %row, %4 : tensor<70xf32>, tensor<9x70xf32> -> tensor<9x70xf32>
  %7 = graph.abs %a : tensor<9x70xf32> -> tensor<9x70xf32>
  %8 = graph.log %4 : tensor<9x70xf32> -> tensor<9x70xf32>
  graph.return %0, %1, %2, %3, %4, %5, %6, %7, %8 : tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>, tensor<9x70xf32>
}
"""


def test_elementwise_and_broadcast() -> None:
    rng = np.random.default_rng(3)
    args = [rng.standard_normal((9, 70)).astype(np.float32),
            rng.standard_normal(70).astype(np.float32),
            rng.standard_normal((9, 1)).astype(np.float32), np.float32(1.7)]
    c = compile_text(ELEMENTWISE, tile=8)
    for got, want in zip(run_reference(c, args), expected(ELEMENTWISE, args)):
        check_close(got, want)
    check_tokens(c.program)


def test_row_too_large_is_a_located_error() -> None:
    text = """graph.func @f(%x: tensor<2x20000xf32>) -> (tensor<2x20000xf32>) {
  %y = graph.softmax %x : tensor<2x20000xf32> -> tensor<2x20000xf32>
  graph.return %y : tensor<2x20000xf32>
}
"""
    with pytest.raises(CodegenError) as err:
        compile_text(text)
    msg = str(err.value)
    assert msg.startswith("test.acfir:2:8: error: 'graph.softmax': a row of 20000 f32"), msg
    assert "acf-small" in msg


def test_tile_that_cannot_fit_is_an_error() -> None:
    with pytest.raises(CodegenError, match="tile 128x128 needs"):
        compile_text(MLP, tile=128)


@pytest.mark.parametrize(("k", "pad", "dil", "stride"), [
    (1, (1, 1), 1, 1),   # a 1x1 kernel reaches no border at all
    (3, (3, 1), 1, 1),   # wider than the reach in H only
    (3, (4, 4), 1, 2),   # strided: the phase kernels
    (3, (3, 3), 1, 3),   # a stride that skips border rows
    (2, (2, 0), 1, 1),   # an even kernel
    (3, (5, 2), 2, 1),   # dilated: reach 4
])
def test_input_gradient_with_padding_past_the_kernel_equals_interpreter(k, pad, dil, stride) -> None:
    """Padding wider than ``dilation * (kernel - 1)`` is cropped after an input gradient over
    the input padded by the excess (passes.conv_padding); the values equal the interpreter's
    on the original op."""
    n, c, o, h, w = 2, 3, 5, 7, 6
    oh = (h + 2 * pad[0] - dil * (k - 1) - 1) // stride + 1
    ow = (w + 2 * pad[1] - dil * (k - 1) - 1) // stride + 1
    gt, wt, xt = (f"tensor<{n}x{o}x{oh}x{ow}xf32>", f"tensor<{o}x{c}x{k}x{k}xf32>",
                  f"tensor<{n}x{c}x{h}x{w}xf32>")
    text = (f"graph.func @f(%g: {gt}, %w: {wt}) -> ({xt}) {{\n"
            f"  %y = graph.conv2d_backward_input %g, %w {{input_shape = [{n}, {c}, {h}, {w}], "
            f"stride = [{stride}, {stride}], padding = [{pad[0]}, {pad[1]}], "
            f"dilation = [{dil}, {dil}]}} : {gt}, {wt} -> {xt}\n"
            f"  graph.return %y : {xt}\n}}\n")
    rng = np.random.default_rng(k * 100 + pad[0] * 10 + stride)
    args = [rng.standard_normal((n, o, oh, ow)).astype(np.float32),
            rng.standard_normal((o, c, k, k)).astype(np.float32)]
    module = parse_module(text, "test.acfir")
    c_ = compile_module(module, load_target("acf-small"))
    check_tokens(c_.program)
    assert [op.name for op in module.funcs[0].body.ops][:2] == [
        "graph.conv2d_backward_input", "graph.slice"]  # computed wider, then cropped
    got = emulator.run(c_.program, load_target("acf-small"), c_.bind(args)).outputs[c_.outputs[0]]
    check_close(got, expected(text, args)[0])


SLICES = """
graph.func @slices(%x: tensor<3x6x40xf32>, %g: tensor<3x2x13xf32>) -> (tensor<3x2x13xf32>, tensor<1x6x40xf32>, tensor<3x6x40xf32>, tensor<3x6x40xf32>, tensor<4x6x40xf32>, tensor<3x6x80xf32>) {
  %0 = graph.slice %x {offsets = [0, 1, 2], sizes = [3, 2, 13], strides = [1, 3, 3]} : tensor<3x6x40xf32> -> tensor<3x2x13xf32>
  %1 = graph.slice %x {offsets = [2, 0, 0], sizes = [1, 6, 40], strides = [1, 1, 1]} : tensor<3x6x40xf32> -> tensor<1x6x40xf32>
  %2 = graph.slice_backward %g {shape = [3, 6, 40], offsets = [0, 1, 2], strides = [1, 3, 3]} : tensor<3x2x13xf32> -> tensor<3x6x40xf32>
  %3 = graph.slice_backward %1 {shape = [3, 6, 40], offsets = [1, 0, 0], strides = [1, 1, 1]} : tensor<1x6x40xf32> -> tensor<3x6x40xf32>
  %4 = graph.concat %1, %x {axis = 0} : tensor<1x6x40xf32>, tensor<3x6x40xf32> -> tensor<4x6x40xf32>
  %5 = graph.concat %x, %3 {axis = -1} : tensor<3x6x40xf32>, tensor<3x6x40xf32> -> tensor<3x6x80xf32>
  graph.return %0, %1, %2, %3, %4, %5 : tensor<3x2x13xf32>, tensor<1x6x40xf32>, tensor<3x6x40xf32>, tensor<3x6x40xf32>, tensor<4x6x40xf32>, tensor<3x6x80xf32>
}
"""


@pytest.mark.parametrize("tile", [0, 8])
def test_slices_their_gradients_and_concat(tile: int) -> None:
    """Strided boxes read (every third row and column from an offset; one plane whole),
    written back into zeros, and tensors joined along their first and last dims, on the fabric,
    equal numpy's slicing and concatenation exactly (data movement only)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 6, 40)).astype(np.float32)
    g = rng.standard_normal((3, 2, 13)).astype(np.float32)
    from acf import emulator
    from acf.isa.target import load_target

    c = compile_text(SLICES, tile=tile)
    res = emulator.run(c.program, load_target("acf-small"), c.bind([x, g]))
    got = [res.outputs[name] for name in c.outputs]
    want_g = np.zeros_like(x)
    want_g[:, 1::3, 2::3] = g
    want_p = np.zeros_like(x)
    want_p[1] = x[2]
    wants = [x[:, 1::3, 2::3], x[2:3], want_g, want_p, np.concatenate([x[2:3], x]),
             np.concatenate([x, want_p], axis=2)]
    for a, i, b in zip(got, expected(SLICES, [x, g]), wants):
        np.testing.assert_array_equal(np.asarray(a).reshape(b.shape), b)  # the fabric
        np.testing.assert_array_equal(i, b)                                # the interpreter
    check_tokens(c.program)


EMBEDDING = """
graph.func @embed(%idx: tensor<3x5xi64>, %table: tensor<40x24xf32>, %g: tensor<15x24xf32>) -> (tensor<3x5x24xf32>, tensor<40x24xf32>) {
  %hot = graph.one_hot %idx {classes = 40} : tensor<3x5xi64> -> tensor<3x5x40xf32>
  %rows = graph.reshape %hot {shape = [15, 40]} : tensor<3x5x40xf32> -> tensor<15x40xf32>
  %e = graph.matmul %rows, %table : tensor<15x40xf32>, tensor<40x24xf32> -> tensor<15x24xf32>
  %out = graph.reshape %e {shape = [3, 5, 24]} : tensor<15x24xf32> -> tensor<3x5x24xf32>
  %gt = graph.matmul %rows, %g {transpose_a = true} : tensor<15x40xf32>, tensor<15x24xf32> -> tensor<40x24xf32>
  graph.return %out, %gt : tensor<3x5x24xf32>, tensor<40x24xf32>
}
"""


def test_embedding_as_a_one_hot_gemm() -> None:
    """An embedding lookup and its gradient (a repeated index sums its rows' gradients) as
    GEMMs with the one-hot indices the runtime passes; the PEs skip the one-hot's zeros, so
    the lookup issues 1/40 of its dense MACs as effectual ones."""
    from acf import emulator
    from acf.isa.target import load_target

    rng = np.random.default_rng(5)
    idx = rng.integers(0, 40, (3, 5))
    idx[2, 4] = idx[0, 0]  # a repeated index
    table = rng.standard_normal((40, 24)).astype(np.float32)
    g = rng.standard_normal((15, 24)).astype(np.float32)
    c = compile_text(EMBEDDING)
    res = emulator.run(c.program, load_target("acf-small"), c.bind([idx, table, g]))
    out, gt = (res.outputs[name] for name in c.outputs)
    np.testing.assert_array_equal(np.asarray(out).reshape(3, 5, 24), table[idx])
    want = np.zeros_like(table)
    np.add.at(want, idx.ravel(), g)
    check_close(np.asarray(gt).reshape(40, 24), want)
    for a, b in zip((out, gt), expected(EMBEDDING, [idx, table, g])):
        check_close(np.asarray(a).reshape(b.shape), b)
    rep = res.report
    assert rep.macs_effectual_count == 2 * 15 * 24  # one per output element of each GEMM
    assert rep.macs_issued_count == 2 * 15 * 40 * 24
    with pytest.raises(ValueError, match="input 'idx': index 40 is outside \\[0, 40\\)"):
        c.bind([np.full((3, 5), 40), table, g])
