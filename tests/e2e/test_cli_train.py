"""``acfc compile model.py:factory --train ...`` on a tiny model file."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from acf.cli import main

MODEL = textwrap.dedent("""
    import torch.nn as nn

    def factory():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))

    def not_a_model():
        return 3
""")


@pytest.fixture()
def model_file(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def test_train_compile_writes_binary_and_summary(model_file, tmp_path, capsys) -> None:
    out = tmp_path / "step.acfbin"
    rc = main(["compile", f"{model_file}:factory", "--train", "--input-shape", "2,3,8,8",
               "--target", "acf-small", "--num-classes", "5", "--density", "0.1",
               "-o", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "instructions:" in printed and "sddmm" in printed
    assert "MACs (dense-equivalent) by GEMM kind:" in printed
    for kind in ("forward", "wgrad_sddmm"):
        assert kind in printed
    assert "wgrad_dense" not in printed  # conv and linear weights alike: sampled gradients
    assert "symbols:" in printed and "mask.0.weight" in printed and "input0" in printed
    from acf.isa.container import read

    prog = read(out.read_bytes())
    assert any(i.op.mnemonic == "sddmm" for i in prog.instructions)


def test_train_compile_emits_assembly_adam(model_file, capsys) -> None:
    rc = main(["compile", f"{model_file}:factory", "--train", "--input-shape", "2,3,8,8",
               "--target", "acf-small", "--num-classes", "5", "--optimizer", "adam",
               "--emit", "asm"])
    cap = capsys.readouterr()
    assert rc == 0
    assert "adam" in cap.out and "mm" in cap.out      # the assembly on stdout
    assert "instructions:" in cap.err                 # the summary on stderr
    assert "sddmm" not in cap.out                     # dense: no sampled gradients


@pytest.mark.parametrize("argv, message", [
    (["{m}:factory", "--train", "--target", "acf-small"], "needs --input-shape"),
    (["{m}:factory", "--train", "--input-shape", "2,x", "--target", "acf-small"],
     "expected integers"),
    (["{m}:nope", "--train", "--input-shape", "2,3,8,8"], "no function or class 'nope'"),
    (["{m}:not_a_model", "--train", "--input-shape", "2,3,8,8"], "not a torch.nn.Module"),
    (["{m}:factory", "--train", "--input-shape", "2,3,8,8", "--density", "0"],
     "--density 0.0: must be in (0, 1]"),
    (["{m}:factory", "--train", "--input-shape", "2,3,8,8", "--lr", "nan"],
     "--lr nan: must be a finite, non-negative rate"),
    (["{m}:factory", "--train", "--input-shape", "2,3,8,8", "--num-classes", "5", "--tile", "-3"],
     "tile side -3: must be positive (or 0 for the tiler's choice)"),
    (["{m}:factory", "--train", "--input-shape", "2,3,8,8", "--target", "acf-nope"], "acf-nope"),
    (["{m}:factory", "--train", "--input-shape", "2,3,9,9", "--target", "acf-small"],
     "error"),  # 9x9 -> max pool -> 4x4 ok, but Linear(128) gets 8*4*4: shape mismatch
], ids=["no-shape", "bad-shape", "no-factory", "not-module", "density", "lr", "tile", "target",
     "mismatch"])
def test_train_compile_user_errors(model_file, capsys, argv, message) -> None:
    rc = main(["compile"] + [a.replace("{m}", str(model_file)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 1 and message in err
    assert "Traceback" not in err


def test_ir_path_does_not_import_torch(tmp_path) -> None:
    ir = tmp_path / "f.acfir"
    ir.write_text("graph.func @f(%x: tensor<4x4xf32>) -> (tensor<4x4xf32>) {\n"
                  "  %y = graph.relu %x : tensor<4x4xf32> -> tensor<4x4xf32>\n"
                  "  graph.return %y : tensor<4x4xf32>\n}\n")
    code = ("import sys; from acf.cli import main; rc = main(['compile', sys.argv[1], "
            "'--target', 'acf-small', '--emit', 'asm']); assert rc == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    res = subprocess.run([sys.executable, "-c", code, str(ir)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
