"""The reports of a sweep: ``summary.md``, ``comparison.json`` and plots of its rows.

``write_report(rows, out_dir, ...)`` writes ``summary.md``, ``comparison.json`` and the
plots listed in :data:`.outputs.PLOTS`. Speedups and energy reductions are against ``acf-dense`` (the
same fabric without skipping) at the same point: model, sparsity, mask, batch, activation
density, formats, NoC mode, ``--set`` values and sampling, everything but the target. Where
two targets' hardware differs (peak MAC rate and multiply type, clock, memory ports, DRAM,
global buffer, node) the summary says how, from the targets' configs; the GPU comparison
states its normalization in every line.

This module writes the summary's runs table and assembles the rest from :mod:`.points`
(rows of one point, pairing), :mod:`.labels` (rows in words), :mod:`.hardware` (the
targets' figures and node), :mod:`.comparison` (acf-base against the other targets),
:mod:`.gpu_tables` (the H200 and GPU baselines) and :mod:`.plots`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from acf.evaluation.comparison import compare_points, md_comparisons
from acf.evaluation.gpu_tables import md_gpu_baselines
from acf.evaluation.hardware import at_recorded_node, md_targets, nodes_text
from acf.evaluation.labels import distinguishing, row_label
from acf.evaluation.outputs import OUTPUT_FILES
from acf.evaluation.plots import write_plots
from acf.evaluation.points import (
    natural_key,
    pair_with_dense,
    peak_ratio,
    point_order,
    same_peak_or_none,
)
from acf.evaluation.sweep import check_out_dir


def _mask_update_text(r: dict[str, Any]) -> str:
    if not r.get("mask_update_seconds"):
        return "-"
    return f"{r['mask_update_seconds'] * 1e3:.4g}, {r['mask_update_energy_j'] * 1e3:.4g}"


def _note(text: str) -> None:
    """Say on stderr what the summary also says (a --compare that made no table)."""
    print(f"note: {text}", file=sys.stderr)


def _origins(borrowed: Mapping[str, list[dict[str, Any]]] | None) -> dict[str, str]:
    """run id -> where a row shown for reference was measured."""
    return {r["run_id"]: source for source, rs in (borrowed or {}).items() for r in rs}


def _md_rows(rows: list[dict[str, Any]], origin: Mapping[str, str]) -> list[str]:
    shown = distinguishing(rows)
    L = ["| model | target | sparsity | mask | cycles | time (ms) | energy (mJ) | speedup | energy red. | "
         "utilization | ideal | NoC max link | sampled | mask update (ms, mJ) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def order(pair):
        return (pair[0]["model"], natural_key(row_label(pair[0], shown)), pair[0]["sparsity"],
                point_order(pair[0]))

    for r, d in sorted(pair_with_dense(rows), key=order):
        sp = f"{d['seconds'] / r['seconds']:.2f}x" if d else "-"
        er = f"{d['energy_j'] / r['energy_j']:.2f}x" if d else "-"
        if d and same_peak_or_none(r, d) is None:  # not a like-for-like comparison: say so
            sp += f" ({peak_ratio(r, d):.0f}x peak)"
        name = row_label(r, shown) + (f" (from {origin[r['run_id']]})" if r.get("run_id") in origin else "")
        L.append(f"| {r['model']} | {name} | {100 * r['sparsity']:.0f} % | {r.get('mask')} | {r['cycles']:.3g} | "
                 f"{r['seconds'] * 1e3:.4g} | {r['energy_j'] * 1e3:.4g} | {sp} | {er} | "
                 f"{100 * r['utilization']:.2f} % | {r['ideal_speedup']:.1f}x | {r['noc_max_link_load']:.3f} | "
                 f"{100 * r['sampled']:.2f} % | {_mask_update_text(r)} |")
    return L


def _borrowed_text(rows: list[dict[str, Any]], origin: Mapping[str, str]) -> str:
    here = sorted({origin[r["run_id"]] for r in rows if r.get("run_id") in origin})
    n = sum(r.get("run_id") in origin for r in rows)
    if not n:
        return ""
    return (f" {n} of them were measured by another sweep ({', '.join(here)}), not by the "
            "command above, and are shown for reference: their target says `from ...`.")


def write_report(rows: list[dict[str, Any]], out_dir: Path | str, anchors=None, calibration=None,
                 accuracy=None, comparisons: tuple[tuple[str, float], ...] = (("resnet18-cifar", 0.9),),
                 command: str = "", borrowed: Mapping[str, list[dict[str, Any]]] | None = None) -> Path:
    """``borrowed``: rows of ``rows`` measured by another sweep, by where they were
    measured (``{"../sweep_main": reference_rows}``): the summary marks them."""
    out = Path(out_dir)
    check_out_dir(out, OUTPUT_FILES)  # before a plot is drawn: one line, not a traceback
    rows = [at_recorded_node(r) for r in rows if r.get("status", "ok") == "ok"]
    origin = _origins(borrowed)
    plots = write_plots(rows, out, accuracy)
    L = ["# ACF evaluation summary", ""]
    if command:
        L += [f"Produced by: `{command}`", ""]
    L += [f"{len(rows)} runs.{_borrowed_text(rows, origin)} Speedup and energy reduction are against "
          "`acf-dense` (same fabric, no zero-skipping) at the same point: same model, sparsity, mask, "
          "batch, activation density, formats, NoC mode and `--set` values. How each target's "
          "hardware differs from acf-dense's is in the Targets table below; a target with another "
          "peak MAC rate says so beside its speedup and is left out of the speedup plots. "
          f"Energies and areas are at {nodes_text(rows)}. "
          "Times cover the GEMMs of one training step (forward, backward-data, weight gradient).", "",
          "`mask update` is apart from the step: every weight brought to a new mask in its "
          "storage format (read, masked, written back, a compressed one re-encoded with its "
          "mask), as a RigL/SET/GMP update step does, once per update.", ""]
    L += _md_rows(rows, origin)
    if rows:
        L += [""] + md_targets(rows)
    comps, missing = [], []
    for model, sp in comparisons:
        found, why = compare_points(rows, model, sp, anchors)
        comps += found
        if why:
            missing.append(why)
            _note(why)
            L += ["", why[0].upper() + why[1:] + "."]
        else:
            L += [""] + md_comparisons(found)
    if anchors is not None:
        L += [""] + md_gpu_baselines(anchors, rows)
    if calibration:
        L += ["", "## Calibration against the peers' papers", "",
              "| peer | baseline | workload | modelled | paper | gap | explanation |", "|---|---|---|---|---|---|---|"]
        for c in calibration:
            L.append(f"| {c['peer']} | {c['baseline']} | {c['workload_note']} | {c['modelled_speedup']:.2f}x | "
                     f"{c['headline']:.2f}x ({c['headline_text']}; {c['source']}) | {100 * c['gap']:+.0f} % | "
                     f"{c['explanation']} |")
    if accuracy:
        L += ["", "## Accuracy (algorithms.train)", "", "| algorithm | sparsity | model/dataset | steps | accuracy |",
              "|---|---|---|---|---|"]
        for a in accuracy:
            L.append(f"| {a['algorithm']} | {100 * a['sparsity']:.0f} % | {a['model']}/{a['dataset']} | "
                     f"{a['steps']} | {a['final_accuracy']:.3f} |")
    L += ["", "Plots: " + ", ".join(f"[{p.name}]({p.name})" for p in plots)]
    (out / "summary.md").write_text("\n".join(L) + "\n")
    (out / "comparison.json").write_text(json.dumps({"comparisons": comps, "not_compared": missing,
                                                     "borrowed_rows": origin,
                                                     "calibration": calibration or [],
                                                     "accuracy": accuracy or []}, indent=1, sort_keys=True,
                                                    default=str))
    return out / "summary.md"


def accuracy_runs(algorithms_: list[str], sparsities: list[float], steps: int = 200, model: str = "mlp",
                  dataset: str = "digits") -> list[dict[str, Any]]:
    """Train with ``algorithms.train.train`` at each point (small, local datasets). N:M
    (``nm``, ``nm-srste``) trains with the N:M pattern of exactly each sparsity (0.5: 2:4,
    0.9: 1:10; see :func:`acf.algorithms.structure.nm_for_density`)."""
    from acf.algorithms.train import train
    from acf.evaluation.accuracy import NM_ALGORITHMS
    from acf.evaluation.workloads import nm_or_error

    out = []
    for alg in algorithms_:
        for sp in sparsities:
            if sp == 0.0:
                r = train("dense", None, steps, model=model, dataset=dataset)
            elif alg in NM_ALGORITHMS:
                n, m = nm_or_error(1.0 - sp)
                r = train(alg, None, steps, model=model, dataset=dataset, n=n, m=m)
            else:
                r = train(alg, 1.0 - sp, steps, model=model, dataset=dataset)
            out.append({"algorithm": alg, "sparsity": sp, "model": model, "dataset": dataset,
                        "steps": steps, "final_accuracy": r.final_accuracy, "curve": r.curve})
    return out
