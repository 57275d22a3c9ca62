"""The examples in pass docstrings are true: the pipeline a docstring names runs on the
input it describes and prints what it shows (each shown line, up to its ``...``)."""

from __future__ import annotations

import re

from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager, parse_pipeline
from acf.compiler.passes import lower_to_acf
from acf.compiler.printer import print_module

# the layer the lower-to-acf docstring describes: a dense linear of 16 x 64 by 64 x 64
DENSE_LAYER = """graph.func @layer(%x: tensor<16x64xf32>, %w: tensor<64x64xf32>) -> (tensor<16x64xf32>) {
  %y = graph.linear %x, %w : tensor<16x64xf32>, tensor<64x64xf32> -> tensor<16x64xf32>
  graph.return %y : tensor<16x64xf32>
}
"""


def test_lower_to_acf_example() -> None:
    doc = lower_to_acf.__doc__ or ""
    example = re.search(r"after\s+``([^`]+)``.*?::\n\n(.*?)\n\n", doc, re.DOTALL | re.IGNORECASE)
    pipeline, shown = example.groups()
    module = parse_module(DENSE_LAYER)
    PassManager(parse_pipeline(pipeline)).run(module)
    printed = [line.strip() for line in print_module(module).splitlines()]
    at = 0
    for line in (s.strip() for s in shown.splitlines()):
        if line == "...":
            continue
        head = line.removesuffix("...").rstrip(" ,")
        at = next((i for i in range(at, len(printed)) if printed[i].startswith(head)), None)
        assert at is not None, f"shown but not printed: {line}"
