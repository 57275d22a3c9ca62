"""Graph rewrites keep what the function computes: the numpy interpreter gives the same
results before and after a pipeline, on inputs chosen where a wrong rewrite shows."""

from __future__ import annotations

import numpy as np
import pytest
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager, parse_pipeline
from acf.compiler.printer import print_module

# a momentum SGD step of a CSR weight, its new value masked afterwards: the update keeps
# w's zero pattern (w and the momentum stay where w == 0); folding the mask into the update
# as its mask operand would let the mask decide instead
ENCODED_UPDATE_THEN_MASK = """#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>
graph.func @f(%w: tensor<4x4xf32, #csr>, %g: tensor<4x4xf32>, %buf: tensor<4x4xf32>, %m: tensor<4x4xf32>) -> (tensor<4x4xf32, #csr>, tensor<4x4xf32>) {
  %nw, %nb = graph.sgd_update %w, %g, %buf {lr = 0.1, momentum = 0.9} : tensor<4x4xf32, #csr>, tensor<4x4xf32>, tensor<4x4xf32> -> tensor<4x4xf32, #csr>, tensor<4x4xf32>
  %mw = graph.mask_apply %nw, %m : tensor<4x4xf32, #csr>, tensor<4x4xf32> -> tensor<4x4xf32, #csr>
  graph.return %mw, %nb : tensor<4x4xf32, #csr>, tensor<4x4xf32>
}
"""

# x + 0 then a ReLU: fuse-activations puts the ReLU on the add, canonicalize folds the add
RELU_OF_IDENTITY = """graph.func @f(%x: tensor<2x3xf32>) -> (tensor<2x3xf32>) {
  %z = graph.constant {value = dense<0.0> : tensor<2x3xf32>} : () -> tensor<2x3xf32>
  %s = graph.add %x, %z : tensor<2x3xf32>, tensor<2x3xf32> -> tensor<2x3xf32>
  %r = graph.relu %s : tensor<2x3xf32> -> tensor<2x3xf32>
  graph.return %r : tensor<2x3xf32>
}
"""


def _same_results(text: str, pipeline: str, args: list[np.ndarray]) -> str:
    want = run_func(parse_module(text).funcs[0], args)
    module = parse_module(text)
    PassManager(parse_pipeline(pipeline)).run(module)
    got = run_func(module.funcs[0], args)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6, atol=1e-6)
    return print_module(module)


@pytest.mark.parametrize("pipeline", ["sparsity-propagation", "sparse-training"])
def test_masking_an_encoded_update_keeps_its_zero_pattern(pipeline: str) -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 4)).astype(np.float32)
    w[rng.random((4, 4)) < 0.5] = 0
    g, buf = (rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2))
    m = np.ones((4, 4), np.float32)  # keeps everything: the mask adds no zeros of its own
    out = _same_results(ENCODED_UPDATE_THEN_MASK, pipeline, [w, g, buf, m])
    assert "graph.mask_apply" in out  # not folded into the update


@pytest.mark.parametrize("pipeline", ["fuse-activations,canonicalize",
                                      "fuse-activations,canonicalize,fuse-activations"])
def test_folding_an_add_keeps_its_fused_relu(pipeline: str) -> None:
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    _same_results(RELU_OF_IDENTITY, pipeline, [x])
