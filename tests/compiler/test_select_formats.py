"""``select-formats`` diagnostics: a problem met while costing a format is reported at the
GEMM whose cost it was computing (the cost model's kernel context has no IR op of its own)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
from acf.compiler import gemm_replay
from acf.compiler.diagnostics import IRError
from acf.compiler.parser import parse_module
from acf.compiler.passes.select_formats import SelectFormats

LAYER = """#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>
graph.func @f(%x: tensor<16x64xf32>, %w: tensor<64x64xf32, #csr> {density = 0.1}) -> (tensor<16x64xf32>) {
  %y = graph.linear %x, %w : tensor<16x64xf32>, tensor<64x64xf32, #csr> -> tensor<16x64xf32>
  graph.return %y : tensor<16x64xf32>
}
"""


def test_an_error_while_costing_is_located_at_the_gemm(monkeypatch) -> None:
    def broken(ctx, g):
        raise ctx.error("internal error: 64x1 access at (0,0) is not a packed 52x52 tile")

    monkeypatch.setattr(gemm_replay, "emit_gemm", broken)
    monkeypatch.setattr(gemm_replay, "_RECORDED", OrderedDict())  # nothing recorded to reuse
    module = parse_module(LAYER, "layer.acfir")
    with pytest.raises(IRError) as info:
        SelectFormats(target="acf-small").run(module)
    text = str(info.value)
    assert text.startswith("layer.acfir:3:8: error: 'graph.linear': costing %w as "), text
    assert text.count("internal error: 64x1 access at (0,0)") == 1, text
