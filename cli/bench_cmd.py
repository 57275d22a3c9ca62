"""``acfc bench``: evaluation sweeps (models x sparsity x masks x targets x --set grids).

    acfc bench --models resnet18-cifar --sparsity 0,0.9 --targets acf-base,acf-dense \\
        --set cluster.lookahead=1,4,8 --out results/run1 [--jobs N] [--executor ray]
        [--calibrate] [--accuracy rigl,set] [--formats auto,dense]

Rows go to OUT/rows.jsonl (append-only; a re-run skips finished run ids) and OUT/rows.csv;
the summary (OUT/summary.md, comparison.json) and plots are written at the end.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from acf.cli import UserError


def _csv(text: str, what: str = "") -> list[str]:
    """A comma list, each value once; an empty one is an error (``what`` names the flag)."""
    items = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if not items and what:
        raise UserError(f"acfc: error: {what} {text!r}: give at least one value")
    return items


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models", default="tiny-mlp", help="comma-separated model names")
    p.add_argument("--sparsity", default="0,0.5,0.7,0.8,0.9,0.95", help="weight sparsities in [0, 1)")
    p.add_argument("--targets", default="acf-base,acf-dense")
    p.add_argument("--masks", default="random", help="random, magnitude, nm, block")
    p.add_argument("--noc", default="auto",
                   help="auto (the compiler's NoC configuration: multicast groups) and/or "
                        "unicast (NoC configuration off, an ablation)")
    p.add_argument("--formats", default="auto",
                   help="auto (select-formats picks both operands' formats from their masks), "
                        "csr (CSR weights, dense activations) and/or dense (formats fixed)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
                   help="grid over a target field (values ';'-separated when they are lists)")
    p.add_argument("--act-density", type=float, default=0.5, help="ReLU activation density")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--max-waves", type=int, default=1, help="output-tile waves emulated per GEMM")
    p.add_argument("--max-k-chunks", type=int, default=8, help="k-chunks emulated per output tile")
    p.add_argument("--full", action="store_true", help="emulate every tile (no sampling)")
    p.add_argument("--out", default="results/bench", help="output directory")
    p.add_argument("--jobs", type=int, default=0, help="workers (0 = all CPUs, 1 = in process)")
    p.add_argument("--executor", default="process", choices=("process", "ray"))
    p.add_argument("--calibrate", action="store_true", help="also run the peer calibration cases")
    p.add_argument("--accuracy", default="", help="algorithms to train for accuracy vs sparsity")
    p.add_argument("--accuracy-steps", type=int, default=200)
    p.add_argument("--compare", default=None,
                   help="MODEL:SPARSITY tables in the summary (default: every model of the sweep "
                        "at 90 %% sparsity, or at its highest swept sparsity without 90 %%)")
    p.add_argument("--no-progress", action="store_true")


def _comparisons(text: str) -> list[tuple[str, float]]:
    """``--compare`` items (``MODEL:SPARSITY``, sparsity 0.9 when left out), checked before
    any run starts."""
    from acf.evaluation.workloads import MODELS

    out = []
    for item in _csv(text):
        model, _, sp = item.partition(":")
        if model not in MODELS:
            raise UserError(f"acfc: error: --compare {item!r}: unknown model {model!r}; "
                            f"choose one of {', '.join(MODELS)}")
        try:
            sparsity = float(sp or 0.9)
        except ValueError:
            sparsity = -1.0
        if not 0.0 <= sparsity < 1.0:
            raise UserError(f"acfc: error: --compare {item!r}: expected MODEL:SPARSITY with a "
                            "sparsity in [0, 1)")
        out.append((model, sparsity))
    return out


def _swept_comparisons(models: list[str], sparsities: list[float]) -> list[tuple[str, float]]:
    """The default ``--compare``: each swept model at 90 % sparsity where the sweep has it,
    else at its highest sparsity (none for a dense-only sweep): a table of what ran."""
    top = 0.9 if 0.9 in sparsities else max((s for s in sparsities if s > 0), default=None)
    return [] if top is None else [(m, top) for m in models]


def run(args: argparse.Namespace) -> int:
    from acf.evaluation import baselines, calibration, report
    from acf.evaluation.points import latest_rows
    from acf.evaluation.sweep import Grid, SweepError, parse_sets, run_sweep

    try:
        sparsities = list(dict.fromkeys(float(s) for s in _csv(args.sparsity, "--sparsity")))
    except ValueError:
        raise UserError(f"acfc: error: --sparsity {args.sparsity!r}: expected numbers in [0, 1)") from None
    comps = (_comparisons(args.compare) if args.compare is not None
             else _swept_comparisons(_csv(args.models, "--models"), sparsities))
    algorithms = _csv(args.accuracy)
    if algorithms:
        from acf.algorithms import NAMES

        unknown = [a for a in algorithms if a not in NAMES]
        if unknown:
            raise UserError(f"acfc: error: --accuracy: unknown sparsity algorithm {unknown[0]!r}; "
                            f"choose one of {', '.join(NAMES)}")
        if args.accuracy_steps < 1:
            raise UserError(f"acfc: error: --accuracy-steps {args.accuracy_steps}: must be at least 1")
        from acf.evaluation.accuracy import NM_ALGORITHMS
        from acf.evaluation.workloads import WorkloadError, nm_or_error

        if any(a in NM_ALGORITHMS for a in algorithms):  # each sparsity needs an exact N:M
            for sp in (s for s in sparsities if s > 0):
                try:
                    nm_or_error(1.0 - sp)
                except WorkloadError as exc:
                    raise UserError(f"acfc: error: --accuracy nm at sparsity {sp:g}: {exc}") from None
    try:
        grid = Grid(models=_csv(args.models, "--models"), sparsities=sparsities,
                    targets=_csv(args.targets, "--targets"), masks=_csv(args.masks, "--masks"),
                    sets=parse_sets(args.set), act_density=args.act_density,
                    batch=args.batch, formats=_csv(args.formats, "--formats"),
                    noc=_csv(args.noc, "--noc"),
                    max_waves=args.max_waves,
                    max_k_chunks=args.max_k_chunks, full=args.full)
        res = run_sweep(grid, args.out, jobs=args.jobs, executor=args.executor,
                        progress=not args.no_progress)
    except SweepError as exc:  # a target file's or --set's own "WHERE: error: ..." stands alone
        msg = str(exc)
        raise UserError(msg if ": error: " in msg else f"acfc: error: {msg}") from None
    print(f"{res.ran} runs done, {res.skipped} already finished; rows in {res.out_dir}/rows.jsonl")
    errors = res.errors  # this grid's points whose last run failed
    for r in errors[-5:]:
        print(f"error in run {r['run_id']} ({r.get('model')}, {r.get('target')}): {r.get('error')}", file=sys.stderr)
    try:
        anchors = baselines.load_anchors()
    except (FileNotFoundError, ValueError) as exc:
        print(f"note: no GPU anchors ({exc})", file=sys.stderr)
        anchors = None
    cal = calibration.calibrate() if args.calibrate else None
    acc = report.accuracy_runs(algorithms, sparsities, args.accuracy_steps) if algorithms else None
    command = "acfc bench " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else ""
    # one row per point: a point rerun by newer code replaces its older row
    path = report.write_report(latest_rows(res.rows), args.out, anchors, cal, acc, tuple(comps),
                               command)
    print(f"summary: {path}")
    return 1 if errors else 0
