"""Accuracy / time- and energy-to-accuracy experiment on the fabric (evaluation/accuracy.py).

    python benchmarks/sweep_accuracy.py --out results/accuracy --jobs 2

Trains every configuration of :func:`acf.evaluation.accuracy.grid` (eager PyTorch), emulates
sampled iterations of seed 0 on acf-base, appends one JSON line per run to
``OUT/rows.jsonl`` (resumable: run ids already there are skipped; the file is only ever
appended to, so rows of other settings or code stay) and writes ``summary.md``, ``rows.csv`` and the plots
from this grid's rows. ``--report-only`` rebuilds the report from the latest row of every
configuration and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path


def _run(cfg):
    from acf.evaluation.accuracy import run

    return run(cfg)


def main(argv=None) -> int:
    from acf.evaluation.accuracy import AccuracyError

    try:
        return _main(argv)
    except AccuracyError as exc:  # bad input: one line, before any training
        print(f"sweep_accuracy: error: {exc}", file=sys.stderr)
        return 1


def _main(argv=None) -> int:
    from acf.evaluation.accuracy import AccuracyError, grid, write_report
    from acf.evaluation.sweep import read_rows, repair_rows, write_csv

    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--out", default="results/accuracy")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (0: one per CPU)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=300, help="iterations per run (MNIST-1D MLP: 2x)")
    p.add_argument("--datasets", default="digits,mnist1d")
    p.add_argument("--models", default="mlp,cnn")
    p.add_argument("--target-fraction", type=float, default=0.95)
    p.add_argument("--cnn-sparsities", default="",
                   help="restrict RigL on the CNN to these sparsities (comma list; default all)")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    if not 0 < a.target_fraction <= 1:
        raise AccuracyError(f"--target-fraction {a.target_fraction}: must be in (0, 1]")
    if a.jobs < 0:
        raise AccuracyError(f"--jobs {a.jobs}: must be at least 0 (0: one per CPU)")
    jobs = a.jobs or os.cpu_count() or 1
    out = Path(a.out)
    if not a.report_only:  # --report-only reads rows; it makes no directory of its own
        out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    cmd = "python benchmarks/sweep_accuracy.py " + " ".join(  # the command that made the rows
        x for x in (argv if argv is not None else sys.argv[1:]) if x != "--report-only")
    if not a.report_only:
        datasets, models = a.datasets.split(","), a.models.split(",")
        steps = {(d, m): a.steps * (2 if (d, m) == ("mnist1d", "mlp") else 1)
                 for d in datasets for m in models}
        cfgs = grid(datasets=datasets, models=models, seeds=tuple(range(a.seeds)), steps=steps,
                    # CNN emulation costs ~5-15 s per step here: fewer samples
                    per_model={"cnn": {"sample_every": a.steps, "max_update_samples": 1,
                                       "max_dense_grad_samples": 1}})
        if a.cnn_sparsities:
            try:
                keep = {round(float(x), 6) for x in a.cnn_sparsities.split(",")}
            except ValueError:
                raise AccuracyError(f"--cnn-sparsities {a.cnn_sparsities!r}: expected a comma "
                                    "list of numbers") from None
            offered = {round(c.sparsity, 6) for c in cfgs if c.model == "cnn" and c.algorithm == "rigl"}
            if keep - offered:
                raise AccuracyError(f"--cnn-sparsities: {sorted(keep - offered)} not in the grid's "
                                    f"RigL sparsities {sorted(offered)}")
            cfgs = [c for c in cfgs if c.model != "cnn" or c.algorithm != "rigl"
                    or round(c.sparsity, 6) in keep]
        done = {r.get("run_id") for r in read_rows(out)}
        todo = [c for c in cfgs if c.run_id not in done]
        current = {c.run_id for c in cfgs}
        # longest first: CNN, then emulating seeds
        todo.sort(key=lambda c: (c.model != "cnn", not c.fabric))
        print(f"{len(cfgs)} runs, {len(todo)} to do", flush=True)
        t0 = time.time()
        repair_rows(out)  # a torn last line (an interrupted write) would swallow the next row
        fd = os.open(rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            with ProcessPoolExecutor(jobs) as pool:
                futs = {pool.submit(_run, c): c for c in todo}
                for i, f in enumerate(as_completed(futs), 1):
                    c = futs[f]
                    try:
                        row = f.result()
                    except Exception as exc:  # noqa: BLE001 - record and go on
                        print(f"FAILED {c.run_id}: {exc!r}", flush=True)
                        continue
                    os.write(fd, (json.dumps(row, sort_keys=True) + "\n").encode())
                    os.fsync(fd)
                    print(f"[{i}/{len(todo)} {time.time() - t0:.0f}s] {c.run_id} "
                          f"acc {row['final_accuracy']:.3f} wall {row['train_wall_s']:.1f}s", flush=True)
        finally:
            os.close(fd)
    rows = read_rows(out)  # the report's rows; rows.jsonl itself keeps every row it has
    if not a.report_only:  # this grid's rows: not those of other settings or code
        rows = [r for r in rows if r.get("run_id") in current]
    else:  # the latest row of each configuration and seed
        rows = list({(r["key"], r["seed"]): r for r in rows}.values())
        if not rows:  # before write_report makes anything in OUT
            raise AccuracyError(f"--report-only: no rows to report in {rows_path}")
    summary = write_report(rows, out, target_fraction=a.target_fraction, command=cmd)
    write_csv(out, rows)  # the report's rows, one per line (curves stay in rows.jsonl)
    (out / "groups.json").write_text(json.dumps(summary, indent=1, sort_keys=True, default=str) + "\n")
    print(f"wrote {out}/summary.md ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
