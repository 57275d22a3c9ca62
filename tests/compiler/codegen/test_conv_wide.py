"""The wide-K stride-1 conv (kernels.conv_wide): one ``mm`` per k-block reduces over every
tap, reading the input slab transposed through a view (output pixels at the slab's row
pitch), the flipped weights of the input gradient gathered tap-major on chip, and the
discarded slab columns dropped on the way out. Results equal the interpreter and the
per-tap kernel; the plan is chosen by the expected density; at 10 % weights it is faster."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen.context import KernelContext
from acf.compiler.parser import parse_module
from acf.isa.target import load_target

from .helpers import check_close, check_tokens, compile_text, expected
from .test_training_kernels import func, rnd


def _text(op: str, n: int, c: int, h: int, o: int, k: int, pad: int, dil: int, bias: bool = False,
          stride: int = 1) -> tuple[str, list[tuple[int, ...]]]:
    attrs = f"stride = [{stride}, {stride}], padding = [{pad}, {pad}], dilation = [{dil}, {dil}]"
    oh = (h + 2 * pad - dil * (k - 1) - 1) // stride + 1
    if op == "fwd":
        args = {"x": (n, c, h, h), "wt": (o, c, k, k)}
        ops = ["x", "wt"]
        if bias:
            args["b"] = (o,)
            ops.append("b")
        return func(args, [("y", "conv2d", ops, attrs, [(n, o, oh, oh)])], ["y"]), list(args.values())
    args = {"g": (n, o, oh, oh), "wt": (o, c, k, k)}
    body = [("gx", "conv2d_backward_input", ["g", "wt"], f"input_shape = [{n}, {c}, {h}, {h}], " + attrs,
             [(n, c, h, h)])]
    return func(args, body, ["gx"]), list(args.values())


def _args(shapes, density: float, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [np.maximum(rnd(rng, *shapes[0]), 0), rnd(rng, *shapes[1])]
    out[1] *= (rng.random(shapes[1]) < density).astype(np.float32)
    out += [rnd(rng, *s) for s in shapes[2:]]
    return out


def _run(text: str, args: list[np.ndarray], target: str, **options):
    c = compile_text(text, target=target, **options)
    check_tokens(c.program)
    result = emulator.run(c.program, load_target(target), c.bind(args))
    return c, result.outputs[c.outputs[0]], result.report


def _wide_mms(prog) -> list:
    return [i for i in prog.instructions if i.mnemonic == "mm" and i["tb"]]


@pytest.mark.parametrize("op", ["fwd", "bwd"])
@pytest.mark.parametrize("case", [
    ("acf-small", 2, 8, 6, 16, 3, 1, 1, False),
    ("acf-base", 1, 16, 10, 32, 3, 1, 1, True),
    ("acf-base", 2, 24, 9, 20, 3, 2, 2, False),   # dilation 2: taps two apart
    ("acf-base", 2, 40, 8, 24, 3, 0, 1, False),   # no padding, several k-blocks
    ("acf-base", 1, 8, 7, 8, 5, 2, 1, True),      # 5 x 5 taps
], ids=["small", "bias", "dilated", "unpadded", "5x5"])
def test_wide_conv_equals_interpreter_and_per_tap_kernel(op, case) -> None:
    target, n, c, h, o, k, pad, dil, bias = case
    if op == "bwd" and bias:
        bias = False
    text, shapes = _text(op, n, c, h, o, k, pad, dil, bias)
    args = _args(shapes, 0.3)
    wide, got, _ = _run(text, args, target, wide_taps="on")
    per_tap, got_taps, _ = _run(text, args, target, wide_taps="off")
    mms = _wide_mms(wide.program)
    assert mms, "the wide kernel was not chosen"
    assert all(i["k"] % (k * k) == 0 for i in mms)  # every tap of a k-block in one reduction
    assert not _wide_mms(per_tap.program)
    want = expected(text, args)[0]
    check_close(got, want)
    check_close(got_taps, want)


@pytest.mark.parametrize("op", ["fwd", "bwd"])
def test_wide_conv_runs_several_images_per_whole_plane_tile(op) -> None:
    """Small planes: a tile takes several images, each its own mm and accumulator tile,
    all reading the tile's weight slab (loaded once per k-block for all of them)."""
    text, shapes = _text(op, 8, 40, 6, 24, 3, 2, 2)
    w = "%wt: tensor<24x40x3x3xf32>"
    text = text.replace(w, w + " {density = 0.1}")
    args = _args(shapes, 0.1, seed=2)
    c, got, _ = _run(text, args, "acf-base")
    by_cluster: dict[int, list] = {}
    for i in _wide_mms(c.program):
        by_cluster.setdefault(i["cl"], []).append(i)
    # consecutive mms of a cluster reading the same weights into different accumulators
    shared = [(p, q) for mms in by_cluster.values() for p, q in pairwise(mms)
              if p["a"] == q["a"] and p["dst"] != q["dst"] and p["b"] != q["b"]]
    assert shared
    check_close(got, expected(text, args)[0])


