"""acf.evaluation: workloads, sweeps, baselines, calibration and reports.

    from acf.evaluation.sweep import Grid, run_sweep
    res = run_sweep(Grid(models=["resnet18-cifar"], sparsities=[0.0, 0.9],
                         targets=["acf-base", "acf-dense"]), "results/r18")
    from acf.evaluation.report import write_report
    write_report(res.rows, "results/r18", anchors=baselines.load_anchors())

Modules: ``workloads`` (model layer shapes -> training-step GEMMs -> graph IR, sampling),
``runner`` (compile + emulate one run -> one row), ``sweep`` (grids, resumable JSONL/CSV,
process pool / Ray), ``points`` (which rows are one point, the latest row of each, pairing
with acf-dense), ``baselines`` (measured H200 anchors, datasheet rooflines, live CPU,
normalizations, Stillmaker & Baas node scaling), ``calibration`` (peers vs their papers),
``report`` (summary.md, comparison.json, plots) and its parts: ``labels`` (rows in words),
``hardware`` (the targets' figures and node), ``comparison`` (acf-base against the other
targets at a point), ``gpu_tables`` (the H200 step and GPU baselines), ``plots`` and
``outputs`` (the report's file names).
"""
