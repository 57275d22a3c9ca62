"""``tile{m=..,n=..,k=..,target=..}``: choose the tile sizes of every op that produces code
and record them as ``acf_tile = [m, n, k]`` (see :mod:`acf.compiler.dialects.tiled`).

A size left at 0 is the tiler's choice for the target (``codegen.tiling.choose_tiling``:
the largest PE-aligned side whose double-buffered A, B and sampling tiles fit the
scratchpad and whose double-buffered C tile fits the accumulator). Sizes that do not fit
the target are a located error at the first op. The GEMM kernels tile their output in at
most ``m x n`` tiles and reduce in k-chunks of at most ``k``; sparse tensors are packed in
square tiles of the smallest size, so that a sparse tensor keeps one packed tile grid in
each role it plays (forward operand, transposed in backward-data, sampled in the weight
gradient), and a GEMM dimension along a packed sparse operand or result is tiled at that
side (``codegen.tiling``). The conv kernels use the smallest size too, and vector kernels
tiles of at most its square. An op without a
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
from ..codegen.kernels.optim import packed_update_fits
from ..codegen.tiling import gemm_bytes, tiler_choice
from ..dialects.tiled import TILE, code_ops
from ..ir import FuncOp, Location, Module
from .base import ModulePass, OptionValueError, PassOption, target_option


def _size(text: str) -> int:
    """A tile size option: a whole number, 0 for the tiler's choice."""
    value = int(text)
    if value < 0:
        raise OptionValueError(f"{value} is negative (0: the tiler's choice)")
    return value


_size.__name__ = "a tile size"  # read by PassOption's error message


class Tile(ModulePass):
    """Annotate tile sizes, checked against the target's on-chip buffers."""

    name = "tile"
    options = {
        "m": PassOption(_size, 0, "GEMM tile rows (0: the tiler's choice)"),
        "n": PassOption(_size, 0, "GEMM tile columns (0: the tiler's choice)"),
        "k": PassOption(_size, 0, "GEMM tile depth (0: the tiler's choice)"),
        "target": PassOption(target_option, "acf-base", "target name"),
    }
    m: int
    n: int
    k: int
    target: str

    def run(self, module: Module) -> None:
        target = load_target(self.target)
        for func in module.funcs:
            # the tiler's side, as compile_module picks it (smaller where a packed update
            # would not fit the scratchpad, or where it would split an N:M tensor's groups)
            side = tiler_choice(func, target, packed_update_fits).t
            sizes = [v or side for v in (self.m, self.n, self.k)]
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
