"""What keeps a masked linear layer from its ideal speedup: each limit of the fabric in turn.

    python benchmarks/speedup_limits.py [--density 0.1] [--shapes 64x256x512,2048x2048x2048]
                                        [--emulate]

Each layer is ``y = x . w^T`` (``graph.linear``), x dense, w (n x k) masked at random to
``--density``. Per fabric variant it prints:

* ``ideal``: dense MACs over effectual MACs (the issue's bound, 1 / density here);
* ``skip cap``: what zero-skipping itself allows under the timing contract
  (docs/timing.md section 3): each output walks k in lookahead windows of ``d`` pairs and a
  window costs at least one cycle, so an output costs ``sum over windows max(1,
  effectual)``, at best ``K / d`` at densities under ``1 / d`` (whole-K windows, no fold
  maximum, no drain, no memory);
* ``realized``: the layer compiled dense and run without zero-skipping, over the layer
  with its weight in the format ``select-formats``' cost model finds fastest (both timed
  by ``cost_model.gemm_cost``, which replays the kernel's program: the emulator's cycle
  counts on every point here, ``--emulate`` shows them side by side), and its fraction of
  ``ideal``;
* where the masked layer's cycles go: the mean ``mm`` busy cycles per cluster (the PE
  folds: the slowest output of each 16 x 16 fold plus the fold drain, per k-chunk of the
  tile side) and the flits through the busiest memory port (both directions).

The variants take acf-base and relax one limit at a time: acf-wide's four times wider
port and NoC links, then a deeper lookahead and no fold drain (``--set`` overrides, not
shipped targets). ``--emulate`` also runs each point on the emulator (slow for the large
shapes) and prints its cycles beside the model's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from acf import emulator
from acf.benchmarks.noc_placement import layer
from acf.compiler import cost_model as cm
from acf.compiler.codegen import compile_module
from acf.compiler.codegen.tiling import choose_tiling
from acf.compiler.parser import parse_module
from acf.emulator.timing_compute import pe_cycles
from acf.isa.target import Target, load_target

#: (label, target, overrides)
VARIANTS = [
    ("acf-base", "acf-base", {}),
    ("acf-wide", "acf-wide", {}),
    ("acf-wide, lookahead 64", "acf-wide", {"cluster.lookahead": 64}),
    ("acf-wide, no fold drain", "acf-wide", {"cluster.fold_cycles": 0}),
    ("acf-wide, both", "acf-wide", {"cluster.lookahead": 64, "cluster.fold_cycles": 0}),
]
FORMATS = ("dense", "csr", "csc", "bitmap")


def skip_cap(mask: np.ndarray, lookahead: int) -> float:
    """K over the mean per-output cycles of the window rule over the whole of K (x dense:
    an output's cost depends on its weight row only), by the emulator's own ``pe_cycles``."""
    n, k = mask.shape
    return k / float(pe_cycles(None, mask.T.astype(np.float32), 1, n, k, lookahead).mean())


def parse_shape(text: str) -> tuple[int, int, int]:
    try:
        m, n, k = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape '{text}': expected MxNxK, e.g. 64x256x512") from None
    if min(m, n, k) < 1:
        raise argparse.ArgumentTypeError(f"shape '{text}': every extent must be positive")
    return m, n, k


def model(target: Target, m: int, n: int, k: int, w: np.ndarray, fmt: str, t: int) -> cm.GemmCost:
    return cm.gemm_cost(target, m, n, k, cm.Operand(m, k),
                        cm.Operand(n, k, fmt, mask=w != 0, transposed=True), t=t)


def emulate(target: Target, m: int, n: int, k: int, x: np.ndarray, w: np.ndarray, fmt: str) -> int:
    c = compile_module(parse_module(layer(m, n, k, fmt)), target)
    res = emulator.run(c.program, target, c.bind([x, w]))
    err = float(np.abs(res.outputs[c.outputs[0]] - x @ w.T).max())
    if err > 1e-2 * max(1.0, float(np.abs(x @ w.T).max())):
        raise SystemExit(f"{target.name} {fmt}: emulated result off by {err:g}")
    return res.report.total_cycles


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--density", type=float, default=0.1, help="weight density (default 0.1)")
    ap.add_argument("--shapes", default="64x256x512,1024x3072x768,2048x2048x2048",
                    help="comma-separated MxNxK layer shapes")
    ap.add_argument("--emulate", action="store_true", help="also run every point on the emulator")
    args = ap.parse_args(argv)
    if not 0.0 < args.density <= 1.0:
        ap.error(f"--density must be in (0, 1], got {args.density}")
    try:
        shapes = [parse_shape(s) for s in args.shapes.split(",") if s]
    except argparse.ArgumentTypeError as e:
        ap.error(str(e))
    print(f"weight density {args.density:g}, x dense; cycles from the cost model"
          + (" (emulator in brackets)" if args.emulate else ""))
    head = (f"{'layer':16} {'fabric':26} {'ideal':>6} {'skip cap':>8} {'dense':>12} "
            f"{'masked':>12} {'fmt':>6} {'realized':>8} {'of ideal':>8} {'mm/cluster':>11} "
            f"{'port flits':>11} {'s':>5}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    for m, n, k in shapes:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((n, k)) * (rng.random((n, k)) < args.density)).astype(np.float32)
        ideal = n * k / max(1, int((w != 0).sum()))
        for label, name, overrides in VARIANTS:
            start = time.perf_counter()
            target = load_target(name, overrides=overrides)
            noskip = load_target(name, overrides={**overrides, "cluster.skip": "none"})
            t = choose_tiling(target).t
            dense = model(noskip, m, n, k, w, "dense", t)
            costs = {f: model(target, m, n, k, w, f, t) for f in FORMATS}
            fmt = min(costs, key=lambda f: costs[f].cycles)
            best = costs[fmt]
            dense_s, best_s = f"{dense.cycles:,}", f"{best.cycles:,}"
            if args.emulate:
                dense_s += f" [{emulate(noskip, m, n, k, x, w, 'dense'):,}]"
                best_s += f" [{emulate(target, m, n, k, x, w, fmt):,}]"
            realized = dense.cycles / best.cycles
            clusters = target.num_clusters
            print(f"{f'{m}x{n}x{k}':16} {label:26} {ideal:5.2f}x "
                  f"{skip_cap(w != 0, int(target.cluster.lookahead)):7.2f}x {dense_s:>12} "
                  f"{best_s:>12} {fmt:>6} {realized:7.2f}x {100 * realized / ideal:7.0f}% "
                  f"{best.mac_cycles / clusters:11,.0f} {max(best.port_flits.values()):11,} "
                  f"{time.perf_counter() - start:5.1f}")


if __name__ == "__main__":
    main()
