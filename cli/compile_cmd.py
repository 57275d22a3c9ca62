"""``acfc compile in.acfir --target NAME [-p PIPELINE] [-o out.acfbin | --emit asm|ir]``.

Parses graph-dialect IR ('-' reads stdin), runs the pass pipeline, lowers it to an ACF
program and writes the binary container (``-o``), or prints the assembly (``--emit asm``)
or the acf-level IR (``--emit ir``). Errors print ``file:line:col: error: ...`` and exit 1.
IR already at the acf level (``-p '...,lower-to-acf'``, ``acfc opt``) is the program, for
the target of its ``acf.target``. Never imports torch or TVM.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Iterator

from acf.cli import UserError, read_input, refuse_same_files, write_output


def tile_sizes(text: str) -> int | tuple[int, int, int]:
    """``--tile``: one side (``144``) or GEMM sizes ``m,n,k`` (``32,32,64``)."""
    parts = text.split(",")  # a negative side parses, and the tiler says why it is wrong
    if len(parts) not in (1, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a tile side or M,N,K")
    sizes = tuple(int(p) for p in parts)
    return sizes[0] if len(sizes) == 1 else sizes  # type: ignore[return-value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="graph IR file (.acfir), - for stdin, or model.py:factory "
                   "with --train")
    p.add_argument("--target", default=None, help="hardware target (default acf-base, or the "
                   "acf.target of acf-level IR)")
    p.add_argument("-p", "--pipeline", default="", help="passes to run first, e.g. 'default'")
    p.add_argument("-o", "--output", default=None, help="output file (default: stdout)")
    p.add_argument("--emit", choices=("bin", "asm", "ir"), default=None,
                   help="what to write: binary container (default with -o), assembly, acf IR")
    p.add_argument("--tile", type=tile_sizes, default=0, metavar="T|M,N,K",
                   help="force the tile side, or the GEMM tile sizes M,N,K (0: tiler's choice)")
    p.add_argument("--func", default=None, help="function to compile (default: the first)")
    t = p.add_argument_group("training step of a PyTorch model (input model.py:factory)")
    t.add_argument("--train", action="store_true",
                   help="capture and compile the model's whole training step")
    t.add_argument("--input-shape", default=None, help="input shape, e.g. 32,3,32,32")
    t.add_argument("--num-classes", type=int, default=10, help="label classes (default 10)")
    t.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="sgd")
    t.add_argument("--lr", type=float, default=None, help="learning rate")
    t.add_argument("--density", type=float, default=1.0,
                   help="weight density of random masks on every weight (default 1: dense)")
    t.add_argument("--seed", type=int, default=0, help="seed of the inputs, labels and masks")


def run(args: argparse.Namespace) -> int:
    # with --train the input is model.py:factory, and the file read is model.py
    source = (args.input.rpartition(":")[0] or args.input) if args.train else args.input
    refuse_same_files([("-o", args.output)], [("input", source), ("--target file", (
        args.target if args.target and os.path.isfile(args.target) else None))])
    if args.train:
        return run_train(args)
    from acf.compiler.codegen import CompileOptions, compile_module
    from acf.compiler.diagnostics import IRError
    from acf.compiler.parser import parse_module
    from acf.compiler.pass_manager import PassFailure, PassManager, parse_pipeline
    from acf.isa.target import TargetError, load_target

    text, name = read_input(args.input)
    try:
        target = load_target(args.target or "acf-base")
    except (TargetError, FileNotFoundError) as err:
        raise UserError(f"acfc: error: {err}") from None
    try:
        passes = parse_pipeline(args.pipeline)
        module = parse_module(str(text), name)
        if not module.funcs:
            raise UserError(f"{name}:1:1: error: no function to compile (the input holds no "
                            "graph.func)")
        PassManager(passes).run(module)
        if args.func is not None and args.func not in [f.sym_name for f in module.funcs]:
            raise UserError(f"{name}: error: no function '@{args.func}'")
        if _is_acf_level(module):
            program = _acf_program(module, args, name)
        else:
            compiled = compile_module(module, target, CompileOptions(tile=args.tile, func=args.func))
            program = compiled.program
            if any(slot.op == "graph.adam_update" and not isinstance(slot.step_input, float)
                   for slot in compiled.hyper.slots):  # a step argument: its value varies
                print(f"{name}: note: the program's 'hyper' data holds Adam's bias corrections "
                      "for step 1; a run at another step binds 'hyper' as an input (the runtime "
                      "computes it from the step operand)", file=sys.stderr)
    except IRError as err:
        from acf.compiler.diagnostics import SourceText

        raise UserError(str(err.with_source(SourceText(name, str(text))))) from None
    except PassFailure as err:
        raise UserError(str(err)) from None
    emit = args.emit or ("bin" if args.output not in (None, "-") else "asm")
    if emit == "asm":
        from acf.isa.disasm import disassemble

        write_output(args.output, disassemble(program))
    elif emit == "ir":
        from acf.compiler.dialects.acf import from_program
        from acf.compiler.printer import print_module

        func = args.func or (module.funcs[0].sym_name if module.funcs else "main")
        write_output(args.output, print_module(from_program(program, func)))
    else:
        from acf.isa.container import write

        write_output(args.output, write(program))
    return 0


def _is_acf_level(module) -> bool:
    return any(op.name.startswith("acf.") for op in module.walk())


def _acf_program(module, args: argparse.Namespace, name: str):
    """The program of acf-level IR; ``--target`` must agree with its ``acf.target``."""
    from acf.compiler.dialects.acf import to_program

    program = to_program(module, args.func)
    if args.target and program.target and args.target != program.target:
        raise UserError(f"{name}: error: the IR is lowered for '{program.target}', not "
                        f"'{args.target}'")
    return program


# ---- acfc compile model.py:factory --train ----------------------------------------------

def _shape(text: str | None) -> tuple[int, ...]:
    if not text:
        raise UserError("acfc: error: --train needs --input-shape, e.g. 32,3,32,32")
    try:
        dims = tuple(int(d) for d in text.split(","))
    except ValueError:
        raise UserError(f"acfc: error: --input-shape {text!r}: expected integers like "
                        "32,3,32,32") from None
    if not dims or any(d <= 0 for d in dims):
        raise UserError(f"acfc: error: --input-shape {text!r}: dimensions must be positive")
    return dims


def _factory(spec: str):
    import importlib.util

    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise UserError(f"acfc: error: {spec!r}: expected model.py:factory with --train")
    if not os.path.isfile(path):
        raise UserError(f"{path}: error: no such file")
    mod_name = "_acfc_model_" + os.path.splitext(os.path.basename(path))[0]
    spec_ = importlib.util.spec_from_file_location(mod_name, path)
    if spec_ is None or spec_.loader is None:
        raise UserError(f"{path}: error: cannot import (not a Python file?)")
    module = importlib.util.module_from_spec(spec_)
    try:
        spec_.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file
        raise UserError(f"{path}: error: importing it raised {type(exc).__name__}: {exc}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise UserError(f"{path}: error: no function or class {name!r}")
    return path, fn


def run_train(args: argparse.Namespace) -> int:
    shape = _shape(args.input_shape)
    if not 0.0 < args.density <= 1.0:
        raise UserError(f"acfc: error: --density {args.density}: must be in (0, 1]")
    if args.num_classes < 1:
        raise UserError("acfc: error: --num-classes must be positive")
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr >= 0):
        raise UserError(f"acfc: error: --lr {args.lr}: must be a finite, non-negative rate")
    path, factory = _factory(args.input)
    from acf.isa.target import TargetError, load_target

    try:
        target = load_target(args.target or "acf-base")
    except (TargetError, FileNotFoundError) as err:
        raise UserError(f"acfc: error: {err}") from None
    import torch
    from acf.compiler.codegen import CodegenError
    from acf.compiler.diagnostics import IRError
    from acf.compiler.pass_manager import PassFailure
    from acf.frontends.aten_to_ir import UnsupportedOpError
    from acf.frontends.training_step import capture_training_step
    from acf.runtime import Session, SessionOptions

    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise UserError(f"{path}: error: {args.input}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{path}: error: {args.input}() returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(*shape, generator=g)
    y = torch.randint(0, args.num_classes, (shape[0],), generator=g)
    masks = {n: (torch.rand(p.shape, generator=g) < args.density).float()
             for n, p in model.named_parameters() if p.dim() >= 2} if args.density < 1 else {}
    opts = {} if args.lr is None else {"lr": args.lr}
    pipeline = args.pipeline or "sparse-training"
    try:
        with _quiet_fake_tensor_log():
            step = capture_training_step(model, (x,), labels=y, optimizer=args.optimizer,
                                         optimizer_options=opts, masks=masks or None)
        sess = Session(target, SessionOptions(pipeline=pipeline, tile=args.tile,
                                              respecialize="off"))
        sess.load(step.module)
    except (UnsupportedOpError, IRError, CodegenError) as err:
        raise UserError(str(err)) from None
    except PassFailure as err:
        raise UserError(str(err)) from None
    except ValueError as err:
        raise UserError(f"acfc: error: {err}") from None
    except Exception as exc:  # noqa: BLE001 - the user's model failed while being traced
        cause = _innermost(exc)  # tracing wraps the model's own error ("when making fake
        # tensor call"): what went wrong is the innermost one
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise UserError(f"{path}: error: running {args.input} on input {list(shape)} with "
                        f"{args.num_classes} classes failed: {type(cause).__name__}: {first}"
                        ) from None
    (compiled,) = sess._cache.values()
    emit = args.emit or ("bin" if args.output not in (None, "-") else None)
    summary = _summary(compiled, target, args, shape, masks)
    to_stderr = emit in ("asm", "ir") and args.output in (None, "-")
    print(summary, file=sys.stderr if to_stderr else sys.stdout)
    if emit == "asm":
        from acf.isa.disasm import disassemble

        write_output(args.output, disassemble(compiled.program.program))
    elif emit == "ir":
        from acf.compiler.dialects.acf import from_program
        from acf.compiler.printer import print_module

        write_output(args.output, print_module(from_program(compiled.program.program,
                                                            "train_step")))
    elif emit == "bin":
        from acf.isa.container import write

        write_output(args.output, write(compiled.program.program))
    return 0


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of a chain of ``raise ... from``, or of exceptions
    raised while handling another (torch wraps the model's error in ones of its own, the
    outermost raised ``from None``, which hides its context from tracebacks only)."""
    seen = {id(exc)}
    while True:
        inner = exc.__cause__ if exc.__cause__ is not None else exc.__context__
        if inner is None or id(inner) in seen:
            return exc
        seen.add(id(inner))
        exc = inner


