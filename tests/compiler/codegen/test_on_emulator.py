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


DENSE_MLP = MLP.replace(", #csr>", ">")


@pytest.mark.parametrize("sizes", [(16, 16, 32), (8, 24, 48), (24, 8, 16)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("sparse", [True, False], ids=["csr", "dense"])
def test_unequal_tile_sizes_match_interpreter(sizes, sparse: bool) -> None:
    """``tile{m,n,k}`` with unequal sizes: output tiles of at most m x n, k-chunks of at most
    k, sparse tensors packed at the smallest size (and the GEMM dimensions along them tiled
    at it). The layer's forward, input gradient, sampled weight gradient and update equal
    the interpreter, and the mm shapes are the ones asked for."""
    text = MLP if sparse else DENSE_MLP
    m, n, k = sizes
    c = compile_text(text, tile=sizes)
    args = mlp_args(0.3)
    outs, _ = emulate(c, args)
    for got, want in zip(outs, expected(text, args)):
        check_close(got, want)
    side = min(sizes)
    if sparse:
        assert c.program.symbols["w"].tile == (side, side)
    ins = c.program.instructions
    fwd = [i for i in ins if i.mnemonic == "mm" and i["tb"]]  # x . w^T, k = 64
    bwd = [i for i in ins if i.mnemonic == "mm" and not i["tb"]]  # gh . w, k = 40
    wgrad = [i for i in ins if i.mnemonic == "sddmm"]  # gh^T . x at the mask: 40 x 64
    assert fwd and bwd and wgrad
    # k-chunks: as deep as asked with a dense weight, the packed side along a sparse one
    assert max(i["k"] for i in fwd) == (side if sparse else min(k, 64))
    assert max(i["k"] for i in bwd) == (side if sparse else min(k, 40))
    # the weight gradient's output tiles: the packed grid of a sparse mask, else m x n
    rows, cols = max(i["m"] for i in wgrad), max(i["n"] for i in wgrad)
    if sparse:
        assert rows == cols == side
    else:
        assert rows <= m and cols <= n and (rows > side or cols > side or m == n == side)
