"""Capture + compile + emulate time, cycles, energy and peak memory of one training step.

    python -m acf.benchmarks.train_step                 # ResNet-18/CIFAR, batch 32, acf-base
    python -m acf.benchmarks.train_step --quick         # MLP rows only
    python -m acf.benchmarks.train_step --batch 8 --target acf-small --width 8   # fits its 16 MiB DRAM

Rows: ResNet-18/CIFAR (3x32x32, 10 classes; SGD with momentum) dense and with 90 % random
weight masks on every conv and linear weight (the masked weight gradients compiled as SDDMM
where codegen has a sampled kernel), plus an MLP (784-256-10) at three densities. Each row
runs in its own process so that its peak RSS (``ru_maxrss``) is its own. The session runs
with ``formats="auto"`` (``--formats ir``: every weight and its state dense-stored): a masked
linear weight stored in its density band's format with its gradient, momentum and mask, a
conv kernel's momentum in that format; the program is compiled at the first step, when the
masks are known, and ``compile s`` is the session's compile time (``compile_log``).

Gradient check (see ``_gradient_check`` and :mod:`acf.frontends.reference`): ``grad L2`` is
the worst relative L2 error of the fabric's weight gradients against eager PyTorch in fp64
on the same step; ``flips``: the fabric's ReLU decisions (its ReLU outputs, observed as
extra results of the step) that differ from fp64's; ``matched``: the error against fp64
replaying the fabric's own decisions, i.e. rounding alone; ``state``: the model output, the
parameters after the update and the batch-norm running statistics against that same
reference (worst relative L2). The last three columns are the
same for eager PyTorch in fp32, for scale: any fp32 implementation flips the odd ReLU input
that lies within rounding of zero, and each flip moves the gradients by ~1e-3.
Targets the design asks for on 2 cores: compile <= 15 s, emulation <= 60 s, peak memory
<= 4 GB.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue
import resource
import sys
import time


def _resnet18(width: int, classes: int = 10):
    from acf.algorithms.models import ResNet18

    return ResNet18(classes=classes, width=width)


def _row(kind: str, density: float, batch: int, target: str, width: int, size: int,
         formats: str, queue) -> None:
    import torch
    from torch import nn

    from acf.frontends.training_step import capture_training_step
    from acf.runtime import Session, SessionOptions

    torch.manual_seed(0)
    if kind == "resnet18":
        model = _resnet18(width)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        name = f"ResNet-18 b{batch} d={density:.2f}"
    else:
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        x, y = torch.randn(batch, 784), torch.randint(0, 10, (batch,))
        name = f"MLP b{batch} d={density:.2f}"
    masks = {n: torch.rand(p.shape) < density for n, p in model.named_parameters()
             if p.dim() >= 2} if density < 1.0 else {}
    t0 = time.perf_counter()
    step = capture_training_step(model, (x,), labels=y, optimizer="sgd",
                                 optimizer_options={"lr": 0.1, "momentum": 0.9},
                                 masks=masks or None)
    observed = step.observe("graph.relu")
    t1 = time.perf_counter()
    # auto: each masked weight stored in its density band's format where one applies (a
    # linear weight, with its update's state; a conv kernel stays dense-stored, its momentum
    # takes the band's format); ir: every weight and its state dense-stored
    sess = Session(target, SessionOptions(formats=formats,
                                          respecialize="band" if formats == "auto" else "off"))
    loaded = sess.load(step.module)
    for n, m in masks.items():
        sess.bind_mask(n, m)
    values = step.bind(model, (x,), y, masks=masks or None)
    res = sess.run_step(dict(zip(loaded.arg_names, values)))
    t3 = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the references
    rep = res.report
    check = _gradient_check(model, x, y, masks, step, res, observed, lr=0.1)
    gemm = {k: v["effectual_macs"] for k, v in rep.by_kind.items() if v["effectual_macs"]}
    # the session compiles when it first knows the masks (formats="auto": in run_step)
    compile_s = sum(e["seconds"] for e in sess.compile_log)
    queue.put({"name": name, "target": target, "capture_s": t1 - t0, "compile_s": compile_s,
               "emulate_s": t3 - t1 - compile_s, "cycles": int(rep.total_cycles),
               "energy_j": float(rep.energy_j), "seconds": float(rep.seconds),
               "effectual_macs": int(rep.effectual_macs), "by_kind_macs": gemm,
               "instructions": int(rep.emulator.instructions_count),  # the program that ran
               "peak_rss_mb": peak_mb,
               **check})


def _gradient_check(model, x, y, masks, step, res, observed, lr: float) -> dict:
    """Relative L2 errors (worst over the weight gradients) against fp64 eager PyTorch on the
    same (masked) step, see :mod:`acf.frontends.reference`.

    ``grad_rel_l2``: the fabric's against the plain fp64 reference; ``flips``: ReLU decisions
    of the fabric that differ from fp64's; ``matched_rel_l2``: the fabric's against fp64
    replaying the fabric's own ReLU decisions (rounding alone); ``state_rel_l2``: the rest
    of the step against that same reference, worst of the model output, every parameter
    after the SGD update (the first step's: w - lr * g) and every batch-norm running
    statistic. ``eager_*``: the first three for eager PyTorch in fp32, for scale."""
    import numpy as np
    import torch

    from acf.frontends.reference import ReluDecisions, flips, reference_step
    from acf.frontends.training_step import Binding

    got = step.unpack(res.values)
    fabric = {n: np.asarray(got[Binding("grad", n)], np.float64) for n, _ in
              model.named_parameters()}
    fabric_relu = [np.asarray(got[b]) for b in observed]
    d64, d32 = ReluDecisions(), ReluDecisions()
    exact = reference_step(model, (x,), y, masks, torch.float64, d64)
    eager = reference_step(model, (x,), y, masks, torch.float32, d32)
    matched = reference_step(model, (x,), y, masks, torch.float64, ReluDecisions(fabric_relu))
    eager_matched = reference_step(model, (x,), y, masks, torch.float64,
                                   ReluDecisions(d32.recorded))

    def rel(have, want):
        return float(np.linalg.norm(np.asarray(have, np.float64) - want)
                     / max(np.linalg.norm(want), 1e-30))

    def worst(have, want):
        return max(rel(have[n], w) for n, w in want.items())

    state = [rel(got[Binding("output")], matched["output"])]
    for name, p in model.named_parameters():  # first step: the momentum buffer starts at g
        w = p.detach().double().numpy() * (masks[name].double().numpy() if name in masks else 1)
        state.append(rel(got[Binding("param", name)], w - lr * matched["grads"][name]))
    for binding, value in got.items():
        if binding.kind == "buffer" and np.asarray(value).dtype.kind == "f":
            state.append(rel(value, matched["buffers"][binding.name]))
    return {"grad_rel_l2": worst(fabric, exact["grads"]),
            "flips": flips(fabric_relu, d64.recorded),
            "matched_rel_l2": worst(fabric, matched["grads"]), "state_rel_l2": max(state),
            "eager_fp32_rel_l2": worst(eager["grads"], exact["grads"]),
            "eager_flips": flips(d32.recorded, d64.recorded),
            "eager_matched_rel_l2": worst(eager["grads"], eager_matched["grads"])}


def run_in_process(target, *args) -> dict:
    """``target(*args, queue)`` in a fresh process (its own peak RSS) and the row it puts;
    an error row as soon as the process dies without one (its traceback is on stderr)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            out = q.get(timeout=2)
            break
        except queue.Empty:
            if not p.is_alive():
                out = {"error": f"the row's process exited with code {p.exitcode}"}
                break
    p.join()
    return out


def run_row(*args) -> dict:
    out = run_in_process(_row, *args)
    if "error" in out:
        out.setdefault("name", f"{args[0]} d={args[1]:.2f}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--target", default="acf-base")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64: CIFAR)")
    ap.add_argument("--size", type=int, default=32, help="image side")
    ap.add_argument("--density", type=float, default=0.1, help="masked-row weight density")
    ap.add_argument("--quick", action="store_true", help="MLP rows only")
    ap.add_argument("--formats", choices=("auto", "ir"), default="auto",
                    help="masked weights in their density band's format (auto) or dense (ir)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    rows = [run_row("mlp", d, a.batch, a.target, a.width, a.size, a.formats) for d in (1.0, 0.3, 0.1)]
    if not a.quick:
        for d in (1.0, a.density):
            rows.append(run_row("resnet18", d, a.batch, a.target, a.width, a.size, a.formats))
    head = (f"{'workload':<24}{'target':>10}{'capture s':>10}{'compile s':>10}{'emulate s':>10}"
            f"{'cycles':>14}{'energy mJ':>11}{'peak MB':>9}{'grad L2':>9}{'flips':>6}{'matched':>9}"
            f"{'state':>9}"
            f"{'eager L2':>9}{'flips':>6}{'matched':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<24}  error: {r['error']}")
            continue
        print(f"{r['name']:<24}{r['target']:>10}{r['capture_s']:>10.2f}{r['compile_s']:>10.2f}"
              f"{r['emulate_s']:>10.2f}{r['cycles']:>14,}{r['energy_j'] * 1e3:>11.3f}"
              f"{r['peak_rss_mb']:>9.0f}{r['grad_rel_l2']:>9.1e}{r['flips']:>6}"
              f"{r['matched_rel_l2']:>9.1e}{r['state_rel_l2']:>9.1e}"
              f"{r['eager_fp32_rel_l2']:>9.1e}{r['eager_flips']:>6}"
              f"{r['eager_matched_rel_l2']:>9.1e}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