@contextlib.contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """torch logs a traceback on stderr when an op fails on fake tensors during capture
    (a shape mismatch in the model), before raising: the error acfc reports says it once."""
    import logging

    log = logging.getLogger("torch._subclasses.fake_tensor")
    was = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = was


def macs_by_kind(compiled) -> dict[str, int]:
    """Dense-equivalent MACs of each GEMM kind (forward, backward_data, wgrad_sddmm,
    wgrad_dense) of a runtime-compiled step."""
    from acf.compiler.codegen.lower import NO_CODE

    ops = [(i, op) for i, op in enumerate(compiled.func.body.ops) if op.name not in NO_CODE]
    out: dict[str, int] = {}
    for (i, op), stats in zip(ops, compiled.program.summary):
        assert stats.name == op.name, (stats.name, op.name)
        kind = compiled.op_kinds.get(i, "other")
        if stats.macs and kind not in ("other", "optimizer"):
            out[kind] = out.get(kind, 0) + int(stats.macs)
    return out


def _summary(compiled, target, args, shape, masks) -> str:
    from collections import Counter

    prog = compiled.program.program
    counts = Counter(ins.op.mnemonic for ins in prog.instructions)
    lines = [f"training step of {args.input} on {target.name}: input {list(shape)}, "
             f"{args.num_classes} classes, {args.optimizer}, "
             + (f"{len(masks)} weights masked at density {args.density:g}" if masks
                else "dense weights"),
             f"instructions: {len(prog.instructions)} ("
             + ", ".join(f"{m} {n}" for m, n in counts.most_common()) + ")",
             "MACs (dense-equivalent) by GEMM kind:"]
    for kind, macs in sorted(macs_by_kind(compiled).items()):
        lines.append(f"  {kind:<14} {macs:>16,}")
    syms = prog.symbols
    lines.append(f"symbols: {len(syms)}")
    for name, sym in syms.items():
        lines.append(f"  {name:<40} {_sym_text(sym)}")
    return "\n".join(lines)


def _sym_text(sym) -> str:
    parts = []
    for attr in ("space", "dtype", "shape", "fmt"):
        v = getattr(sym, attr, None)
        if v not in (None, "", ()):
            parts.append(str(list(v)) if isinstance(v, tuple) else str(v))
    return " ".join(parts)
