"""``acfc compile in.acfir --target NAME [-p PIPELINE] [-o out.acfbin | --emit asm|ir]``.

Parses graph-dialect IR ('-' reads stdin), runs the pass pipeline, lowers it to an ACF
program and writes the binary container (``-o``), or prints the assembly (``--emit asm``)
or the acf-level IR (``--emit ir``). Errors print ``file:line:col: error: ...`` and exit 1.
Never imports torch or TVM.
"""

from __future__ import annotations

import argparse

from acf.cli import UserError, read_input, write_output


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="graph IR file (.acfir), or - for stdin")
    p.add_argument("--target", default="acf-base", help="hardware target (default acf-base)")
    p.add_argument("-p", "--pipeline", default="", help="passes to run first, e.g. 'default'")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--emit", choices=("bin", "asm", "ir"), default=None,
                   help="what to write: binary container (default with -o), assembly, acf IR")
    p.add_argument("--tile", type=int, default=0, help="force the tile side (0: tiler's choice)")
    p.add_argument("--func", default=None, help="function to compile (default: the first)")


def run(args: argparse.Namespace) -> int:
    from acf.compiler.codegen import CompileOptions, compile_module
    from acf.compiler.diagnostics import IRError
    from acf.compiler.parser import parse_module
    from acf.compiler.pass_manager import PassFailure, PassManager, parse_pipeline
    from acf.isa.target import TargetError, load_target

    text, name = read_input(args.input)
    try:
        target = load_target(args.target)
    except (TargetError, FileNotFoundError) as err:
        raise UserError(f"acfc: error: {err}") from None
    try:
        passes = parse_pipeline(args.pipeline)
        module = parse_module(str(text), name)
        PassManager(passes).run(module)
        if args.func is not None and args.func not in [f.sym_name for f in module.funcs]:
            raise UserError(f"{name}: error: no function '@{args.func}'")
        compiled = compile_module(module, target, CompileOptions(tile=args.tile, func=args.func))
    except IRError as err:
        from acf.compiler.diagnostics import SourceText

        raise UserError(str(err.with_source(SourceText(name, str(text))))) from None
    except PassFailure as err:
        raise UserError(str(err)) from None
    emit = args.emit or ("bin" if args.output not in (None, "-") else "asm")
    if emit == "asm":
        from acf.isa.disasm import disassemble

        write_output(args.output, disassemble(compiled.program))
    elif emit == "ir":
        from acf.compiler.dialects.acf import from_program
        from acf.compiler.printer import print_module

        func = args.func or (module.funcs[0].sym_name if module.funcs else "main")
        write_output(args.output, print_module(from_program(compiled.program, func)))
    else:
        from acf.isa.container import write

        write_output(args.output, write(compiled.program))
    return 0