@pytest.mark.parametrize("case", [
    ("acf-base", 2, 16, 9, 24, 3, 1, 1, False),   # odd input: the last window is partial
    ("acf-base", 4, 32, 16, 64, 3, 1, 1, True),
    ("acf-small", 2, 8, 8, 16, 3, 1, 2, False),   # dilated
], ids=["odd", "bias", "dilated"])
def test_strided_wide_conv_equals_interpreter(case) -> None:
    """Stride 2: output pixel (r, q) at twice r*cols_in + q in the slab (about half the
    computed columns are thrown away)."""
    target, n, c, h, o, k, pad, dil, bias = case
    text, shapes = _text("fwd", n, c, h, o, k, pad, dil, bias, stride=2)
    args = _args(shapes, 0.3)
    wide, got, _ = _run(text, args, target, wide_taps="on")
    assert _wide_mms(wide.program)
    check_close(got, expected(text, args)[0])


def _layer(op: str, density: float, c: int = 64) -> tuple[str, list[np.ndarray]]:
    """A ResNet layer2-shaped conv (batch 8, 16 x 16, c channels in and out) whose weight
    argument carries the density hint the runtime records and whose input is a ReLU output
    (half zeros)."""
    n, h, o = 8, 16, c
    text, shapes = _text(op, n, c, h, o, 3, 1, 1)
    w = f"%wt: tensor<{o}x{c}x3x3xf32>"
    text = text.replace(w, w + f" {{density = {density}}}")
    if op == "fwd":
        x = f"%x: tensor<{n}x{c}x{h}x{h}xf32>"
        text = text.replace(x, x + ' {sparsity = "relu"}')
    return text, _args(shapes, density, seed=1)


@pytest.mark.parametrize("op", ["fwd", "bwd"])
def test_wide_conv_is_chosen_and_faster_at_ten_percent_weights(op) -> None:
    text, args = _layer(op, 0.1)
    wide, got, rep = _run(text, args, "acf-base")
    _, got_taps, rep_taps = _run(text, args, "acf-base", wide_taps="off")
    assert _wide_mms(wide.program)
    check_close(got, expected(text, args)[0])
    check_close(got_taps, got)
    # one fold overhead per 16 x 16 outputs and k-block instead of per tap, and the input
    # slabs multicast down columns (measured: 0.52x forward, 0.53x input gradient)
    assert rep.total_cycles < 0.6 * rep_taps.total_cycles


def test_wide_conv_multicasts_weights_along_rows_and_inputs_down_columns() -> None:
    """Four output-channel tiles, 8 images: a row's first cluster loads each weight slab
    and multicasts it along the row, a column's sender each input slab down the column
    (the emulator's race detector checks the cross-cluster tokens). The
    plan may differ without multicast (its weight bytes are costed per cluster), so both
    are compared with the interpreter rather than with each other."""
    text, args = _layer("bwd", 0.1, c=128)
    on, got_on, rep_on = _run(text, args, "acf-base")
    _, got_off, rep_off = _run(text, args, "acf-base", multicast=False)
    assert _wide_mms(on.program) and any(i.mnemonic == "bcast" for i in on.program.instructions)
    groups = [(i["x0"], i["y0"], i["x1"], i["y1"]) for i in on.program.instructions
              if i.mnemonic == "noc.mcast"]
    # weights along each of the 4 rows, input slabs down each of the 4 columns
    assert sorted(groups) == sorted([(0, y, 3, y) for y in range(4)] + [(x, 0, x, 3) for x in range(4)])
    want = expected(text, args)[0]
    check_close(got_on, want)
    check_close(got_off, want)
    assert rep_on.memory_bytes["dram_bytes"] < rep_off.memory_bytes["dram_bytes"]


def test_operand_density_reads_hints_through_masks() -> None:
    text = """graph.func @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32> {density = 0.2}, %m: tensor<8x8xf32> {density = 0.1}, %v: tensor<8x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>) {
  %r = graph.relu %x {sparsity = "relu"} : tensor<4x8xf32> -> tensor<4x8xf32>
  %wm = graph.mask_apply %v, %m : tensor<8x8xf32>, tensor<8x8xf32> -> tensor<8x8xf32>
  %a = graph.matmul %r, %w : tensor<4x8xf32>, tensor<8x8xf32> -> tensor<4x8xf32>
  %b = graph.matmul %x, %wm : tensor<4x8xf32>, tensor<8x8xf32> -> tensor<4x8xf32>
  %c = graph.matmul %r, %v : tensor<4x8xf32>, tensor<8x8xf32> -> tensor<4x8xf32>
  %s = graph.add %x, %x {activation = "relu"} : tensor<4x8xf32>, tensor<4x8xf32> -> tensor<4x8xf32>
  %d = graph.matmul %s, %v : tensor<4x8xf32>, tensor<8x8xf32> -> tensor<4x8xf32>
  graph.return %a, %b, %c : tensor<4x8xf32>, tensor<4x8xf32>, tensor<4x8xf32>
}
"""
    ops = parse_module(text).funcs[0].body.ops

    def density(op_index: int, operand: int) -> float:
        ctx = KernelContext.__new__(KernelContext)
        ctx.op = ops[op_index]
        return ctx.operand_density(operand)

    assert density(2, 0) == 0.5 and density(2, 1) == 0.2  # a ReLU output, a hinted argument
    assert density(3, 0) == 1.0 and density(3, 1) == 0.1  # the mask's hint
    assert density(4, 1) == 1.0  # no hint: dense
    assert density(6, 0) == 0.5  # a ReLU fused into its producer


def test_wide_taps_option_is_checked() -> None:
    from acf.compiler.codegen import CompileOptions

    with pytest.raises(ValueError, match="wide_taps must be 'auto', 'on' or 'off'"):
        CompileOptions(wide_taps="sometimes")
