"""A linear layer's ReLU on the fabric: forward, the ReLU applied to each GEMM output tile
(``fuse-activations``); backward, the input gradient computed only where the ReLU passed
(``sparsity-propagation``: ``relu_backward(matmul(g, w), relu_out)`` is an ``sddmm``). Both
equal the unfused ops bit for bit, with fewer bytes moved and fewer cycles."""

from __future__ import annotations

import numpy as np
import pytest
from acf.compiler.parser import parse_module
from acf.compiler.passes import PASSES
from acf.compiler.printer import print_module

from .helpers import CSR, compile_text, expected, fused, run_checked
from .test_training_kernels import func, rnd


def _sparsity_propagated(text: str) -> str:
    module = parse_module(text)
    PASSES["sparsity-propagation"]().run(module)
    return print_module(module)


def _both(text: str, rewritten: str, args: list[np.ndarray]):
    want = expected(text, args)
    runs = [run_checked(t, args, want, target="acf-base") for t in (text, rewritten)]
    for a, b in zip(runs[0][0], runs[1][0]):
        np.testing.assert_array_equal(a, b)
    return [r.report for _, r in runs]


def test_linear_relu_runs_on_the_output_tiles() -> None:
    text = func({"x": (64, 96), "w": (128, 96), "b": (128,)}, [
        ("h", "linear", ["x", "w", "b"], "", [(64, 128)]),
        ("a", "relu", ["h"], "", [(64, 128)]),
    ], ["a"])
    folded = fused(text)
    assert "graph.relu" not in folded and 'activation = "relu"' in folded
    rng = np.random.default_rng(21)
    plain, fused_rep = _both(text, folded, [rnd(rng, 64, 96), rnd(rng, 128, 96), rnd(rng, 128)])
    # unfused: h written, read back and a written; fused: a written once
    saved = plain.memory_bytes["dram_bytes"] - fused_rep.memory_bytes["dram_bytes"]
    assert saved >= 2 * 4 * 64 * 128
    assert fused_rep.total_cycles < plain.total_cycles


@pytest.mark.parametrize("k, w_csr", [(32, False), (256, True)])
def test_relu_gated_input_gradient_is_sampled(k: int, w_csr: bool) -> None:
    """Also where the weight is CSR-stored (a masked layer's): the sampled tiles still
    spread over the clusters (a dense sampling tile does not fix the tile grid)."""
    text = func({"h": (64, 128), "gz": (64, k), "w": (k, 128)}, [
        ("a", "relu", ["h"], "", [(64, 128)]),
        ("ga", "matmul", ["gz", "w"], "", [(64, 128)]),
        ("gh", "relu_backward", ["ga", "a"], "", [(64, 128)]),
    ], ["gh"])
    if w_csr:
        text = CSR + text.replace(f"%w: tensor<{k}x128xf32>", f"%w: tensor<{k}x128xf32, #csr>") \
            .replace(f", tensor<{k}x128xf32> -> tensor<64x128xf32>", f", tensor<{k}x128xf32, #csr> -> tensor<64x128xf32>")
    sampled = _sparsity_propagated(text)
    assert "graph.relu_backward" not in sampled and "graph.sddmm %gz, %w, %a" in sampled
    rng = np.random.default_rng(22)
    w = rnd(rng, k, 128) * (rng.random((k, 128)) < (0.1 if w_csr else 1.0))
    plain, rep = _both(text, sampled, [rnd(rng, 64, 128), rnd(rng, 64, k), w.astype(np.float32)])
    prog = compile_text(sampled, "acf-base").program
    assert len({i.cluster for i in prog.instructions if i.mnemonic == "sddmm"}) >= 4
    assert rep.memory_bytes["dram_bytes"] < plain.memory_bytes["dram_bytes"]
    assert rep.total_cycles < plain.total_cycles
    assert rep.macs_effectual_count < 0.6 * plain.macs_effectual_count  # half of h is <= 0
