"""``lower-to-acf{target=..}``: replace every annotated ``graph.func`` by its ACF program in
the ``acf`` dialect, one ``acf.<mnemonic>`` op per instruction
(:mod:`acf.compiler.dialects.acf`).

Consumes the ``tiled`` annotations (:mod:`acf.compiler.dialects.tiled`): ``acf_tile`` gives
the tile sizes (all ops must agree: sparse tensors are packed once, in one tile grid),
``acf_place`` each op's placement and ``acf_sync`` the barrier before it, then drives the
codegen steps ``begin`` / ``lower_op`` / ``finish``. Without annotations changed by hand
the program is the one ``compile_module`` builds for the same tile sizes.

A dense ``graph.linear`` of a 16 x 64 ``%x`` by a 64 x 64 ``%w``, after
``tile{target=acf-small},place,schedule,lower-to-acf{target=acf-small}`` (the tile pass
sizes the tiles for its own target option, acf-base by default: give both the target)::

    graph.func @layer() -> () {
      "acf.target"() {name = "acf-small"} : () -> ()
      "acf.tensor"() {name = "x", space = "dram", addr = 4096, shape = [16, 64]} : () -> ()
      "acf.tensor"() {name = "w", space = "dram", addr = 8192, shape = [64, 64]} : () -> ()
      "acf.tensor"() {name = "result0", space = "dram", addr = 24576, shape = [16, 64]} : () -> ()
      "acf.ld"() {dst = "sp[0x0]", src = "dram[0x1000]", fmt = "dense", rows = 16, cols = 52, ...
      ...
      "acf.halt"() : () -> ()
      graph.return
    }

The binding facts a runtime needs beyond the program (argument order, one-hot labels,
constant values, the optimizer ``hyper`` layout) are kept on the pass as ``compiled``.
"""

from __future__ import annotations

from typing import Any

from acf.isa.target import load_target

from ..codegen.errors import error_at
from ..codegen.lower import CompiledProgram, CompileOptions, begin, finish, lower_op
from ..codegen.tiling import choose_tiling
from ..dialects.acf import from_program
from ..dialects.tiled import TILE, code_ops, is_lowered, sync_of, tile_of
from ..ir import FuncOp, Module
from .base import ModulePass, PassOption, target_option
from .place import placement_for


class LowerToAcf(ModulePass):
    """Lower annotated graph functions to acf-dialect programs."""

    name = "lower-to-acf"
    options = {"target": PassOption(target_option, "acf-base", "target name")}
    target: str

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self.compiled: dict[str, CompiledProgram] = {}

    def run(self, module: Module) -> None:
        target = load_target(self.target)
        lowered = []
        for func in module.funcs:
            if is_lowered(func):  # lowered by an earlier run: kept as it is
                lowered.append(func)
                continue
            compiled = self._lower(func, target)
            self.compiled[func.sym_name] = compiled
            lowered += from_program(compiled.program, func.sym_name).funcs
        module.funcs = lowered
        module.aliases = {}

    def _lower(self, func: FuncOp, target) -> CompiledProgram:
        ops = list(code_ops(func))
        tile = self._tile(func, [op for _, op in ops])
        try:
            choose_tiling(target, tile)
        except ValueError as err:  # the tile pass sized the tiles for its own target option
            raise error_at(func, f"{err}; the tile pass sized the tiles for its target option "
                                 f"(give it target={self.target} as well)") from None
        low = begin(func, target, CompileOptions(tile=tile, func=func.sym_name))
        for i, (op_id, op) in enumerate(ops):
            if sync_of(op) != "barrier" and i:
                raise error_at(op, "needs acf_sync = \"barrier\": it follows another op, whose "
                                   "on-chip slots and tokens this kernel reuses")
            lower_op(low, op_id, op, placement_for(op))
        return finish(low)

    @staticmethod
    def _tile(func: FuncOp, ops: list) -> tuple[int, int, int]:
        sizes = {op: tile_of(op) for op in ops}
        first = next(iter(sizes.values()), (0, 0, 0))
        for op, tile in sizes.items():
            if tile != first:
                raise error_at(op, f"'{TILE} = {list(tile)}': every op of @{func.sym_name} must "
                                   f"use one tiling ({list(first)} first); sparse tensors "
                                   "are packed in one tile grid")
        return first
