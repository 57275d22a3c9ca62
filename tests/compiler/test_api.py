"""The Python API: encodings, building IR in code, pipelines with options, reproducers."""

from __future__ import annotations

import io
from pathlib import Path
from typing import ClassVar

import pytest
from acf.compiler.diagnostics import IRError
from acf.compiler.dialect import VerifyError, lookup_op, verify_op
from acf.compiler.ir import FuncOp, Module, Operation, TensorType
from acf.compiler.opt import main
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import Instrumentation, PassFailure, PassManager, parse_pipeline
from acf.compiler.passes import PASSES, ModulePass, PassOption
from acf.compiler.printer import print_module
from acf.compiler.sparse_encoding import encoding_to_format, format_to_encoding
from acf.compiler.verifier import verify_module
from hypothesis import given, settings
from hypothesis import strategies as st

FORMATS = ["dense", "csr", "csc", "coo", "bitmap", "nm2:4", "bcsr4x4"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_format_names_and_encodings_convert_both_ways(fmt: str) -> None:
    enc = format_to_encoding(fmt)
    assert encoding_to_format(enc) == fmt
    if enc is not None:
        text = f"#e = {enc}\n"
        module = parse_module(text)
        assert module.aliases["#e"] == enc
        assert print_module(module) == text


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(["nm", "bcsr"]), st.integers(1, 8), st.integers(1, 8))
def test_parametric_formats_round_trip(kind: str, a: int, b: int) -> None:
    fmt = f"nm{min(a, b)}:{max(a, b)}" if kind == "nm" else f"bcsr{a}x{b}"
    assert encoding_to_format(format_to_encoding(fmt)) == fmt


def test_dimension_names_do_not_matter() -> None:
    module = parse_module("#e = #sparse<{map = (r, c) -> (c : dense, r : compressed)}>\n")
    assert encoding_to_format(module.aliases["#e"]) == "csc"


def test_unknown_format_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="csr, csc, coo"):
        format_to_encoding("ell")


def test_ir_error_text_has_location_line_and_caret() -> None:
    with pytest.raises(IRError) as info:
        parse_module("graph.func @f() -> () {\n  graph.return %nope : tensor<f32>\n}\n", "m.acfir")
    assert str(info.value).splitlines() == [
        "m.acfir:2:16: error: use of undefined value '%nope'",
        "  graph.return %nope : tensor<f32>",
        "               ^",
    ]


def build_relu_matmul() -> Module:
    """``@f(%x, %w) = relu(x · wᵀ)`` built in code rather than parsed."""
    x_t, w_t = TensorType((4, 8)), TensorType((16, 8), encoding=format_to_encoding("csr"))
    func = FuncOp("f", [x_t, w_t], [TensorType((4, 16))], arg_names=["x", "w"])
    x, w = func.arguments
    mm = func.body.append(
        Operation("graph.matmul", [x, w], [TensorType((4, 16))], {"transpose_b": True})
    )
    relu = func.body.append(Operation("graph.relu", [mm.result], [TensorType((4, 16))]))
    func.body.append(Operation("graph.return", [relu.result], []))
    return Module([func], {"#csr": format_to_encoding("csr")})


def test_ir_built_in_code_verifies_prints_and_reparses() -> None:
    module = build_relu_matmul()
    verify_module(module)
    text = print_module(module)
    assert (
        "%0 = graph.matmul %x, %w {transpose_b = true} : tensor<4x8xf32>, "
        "tensor<16x8xf32, #csr> -> tensor<4x16xf32>" in text
    )
    assert print_module(parse_module(text)) == text


def test_verifier_reports_bad_result_shape_of_built_op() -> None:
    module = build_relu_matmul()
    module.funcs[0].body.ops[0].results[0].type = TensorType((4, 8))
    with pytest.raises(IRError, match="result #0 of 'graph.matmul'"):
        verify_module(module)


def test_verifier_catches_use_before_definition_after_reordering() -> None:
    module = build_relu_matmul()
    ops = module.funcs[0].body.ops
    ops[0], ops[1] = ops[1], ops[0]
    with pytest.raises(IRError, match="does not dominate"):
        verify_module(module)


