"""``acfc demo``: the main job, end to end.

A real model (an MLP on scikit-learn's bundled digits, 64-256-256-10) gets 90 % magnitude
masks on its hidden layers; its whole training step (forward, backward, SGD with momentum)
is captured from PyTorch, compiled for the fabric and emulated. The demo prints the
gradient check against eager PyTorch, then cycles and energy of the sparse step against
the same step with dense weights, and on the fabric with zero-skipping switched off.
"""

from __future__ import annotations

import argparse
import copy
import time

from acf.cli import UserError, target_error


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--density", type=float, default=0.1, help="weight density of the hidden layers (0..1]")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--target", default="acf-base")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.density <= 1:
        raise UserError(f"acfc demo: error: --density must be in (0, 1], got {args.density}")
    if args.batch < 1:
        raise UserError(f"acfc demo: error: --batch must be >= 1, got {args.batch}")
    import numpy as np
    import torch
    import torch.nn.functional as F

    from acf.algorithms.data import load_digits
    from acf.algorithms.models import MLP
    from acf.frontends.training_step import Binding, capture_training_step
    from acf.isa.target import TargetError, load_target
    from acf.runtime.session import Session, SessionOptions

    try:
        target = load_target(args.target)
        dense_fabric = load_target(args.target, {"cluster.skip": "none"})
    except TargetError as exc:
        raise UserError(target_error(exc, "--target")) from None
    torch.manual_seed(args.seed)
    data = load_digits()
    if args.batch > len(data.x_train):  # a slice past the end would train on fewer samples
        raise UserError(f"acfc demo: error: --batch {args.batch} is larger than the digits "
                        f"training split ({len(data.x_train)} samples)")
    x, y = data.x_train[: args.batch], data.y_train[: args.batch]
    model = MLP(data.input_shape, data.num_classes, hidden=(256, 256))
    hidden = ["1.weight", "3.weight"]
    masks = {}
    for name in hidden:  # magnitude pruning: keep the largest |w| of each layer
        w = dict(model.named_parameters())[name].detach()
        k = max(1, round(args.density * w.numel()))
        masks[name] = (w.abs() >= w.abs().flatten().kthvalue(w.numel() - k + 1).values).float()
    with torch.no_grad():
        for name, m in masks.items():
            dict(model.named_parameters())[name].mul_(m)
    opt = {"lr": 0.05, "momentum": 0.9}

    t0 = time.perf_counter()
    step = capture_training_step(model, (x,), labels=y, optimizer="sgd", optimizer_options=opt,
                                 masks=masks)
    t_capture = time.perf_counter() - t0
    runs = {}
    for label, tgt, use_masks in (("sparse", target, masks),
                                  ("dense weights", target, {n: torch.ones_like(m) for n, m in masks.items()}),
                                  ("no skipping", dense_fabric, masks)):
        session = Session(tgt, SessionOptions(formats="auto"))
        t0 = time.perf_counter()
        session.load(step.module)  # compiled at the first step: the formats follow the masks
        result = session.run_step(step.bind(model, (x,), y, use_masks))
        t_compile = sum(e["seconds"] for e in session.compile_log)
        runs[label] = (result, t_compile, time.perf_counter() - t0 - t_compile)

    # Eager PyTorch reference of the same masked step.
    ref = copy.deepcopy(model)
    out = ref(x)
    F.cross_entropy(out, y).backward()
    params = dict(ref.named_parameters())
    for name, m in masks.items():
        params[name].grad.mul_(m)
    got = step.unpack(runs["sparse"][0].values)
    worst = 0.0
    print(f"model: MLP 64-256-256-10 on digits, batch {args.batch}, hidden-layer density "
          f"{args.density:.0%}; target {target.name}")
    print(f"{'gradient':12} {'max |err|':>10} {'rel L2':>10}")
    for name, p in params.items():
        want = p.grad.numpy()
        have = got[Binding("grad", name)]
        err = float(np.abs(have - want).max())
        rel = float(np.linalg.norm(have - want) / max(np.linalg.norm(want), 1e-30))
        worst = max(worst, rel)
        print(f"{name:12} {err:10.2e} {rel:10.2e}")
    loss = float(got[Binding("loss")])
    out = out.detach()
    print(f"loss {loss:.6f} (eager {float(F.cross_entropy(out, y)):.6f}); gradients "
          f"{'match' if worst <= 1e-5 else 'DIFFER'} (worst relative L2 {worst:.1e})")
    print(f"\ncapture {t_capture:.2f} s")
    print(f"{'run':14} {'cycles':>10} {'time_us':>9} {'energy_uJ':>10} {'eff. MACs':>12} "
          f"{'compile_s':>9} {'emulate_s':>9}")
    for label, (res, tc, te) in runs.items():
        r = res.report
        print(f"{label:14} {r.total_cycles:10d} {r.seconds * 1e6:9.2f} {r.energy_j * 1e6:10.3f} "
              f"{r.effectual_macs:12d} {tc:9.2f} {te:9.2f}")
    s, d = runs["sparse"][0].report, runs["dense weights"][0].report

    def ratio(dense: float, sparse: float, what: str) -> str:
        r = dense / sparse
        return f"{r:.2f}x less {what}" if r >= 1 else f"{1 / r:.2f}x more {what}"

    print(f"\nsparse vs dense weights: {ratio(d.total_cycles, s.total_cycles, 'cycles')}, "
          f"{ratio(d.energy_j, s.energy_j, 'energy')}")
    return 0 if worst <= 1e-5 else 1
