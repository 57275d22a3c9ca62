"""``acfc compile`` and the acf dialect (Program <-> acf-level IR, 1:1)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from acf.cli import main
from acf.compiler.diagnostics import IRError
from acf.compiler.dialects.acf import from_program, ops, to_program, verify
from acf.compiler.parser import parse_module
from acf.compiler.printer import print_module
from acf.isa.container import read
from acf.isa.spec import OPS

from .helpers import compile_text
from .test_codegen import MLP, SOFTMAX_CE

EXAMPLE = Path(__file__).parents[3] / "examples" / "mlp_sparse.acfir"


def test_dialect_is_derived_from_the_table() -> None:
    assert set(ops()) == {f"acf.{op.mnemonic}" for op in OPS}


@pytest.mark.parametrize("text", [MLP, SOFTMAX_CE])
def test_program_ir_round_trip(text: str) -> None:
    prog = compile_text(text).program
    printed = print_module(from_program(prog))
    module = parse_module(printed)
    again = to_program(module)
    assert again.instructions == prog.instructions
    assert again.symbols == prog.symbols and again.target == prog.target
    assert again.debug == prog.debug
    assert again.data == prog.data and ("hyper" in prog.data) == (text == MLP)
    assert print_module(module) == printed


def test_bad_acf_op_is_located() -> None:
    text = 'graph.func @main() -> () {\n  "acf.mm"() {dst = "acc[0x0]", m = 4} : () -> ()\n  graph.return\n}\n'
    with pytest.raises(IRError, match=r"2:3: error: 'acf.mm': .*missing field 'a'"):
        verify(parse_module(text, "t.acfir"))


def test_cli_emits_asm_ir_and_binary(tmp_path: Path, capsys) -> None:
    assert main(["compile", str(EXAMPLE), "--target", "acf-small", "--emit", "asm"]) == 0
    asm = capsys.readouterr().out
    assert ".tensor w dram" in asm and "sddmm c" in asm and '.loc "mlp.py" 10 "fc1"' in asm
    assert main(["compile", str(EXAMPLE), "--target", "acf-small", "--emit", "ir"]) == 0
    assert '"acf.sddmm"()' in capsys.readouterr().out
    out = tmp_path / "mlp.acfbin"
    assert main(["compile", str(EXAMPLE), "--target", "acf-small", "-p", "default",
                 "-o", str(out)]) == 0
    assert any(i.mnemonic == "sddmm" for i in read(out.read_bytes()).instructions)


def test_cli_errors_are_located_without_traceback() -> None:
    bad = ("graph.func @f(%x: tensor<2x20000xf32>) -> (tensor<2x20000xf32>) {\n"
           "  %y = graph.softmax %x : tensor<2x20000xf32> -> tensor<2x20000xf32>\n"
           "  graph.return %y : tensor<2x20000xf32>\n}\n")
    done = subprocess.run([sys.executable, "-m", "acf.cli", "compile", "-", "--target",
                           "acf-small"], input=bad, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert done.stderr.startswith("<stdin>:2:8: error: 'graph.softmax': a row of 20000 f32")
    assert "Traceback" not in done.stderr and "^" in done.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("graph.func @f(%x: tensor<0x4xf32>, %w: tensor<3x4xf32>) -> (tensor<0x3xf32>) {\n"
     "  %y = graph.linear %x, %w : tensor<0x4xf32>, tensor<3x4xf32> -> tensor<0x3xf32>\n"
     "  graph.return %y : tensor<0x3xf32>\n}\n",
     "f.acfir:2:8: error: 'graph.linear': an empty tensor (tensor<0x4xf32>): the kernels need "
     "every dimension at least 1"),
    ("graph.func @f(%w: tensor<4x4xf32, #sparse<{map = (i, j) -> (j : singleton, i : compressed)}>>,"
     " %x: tensor<2x4xf32>) -> (tensor<2x4xf32>) {\n"
     "  %y = graph.linear %x, %w : tensor<2x4xf32>, tensor<4x4xf32, #sparse<{map = (i, j) -> "
     "(j : singleton, i : compressed)}>> -> tensor<2x4xf32>\n"
     "  graph.return %y : tensor<2x4xf32>\n}\n",
     "f.acfir:2:8: error: 'graph.linear': '%w' is stored as #sparse<{map = (i, j) -> (j : singleton, "
     "i : compressed)}>, which no ACF storage format describes"),
    ("", "f.acfir:1:1: error: no function to compile (the input holds no graph.func)"),
], ids=["empty", "encoding", "no-function"])
def test_what_the_kernels_cannot_store_is_a_located_error(tmp_path: Path, capsys, text: str,
                                                          message: str) -> None:
    src = tmp_path / "f.acfir"
    src.write_text(text)
    assert main(["compile", str(src), "--target", "acf-small", "--emit", "asm"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(str(tmp_path) + "/" + message) and "Traceback" not in err


@pytest.mark.parametrize("command", [["compile", "--target", "acf-small", "--emit", "asm"], ["asm"]])
def test_non_utf8_input_is_located_at_its_first_bad_byte(tmp_path: Path, capsys, command) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"graph.func @f() {\n  \xc3\xa9\xff\n}\n")
    assert main([command[0], str(src), *command[1:]]) == 1
    # column 4: the two spaces and the one character before the bad byte
    assert capsys.readouterr().err.startswith(f"{src}:2:4: error: not UTF-8 text (byte 0xff)")


def test_cli_does_not_import_torch() -> None:
    code = ("import sys; from acf.cli import main; "
            f"main(['compile', {str(EXAMPLE)!r}, '--target', 'acf-small', '-o', '/dev/null']); "
            "assert 'torch' not in sys.modules and 'tvm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


CONST_AND_SGD = """graph.func @f(%x: tensor<2x4xf32>, %w: tensor<2x4xf32>, %g: tensor<2x4xf32>, %b: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
  %c = graph.constant {value = dense<[[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]> : tensor<2x4xf32>} : () -> tensor<2x4xf32>
  %y = graph.add %x, %c : tensor<2x4xf32>, tensor<2x4xf32> -> tensor<2x4xf32>
  %w2, %b2 = graph.sgd_update %w, %g, %b {lr = 0.5, momentum = 0.9} : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32> -> tensor<2x4xf32>, tensor<2x4xf32>
  graph.return %y, %w2, %b2 : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>
}
"""


@pytest.mark.parametrize("emit", ["bin", "asm"])
def test_compiled_binary_carries_constants_and_hyperparameters(tmp_path: Path, emit: str) -> None:
    """``acfc compile -o`` then ``acfc run`` with only the arguments as inputs equals the
    interpreter: the binary (or assembly) holds the constant and SGD's lr and momentum as
    ``.data`` (they used to be left out: the constant read as zeros, lr as 0)."""
    import numpy as np
    from acf.compiler.interp import run_func

    src = tmp_path / "f.acfir"
    src.write_text(CONST_AND_SGD)
    out = tmp_path / ("f.acfbin" if emit == "bin" else "f.s")
    assert main(["compile", str(src), "--target", "acf-small", "-o", str(out)]
                + (["--emit", "asm"] if emit == "asm" else [])) == 0
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(4)]
    np.savez(tmp_path / "in.npz", **dict(zip(["x", "w", "g", "b"], args)))
    assert main(["run", str(out), "--inputs", str(tmp_path / "in.npz"), "--outputs",
                 str(tmp_path / "out.npz"), "--quiet"]) == 0
    got = np.load(tmp_path / "out.npz")
    for i, want in enumerate(run_func(parse_module(CONST_AND_SGD).funcs[0], args)):
        np.testing.assert_allclose(got[f"result{i}"], want, rtol=1e-6)


def test_adam_bias_correction_follows_the_step_operand() -> None:
    """``bind`` computes Adam's bias corrections from the value of the op's step operand
    (the IR's meaning), unless a step is given explicitly (the runtime's counter)."""
    import numpy as np
    from acf import emulator
    from acf.compiler.interp import run_func
    from acf.isa.target import load_target

    text = """graph.func @f(%p: tensor<5x7xf32>, %g: tensor<5x7xf32>, %m: tensor<5x7xf32>, %v: tensor<5x7xf32>, %s: tensor<f32>) -> (tensor<5x7xf32>, tensor<5x7xf32>, tensor<5x7xf32>) {
  %a, %b, %c = graph.adam_update %p, %g, %m, %v, %s {lr = 0.01, weight_decay = 0.1} : tensor<5x7xf32>, tensor<5x7xf32>, tensor<5x7xf32>, tensor<5x7xf32>, tensor<f32> -> tensor<5x7xf32>, tensor<5x7xf32>, tensor<5x7xf32>
  graph.return %a, %b, %c : tensor<5x7xf32>, tensor<5x7xf32>, tensor<5x7xf32>
}
"""
    c = compile_text(text)
    rng = np.random.default_rng(1)
    p, g, m = (rng.standard_normal((5, 7)).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal((5, 7))).astype(np.float32)
    for step in (3.0, 10.0):
        args = [p, g, m, v, np.float32(step)]
        want = run_func(parse_module(text).funcs[0], args)
        res = emulator.run(c.program, load_target("acf-small"), c.bind(args))
        np.testing.assert_allclose(res.outputs["result0"], want[0], rtol=1e-5, atol=1e-6)
        other = emulator.run(c.program, load_target("acf-small"), c.bind(args, step=1))
        assert np.abs(other.outputs["result0"] - want[0]).max() > 1e-3  # step 1 differs
