"""The acf-level interpreter agrees with the graph interpreter and with the emulator: an MLP
layer's forward + backward + SGD step and a convolution's forward + backward, lowered by
the textual pipeline down to acf IR (printed and re-parsed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf import emulator
from acf.compiler.acf_interp import run_module
from acf.compiler.dialects.acf import from_program
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager
from acf.compiler.printer import print_module
from acf.isa.asm import assemble
from acf.isa.target import load_target
from codegen.helpers import check_close  # tests/compiler is on sys.path (rootdir-relative)
from codegen.test_codegen import MLP, mlp_args

PROGRAMS = Path(__file__).parents[1] / "emulator" / "programs"
PIPELINE = "tile{target=acf-small},place{policy=%s},schedule,lower-to-acf{target=acf-small}"


def conv_layer() -> tuple[str, list[np.ndarray]]:
    n, c, h, w, o, k = 2, 3, 6, 6, 4, 3
    x, wt, b, g = (f"tensor<{n}x{c}x{h}x{w}xf32>", f"tensor<{o}x{c}x{k}x{k}xf32>",
                   f"tensor<{o}xf32>", f"tensor<{n}x{o}x{h}x{w}xf32>")
    a = "stride = [1, 1], padding = [1, 1], dilation = [1, 1]"
    text = f"""graph.func @conv(%x: {x}, %wt: {wt}, %b: {b}, %g: {g}) -> ({g}, {x}, {wt}) {{
  %y = graph.conv2d %x, %wt, %b {{{a}}} : {x}, {wt}, {b} -> {g}
  %gx = graph.conv2d_backward_input %g, %wt {{input_shape = [{n}, {c}, {h}, {w}], {a}}} : {g}, {wt} -> {x}
  %gw = graph.conv2d_backward_weight %g, %x {{weight_shape = [{o}, {c}, {k}, {k}], {a}}} : {g}, {x} -> {wt}
  graph.return %y, %gx, %gw : {g}, {x}, {wt}
}}
"""
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(s).astype(np.float32)
            for s in ((n, c, h, w), (o, c, k, k), (o,), (n, o, h, w))]
    return text, args


def lower(text: str, policy: str) -> tuple[str, object]:
    """acf IR text of ``text`` and the lowering pass (it keeps the runtime binding)."""
    module = parse_module(text, "layer.acfir")
    manager = PassManager.from_text(PIPELINE % policy)
    manager.run(module)
    return print_module(module), manager.passes[-1]


CASES = {"mlp-dense": (MLP, mlp_args(1.0)), "mlp-sparse": (MLP, mlp_args(0.2)),
         "conv": conv_layer()}


@pytest.mark.parametrize("policy", ["round-robin", "balanced"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_graph_acf_and_emulator_agree(case: str, policy: str) -> None:
    text, args = CASES[case]
    want = run_func(parse_module(text).funcs[0], args)
    acf_text, lowering = lower(text, policy)
    compiled = next(iter(lowering.compiled.values()))
    inputs = compiled.bind(args)
    acf_outs = run_module(parse_module(acf_text, "lowered.acfir"), inputs)
    emu = emulator.run(compiled.program, load_target("acf-small"), inputs)
    for i, expected in enumerate(want):
        name = compiled.outputs[i]
        check_close(acf_outs[name], expected)
        np.testing.assert_array_equal(acf_outs[name], emu.outputs[name])


@pytest.mark.parametrize("name", ["loop.s", "vector.s", "gemm_sddmm.s", "optim.s"])
def test_hand_written_programs_match_the_emulator(name: str) -> None:
    """Loops, address registers, sparse tiles and optimizer rows, through acf IR text."""
    prog = assemble((PROGRAMS / name).read_text(), name)
    rng = np.random.default_rng(5)
    inputs = {}
    for sym in prog.symbols.values():
        value = rng.standard_normal(sym.shape).astype(np.float32)
        inputs[sym.name] = value * (rng.random(sym.shape) < 0.5) if sym.fmt != "dense" else value
    module = parse_module(print_module(from_program(prog)), name)
    outs = run_module(module, inputs)
    ref = emulator.run(prog, load_target(prog.target), inputs)
    assert outs.keys() == ref.outputs.keys()
    for key, value in outs.items():
        np.testing.assert_array_equal(value, ref.outputs[key], err_msg=key)
