"""Compile one ResNet-18 (CIFAR) training step and print the time per phase, per pass of
the pipeline, and the program size::

    python -m acf.benchmarks.compile_resnet18 --batch 8 --target acf-base [--pipeline sparse-training]

The graph-level pipeline (``--pipeline``, default ``sparse-training``; ``""`` for none) runs
through the pass manager with its per-pass timing (``acfc opt --time-passes``), then code
generation (``compile_module``: tiling, placement, memory plan, scheduling, instruction
selection) is timed as one phase.
"""

from __future__ import annotations

import argparse
import collections
import time


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--target", default="acf-base")
    ap.add_argument("--pipeline", default="sparse-training",
                    help="graph-level passes before code generation (\"\": none)")
    args = ap.parse_args(argv)
    for flag, value in (("--batch", args.batch), ("--width", args.width)):
        if value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")

    from acf.compiler.codegen import CompileOptions, compile_module
    from acf.compiler.diagnostics import IRError
    from acf.compiler.models.resnet_ir import resnet18_train_step
    from acf.compiler.parser import parse_module
    from acf.compiler.pass_manager import PassManager
    from acf.isa.target import TargetError, load_target

    try:  # bad names fail here, before the (slow) IR generation and passes
        target = load_target(args.target)
    except TargetError as exc:
        ap.error(f"--target: {exc}")
    try:
        pm = PassManager.from_text(args.pipeline) if args.pipeline else None
    except IRError as exc:
        ap.error(f"--pipeline: {str(exc).splitlines()[0].split('error: ', 1)[-1]}")

    t0 = time.perf_counter()
    text = resnet18_train_step(batch=args.batch, width=args.width)
    t1 = time.perf_counter()
    module = parse_module(text, "resnet18.acfir")
    t2 = time.perf_counter()
    if pm is not None:
        pm.run(module)
    tp = time.perf_counter()
    compiled = compile_module(module, target, CompileOptions())
    t3 = time.perf_counter()
    prog = compiled.program
    print(f"generate IR      {t1 - t0:8.3f} s  ({len(text.splitlines())} lines)")
    print(f"parse + verify   {t2 - t1:8.3f} s")
    if pm is not None:
        print(f"passes           {tp - t2:8.3f} s  ({args.pipeline}, each verified after):")
        for name, seconds in pm.timings:
            print(f"  {name:30} {seconds:8.3f} s")
    print(f"codegen          {t3 - tp:8.3f} s")
    print(f"total            {t3 - t0:8.3f} s")
    print(f"instructions     {len(prog.instructions)}  ({args.target}, batch {args.batch}, "
          f"tile {compiled.tiling.t if compiled.tiling else '?'})")
    print(f"DRAM plan        {compiled.plan.top / 2**20:.1f} MiB" if compiled.plan else "")
    by_op: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])
    for s in compiled.summary:
        row = by_op[s.name]
        row[0] += 1
        row[1] += s.instructions
        row[2] += s.macs
    print(f"{'op':34} {'count':>6} {'instructions':>13} {'MACs':>14}")
    for name, (n, ins, macs) in sorted(by_op.items(), key=lambda kv: -kv[1][1]):
        print(f"{name:34} {n:6} {ins:13} {macs:14}")
    mn = collections.Counter(i.mnemonic for i in prog.instructions)
    print("by mnemonic: " + ", ".join(f"{k} {v}" for k, v in mn.most_common()))


if __name__ == "__main__":
    main()