def test_op_definitions_are_declarative() -> None:
    conv = lookup_op("graph.conv2d")
    assert conv is not None and conv.operands == ("x", "weight", "bias?")
    assert conv.attributes["stride"].default == [1, 1]
    op = Operation("graph.relu", [], [TensorType((2,))])
    with pytest.raises(VerifyError, match="expects 1 operands, got 0"):
        verify_op(op)


class Tile(ModulePass):
    """A stand-in pass with options, to exercise ``tile{m=32,n=32,k=64}`` pipelines."""

    name = "tile"
    options: ClassVar[dict[str, PassOption]] = {
        "m": PassOption(int, 16),
        "n": PassOption(int, 16),
        "k": PassOption(int, 16),
        "swizzle": PassOption(bool, False),
    }
    seen: ClassVar[list[tuple[int, int, int, bool]]] = []

    def run(self, module: Module) -> None:
        Tile.seen.append((self.m, self.n, self.k, self.swizzle))


class Crash(ModulePass):
    name = "crash"

    def run(self, module: Module) -> None:
        raise RuntimeError("boom")


class Corrupt(ModulePass):
    name = "corrupt"

    def run(self, module: Module) -> None:
        module.funcs[0].body.ops[0].attributes["bogus"] = 1


REGISTRY = {**PASSES, "tile": Tile, "crash": Crash, "corrupt": Corrupt}


def test_pipeline_options_are_typed_and_described() -> None:
    passes = parse_pipeline("cse, tile{m=32,n=32,k=64,swizzle=true},dce", REGISTRY)
    assert [p.describe() for p in passes] == ["cse", "tile{m=32,n=32,k=64,swizzle=true}", "dce"]
    PassManager(passes).run(build_relu_matmul())
    assert Tile.seen[-1] == (32, 32, 64, True)


@pytest.mark.parametrize(
    "text,message",
    [
        (
            "tile{m=big}",
            ("<pipeline>:1:8: error: bad value for option 'tile.m': expected int, got 'big'"),
        ),
        (
            "tile{q=1}",
            (
                "<pipeline>:1:6: error: pass 'tile' has no option 'q'; valid options: k, "
                "m, n, swizzle"
            ),
        ),
        ("tile{m=1", "<pipeline>:1:9: error: expected ',' or '}', got end of pipeline"),
        ("cse;", "<pipeline>:1:4: error: unexpected character ';'"),
    ],
)
def test_pipeline_errors_are_located(text: str, message: str) -> None:
    with pytest.raises(IRError) as info:
        parse_pipeline(text, REGISTRY)
    assert str(info.value).splitlines()[0] == message


@pytest.mark.parametrize(
    "text,message",
    [
        ("tile{target=nosuch}", "<pipeline>:1:13: error: bad value for option 'tile.target': "
                                "unknown target 'nosuch'; choose one of acf-base, "),
        ("lower-to-acf{target=x}", "<pipeline>:1:21: error: bad value for option "
                                   "'lower-to-acf.target': unknown target 'x'"),
        ("select-formats{fixed=zzz}", "<pipeline>:1:22: error: bad value for option "
                                      "'select-formats.fixed': unknown format name 'zzz'"),
        ("select-formats{densities=w-150}", "<pipeline>:1:26: error: bad value for option "
                                            "'select-formats.densities': densities: w at 150 %"),
    ],
)
def test_option_values_are_checked_when_the_pipeline_is_parsed(text: str, message: str) -> None:
    """A bad target or format name is the user's error, located in the pipeline (it used to
    surface from inside the pass as an internal error with a reproducer)."""
    with pytest.raises(IRError) as info:
        parse_pipeline(text)
    assert str(info.value).splitlines()[0].startswith(message)


def test_option_values_may_be_decimals_and_format_names() -> None:
    (sel,) = parse_pipeline("select-formats{density=12.5,fixed=nm2:4,target=acf-small}")
    assert (sel.density, sel.fixed, sel.target) == (12.5, "nm2:4", "acf-small")


