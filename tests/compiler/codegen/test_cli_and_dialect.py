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


def test_cli_does_not_import_torch() -> None:
    code = ("import sys; from acf.cli import main; "
            f"main(['compile', {str(EXAMPLE)!r}, '--target', 'acf-small', '-o', '/dev/null']); "
            "assert 'torch' not in sys.modules and 'tvm' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
