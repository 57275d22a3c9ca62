"""Batch norm with its channel block resident (``norm._BnTiles.resident``): where every
image's planes of a block of channels fit the scratchpad, the statistics pass loads them
once and the normalize (or input-gradient) pass works on them in place. Results equal the
interpreter's on every path; the DRAM bytes show x (and g) read once instead of twice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from acf.compiler.codegen.kernels import norm
from acf.compiler.codegen.memory import Buffer
from acf.compiler.codegen.tiling import choose_tiling
from acf.isa.target import load_target

from .helpers import check_close, check_tokens, compile_text, expected, fused, run_checked
from .test_training_kernels import emulate, func, rnd


class _Ctx:
    """What ``_BnTiles`` reads of a kernel context."""

    def __init__(self, target: str) -> None:
        t = load_target(target)
        self.tiling = choose_tiling(t)
        self.streams = [None] * t.num_clusters


def _plan(target: str, shape: tuple[int, ...], tensors: int, temps: int = 0):
    r = norm._BnTiles.resident(_Ctx(target), Buffer(0, shape), tensors, temps)
    return None if r is None else (r[1], r[0].cb, len(r[0].chunks))


def test_resident_plans_for_resnet18_batch_32() -> None:
    """(blocks held at once, channels per block, tiles per block) on acf-base: layer1's
    backward (g and x of one channel, every image: 256 KB) fits once, so one block at a
    time; everything else double-buffers whole blocks; blocks spread evenly over the 16
    clusters (no cluster takes more channels than c / 16 rounded up)."""
    assert _plan("acf-base", (32, 64, 32, 32), 1) == (2, 1, 2)
    assert _plan("acf-base", (32, 64, 32, 32), 2, 1) == (1, 1, 2)
    for c, hw in ((128, 16), (256, 8), (512, 4)):
        for tensors, temps in ((1, 0), (2, 1)):
            sets, cb, _ = _plan("acf-base", (32, c, hw, hw), tensors, temps)
            assert sets == 2
            assert math.ceil(math.ceil(c / cb) / 16) * cb == math.ceil(c / 16)
    assert _plan("acf-base", (128, 64, 32, 32), 1) is None  # 512 KB per channel


CASES = {  # acf-small (64 KB scratchpad, 4 clusters): which plan each shape takes
    "two-blocks-two-tiles": ((32, 16, 8, 8), True),    # forward (2, 2, 2), backward (2, 1, 1)
    "backward-two-tiles": ((44, 8, 8, 8), True),       # forward (2, 2, 3), backward (2, 1, 2)
    "one-block-two-tiles": ((2, 3, 40, 40), True),     # backward (1, 1, 2): one image a tile
    "streamed": ((4, 2, 64, 64), False),               # 64 KB per channel: not resident
}


@pytest.mark.parametrize("case", list(CASES))
def test_batch_norm_forward_and_backward(case: str) -> None:
    shape, resident = CASES[case]
    n, c, h, w = shape
    assert (_plan("acf-small", shape, 2, 1) is not None) == resident
    text = func({"x": shape, "wt": (c,), "b": (c,), "g": shape}, [
        ("y, mean, inv", "batch_norm", ["x", "wt", "b"], "", [shape, (c,), (c,)]),
        ("gx, gw, gb", "batch_norm_backward", ["g", "x", "wt", "mean", "inv"], "",
         [shape, (c,), (c,)]),
    ], ["y", "mean", "inv", "gx", "gw", "gb"])
    rng = np.random.default_rng(11)
    args = [rnd(rng, *shape) * 3 - 1, rnd(rng, c), rnd(rng, c), rnd(rng, *shape)]
    c_ = compile_text(text)
    check_tokens(c_.program)
    outs, result = emulate(c_, args)
    for got, want in zip(outs, expected(text, args)):
        check_close(got, want)
    # forward: x in, y out; backward: g and x in, gx out; resident: each once, else the
    # statistics pass reads x (and g) a second time
    tensor = 4 * n * c * h * w
    moved = result.report.memory_bytes["dram_bytes"] / tensor
    print(f"{case}: {moved:.2f} tensors moved")
    assert (5.0 <= moved < 5.1) if resident else (8.0 <= moved < 8.1)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_relu_backward(case: str) -> None:
    """``fuse-activations`` folds ``relu_backward(g, y)`` into the batch norm's backward:
    the results equal the unfused pair's bit for bit, and the masked gradient never reaches
    DRAM (resident: g, y and x read once, gx written: 4 tensors against the pair's 6;
    streamed: the masked g goes to a scratch copy for the second pass, 7 against 8)."""
    shape, resident = CASES[case]
    n, c, h, w = shape
    text = func({"x": shape, "wt": (c,), "mean": (c,), "inv": (c,), "g": shape, "y": shape}, [
        ("gr", "relu_backward", ["g", "y"], "", [shape]),
        ("gx, gw, gb", "batch_norm_backward", ["gr", "x", "wt", "mean", "inv"], "",
         [shape, (c,), (c,)]),
    ], ["gx", "gw", "gb"])
    folded = fused(text)
    assert "relu_backward" not in folded and 'activation = "relu"' in folded
    rng = np.random.default_rng(12)
    x = rnd(rng, *shape) * 2 + 1
    stats = [x.mean(axis=(0, 2, 3)), 1 / np.sqrt(x.var(axis=(0, 2, 3)) + 1e-5)]
    args = [x, rnd(rng, c), *(v.astype(np.float32) for v in stats), rnd(rng, *shape),
            rnd(rng, *shape)]
    runs = [run_checked(t, args, expected(text, args)) for t in (text, folded)]
    (plain, plain_moved), (outs, moved) = [
        (o, r.report.memory_bytes["dram_bytes"] / (4 * n * c * h * w)) for o, r in runs]
    for a, b in zip(plain, outs):
        np.testing.assert_array_equal(a, b)
    print(f"{case}: {plain_moved:.2f} -> {moved:.2f} tensors moved")
    assert (4.0 <= moved < 4.1 and 6.0 <= plain_moved < 6.1) if resident else \
        (7.0 <= moved < 7.1 and 8.0 <= plain_moved < 8.1)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_residual_add(case: str) -> None:
    """``fuse-activations`` folds ``relu(add(batch_norm(x).out, r))`` into the batch norm:
    the results equal the interpreter's, and the batch norm's output is not written and read
    back (resident: x and r in, the sum out: 3 tensors against 7 for batch norm, add and
    ReLU unfused; streamed: 4 against 8)."""
    shape, resident = CASES[case]
    n, c, h, w = shape
    text = func({"x": shape, "wt": (c,), "b": (c,), "r": shape}, [
        ("y, mean, inv", "batch_norm", ["x", "wt", "b"], "", [shape, (c,), (c,)]),
        ("s", "add", ["y", "r"], "", [shape]),
        ("o", "relu", ["s"], "", [shape]),
    ], ["o", "mean", "inv"])
    folded = fused(text)
    assert "graph.add" not in folded and "graph.relu " not in folded
    rng = np.random.default_rng(13)
    args = [rnd(rng, *shape) * 2 + 1, rnd(rng, c), rnd(rng, c), rnd(rng, *shape)]
    moved = [run_checked(t, args, expected(text, args))[1].report.memory_bytes["dram_bytes"]
             / (4 * n * c * h * w) for t in (text, folded)]
    print(f"{case}: {moved[0]:.2f} -> {moved[1]:.2f} tensors moved")
    want = (7.0, 3.0) if resident else (8.0, 4.0)
    assert all(w <= m < w + 0.1 for m, w in zip(moved, want))