@pytest.mark.parametrize(
    "bad_pass,problem", [("crash", "RuntimeError: boom"), ("corrupt", "produced invalid IR")]
)
def test_failing_pass_writes_a_reproducer(tmp_path: Path, bad_pass: str, problem: str) -> None:
    repro = tmp_path / "repro.acfir"
    module = build_relu_matmul()
    original = print_module(module)
    manager = PassManager(
        parse_pipeline(f"cse,{bad_pass}", REGISTRY),
        Instrumentation(reproducer=str(repro), stream=io.StringIO()),
    )
    with pytest.raises(PassFailure, match=problem) as info:
        manager.run(module)
    assert str(repro) in str(info.value)
    lines = repro.read_text().splitlines(keepends=True)
    assert lines[1] == f"// RUN: acfc opt %s -p 'cse,{bad_pass}'\n"
    assert "".join(lines[2:]) == original


def test_reproducer_that_cannot_be_written_still_reports_the_failure(tmp_path: Path) -> None:
    manager = PassManager(
        parse_pipeline("cse,crash", REGISTRY),
        Instrumentation(reproducer=str(tmp_path / "missing" / "r.acfir"), stream=io.StringIO()),
    )
    with pytest.raises(PassFailure) as info:
        manager.run(build_relu_matmul())
    text = str(info.value)
    assert "RuntimeError: boom" in text
    assert f"no reproducer: {tmp_path / 'missing' / 'r.acfir'}: No such file" in text


def test_main_returns_status_and_writes_output(tmp_path: Path, capsys) -> None:
    src = tmp_path / "in.acfir"
    src.write_text(print_module(build_relu_matmul()))
    out = tmp_path / "out.acfir"
    assert main([str(src), "-p", "default", "-o", str(out)]) == 0
    assert out.read_text() == src.read_text()
    assert main([str(src), "-p", "nope"]) == 1
    assert "unknown pass 'nope'" in capsys.readouterr().err
    assert main(["--definitely-not-an-option"]) == 2


def test_main_reports_unreadable_input_and_output_without_clobbering(tmp_path: Path, capsys) -> None:
    """Bytes that are not UTF-8, an output path that cannot be written, and an input that
    fails to parse each end with one located line and status 1; an existing output file is
    left as it was (no empty or half-written file)."""
    binary = tmp_path / "bin.acfir"
    binary.write_bytes(b"\x00\xff\xfe garbage")
    assert main([str(binary)]) == 1
    assert capsys.readouterr().err == f"{binary}:1:2: error: not UTF-8 text (byte 0xff)\n"

    src = tmp_path / "in.acfir"
    src.write_text(print_module(build_relu_matmul()))
    assert main([str(src), "-o", str(tmp_path)]) == 1  # a folder
    assert capsys.readouterr().err == f"acf-opt: error: cannot write {tmp_path}: Is a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin.acfir", "in.acfir"]  # no temp left

    out = tmp_path / "out.acfir"
    out.write_text("earlier output\n")
    bad = tmp_path / "bad.acfir"
    bad.write_text("func @f() {}\n")
    assert main([str(bad), "-o", str(out)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:1:1: error: ")
    assert out.read_text() == "earlier output\n"


def test_print_ir_after_an_unknown_pass_is_a_usage_error(tmp_path: Path, capsys) -> None:
    from acf.compiler.opt import main as acf_opt

    src = tmp_path / "f.acfir"
    src.write_text("graph.func @f(%x: tensor<4xf32>) -> (tensor<4xf32>) {\n"
                   "  %y = graph.relu %x : tensor<4xf32> -> tensor<4xf32>\n"
                   "  graph.return %y : tensor<4xf32>\n}\n")
    assert acf_opt([str(src), "-p", "cse", "--print-ir-after=nosuch"]) == 2
    assert "unknown pass 'nosuch'" in capsys.readouterr().err
    assert acf_opt([str(src), "-p", "cse", "--print-ir-after=cse"]) == 0


def test_acfc_opt_help_is_the_pass_drivers(capsys) -> None:
    """``acfc opt --help`` reaches the pass driver (its options, not the wrapper's one
    positional argument)."""
    from acf.cli import main as acfc

    with pytest.raises(SystemExit) as info:
        acfc(["opt", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--print-ir-after-all" in out and "--time-passes" in out
