"""Capture + compile + emulate time of one training step, printed as a table.

    python -m acf.benchmarks.train_step            # or: python benchmarks/train_step.py

MLP (784-256-10, batch 32) at several weight densities through capture_training_step and
the runtime session. ResNet-18/CIFAR (batch 32, 90 % sparsity) runs when codegen has conv
kernels; otherwise its row says why it was skipped.
"""

from __future__ import annotations

import time


def _mlp_row(density: float) -> tuple:
    import torch
    from torch import nn

    from acf.frontends.training_step import capture_training_step
    from acf.runtime import Session

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    mask = torch.rand(256, 784) < density
    t0 = time.perf_counter()
    step = capture_training_step(model, (x,), labels=y, masks={"0.weight": mask})
    t1 = time.perf_counter()
    sess = Session("acf-base")
    sess.load(step.module)
    t2 = time.perf_counter()
    sess.bind_mask("0.weight", mask)
    args = dict(zip(sess._get(None).arg_names, step.bind(model, (x,), y,
                                                         masks={"0.weight": mask})))
    res = sess.run_step(args)
    t3 = time.perf_counter()
    return (f"MLP d={density:.2f}", t1 - t0, t2 - t1, t3 - t2, res.report.total_cycles,
            res.report.energy_j)


def _resnet_row() -> tuple:
    from acf.compiler.codegen.kernels import load_all

    if "graph.conv2d" not in load_all():
        return ("ResNet-18 b32 90%", None, None, None, "skipped: no conv kernel", None)
    return ("ResNet-18 b32 90%", None, None, None, "not wired yet", None)


def main() -> None:
    rows = [_mlp_row(d) for d in (1.0, 0.3, 0.1)]
    try:
        rows.append(_resnet_row())
    except Exception as exc:  # noqa: BLE001 - a benchmark row, not a failure
        rows.append(("ResNet-18 b32 90%", None, None, None, f"skipped: {exc}", None))
    head = f"{'workload':<20}{'capture s':>10}{'compile s':>10}{'emulate s':>10}" \
           f"{'cycles':>14}{'energy uJ':>11}"
    print(head)
    print("-" * len(head))
    for name, cap, comp, emu, cyc, e in rows:
        f = (lambda v: f"{v:>10.2f}" if v is not None else f"{'-':>10}")
        cyc_s = f"{cyc:>14,}" if isinstance(cyc, int) else f"  {cyc}"
        e_s = f"{e * 1e6:>11.2f}" if e is not None else ""
        print(f"{name:<20}{f(cap)}{f(comp)}{f(emu)}{cyc_s}{e_s}")


if __name__ == "__main__":
    main()
