"""The memory plan starts every DRAM buffer on the target's interleave period
(``channels x interleave_bytes``), so a tensor's byte ``b`` lands on channel
``(b // interleave) % channels`` wherever the plan puts it: the mapping the cost model's
replay and the GEMM kernel's k-chunk order assume."""

from __future__ import annotations

import pytest
from acf.compiler.codegen import compile_module
from acf.compiler.codegen.memory import dram_align
from acf.compiler.parser import parse_module
from acf.compiler.sparse_encoding import format_to_encoding
from acf.isa.target import load_target

# odd sizes: a 64-byte bump allocation would leave most buffers off the period
CSR = str(format_to_encoding("csr"))
TEXT = """graph.func @f(%x: tensor<33x100xf32>, %w: tensor<70x100xf32, #csr>, %b: tensor<70xf32>)
    -> (tensor<33x70xf32>, tensor<33x70xf32>) {
  %y = graph.linear %x, %w, %b : tensor<33x100xf32>, tensor<70x100xf32, #csr>, tensor<70xf32> -> tensor<33x70xf32>
  %r = graph.relu %y : tensor<33x70xf32> -> tensor<33x70xf32>
  %s = graph.add %r, %y : tensor<33x70xf32>, tensor<33x70xf32> -> tensor<33x70xf32>
  graph.return %r, %s : tensor<33x70xf32>, tensor<33x70xf32>
}
""".replace("#csr", CSR)


@pytest.mark.parametrize(("tname", "period"), [("acf-small", None), ("acf-base", 2048),
                                               ("acf-wide", 4096)])
def test_buffers_start_on_the_interleave_period(tname: str, period: int | None) -> None:
    t = load_target(tname)
    align = dram_align(t)
    want = int(t.dram.channels) * int(t.dram.interleave_bytes)
    assert align % want == 0 and align % 64 == 0
    if period is not None:
        assert align == period
    c = compile_module(parse_module(TEXT), t)
    addrs = [s.addr for s in c.program.symbols.values()]
    assert len(addrs) >= 5  # x, w, b, both results
    assert all(a % align == 0 for a in addrs)
    # every value's buffer, the heap intermediate %y and the aliased results included
    bufs = list(c.plan.buffers.values())
    assert len({b.addr for b in bufs}) >= 5
    assert all(b.addr % align == 0 for b in bufs)
