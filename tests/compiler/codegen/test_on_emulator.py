"""End to end on the emulator: compiled outputs equal the interpreter's, the weight gradient
is an ``sddmm``, and 90 %-sparse weights take fewer cycles than dense ones."""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.isa.target import load_target

from .helpers import check_close, compile_text, expected
from .test_codegen import ELEMENTWISE, MLP, REDUCE, SOFTMAX_CE, mlp_args

import acf.emulator as emulator


def emulate(c, args):
    result = emulator.run(c.program, load_target(c.program.target), c.bind(args))
    return [result.outputs[name] for name in c.outputs], result


def _cycles(result) -> int:
    report = result.report
    for key in ("total_cycles", "cycles"):
        if hasattr(report, key):
            return int(getattr(report, key))
        if isinstance(report, dict) and key in report:
            return int(report[key])
    raise AssertionError(f"no cycle count in the report: {report!r}")


@pytest.mark.parametrize("density", [1.0, 0.3, 0.1])
def test_mlp_matches_interpreter(density: float) -> None:
    c = compile_text(MLP)
    args = mlp_args(density)
    outs, _ = emulate(c, args)
    for got, want in zip(outs, expected(MLP, args)):
        check_close(got, want)


@pytest.mark.parametrize("text,args", [
    (SOFTMAX_CE, lambda r: [r.standard_normal((12, 10)).astype(np.float32), r.integers(0, 10, 12),
                            r.standard_normal((12, 10)).astype(np.float32)]),
    (REDUCE, lambda r: [r.standard_normal((6, 5, 70)).astype(np.float32)]),
    (ELEMENTWISE, lambda r: [r.standard_normal((9, 70)).astype(np.float32),
                             r.standard_normal(70).astype(np.float32),
                             r.standard_normal((9, 1)).astype(np.float32),
                             np.float32(1.7)]),
], ids=["softmax-ce", "reduce", "elementwise"])
def test_kernels_match_interpreter(text, args) -> None:
    values = args(np.random.default_rng(4))
    outs, _ = emulate(compile_text(text), values)
    for got, want in zip(outs, expected(text, values)):
        check_close(got, want)


def test_sparse_weights_take_fewer_cycles() -> None:
    c = compile_text(MLP)
    assert any(i.mnemonic == "sddmm" for i in c.program.instructions)
    _, dense = emulate(c, mlp_args(1.0))
    _, sparse = emulate(c, mlp_args(0.1))
    assert _cycles(sparse) < _cycles(dense)
