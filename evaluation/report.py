"""Markdown summary and plots (matplotlib, Agg) of a sweep's rows.

``write_report(rows, out_dir, ...)`` writes ``summary.md``, ``comparison.json`` and the
plots listed in :data:`PLOTS`. Speedups and energy reductions are against ``acf-dense`` (the
same fabric without skipping) at the same model, sparsity, mask, formats and ``--set`` point;
the GPU comparison states its normalization in every line.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from acf.evaluation.runner import default_settings

PLOTS = ("speedup_vs_sparsity.png", "energy_vs_sparsity.png", "energy_breakdown.png",
         "utilization.png", "noc_link_load.png", "realized_vs_ideal.png", "accuracy_vs_sparsity.png")
DENSE = "acf-dense"


def _point(r: dict[str, Any], noc: str | None = None) -> tuple:
    return (r["model"], r["sparsity"], r.get("mask"), r.get("formats"),
            json.dumps(r.get("overrides") or {}, sort_keys=True), r.get("act_density"), r.get("batch"),
            noc or r.get("noc", "auto"))


def pair_with_dense(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each row with acf-dense at its point (its NoC mode's, else the default mode's: the
    NoC-off ablation is measured against the usual dense baseline)."""
    dense = {_point(r): r for r in rows if r["target"] == DENSE}
    return [(r, dense.get(_point(r)) or dense.get(_point(r, "auto"))) for r in rows]


def peak_ratio(r: dict[str, Any], d: dict[str, Any]) -> float:
    """The target's peak MAC rate over acf-dense's (1 for every peer: same MAC count)."""
    return r["peak_macs_per_s"] / d["peak_macs_per_s"]


def _iso_peak(r: dict[str, Any], d: dict[str, Any] | None) -> dict[str, Any] | None:
    """``d`` where the comparison is at equal peak MAC rate, else None (plots leave such a
    point out: acf-h200-iso's 121x peak is not a sparsity effect)."""
    return d if d is not None and abs(peak_ratio(r, d) - 1) < 0.01 else None


def label(r: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((r.get("overrides") or {}).items())]
    parts += [f"{k}={r[k]}" for k in ("formats", "noc") if r.get(k, "auto") != "auto"]
    return r["target"] + (f"[{','.join(parts)}]" if parts else "")


def per_gemm_ideal(acf: dict[str, Any], dense: dict[str, Any]) -> list[dict[str, Any]]:
    """Per GEMM: realized speedup (dense cycles / ACF cycles), ideal (dense MACs / effectual
    MACs measured on the ACF run) and the fraction of ideal realized."""
    dg = {g["key"]: g for g in dense["gemms"]}
    out = []
    for g in acf["gemms"]:
        d = dg.get(g["key"])
        if d is None:
            continue
        realized = d["cycles"] / max(g["cycles"], 1e-9)
        out.append({"gemm": g["key"], "m": g["m"], "n": g["n"], "k": g["k"], "count": g["count"],
                    "dense_cycles": d["cycles"] * g["count"], "acf_cycles": g["cycles"] * g["count"],
                    "realized": realized, "ideal": g["ideal_speedup"],
                    "fraction_of_ideal": realized / max(g["ideal_speedup"], 1e-9),
                    "sampled": g["sampled"]})
    return out


