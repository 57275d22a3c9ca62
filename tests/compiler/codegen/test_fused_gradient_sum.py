"""``relu_backward(a, y, b)`` (``fuse-activations`` folds ``relu_backward(add(a, b), y)``):
a residual branch point's two gradients summed on the ReLU backward's tiles. Equal to the
unfused pair bit for bit; the sum is never written and read back."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import expected, fused, run_checked
from .test_training_kernels import func, rnd


@pytest.mark.parametrize("shape", [(32, 16, 8, 8), (3, 5, 7)])
def test_gradient_sum_folded_into_relu_backward(shape) -> None:
    text = func({"a": shape, "b": shape, "y": shape}, [
        ("s", "add", ["a", "b"], "", [shape]),
        ("gr", "relu_backward", ["s", "y"], "", [shape]),
        ("e", "mul", ["gr", "gr"], "", [shape]),
    ], ["gr", "e"])
    folded = fused(text)
    assert "graph.add" not in folded and "graph.relu_backward %a, %y, %b" in folded
    rng = np.random.default_rng(14)
    args = [rnd(rng, *shape), rnd(rng, *shape), rnd(rng, *shape)]
    want = expected(text, args)
    for a, b in zip(want, expected(folded, args)):  # the interpreter agrees with itself
        np.testing.assert_array_equal(a, b)
    (plain, plain_moved), (outs, moved) = [
        (o, r.report.memory_bytes["dram_bytes"] / (4 * np.prod(shape)))
        for o, r in (run_checked(t, args, want) for t in (text, folded))]
    for a, b in zip(plain, outs):
        np.testing.assert_array_equal(a, b)
    # add: a, b in, s out; relu_backward: s, y in, gr out; mul: gr in, e out (9); fused 7
    assert 9.0 <= plain_moved < 9.1 and 7.0 <= moved < 7.1, (plain_moved, moved)
