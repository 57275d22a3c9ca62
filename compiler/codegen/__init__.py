"""Code generation: a verified ``graph`` function -> an ACF :class:`~acf.isa.program.Program`.

Modules, one concern each: ``tiling`` (tile sizes vs. the target's buffers and the
function's N:M groups), ``memory`` (DRAM plan, ``.tensor`` symbols), ``placement`` (output
tiles -> clusters), ``schedule`` (tokens, barriers, interleaving), ``context`` (what a
kernel emits through), ``kernels/`` (one emitter family per module), ``lower`` (the
driver). Entry point::

    from acf.compiler.codegen import compile_module
    compiled = compile_module(module, load_target("acf-small"))
    compiled.program            # isa.Program (symbols, .loc debug info)
    compiled.bind([x, w, ...])  # runtime inputs by symbol name (+ one-hot labels, hyper)
"""

from .errors import CodegenError
from .lower import CompiledProgram, CompileOptions, compile_module

__all__ = ["CodegenError", "CompileOptions", "CompiledProgram", "compile_module"]
