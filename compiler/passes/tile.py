"""``tile{m=..,n=..,k=..,target=..}``: choose the tile sizes of every op that produces code
and record them as ``acf_tile = [m, n, k]`` (see :mod:`acf.compiler.dialects.tiled`).

A size left at 0 is the tiler's choice for the target (``codegen.tiling.choose_tiling``:
the largest PE-aligned side whose double-buffered A, B and sampling tiles fit the
scratchpad and whose double-buffered C tile fits the accumulator). Sizes that do not fit
the target are a located error at the first op, and so are unequal sizes: the kernels tile
every GEMM dimension with one side so that a sparse tensor keeps one packed tile grid in
each role it plays (forward operand, transposed in backward-data, sampled in the weight
gradient). Vector kernels use tiles of at most ``m * n`` elements. An op without a
``loc(...)`` gets its position in the input as one, so the debug info of the lowered
program names the user's file and line however often the IR is printed and re-parsed.

Before::

    %y = graph.linear %x, %w : tensor<16x64xf32>, tensor<64x64xf32, #csr> -> tensor<16x64xf32>

After ``tile{m=32,n=32,k=32,target=acf-small}``::

    %y = graph.linear %x, %w {acf_tile = [32, 32, 32]} : tensor<16x64xf32>, ... loc("in.acfir":3:8)
"""

from __future__ import annotations

from acf.isa.target import load_target

from ..codegen.errors import error_at
from ..codegen.tiling import F32, choose_tiling
from ..dialects.tiled import TILE, code_ops
from ..ir import FuncOp, Location, Module
from .base import ModulePass, PassOption, target_option


def gemm_bytes(m: int, n: int, k: int) -> tuple[int, int]:
    """(scratchpad, accumulator) bytes of a double-buffered m x n x k GEMM tile set: A, B and
    the sampling tile S in the scratchpad, C in the accumulator."""
    return 2 * F32 * (m * k + k * n + m * n), 2 * F32 * m * n


class Tile(ModulePass):
    """Annotate tile sizes, checked against the target's on-chip buffers."""

    name = "tile"
    options = {
        "m": PassOption(int, 0, "GEMM tile rows (0: the tiler's choice)"),
        "n": PassOption(int, 0, "GEMM tile columns (0: the tiler's choice)"),
        "k": PassOption(int, 0, "GEMM tile depth (0: the tiler's choice)"),
        "target": PassOption(target_option, "acf-base", "target name"),
    }
    m: int
    n: int
    k: int
    target: str

    def run(self, module: Module) -> None:
        target = load_target(self.target)
        side = choose_tiling(target).t
        sizes = [v or side for v in (self.m, self.n, self.k)]
        for func in module.funcs:
            self._check(func, target, *sizes)
            for _, op in code_ops(func):
                op.attributes[TILE] = list(sizes)
                if op.loc is None and op.pos is not None:  # printed, the position would
                    op.loc = Location(op.pos.file, op.pos.line, op.pos.col)  # be the dump's

    def _check(self, func: FuncOp, target, m: int, n: int, k: int) -> None:
        where = next((op for _, op in code_ops(func)), func)
        text = f"tile{{m={m},n={n},k={k}}}"
        spad, acc = gemm_bytes(m, n, k)
        have_spad, have_acc = int(target.cluster.spad_bytes), int(target.cluster.acc_bytes)
        if min(m, n, k) <= 0:
            raise error_at(where, f"{text}: tile sizes must be positive")
        if spad > have_spad or acc > have_acc:
            raise error_at(where, f"{text} needs {spad} scratchpad bytes and {acc} accumulator "
                                  f"bytes per cluster; {target.name} has {have_spad} and "
                                  f"{have_acc}")
        if not m == n == k:
            raise error_at(where, f"{text}: the ACF kernels need m = n = k (one tile side keeps "
                                  "a sparse tensor's packed tile grid valid in every GEMM role)")
