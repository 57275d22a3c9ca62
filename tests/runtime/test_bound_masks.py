"""``elide_bound_masks``: a masked parameter is bound already masked, so masking it again is
dropped; a sparse-encoded one then reaches its GEMMs encoded."""

from __future__ import annotations

from acf.compiler.parser import parse_module
from acf.runtime.variants import elide_bound_masks

CSR = "#sparse<{map = (i, j) -> (i : dense, j : compressed)}>"


def _func(wtype: str):
    text = f"""graph.func @step(%x: tensor<4x8xf32>, %w: {wtype}, %g: tensor<16x8xf32>, %b: tensor<16x8xf32>, %m: tensor<16x8xf32>) -> (tensor<4x16xf32>, tensor<16x8xf32>) {{
  %wm = graph.mask_apply %w, %m : {wtype}, tensor<16x8xf32> -> tensor<16x8xf32>
  %y = graph.linear %x, %wm : tensor<4x8xf32>, tensor<16x8xf32> -> tensor<4x16xf32>
  %w2, %b2 = graph.sgd_update %w, %g, %b {{lr = 0.1}} : {wtype}, tensor<16x8xf32>, tensor<16x8xf32> -> {wtype}, tensor<16x8xf32>
  %w2m = graph.mask_apply %w2, %m : {wtype}, tensor<16x8xf32> -> tensor<16x8xf32>
  graph.return %y, %w2m : tensor<4x16xf32>, tensor<16x8xf32>
}}
"""
    return parse_module(text).funcs[0]


def test_encoded_parameter_reaches_its_gemm_encoded() -> None:
    func = _func(f"tensor<16x8xf32, {CSR}>")
    assert elide_bound_masks(func, {"w": "m"}) == 2
    names = [op.name for op in func.body.ops]
    assert "graph.mask_apply" not in names
    linear = next(op for op in func.body.ops if op.name == "graph.linear")
    assert linear.operands[1] is func.arguments[1]  # the CSR weight itself
    assert func.function_result_types[1].encoding is not None


def test_dense_parameter_keeps_the_mask_of_its_update() -> None:
    func = _func("tensor<16x8xf32>")
    assert elide_bound_masks(func, {"w": "m"}) == 1  # the argument's mask only
    masked = [op for op in func.body.ops if op.name == "graph.mask_apply"]
    assert len(masked) == 1 and masked[0].operands[0].defining_op.name == "graph.sgd_update"


def test_other_masks_stay() -> None:
    func = _func(f"tensor<16x8xf32, {CSR}>")
    assert elide_bound_masks(func, {"w": "not_m"}) == 0
