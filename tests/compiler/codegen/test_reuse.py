"""Operand reuse in the GEMM kernel: a cluster that computes several output tiles sharing an
A row-block or a B column-block keeps that operand tile resident instead of loading it again,
with the same results, fewer ``ld``s, fewer DRAM bytes and fewer cycles."""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen.kernels import matmul as mk
from acf.isa.target import load_target

from .helpers import check_close, check_tokens, compile_text, expected


def gemm(m: int, n: int, k: int) -> str:
    return (f"graph.func @f(%a: tensor<{m}x{k}xf32>, %b: tensor<{k}x{n}xf32>) -> (tensor<{m}x{n}xf32>) {{\n"
            f"  %c = graph.matmul %a, %b : tensor<{m}x{k}xf32>, tensor<{k}x{n}xf32> -> tensor<{m}x{n}xf32>\n"
            f"  graph.return %c : tensor<{m}x{n}xf32>\n}}\n")


def linear(m: int, n: int, k: int) -> str:
    return (f"graph.func @f(%x: tensor<{m}x{k}xf32>, %w: tensor<{n}x{k}xf32>) -> (tensor<{m}x{n}xf32>) {{\n"
            f"  %y = graph.linear %x, %w : tensor<{m}x{k}xf32>, tensor<{n}x{k}xf32> -> tensor<{m}x{n}xf32>\n"
            f"  graph.return %y : tensor<{m}x{n}xf32>\n}}\n")


def build(text: str, reuse: bool, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as mp:
        mp.setattr(mk, "REUSE", reuse)
        return compile_text(text, "acf-base", tile=16)


# (IR, argument shapes): one or two k-chunks per output tile, 4 output tiles per cluster
# of acf-base (4 x 4 clusters, tile side 16)
CASES = {
    "matmul-k16": (gemm(64, 256, 16), [(64, 16), (16, 256)]),
    "matmul-k32": (gemm(64, 256, 32), [(64, 32), (32, 256)]),
    "linear-k32": (linear(256, 64, 32), [(256, 32), (64, 32)]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reuse_keeps_results_and_saves_loads_bytes_and_cycles(
        case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    text, shapes = CASES[case]
    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    want = expected(text, args)[0]
    t = load_target("acf-base")
    runs = {}
    for reuse in (False, True):
        c = build(text, reuse, monkeypatch)
        check_tokens(c.program)
        res = emulator.run(c.program, t, c.bind(args))
        check_close(res.outputs[c.outputs[0]], want)
        lds = sum(1 for ins in c.program.instructions if ins.mnemonic == "ld")
        runs[reuse] = (lds, res.report.memory_bytes["dram_bytes"], res.report.total_cycles)
    (ld0, bytes0, cyc0), (ld1, bytes1, cyc1) = runs[False], runs[True]
    assert ld1 < ld0
    assert bytes1 < bytes0
    assert cyc1 < cyc0


@pytest.mark.parametrize("m,n,t,step,clusters,split,want", [
    (64, 256, 144, 16, 16, (True, True), (32, 32)),     # 2 x 128 -> 16 tiles of 32 x 32
    (64, 256, 144, 16, 16, (True, False), (16, 144)),   # packed weight: only the rows split
    (16, 64, 52, 4, 4, (True, False), (8, 52)),
    (1000, 1000, 144, 16, 16, (True, True), (144, 144)),  # enough tiles: equal, in PE folds
    (300, 20, 144, 16, 16, (True, True), (32, 16)),
    (16, 16, 144, 16, 16, (True, True), (16, 16)),      # one fold: nothing left to split
])
def test_gemm_output_tiles_fill_the_fabric(m, n, t, step, clusters, split, want) -> None:
    from acf.compiler.codegen.tiling import gemm_output_tile

    tm, tn = gemm_output_tile(m, n, t, clusters, step_m=step, step_n=step,
                              split_m=split[0], split_n=split[1])
    assert (tm, tn) == want
    assert tm <= t and tn <= t
    if not split[1]:
        assert tn == t


def test_small_linear_layer_uses_every_cluster() -> None:
    """16 x 64 . (64 x 64)^T on acf-small's four clusters: four output tiles, one per
    cluster (it was two, one of them a 12-column sliver)."""
    text = ("graph.func @f(%x: tensor<16x64xf32>, %w: tensor<64x64xf32>) -> (tensor<16x64xf32>) {\n"
            "  %y = graph.linear %x, %w : tensor<16x64xf32>, tensor<64x64xf32> -> tensor<16x64xf32>\n"
            "  graph.return %y : tensor<16x64xf32>\n}\n")
    c = compile_text(text)
    mms = [ins for ins in c.program.instructions if ins.mnemonic == "mm"]
    assert {ins.cluster for ins in mms} == {0, 1, 2, 3}
    assert {(ins["m"], ins["n"]) for ins in mms} == {(16, 16)}
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((16, 64)).astype(np.float32),
            rng.standard_normal((64, 64)).astype(np.float32)]
    check_tokens(c.program)
    got = emulator.run(c.program, load_target("acf-small"), c.bind(args)).outputs[c.outputs[0]]
    check_close(got, expected(text, args)[0])
