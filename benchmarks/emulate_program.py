"""Emulator speed on a large compiled program: one ResNet-18-shaped training step (the IR
of :mod:`acf.compiler.models.resnet_ir`, forward, backward and SGD update) compiled for a
target and run on the batched emulator with random inputs::

    python -m acf.benchmarks.emulate_program --batch 2 --width 16 --target acf-base
    python benchmarks/emulate_program.py --batch 8 --repeat 1 --profile 25

Prints the program size, the simulated cycles and, for the emulation alone (binding the
inputs and running to the end, report included; compilation is not timed), the wall and
process CPU seconds (best of ``--repeat``) and the emulated instructions per wall second.
The instruction count is that of retired instruction instances (hardware-loop bodies
count once per iteration), which is what the emulator steps through. ``--profile N``
prints the N costliest functions of one extra run under cProfile.

OpenBLAS runs single-threaded (``OPENBLAS_NUM_THREADS=1`` unless already set), as in
``benchmarks/gemm.py``: the emulator's products are small, and a descheduled second BLAS
thread makes timings on a shared machine unrepeatable.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse
import time

import numpy as np


def compile_program(batch: int, width: int, target_name: str):
    """(compiled program, target) of one ResNet-18-shaped training step."""
    from acf.compiler.codegen import CompileOptions, compile_module
    from acf.compiler.models.resnet_ir import resnet18_train_step
    from acf.compiler.parser import parse_module
    from acf.isa.target import load_target

    target = load_target(target_name)
    module = parse_module(resnet18_train_step(batch=batch, width=width), "resnet18.acfir")
    return compile_module(module, target, CompileOptions()), target


def random_inputs(compiled, seed: int = 0) -> dict[str, np.ndarray]:
    """Random values for every argument (labels as class indices), bound as the runtime would."""
    rng = np.random.default_rng(seed)
    args = []
    for name in compiled.inputs:
        shape = tuple(compiled.symbols[name].shape)
        if name in compiled.onehot:
            args.append(rng.integers(0, compiled.onehot[name], shape[0]))
        else:
            args.append((0.1 * rng.standard_normal(shape)).astype(np.float32))
    return compiled.bind(args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--target", default="acf-base")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs (the best is reported)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also profile one run and print the N costliest functions")
    args = ap.parse_args(argv)
    for flag, value in (("--batch", args.batch), ("--width", args.width)):
        if value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    from acf.isa.target import TargetError, load_target

    try:  # bad names fail here, before compiling
        load_target(args.target)
    except TargetError as exc:
        ap.error(f"--target: {exc}")

    from acf.emulator import Emulator

    t0 = time.perf_counter()
    compiled, target = compile_program(args.batch, args.width, args.target)
    inputs = random_inputs(compiled)
    t1 = time.perf_counter()
    prog = compiled.program
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"program          ResNet-18 step, batch {args.batch}, width {args.width}, {args.target}")
    print(f"compile          {t1 - t0:8.2f} s")
    print(f"program words    {len(prog.instructions):,}")
    wall = cpu = float("inf")
    res = None
    for _ in range(max(1, args.repeat)):
        c0, w0 = time.process_time(), time.perf_counter()
        res = Emulator(prog, target, inputs).run()
        w1, c1 = time.perf_counter(), time.process_time()
        wall, cpu = min(wall, w1 - w0), min(cpu, c1 - c0)
    assert res is not None
    n = res.report.instructions_count
    print(f"instructions     {n:,}")
    print(f"simulated cycles {res.report.total_cycles:,}")
    print(f"wall             {wall:8.3f} s (best of {max(1, args.repeat)})")
    print(f"cpu              {cpu:8.3f} s")
    print(f"instructions/s   {n / wall:,.0f}")
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        Emulator(prog, target, inputs).run()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
