"""The committed evaluation run (results/): main sweep, ablations, calibration, accuracy.

Main sweep: every model of the evaluation (MLP, ResNet-18/CIFAR, VGG-16/CIFAR,
ResNet-50/ImageNet-shaped layers, a BERT-base encoder layer) x sparsities x the ACF and
every baseline target, plus its iso-peak instance (acf-h200-iso: the H200's dense BF16 MAC
rate) at 0 and 90 %, into ``<out>/sweep_main``; ablations on ResNet-18 at 90 % into
``<out>/resnet18_ablations``.

    python -m acf.benchmarks.sweep_paper --out results [--jobs 2]   (or: python benchmarks/sweep_paper.py)

Each stage is resumable (rows keyed by run id): re-running skips finished runs.
``--report-only`` rebuilds the summaries and plots from the rows and calibration already
in ``--out`` (after a change to the reports, without rerunning anything).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from acf.evaluation import baselines, calibration, report
from acf.evaluation.points import latest_rows
from acf.evaluation.sweep import Grid, read_rows, run_sweep

MODELS = ["mlp", "resnet18-cifar", "vgg16-cifar", "resnet50-imagenet", "bert-base-layer"]
TARGETS = ["acf-base", "acf-dense", "procrustes-like", "tensordash-like", "sigma-like",
           "tpu-like", "tpu-like-iso-ports"]
ISO = "acf-h200-iso"
#: the models with a measured H200 training step (shared/anchors): compared at 90 %
COMPARED = (("resnet18-cifar", 0.9), ("vgg16-cifar", 0.9), ("resnet50-imagenet", 0.9),
            ("bert-base-layer", 0.9))


def extra_baselines() -> dict:
    """Baselines beside the sweep: this machine's CPU measured live (torch, 1024^3 fp32 GEMM),
    its CUDA GPU if it has one (as the anchors were measured) and datasheet rooflines of
    A100, H100 and H200 on ResNet-18's layer1 forward GEMM (im2col shape, batch 128), in
    TF32 and BF16."""
    from dataclasses import asdict

    from acf.evaluation.workloads import Workload, model_layers

    g = next(g for g in Workload.build("resnet18-cifar", 0.0).gemms if g.key == "layer1.conv.fwd")
    layer = next(ly for ly in model_layers("resnet18-cifar") if ly.name == g.layer)
    # the tensors the convolution moves (its activation tensor, not its im2col matrix)
    elems = baselines.training_gemm_elems(asdict(g), layer, baselines.input_elems_read(layer))
    return {"cpu_live": baselines.cpu_gemm(1024, 1024, 1024),
            "gpu_live": baselines.gpu_live(),  # the anchors' GEMM rows where CUDA is present
            "roofline_resnet18_layer1_fwd": [baselines.roofline_gemm(gpu, g.m, g.n, g.k, dt, elems)
                                             for dt in ("tf32", "bf16")
                                             for gpu in ("A100", "H100", "H200")]}


def main() -> int:
    """Bad input (names, numbers, a folder without results for --report-only) is one line
    on stderr and status 1."""
    from acf.evaluation.sweep import SweepError

    try:
        _main()
    except SweepError as exc:
        print(f"sweep_paper: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _main() -> None:
    from acf.evaluation.sweep import SweepError

    p = argparse.ArgumentParser()
    p.add_argument("--out", default="results")
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--sparsity", default="0,0.5,0.7,0.8,0.9,0.95")
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--calibrate-from-rows", action="store_true",
                   help="calibrate on the sweep's closest rows (activations at the sweep's "
                        "density) instead of running each paper's workload (a few minutes)")
    p.add_argument("--report-only", action="store_true",
                   help="rebuild the reports from the rows and calibration in --out")
    a = p.parse_args()
    out = Path(a.out)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    from acf.evaluation.workloads import MODELS as KNOWN

    unknown = [m for m in models if m not in KNOWN]
    if not models or unknown:
        raise SweepError(f"--models {a.models!r}: " + (f"unknown model {unknown[0]!r}; " if unknown
                                                        else "give at least one; ")
                         + f"known: {', '.join(KNOWN)}")
    try:
        sparsities = list(dict.fromkeys(float(x) for x in a.sparsity.split(",")))
    except ValueError:
        raise SweepError(f"--sparsity {a.sparsity!r}: expected numbers in [0, 1)") from None
    if a.report_only:
        if not (out / "calibration.json").exists() or not (out / "sweep_main").is_dir():
            raise SweepError(f"--report-only: {out} holds no sweep (no sweep_main/ rows and "
                             "calibration.json); run the sweep first")
        return report_only(out, models)
    anchors = baselines.load_anchors()
    main_dir = out / "sweep_main"
    run_sweep(Grid(models=models, targets=TARGETS, sparsities=sparsities), main_dir, jobs=a.jobs)
    # the iso-peak fabric (256 clusters, the slowest to emulate) at the compared points only
    iso = run_sweep(Grid(models=models, targets=[ISO], sparsities=[0.0, 0.9]), main_dir, jobs=a.jobs)
    rows = latest_rows(iso.rows)  # every row in the folder, both grids
    abl_dir = out / "resnet18_ablations"
    abl = run_sweep(Grid(models=["resnet18-cifar"], sparsities=[0.9], targets=["acf-base"],
                         sets={"cluster.lookahead": ["1", "4", "8", "32"]}), abl_dir, jobs=a.jobs)
    abl2 = run_sweep(Grid(models=["resnet18-cifar"], sparsities=[0.9], targets=["acf-base", "acf-dense"],
                          formats=["dense", "csr"]), abl_dir, jobs=a.jobs)
    abl3 = run_sweep(Grid(models=["resnet18-cifar"], sparsities=[0.9], targets=["acf-base"],
                          noc=["unicast"]), abl_dir, jobs=a.jobs)  # NoC configuration off
    (out / "baselines_extra.json").write_text(json.dumps(extra_baselines(), indent=1) + "\n")
    cal = calibration.calibrate_from_rows(rows) if a.calibrate_from_rows else calibration.calibrate()
    (out / "calibration.json").write_text(json.dumps(cal, indent=1))
    acc = None if a.skip_accuracy else report.accuracy_runs(["rigl", "set", "static-magnitude"],
                                                          [0.0, 0.5, 0.8, 0.9, 0.95], steps=300)
    command = "python benchmarks/sweep_paper.py " + " ".join(sys.argv[1:])
    compared = tuple(c for c in COMPARED if c[0] in models)
    report.write_report(rows, main_dir, anchors, cal, acc, compared,
                        command)
    reference = [r for r in rows if r["model"] == "resnet18-cifar" and r["sparsity"] == 0.9
                 and r["target"] in ("acf-base", "acf-dense")]
    report.write_report(latest_rows(reference + abl.rows + abl2.rows + abl3.rows), abl_dir, anchors, None,
                        None, (), command, borrowed={"../sweep_main": reference})


def report_only(out: Path, models: list[str]) -> None:
    main_dir, abl_dir = out / "sweep_main", out / "resnet18_ablations"
    rows = latest_rows(read_rows(main_dir))
    cal = json.loads((out / "calibration.json").read_text())
    command = "python benchmarks/sweep_paper.py " + " ".join(a for a in sys.argv[1:] if a != "--report-only")
    anchors = baselines.load_anchors()
    compared = tuple(c for c in COMPARED if c[0] in models)
    report.write_report(rows, main_dir, anchors, cal, None, compared, command)
    reference = [r for r in rows if r["model"] == "resnet18-cifar" and r["sparsity"] == 0.9
                 and r["target"] in ("acf-base", "acf-dense")]
    report.write_report(latest_rows(reference + read_rows(abl_dir)), abl_dir, anchors, None, None,
                        (), command, borrowed={"../sweep_main": reference})


if __name__ == "__main__":
    sys.exit(main())