def amdahl(acf: dict[str, Any], dense: dict[str, Any]) -> dict[str, float]:
    """Whole-step bound: each GEMM at most its ideal speedup, weighted by its dense time."""
    rows = per_gemm_ideal(acf, dense)
    t_dense = sum(r["dense_cycles"] for r in rows)
    t_ideal = sum(r["dense_cycles"] / r["ideal"] for r in rows)
    realized = t_dense / max(sum(r["acf_cycles"] for r in rows), 1e-9)
    bound = t_dense / max(t_ideal, 1e-9)
    return {"step_realized_speedup": realized, "step_amdahl_bound": bound,
            "step_fraction_of_bound": realized / bound if bound else 0.0}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _series(rows, value) -> dict[tuple[str, str], list[tuple[float, float]]]:
    s: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for r, d in pair_with_dense(rows):
        v = value(r, d)
        if v is not None:
            s[(r["model"], label(r) + ("" if r.get("mask", "random") == "random" else f"/{r['mask']}"))].append(
                (100 * r["sparsity"], v))
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _energy_breakdown(path: Path, rows) -> None:
    plt = _plt()
    comps = sorted({k for r in rows for k in r if k.startswith("energy_") and k != "energy_j"})
    rows = sorted(rows, key=lambda r: (r["model"], label(r), r["sparsity"]))[:24]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows) + 2), 4))
    bottom = [0.0] * len(rows)
    for c in comps:
        vals = [r.get(c, 0.0) for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=c.removeprefix("energy_").removesuffix("_j"))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n{label(r)}\n{100 * r['sparsity']:.0f}%" for r in rows],
                       fontsize=6, rotation=90)
    ax.set_ylabel("energy per training step (J, 45 nm)")
    ax.set_title("energy by component")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _noc_heatmap(path: Path, rows) -> None:
    plt = _plt()
    cand = [r for r in rows if r.get("noc_link_flits")]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    if cand:
        r = max(cand, key=lambda r: r["sparsity"] if r["target"] == "acf-base" else -1)
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
        ax.set_title(f"NoC load: {r['model']} {label(r)} {100 * r['sparsity']:.0f}%", fontsize=8)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    else:
        ax.text(0.5, 0.5, "no NoC traffic recorded", ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _realized_vs_ideal(path: Path, rows) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    pts = []
    for r, d in pair_with_dense(rows):
        if _iso_peak(r, d) is None or r["target"] == DENSE:
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
    ax.set_xlabel("ideal speedup (dense MACs / effectual MACs)")
    ax.set_ylabel("realized speedup vs acf-dense (same peak)")
    ax.set_title("per-GEMM realized vs ideal")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(rows: list[dict[str, Any]], out_dir: Path, accuracy=None) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # speedups and energy ratios at equal peak MAC/s (fp32) and memory system only
    _line_plot(out_dir / PLOTS[0], _series(rows, lambda r, d: (d := _iso_peak(r, d)) and
                                           d["seconds"] / r["seconds"]),
               "speedup vs acf-dense (same peak fp32 MAC/s)", "speedup")
    _line_plot(out_dir / PLOTS[1], _series(rows, lambda r, d: (d := _iso_peak(r, d)) and
                                           d["energy_j"] / r["energy_j"]),
               "energy reduction vs acf-dense (same peak, 45 nm)", "energy")
    _energy_breakdown(out_dir / PLOTS[2], rows)
    _line_plot(out_dir / PLOTS[3], _series(rows, lambda r, d: r["utilization"]),
               "effectual MAC utilization", "utilization", logy=True)
    _noc_heatmap(out_dir / PLOTS[4], rows)
    _realized_vs_ideal(out_dir / PLOTS[5], rows)
    if not accuracy:  # no placeholder: the accuracy experiment has its own folder
        return [out_dir / p for p in PLOTS[:6]]
    _accuracy(out_dir / PLOTS[6], accuracy)
    return [out_dir / p for p in PLOTS]


# ---- the comparison table --------------------------------------------------------------------


GEMM_SCOPE = "ACF: GEMMs of the step only (no elementwise/optimizer); GPU: whole measured step"


def gpu_comparison(acf: dict[str, Any], anchors, model: str, per_sample: float = 1.0,
                   scope: str = GEMM_SCOPE) -> list[dict[str, Any]]:
    """ACF vs the measured H200 step, one line per normalization. ``per_sample``: the GPU
    step's time and energy scaled by it (ACF's batch / the anchor's batch); ``scope``: what
    each side covers."""
    from acf.evaluation import baselines as bl

    out = []
    for prec, dtype in (("fp32", "tf32"), ("bf16-amp", "bf16")):
        step = anchors.training_step(model, prec)
        if step is None:
            continue
        step = {**step, "time_s": step["time_s"] * per_sample,
                "energy_j": step["energy_j"] * per_sample}
        e7 = bl.scale_energy(acf["energy_j"], acf["tech_node_nm"], bl.GPUS["H200"].node_nm)
        iso = bl.iso_peak_time(acf["seconds"], acf["peak_macs_per_s"], "H200", dtype)
        pw = bl.iso_power_time(acf["seconds"], acf["energy_j"], "H200", acf["tech_node_nm"])
        ar = bl.iso_area_time(acf["seconds"], acf["area_mm2"], acf["tech_node_nm"], "H200")
        out.append({
            "gpu_row": step["name"], "gpu_time_s": step["time_s"], "gpu_energy_j": step["energy_j"],
            "gpu_per_sample": per_sample,
            "gpu_note": step.get("note", ""), "provenance": step["provenance"],
            "acf_time_s_raw": acf["seconds"], "acf_numeric_mode": acf["numeric_mode"],
            "speedup_raw": step["time_s"] / acf["seconds"],
            "speedup_iso_peak": step["time_s"] / iso["time_s"], "iso_peak": iso["normalization"],
            "speedup_iso_power": step["time_s"] / pw["time_s"], "iso_power": pw["normalization"],
            "speedup_iso_area": step["time_s"] / ar["time_s"], "iso_area": ar["normalization"],
            "acf_energy_j_45nm": acf["energy_j"], "acf_energy_j_scaled": e7["energy_j"],
            "energy_scaling": f"x{e7['factor']:.4f} {acf['tech_node_nm']}->{e7['to_nm']} nm, {e7['method']}",
            "energy_reduction_scaled": step["energy_j"] / e7["energy_j"],
            "scope": scope,
        })
    return out


def comparison(rows: list[dict[str, Any]], model: str = "resnet18-cifar", sparsity: float = 0.9,
               anchors=None) -> dict[str, Any] | None:
    sel = [r for r in rows if r["model"] == model and abs(r["sparsity"] - sparsity) < 1e-9
           and default_settings(r)]
    by_t = {r["target"]: r for r in sel}
    acf = by_t.get("acf-base")
    if acf is None:
        return None
    out: dict[str, Any] = {"model": model, "sparsity": sparsity, "mask": acf.get("mask"),
                           "sampled": acf["sampled"], "acf_seconds": acf["seconds"],
                           "acf_energy_j": acf["energy_j"], "vs_targets": [], "gemms": [], "gpu": []}
    for t, r in sorted(by_t.items()):
        if t == "acf-base":
            continue
        out["vs_targets"].append({"target": t, "speedup": r["seconds"] / acf["seconds"],
                                  "energy_reduction": r["energy_j"] / acf["energy_j"],
                                  "normalization": "same memory system and tech node (45 nm); "
                                                   f"peak {r['peak_macs_per_s'] / 1e12:.2f} vs "
                                                   f"{acf['peak_macs_per_s'] / 1e12:.2f} TMAC/s fp32"})
    dense = by_t.get(DENSE)
    if dense is not None:
        out["gemms"] = per_gemm_ideal(acf, dense)
        out.update(amdahl(acf, dense))
    if anchors is not None:
        out["gpu"] = gpu_comparison(acf, anchors, model, per_sample=_per_sample(acf, anchors, model))
    return out


def _per_sample(row: dict[str, Any], anchors, model: str) -> float:
    """The row's batch over the anchor step's (``bs=N`` in its name): the GPU step scaled to
    the samples the ACF step processed (1 at the workload's default batch, which is the
    anchor's)."""
    import inspect

    from acf.evaluation.workloads import MODELS

    step = anchors.training_step(model)
    m = re.search(r"bs=(\d+)", step["name"]) if step else None
    if m is None:
        return 1.0
    batch = row.get("batch") or inspect.signature(MODELS[model]).parameters["batch"].default
    return int(batch) / int(m.group(1))


def _md_comparison(c: dict[str, Any]) -> list[str]:
    L = [f"## {c['model']} at {100 * c['sparsity']:.0f} % weight sparsity ({c['mask']} masks)", "",
         f"ACF (acf-base): {c['acf_seconds'] * 1e3:.3f} ms, {c['acf_energy_j']:.4f} J per step "
         f"(45 nm; GEMMs only; {100 * c['sampled']:.2f} % of MACs emulated, rest scaled).", "",
         "| vs | speedup of ACF | energy reduction of ACF | normalization |", "|---|---|---|---|"]
    for v in c["vs_targets"]:
        L.append(f"| {v['target']} | {v['speedup']:.2f}x | {v['energy_reduction']:.2f}x | {v['normalization']} |")
    for g in c["gpu"]:
        per = ("" if g.get("gpu_per_sample", 1.0) == 1.0 else
               f"; the GPU step x{g['gpu_per_sample']:g}: per sample at the ACF step's batch")
        L.append(f"| H200 `{g['gpu_row']}` (raw) | {g['speedup_raw']:.4f}x | {g['energy_reduction_scaled']:.3f}x "
                 f"| raw time; energy {g['energy_scaling']}; {g['scope']}{per} |")
        L.append(f"| H200 `{g['gpu_row']}` iso-peak | {g['speedup_iso_peak']:.3f}x | (as above) | {g['iso_peak']} |")
        L.append(f"| H200 `{g['gpu_row']}` iso-power | {g['speedup_iso_power']:.3f}x | (as above) | {g['iso_power']} |")
        L.append(f"| H200 `{g['gpu_row']}` iso-area | {g['speedup_iso_area']:.3f}x | (as above) | {g['iso_area']} |")
    if c["gpu"]:
        L += ["", f"H200 provenance: {c['gpu'][0]['provenance']['what']} "
                  f"(file {c['gpu'][0]['provenance']['anchor_file']}, {c['gpu'][0]['provenance']['device']})"]
    if c["gemms"]:
        L += ["", f"Whole step: realized {c['step_realized_speedup']:.2f}x vs acf-dense; Amdahl bound "
                  f"(each GEMM at its ideal) {c['step_amdahl_bound']:.2f}x; "
                  f"{100 * c['step_fraction_of_bound']:.1f} % of the bound realized.", "",
              "| GEMM | M x N x K | count | realized | ideal (dense/effectual MACs) | fraction of ideal | sampled |",
              "|---|---|---|---|---|---|---|"]
        for g in c["gemms"]:
            L.append(f"| {g['gemm']} | {g['m']}x{g['n']}x{g['k']} | {g['count']} | {g['realized']:.2f}x | "
                     f"{g['ideal']:.1f}x | {100 * g['fraction_of_ideal']:.1f} % | {100 * g['sampled']:.2f} % |")
    return L


def _md_gpu_baselines(anchors, rows: list[dict[str, Any]]) -> list[str]:
    """The anchors' software-sparse GPU rows (CSR, 2:4, the cuSPARSE linear training step)
    beside the fabric's own dense-to-sparse ratio, and datasheet rooflines of A100/H100/H200
    for the compared GEMMs against the fabric at iso-peak."""
    from acf.evaluation import baselines as bl

    prov = anchors.provenance
    L = ["## GPU baselines: software sparsity (measured) and rooflines (datasheets)", "",
         f"Measured on {prov['device']} ({prov['anchor_file']}, torch {prov['torch']}): "
         "time per call; `vs dense` is the dense GEMM of the same dtype and shape over the "
         "sparse one (above 1: the sparse kernel is faster).", "",
         "| shape | kernel | dtype | sparsity | time (ms) | vs dense |", "|---|---|---|---|---|---|"]
    shapes = sorted({"x".join(map(str, bl.shape_of(r["name"]))) for r in anchors.rows()
                     if bl.shape_of(r["name"]) and not r["name"].startswith("train")})
    for shape in shapes:
        for kind, dtype, dense_dtype in (("csr", "float32", "fp32"), ("2:4", "bf16", "bfloat16")):
            try:
                dense = anchors.gemm("dense", dense_dtype, shape)
            except KeyError:
                continue
            L.append(f"| {shape} | dense | {dense_dtype} | 0 % | {dense['time_s'] * 1e3:.3f} | 1.00x |")
            sps = (0.5,) if kind == "2:4" else (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
            for sp in sps:
                try:
                    r = anchors.gemm(kind, dtype, shape, sp)
                except KeyError:
                    continue
                L.append(f"| {shape} | {'cuSPARSE CSR' if kind == 'csr' else '2:4 cuSPARSELt'} | "
                         f"{dtype} | {100 * sp:.0f} % | {r['time_s'] * 1e3:.3f} | "
                         f"{dense['time_s'] / r['time_s']:.2f}x |")
    L += ["", "One linear layer's training step (forward, input gradient, weight gradient; "
          "cuSPARSE SpMM and SDDMM against three dense GEMMs, fp32), averaged over the measured "
          "shapes, beside the fabric's speedup over acf-dense for the same three GEMMs of an "
          "MLP layer at the same sparsity (from this sweep, where it ran):", "",
          "| sparsity | H200 sparse step vs dense | ACF (acf-base) vs acf-dense, MLP |", "|---|---|---|"]
    mlp = {r["sparsity"]: (r, d) for r, d in pair_with_dense(rows)
           if r["model"] == "mlp" and r["target"] == "acf-base" and d is not None
           and default_settings(r)}
    for sp in (0.5, 0.9, 0.95, 0.99):
        ratio = anchors.sparse_step_ratio(sp)
        if ratio is None:
            continue
        pair = mlp.get(sp)
        acf_text = f"{pair[1]['seconds'] / pair[0]['seconds']:.2f}x" if pair else "-"
        L.append(f"| {100 * sp:.0f} % | {1 / ratio['ratio']:.2f}x ({ratio['n_shapes']} shapes) | {acf_text} |")
    # rooflines for the GEMMs of each compared model's dense step
    L += ["", "Datasheet rooflines (dense peaks, operands moved once) for the GEMMs of each "
          "model's training step, against acf-base's emulated time for the same GEMMs at 0 % "
          "and 90 % sparsity scaled to the GPU's dense peak MAC rate of the dtype (iso-peak, "
          "assuming the fabric scales linearly):", "",
          "| model | GPU | dtype | roofline (ms) | ACF 0 % iso-peak (ms) | ACF 90 % iso-peak (ms) |",
          "|---|---|---|---|---|---|"]
    acf_rows = {(r["model"], r["sparsity"]): r for r in rows
                if r["target"] == "acf-base" and default_settings(r)}
    for model in sorted({m for m, _ in acf_rows}):
        base = acf_rows.get((model, 0.0))
        if base is None:
            continue
        sparse = acf_rows.get((model, 0.9))
        for gname in ("A100", "H100", "H200"):
            for dtype in ("tf32", "bf16"):
                roof = sum(bl.roofline_gemm(gname, g["m"], g["n"], g["k"], dtype)["time_s"] * g["count"]
                           for g in base["gemms"])
                iso0 = bl.iso_peak_time(base["seconds"], base["peak_macs_per_s"], gname, dtype)["time_s"]
                iso9 = (bl.iso_peak_time(sparse["seconds"], sparse["peak_macs_per_s"], gname, dtype)["time_s"]
                        if sparse else None)
                L.append(f"| {model} | {gname} | {dtype} | {roof * 1e3:.3f} | {iso0 * 1e3:.3f} | "
                         + (f"{iso9 * 1e3:.3f} |" if iso9 is not None else "- |"))
    return L


def _mask_update_text(r: dict[str, Any]) -> str:
    if not r.get("mask_update_seconds"):
        return "-"
    return f"{r['mask_update_seconds'] * 1e3:.4g}, {r['mask_update_energy_j'] * 1e3:.4g}"


def write_report(rows: list[dict[str, Any]], out_dir: Path | str, anchors=None, calibration=None,
                 accuracy=None, comparisons: tuple[tuple[str, float], ...] = (("resnet18-cifar", 0.9),),
                 command: str = "") -> Path:
    out = Path(out_dir)
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    plots = write_plots(rows, out, accuracy)
    L = ["# ACF evaluation summary", ""]
    if command:
        L += [f"Produced by: `{command}`", ""]
    L += [f"{len(rows)} runs. Speedup and energy reduction are against `acf-dense` (same fabric, "
          "no zero-skipping) at the same point: the peers have its MAC count, clock and memory "
          "system (equal peak fp32 MAC/s); a target with another peak says so beside its "
          "speedup and is left out of the speedup plots. Energies are at the fabric's 45 nm unless scaled. "
          "Times cover the GEMMs of one training step (forward, backward-data, weight gradient).", "",
          "`mask update` is apart from the step: every weight brought to a new mask in its "
          "storage format (read, masked, written back, a compressed one re-encoded with its "
          "mask), as a RigL/SET/GMP update step does, once per update.", "",
          "| model | target | sparsity | mask | cycles | time (ms) | energy (mJ) | speedup | energy red. | "
          "utilization | ideal | NoC max link | sampled | mask update (ms, mJ) |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r, d in sorted(pair_with_dense(rows), key=lambda p: (p[0]["model"], label(p[0]), p[0]["sparsity"])):
        sp = f"{d['seconds'] / r['seconds']:.2f}x" if d else "-"
        er = f"{d['energy_j'] / r['energy_j']:.2f}x" if d else "-"
        if d and _iso_peak(r, d) is None:  # not a like-for-like comparison: say so
            sp += f" ({peak_ratio(r, d):.0f}x peak)"
        L.append(f"| {r['model']} | {label(r)} | {100 * r['sparsity']:.0f} % | {r.get('mask')} | {r['cycles']:.3g} | "
                 f"{r['seconds'] * 1e3:.4g} | {r['energy_j'] * 1e3:.4g} | {sp} | {er} | "
                 f"{100 * r['utilization']:.2f} % | {r['ideal_speedup']:.1f}x | {r['noc_max_link_load']:.3f} | "
                 f"{100 * r['sampled']:.2f} % | {_mask_update_text(r)} |")
    comps = []
    for model, sp in comparisons:
        c = comparison(rows, model, sp, anchors)
        if c is not None:
            comps.append(c)
            L += [""] + _md_comparison(c)
    if anchors is not None:
        L += [""] + _md_gpu_baselines(anchors, rows)
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
    (out / "comparison.json").write_text(json.dumps({"comparisons": comps, "calibration": calibration or [],
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
