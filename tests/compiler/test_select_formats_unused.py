"""``select-formats`` on a sparse 2-D argument that no GEMM uses: with no GEMM to cost, a
format costs what loading the value once costs, the sum of ``cost_model.tile_cost`` load
cycles over its ``t x t`` tiles -- edge tiles included at their real, smaller size."""

from __future__ import annotations

import numpy as np
import pytest
from acf.compiler import cost_model as cm
from acf.compiler.codegen.tiling import choose_tiling
from acf.compiler.parser import parse_module
from acf.compiler.passes.select_formats import SelectFormats
from acf.isa.target import load_target

# w (120 x 70) is read only by a relu: no linear / matmul / sddmm uses it
UNUSED = """#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>
graph.func @f(%x: tensor<16x64xf32>, %w: tensor<120x70xf32, #csr> {density = 0.3}) -> (tensor<16x64xf32>, tensor<120x70xf32>) {
  %r = graph.relu %w : tensor<120x70xf32, #csr> -> tensor<120x70xf32>
  graph.return %x, %r : tensor<16x64xf32>, tensor<120x70xf32>
}
"""

# acf-small's tile side is 52 (the largest PE-aligned side that fits its buffers), so the
# 120 x 70 value splits into row blocks of 52, 52, 120 - 104 = 16 and column blocks of
# 52, 70 - 52 = 18: six tiles, four of them partial.
T = 52
ROW_BLOCKS = [(0, 52), (52, 52), (104, 16)]
COL_BLOCKS = [(0, 52), (52, 18)]


def test_the_tiling_is_the_one_the_hand_split_assumes() -> None:
    assert choose_tiling(load_target("acf-small")).t == T
    assert sum(n for _, n in ROW_BLOCKS) == 120 and sum(n for _, n in COL_BLOCKS) == 70


def test_unused_value_costs_one_load_of_its_tiles_at_a_density() -> None:
    target = load_target("acf-small")
    module = parse_module(UNUSED, "unused.acfir")
    sf = SelectFormats(target="acf-small")
    sf.run(module)
    choice = sf.choices["w"]
    assert choice.density == 0.3
    assert set(choice.costs) == {"dense", "csr", "csc", "coo", "bitmap", "bcsr4x4"}
    for fmt, cost in choice.costs.items():
        want = sum(cm.tile_cost(target, fmt, rows, cols, density=0.3).load_cycles
                   for _, rows in ROW_BLOCKS for _, cols in COL_BLOCKS)
        assert cost == want, fmt
        # costing every tile as a full 52 x 52 one would give more: the edges are smaller
        full = 6 * cm.tile_cost(target, fmt, T, T, density=0.3).load_cycles
        assert cost < full, fmt
    # the choice is the cheapest, or the current format when within 1 % of it
    best = min(choice.costs.values())
    assert choice.costs[choice.format] <= 1.01 * best


def test_unused_value_costs_its_mask_tile_by_tile() -> None:
    """With the actual mask, each tile is costed from its own slice of the mask (here a
    dense top-left block and empty elsewhere, so a misplaced slice shows)."""
    target = load_target("acf-small")
    mask = np.zeros((120, 70), bool)
    mask[:52, :52] = True
    mask[110, 60] = True  # one non-zero in the bottom-right 16 x 18 edge tile
    module = parse_module(UNUSED, "unused.acfir")
    sf = SelectFormats(masks={"w": mask}, target="acf-small")
    sf.run(module)
    choice = sf.choices["w"]
    assert choice.density == pytest.approx((52 * 52 + 1) / (120 * 70))
    for fmt, cost in choice.costs.items():
        want = 0
        for r0, rows in ROW_BLOCKS:
            for c0, cols in COL_BLOCKS:
                tile = mask[r0:r0 + rows, c0:c0 + cols]
                assert tile.shape == (rows, cols)
                want += cm.tile_cost(target, fmt, rows, cols, mask=tile,
                                     density=choice.density).load_cycles
        assert cost == want, fmt
