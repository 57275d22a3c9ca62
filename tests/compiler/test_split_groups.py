"""``split-groups`` keeps the interpreter's results: grouped and depthwise convolutions and
both backward forms, over strides, paddings, dilations and channel multipliers."""

from __future__ import annotations

import numpy as np
import pytest
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager, parse_pipeline


def _t(shape: tuple[int, ...]) -> str:
    return "tensor<" + "x".join(map(str, shape)) + "xf32>"


# (N, C, H, W), (O, C/groups, KH, KW), groups, stride, padding, dilation
CASES = [
    ((2, 4, 6, 6), (4, 1, 3, 3), 4, (1, 1), (1, 1), (1, 1)),    # depthwise 3x3
    ((1, 3, 7, 5), (3, 1, 3, 2), 3, (2, 1), (1, 0), (1, 2)),    # depthwise, strided, dilated
    ((2, 2, 5, 5), (2, 1, 1, 1), 2, (1, 1), (0, 0), (1, 1)),    # depthwise 1x1
    ((1, 4, 6, 6), (8, 1, 3, 3), 4, (1, 1), (1, 1), (1, 1)),    # channel multiplier 2: split
    ((2, 6, 5, 5), (9, 2, 3, 3), 3, (2, 2), (1, 1), (1, 1)),    # three groups of two
]


@pytest.mark.parametrize("xs,ws,groups,stride,padding,dilation", CASES)
def test_split_groups_keeps_the_interpreters_results(xs, ws, groups, stride, padding, dilation) -> None:
    n, _, h, w = xs
    oh = (h + 2 * padding[0] - dilation[0] * (ws[2] - 1) - 1) // stride[0] + 1
    ow = (w + 2 * padding[1] - dilation[1] * (ws[3] - 1) - 1) // stride[1] + 1
    ys = (n, ws[0], oh, ow)
    attrs = (f"stride = [{stride[0]}, {stride[1]}], padding = [{padding[0]}, {padding[1]}], "
             f"dilation = [{dilation[0]}, {dilation[1]}], groups = {groups}")
    text = f"""graph.func @f(%x: {_t(xs)}, %w: {_t(ws)}, %b: {_t(ws[:1])}, %g: {_t(ys)}) -> ({_t(ys)}, {_t(xs)}, {_t(ws)}) {{
  %y = graph.conv2d %x, %w, %b {{{attrs}}} : {_t(xs)}, {_t(ws)}, {_t(ws[:1])} -> {_t(ys)}
  %gx = graph.conv2d_backward_input %g, %w {{input_shape = {list(xs)}, {attrs}}} : {_t(ys)}, {_t(ws)} -> {_t(xs)}
  %gw = graph.conv2d_backward_weight %g, %x {{weight_shape = {list(ws)}, {attrs}}} : {_t(ys)}, {_t(xs)} -> {_t(ws)}
  graph.return %y, %gx, %gw : {_t(ys)}, {_t(xs)}, {_t(ws)}
}}"""
    rng = np.random.default_rng(sum(xs) + groups)
    args = [rng.standard_normal(s).astype(np.float32) for s in (xs, ws, ws[:1], ys)]
    module = parse_module(text)
    before = run_func(module.funcs[0], args)
    PassManager(parse_pipeline("split-groups")).run(module)
    names = {op.name for op in module.funcs[0].body.ops}
    if ws[1] == 1 and ws[0] == xs[1]:
        assert not any(name.startswith("graph.conv2d") for name in names)  # taps only
    else:
        assert "graph.concat" in names
    for op in module.funcs[0].body.ops:
        assert int(op.attributes.get("groups", 1)) == 1  # type: ignore[arg-type]
    for got, want in zip(run_func(module.funcs[0], args), before):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_compile_module_splits_grouped_convolutions_itself() -> None:
    """IR compiled without any pipeline: compile_module splits the grouped (and depthwise)
    convolutions before code generation, and the emulated results equal the interpreter's."""
    from acf import emulator
    from acf.compiler.codegen.lower import compile_module
    from acf.isa.target import load_target

    text = """graph.func @f(%x: tensor<2x4x6x6xf32>, %dw: tensor<4x1x3x3xf32>, %gw: tensor<6x2x3x3xf32>) -> (tensor<2x6x3x3xf32>) {
  %d = graph.conv2d %x, %dw {padding = [1, 1], groups = 4} : tensor<2x4x6x6xf32>, tensor<4x1x3x3xf32> -> tensor<2x4x6x6xf32>
  %y = graph.conv2d %d, %gw {stride = [2, 2], padding = [1, 1], groups = 2} : tensor<2x4x6x6xf32>, tensor<6x2x3x3xf32> -> tensor<2x6x3x3xf32>
  graph.return %y : tensor<2x6x3x3xf32>
}"""
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(s).astype(np.float32) for s in ((2, 4, 6, 6), (4, 1, 3, 3), (6, 2, 3, 3))]
    want = run_func(parse_module(text).funcs[0], args)[0]
    t = load_target("acf-small")
    c = compile_module(parse_module(text), t)
    res = emulator.run(c.program, t, c.bind(args))
    np.testing.assert_allclose(res.outputs[c.outputs[0]], want, rtol=1e-4, atol=1e-5)
