"""acf.evaluation: workloads, sweeps, baselines, calibration and reports.

    from acf.evaluation.sweep import Grid, run_sweep
    res = run_sweep(Grid(models=["resnet18-cifar"], sparsities=[0.0, 0.9],
                         targets=["acf-base", "acf-dense"]), "results/r18")
    from acf.evaluation.report import write_report
    write_report(res.rows, "results/r18", anchors=baselines.load_anchors())

Modules: ``workloads`` (model layer shapes -> training-step GEMMs -> graph IR, sampling),
``runner`` (compile + emulate one run -> one row), ``sweep`` (grids, resumable JSONL/CSV,
process pool / Ray), ``baselines`` (measured H200 anchors, datasheet rooflines, live CPU,
normalizations, Stillmaker & Baas node scaling), ``calibration`` (peers vs their papers),
``report`` (summary.md, comparison.json, plots).
"""
