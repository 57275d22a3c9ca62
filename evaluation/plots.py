"""The report's plots of a sweep's rows (matplotlib, Agg backend, imported when drawing).

Speedup and energy reduction against acf-dense by sparsity (at equal peak MAC rate only),
energy by component, effectual MAC utilization, the NoC load of one run, per-GEMM realized
against ideal speedup and, when given, accuracy by sparsity: the files of :data:`PLOTS`.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from acf.evaluation.comparison import per_gemm_ideal
from acf.evaluation.hardware import nodes_text
from acf.evaluation.labels import distinguishing, row_label
from acf.evaluation.outputs import PLOTS
from acf.evaluation.points import (
    ACF,
    DENSE,
    natural_key,
    pair_with_dense,
    point_order,
    same_peak_or_none,
)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    """Lay out, write (110 dpi) and close a figure: every plot ends so."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

def _series(rows, value) -> dict[tuple[str, str], list[tuple[float, float]]]:
    s: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    shown = distinguishing(rows)
    for r, d in pair_with_dense(rows):
        v = value(r, d)
        if v is not None:
            s[(r["model"], row_label(r, shown) + ("" if r.get("mask", "random") == "random"
                                                   else f"/{r['mask']}"))].append((100 * r["sparsity"], v))
    return {k: sorted(v) for k, v in s.items()}


def _line_plot(path: Path, series, ylabel: str, title: str, logy: bool = False) -> None:
    plt = _plt()
    models = sorted({m for m, _ in series}) or ["(no data)"]
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        for (m, lab), pts in sorted(series.items()):
            if m == model and pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lab)
        ax.set_title(f"{title}: {model}")
        ax.set_xlabel("weight sparsity (%)")
        ax.set_ylabel(ylabel)
        if logy:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    _save(plt, fig, path)


def _energy_breakdown(path: Path, rows) -> None:
    plt = _plt()
    comps = sorted({k for r in rows for k in r if k.startswith("energy_") and k != "energy_j"})
    shown = distinguishing(rows)
    node = nodes_text(rows)
    rows = sorted(rows, key=lambda r: (r["model"], natural_key(row_label(r, shown)), r["sparsity"],
                                       point_order(r)))[:24]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows) + 2), 4))
    bottom = [0.0] * len(rows)
    for c in comps:
        vals = [r.get(c, 0.0) for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=c.removeprefix("energy_").removesuffix("_j"))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n{row_label(r, shown)}\n{100 * r['sparsity']:.0f}%" for r in rows],
                       fontsize=6, rotation=90)
    ax.set_ylabel(f"energy per training step (J, {node})", fontsize=8 if "except" in node else 10)
    ax.set_title("energy by component")
    ax.legend(fontsize=6)
    _save(plt, fig, path)


def _noc_heatmap(path: Path, rows) -> None:
    plt = _plt()
    shown = distinguishing(rows)
    # in a fixed order, so that of equal candidates the same one is drawn whatever the row order
    cand = sorted((r for r in rows if r.get("noc_link_flits")), key=point_order)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if cand:
        r = max(cand, key=lambda r: r["sparsity"] if r["target"] == ACF else -1)
        gx, gy = r.get("grid", [1, 1])
        load = [[0.0] * gx for _ in range(gy)]
        for name, flits in r["noc_link_flits"].items():
            src = name.split("->")[0]
            mm = re.fullmatch(r"c(\d+)", src)
            if mm:
                i = int(mm.group(1))
                load[i // gx][i % gx] += flits / max(r["cycles"], 1)
            elif (mp := re.fullmatch(r"[pP](\d+)", src)):
                load[int(mp.group(1))][0] += flits / max(r["cycles"], 1)
        im = ax.imshow(load, cmap="viridis")
        fig.colorbar(im, ax=ax, label="outgoing flits / cycle (step average)")
        ax.set_title(f"NoC load: {r['model']} {row_label(r, shown)} {100 * r['sparsity']:.0f}%", fontsize=8)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        ax.text(0.5, 0.5, "no NoC traffic recorded", ha="center")
    _save(plt, fig, path)


def _realized_vs_ideal(path: Path, rows) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    pts = []
    for r, d in pair_with_dense(rows):
        if same_peak_or_none(r, d) is None or r["target"] == DENSE:
            continue
        for g in per_gemm_ideal(r, d):
            pts.append((g["ideal"], g["realized"], r["target"]))
    for tgt in sorted({p[2] for p in pts}):
        xs = [p[0] for p in pts if p[2] == tgt]
        ys = [p[1] for p in pts if p[2] == tgt]
        ax.scatter(xs, ys, s=10, label=tgt)
    if pts:
        hi = max(max(p[0] for p in pts), max(p[1] for p in pts))
        ax.plot([1, hi], [1, hi], "k--", lw=0.8, label="ideal 1/(d_w d_a)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("ideal speedup (dense MACs / products of two nonzeros)")
    ax.set_ylabel("realized speedup vs acf-dense (same peak)")
    ax.set_title("per-GEMM realized vs ideal")
    _save(plt, fig, path)


def _accuracy(path: Path, accuracy: list[dict[str, Any]] | None) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    by: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for a in accuracy or []:
        by[a["algorithm"]].append((100 * a["sparsity"], a["final_accuracy"]))
    for alg, pts in sorted(by.items()):
        pts.sort()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=alg)
    if not by:
        ax.text(0.5, 0.5, "no accuracy runs", ha="center")
    else:
        ax.legend(fontsize=7)
    ax.set_xlabel("weight sparsity (%)")
    ax.set_ylabel("test accuracy")
    ax.set_title("accuracy vs sparsity (algorithms.train)")
    _save(plt, fig, path)


def write_plots(rows: list[dict[str, Any]], out_dir: Path, accuracy=None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # speedups and energy ratios at equal peak MAC/s only (a row and its acf-dense share
    # their point's --set values, tech.scale_to_nm included: their node)
    _line_plot(out_dir / PLOTS[0], _series(rows, lambda r, d: (d := same_peak_or_none(r, d)) and
                                           d["seconds"] / r["seconds"]),
               "speedup vs acf-dense (same peak MAC/s)", "speedup")
    _line_plot(out_dir / PLOTS[1], _series(rows, lambda r, d: (d := same_peak_or_none(r, d)) and
                                           d["energy_j"] / r["energy_j"]),
               "energy reduction vs acf-dense (same peak, same node)", "energy")
    _energy_breakdown(out_dir / PLOTS[2], rows)
    _line_plot(out_dir / PLOTS[3], _series(rows, lambda r, d: r["utilization"]),
               "effectual MAC utilization", "utilization", logy=True)
    _noc_heatmap(out_dir / PLOTS[4], rows)
    _realized_vs_ideal(out_dir / PLOTS[5], rows)
    if not accuracy:  # no placeholder: the accuracy experiment has its own folder
        return [out_dir / p for p in PLOTS[:6]]
    _accuracy(out_dir / PLOTS[6], accuracy)
    return [out_dir / p for p in PLOTS]
