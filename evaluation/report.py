"""Markdown summary and plots (matplotlib, Agg) of a sweep's rows.

``write_report(rows, out_dir, ...)`` writes ``summary.md``, ``comparison.json`` and the
plots listed in :data:`PLOTS`. Speedups and energy reductions are against ``acf-dense`` (the
same fabric without skipping) at the same point: model, sparsity, mask, batch, activation
density, formats, NoC mode, ``--set`` values and sampling, everything but the target. Where
two targets' hardware differs (peak MAC rate and multiply type, clock, memory ports, DRAM,
global buffer, node) the summary says how, from the targets' configs; the GPU comparison
states its normalization in every line.
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import MISSING, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from acf.evaluation.runner import RunSpec, default_settings, hardware_figures, load
from acf.evaluation.sweep import canonical_overrides, check_out_dir, effective_batch

PLOTS = ("speedup_vs_sparsity.png", "energy_vs_sparsity.png", "energy_breakdown.png",
         "utilization.png", "noc_link_load.png", "realized_vs_ideal.png", "accuracy_vs_sparsity.png")
#: every file write_report writes in its folder
OUTPUT_FILES = ("summary.md", "comparison.json") + PLOTS
DENSE = "acf-dense"
ACF = "acf-base"


# ---- points: the rows a speedup or a comparison pairs ----------------------------------------

_SPEC_DEFAULTS = {f.name: f.default for f in fields(RunSpec) if f.default is not MISSING}
#: what a point is besides its target: every field of the run spec (a row missing one
#: predates it and ran at its default)
_POINT_KEYS = tuple(f.name for f in fields(RunSpec) if f.name != "target")
#: settings a row label names when the rows of its model take more than one value of them
#: (the mask has a column of its own; ``--set``, formats and NoC mode are always named)
_LABELLED = ("batch", "act_density", "seed", "max_waves", "max_k_chunks", "full")


def _setting(r: dict[str, Any], key: str) -> Any:
    """One setting of a row's point, written one way: ``--set`` values canonically, the
    batch the model ran at (no ``--batch`` = its default)."""
    if key == "batch":
        return effective_batch(r)
    if key == "overrides":
        return json.dumps(canonical_overrides(r.get("overrides")), sort_keys=True)
    return r.get(key, _SPEC_DEFAULTS.get(key))


def _default_setting(r: dict[str, Any], key: str) -> Any:
    if key == "batch":
        return effective_batch({"model": r["model"]})
    return "{}" if key == "overrides" else _SPEC_DEFAULTS.get(key)


def _point(r: dict[str, Any], noc: str | None = None) -> tuple:
    """Everything but the target (``noc``: the point in that NoC mode instead)."""
    return tuple(noc if key == "noc" and noc else _setting(r, key) for key in _POINT_KEYS)


def _departures(r: dict[str, Any]) -> list[str]:
    """The settings of ``r``'s point that are not a sweep's defaults (model and sparsity
    aside): the default point has none."""
    return [k for k in _POINT_KEYS if k not in ("model", "sparsity")
            and _setting(r, k) != _default_setting(r, k)]


def _natural(text: str) -> tuple:
    """Sorts ``lookahead=8`` before ``lookahead=32``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _point_order(r: dict[str, Any]) -> tuple:
    """Default point first, then a fixed order: never the order rows finished in."""
    return len(_departures(r)), _natural(json.dumps(_point(r), default=str))


#: how a setting reads in a sentence
_SETTING_TEXT = {"mask": "{} masks", "batch": "batch {}", "act_density": "activation density {:g}",
                 "formats": "formats {}", "noc": "NoC {}", "seed": "seed {}", "max_waves": "max waves {}",
                 "max_k_chunks": "max k-chunks {}"}


_SETTING_NAME = {"overrides": "--set values", "act_density": "activation density", "noc": "NoC mode",
                 "max_waves": "max waves", "max_k_chunks": "max k-chunks", "full": "sampling"}


def _setting_text(r: dict[str, Any], key: str) -> str:
    v = _setting(r, key)
    if key == "overrides":
        return ", ".join(f"{k}={x}" for k, x in sorted(json.loads(v).items())) or "no --set"
    if key == "full":
        return "every tile emulated" if v else "sampled"
    return _SETTING_TEXT.get(key, key + " {}").format(v)


def point_text(r: dict[str, Any], also: tuple[str, ...] = ()) -> str:
    """``r``'s point in words: mask, batch and activation density always, the other
    settings where they are not the defaults or are in ``also``."""
    keys = [k for k in _POINT_KEYS if k not in ("model", "sparsity")
            and (k in ("mask", "batch", "act_density") or k in also or k in _departures(r))]
    return "; ".join(_setting_text(r, k) for k in keys)


def distinguishing(rows: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per model, the settings of :data:`_LABELLED` its rows take more than one value of:
    what a label must name so that rows of two points do not read alike."""
    values: dict[tuple[str, str], set] = defaultdict(set)
    for r in rows:
        for key in _LABELLED:
            values[(r["model"], key)].add(json.dumps(_setting(r, key)))
    out: dict[str, tuple[str, ...]] = {}
    for r in rows:
        out[r["model"]] = tuple(k for k in _LABELLED if len(values[(r["model"], k)]) > 1)
    return out


def pair_with_dense(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each row with acf-dense at its point (its NoC mode's, else the default mode's: the
    NoC-off ablation is measured against the usual dense baseline)."""
    dense = {_point(r): r for r in rows if r["target"] == DENSE}
    return [(r, dense.get(_point(r)) or dense.get(_point(r, "auto"))) for r in rows]


def peak_ratio(r: dict[str, Any], d: dict[str, Any]) -> float:
    """The target's peak MAC rate over acf-dense's (1 for a peer of the same MAC count)."""
    return r["peak_macs_per_s"] / d["peak_macs_per_s"]


def _iso_peak(r: dict[str, Any], d: dict[str, Any] | None) -> dict[str, Any] | None:
    """``d`` where the comparison is at equal peak MAC rate, else None (plots leave such a
    point out: acf-h200-iso's 121x peak is not a sparsity effect)."""
    return d if d is not None and abs(peak_ratio(r, d) - 1) < 0.01 else None


def label(r: dict[str, Any], shown: tuple[str, ...] = ()) -> str:
    """The target and what sets the row apart: ``--set`` values, formats and NoC mode when
    not the defaults, and the settings in ``shown`` (:func:`distinguishing`)."""
    parts = [f"{k}={v}" for k, v in sorted(canonical_overrides(r.get("overrides")).items())]
    parts += [f"{k}={r[k]}" for k in ("formats", "noc") if r.get(k, "auto") != "auto"]
    parts += [f"{k}={_setting(r, k)}" for k in shown]
    return r["target"] + (f"[{','.join(parts)}]" if parts else "")


def _row_label(r: dict[str, Any], shown: Mapping[str, tuple[str, ...]]) -> str:
    return label(r, shown.get(r["model"], ()))


# ---- the targets' hardware -------------------------------------------------------------------


@lru_cache(maxsize=256)
def _loaded_hardware(target: str, overrides: str, config_hash: str) -> dict[str, Any] | None:
    """The hardware figures of a target as loaded now, if it still has the config the row
    was measured on (else None: the figures would describe another design)."""
    try:
        t = load(RunSpec("", 0.0, target, overrides=tuple(json.loads(overrides).items())))
    except (OSError, ValueError):  # a target gone or changed past loading (TargetError): no figures
        return None
    return hardware_figures(t) if not config_hash or t.config_hash() == config_hash else None


def hardware_of(r: dict[str, Any]) -> dict[str, Any] | None:
    """The row's recorded hardware figures (rows before they were recorded: the target's,
    loaded)."""
    return r.get("hardware") or _loaded_hardware(r["target"], json.dumps(r.get("overrides") or {}, sort_keys=True),
                                                 r.get("config_hash", ""))


def _at_recorded_node(r: dict[str, Any]) -> dict[str, Any]:
    """A row made before rows recorded their hardware took ``tech_node_nm`` and
    ``area_mm2`` from the target's tables even where ``tech.scale_to_nm`` scaled its
    energies: take both from the target's figures, at the node its energies are at."""
    if "hardware" in r or r.get("status", "ok") != "ok":
        return r
    hw = hardware_of(r)
    if hw is None:
        return r
    return {**r, "hardware": hw, "tech_node_nm": hw["tech_node_nm"], "area_mm2": hw["area_mm2"]}


def _bytes_text(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} B"


#: the figures a comparison of two targets states, each as text
HARDWARE_FIGURES = (
    ("peak", lambda h: f"{h['peak_macs_per_s'] / 1e12:.2f} TMAC/s {h['numeric_mode']}"),
    ("clock", lambda h: f"{h['clock_ghz']:g} GHz"),
    ("memory ports", lambda h: f"{h['memory_ports']} x {h['port_link_bytes']} B/cycle"),
    ("DRAM", lambda h: f"{h['dram_channels']} channels, {h['dram_bytes_per_s'] / 1e9:.0f} GB/s"),
    ("global buffer", lambda h: _bytes_text(h["gbuf_bytes"])),
    ("node", lambda h: f"{h['tech_node_nm']} nm"),
)


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _hardware_parts(peer: dict[str, Any], base: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """(figures alike, figures that differ: ``peer``'s vs ``base``'s), None where a row's
    hardware is unknown."""
    hp, hb = hardware_of(peer), hardware_of(base)
    if hp is None or hb is None:
        return None
    same = [f"{name} ({text(hb)})" for name, text in HARDWARE_FIGURES if text(hp) == text(hb)]
    differ = [f"{name} ({text(hp)} vs {text(hb)})" for name, text in HARDWARE_FIGURES if text(hp) != text(hb)]
    return same, differ


def hardware_difference(peer: dict[str, Any], base: dict[str, Any]) -> str:
    """How ``peer``'s hardware differs from ``base``'s (two rows), from their configs:
    ``tpu-like differs from acf-base in memory ports (2 x 32 B/cycle vs 4 x 32 B/cycle);
    same peak (4.10 TMAC/s fp32), ...``."""
    parts = _hardware_parts(peer, base)
    if parts is None:
        return "hardware unknown (a target no longer loads with the config it ran on)"
    same, differ = parts
    if not differ:
        return "same hardware: " + _join(same)
    out = f"{label(peer)} differs from {label(base)} in {_join(differ)}"
    return out + (f"; same {_join(same)}" if same else "")


def _nodes_text(rows: list[dict[str, Any]]) -> str:
    """The node(s) the rows' energies and areas are at, naming the rows at a minority node."""
    by_node: dict[int, set[str]] = defaultdict(set)
    for r in rows:
        by_node[int(r["tech_node_nm"])].add(label(r))
    if not by_node:
        return "no node (no rows)"
    if len(by_node) == 1:
        return f"{next(iter(by_node))} nm"
    main = max(by_node, key=lambda n: (len(by_node[n]), n))  # a tie: the tables' (larger) node
    rest = "; ".join(f"{', '.join(sorted(by_node[n]))} at {n} nm" for n in sorted(by_node) if n != main)
    return f"{main} nm, except {rest}"


def per_gemm_ideal(acf: dict[str, Any], dense: dict[str, Any]) -> list[dict[str, Any]]:
    """Per GEMM: realized speedup (dense cycles / ACF cycles), ideal (dense MACs / products
    of two nonzeros, counted on the operands the run emulated) and the fraction of ideal
    realized."""
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
    shown = distinguishing(rows)
    for r, d in pair_with_dense(rows):
        v = value(r, d)
        if v is not None:
            s[(r["model"], _row_label(r, shown) + ("" if r.get("mask", "random") == "random"
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _energy_breakdown(path: Path, rows) -> None:
    plt = _plt()
    comps = sorted({k for r in rows for k in r if k.startswith("energy_") and k != "energy_j"})
    shown = distinguishing(rows)
    node = _nodes_text(rows)
    rows = sorted(rows, key=lambda r: (r["model"], _natural(_row_label(r, shown)), r["sparsity"],
                                       _point_order(r)))[:24]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(rows) + 2), 4))
    bottom = [0.0] * len(rows)
    for c in comps:
        vals = [r.get(c, 0.0) for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=c.removeprefix("energy_").removesuffix("_j"))
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r['model']}\n{_row_label(r, shown)}\n{100 * r['sparsity']:.0f}%" for r in rows],
                       fontsize=6, rotation=90)
    ax.set_ylabel(f"energy per training step (J, {node})", fontsize=8 if "except" in node else 10)
    ax.set_title("energy by component")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _noc_heatmap(path: Path, rows) -> None:
    plt = _plt()
    shown = distinguishing(rows)
    # in a fixed order, so that of equal candidates the same one is drawn whatever the row order
    cand = sorted((r for r in rows if r.get("noc_link_flits")), key=_point_order)
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
        ax.set_title(f"NoC load: {r['model']} {_row_label(r, shown)} {100 * r['sparsity']:.0f}%", fontsize=8)
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
    ax.set_xlabel("ideal speedup (dense MACs / products of two nonzeros)")
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
    # speedups and energy ratios at equal peak MAC/s only (a row and its acf-dense share
    # their point's --set values, tech.scale_to_nm included: their node)
    _line_plot(out_dir / PLOTS[0], _series(rows, lambda r, d: (d := _iso_peak(r, d)) and
                                           d["seconds"] / r["seconds"]),
               "speedup vs acf-dense (same peak MAC/s)", "speedup")
    _line_plot(out_dir / PLOTS[1], _series(rows, lambda r, d: (d := _iso_peak(r, d)) and
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


# ---- the comparison table --------------------------------------------------------------------


GEMM_SCOPE = "ACF: GEMMs of the step only (no elementwise/optimizer); GPU: whole measured step"
#: the measured step's precision and the dtype whose dense peak its iso-peak line scales to
GPU_PRECISIONS = (("fp32", "tf32"), ("bf16-amp", "bf16"))


def bf16_iso_peak_caveat(tf32_step: dict[str, Any] | None, bf16_step: dict[str, Any] | None,
                         gpu_name: str = "H200") -> dict[str, Any]:
    """Whether the bf16-amp step's iso-peak line is fair. It scales ACF to the GPU's dense
    bf16 peak, twice the TF32 one: fair only if the measured step is bound by that peak, so a
    step that ran no faster in bf16-amp than in fp32 (TF32) is not, and its iso-peak speedup
    comes out ``bf16/tf32 time x bf16/tf32 peak`` times the TF32 line's. Returns the flag,
    the time ratio and the caveat the summary states (empty when fair)."""
    if tf32_step is None or bf16_step is None:
        return {"bf16_amp_not_faster_than_tf32": False, "bf16_amp_over_tf32_time": None,
                "iso_peak_caveat": ""}
    from acf.evaluation import baselines as bl

    ratio = bf16_step["time_s"] / tf32_step["time_s"]
    peaks = bl.gpu(gpu_name).peak_flops
    caveat = ""
    if ratio >= 1.0:
        caveat = (f"the GPU step did not run faster in bf16-amp ({bf16_step['time_s'] * 1e3:.2f} ms) than in "
                  f"TF32 ({tf32_step['time_s'] * 1e3:.2f} ms): it is not bound by the bf16 peak, so this "
                  f"iso-peak overstates ACF ({ratio * peaks['bf16'] / peaks['tf32']:.2f}x the TF32 line's "
                  "speedup); quote the TF32 row")
    return {"bf16_amp_not_faster_than_tf32": ratio >= 1.0, "bf16_amp_over_tf32_time": ratio,
            "iso_peak_caveat": caveat}


def gpu_comparison(acf: dict[str, Any], anchors, model: str, per_sample: float = 1.0,
                   scope: str = GEMM_SCOPE) -> list[dict[str, Any]]:
    """ACF vs the measured H200 step, one line per normalization. ``per_sample``: the GPU
    step's time and energy scaled by it (ACF's batch / the anchor's batch); ``scope``: what
    each side covers. The row's energy and area are at its ``tech_node_nm`` (its
    ``tech.scale_to_nm`` when set): they are scaled from there to the GPU's node. A bf16-amp
    step no faster than the fp32 one carries :func:`bf16_iso_peak_caveat`'s flag and caveat."""
    steps = {prec: anchors.training_step(model, prec) for prec, _ in GPU_PRECISIONS}
    bf16_caveat = bf16_iso_peak_caveat(steps["fp32"], steps["bf16-amp"])
    out = []
    for prec, dtype in GPU_PRECISIONS:
        if steps[prec] is None:
            continue
        caveat = bf16_caveat if dtype == "bf16" else bf16_iso_peak_caveat(None, None)
        out.append(_gpu_line(acf, steps[prec], dtype, per_sample, scope, caveat))
    return out


def _gpu_line(acf: dict[str, Any], step: dict[str, Any], dtype: str, per_sample: float, scope: str,
              caveat: dict[str, Any]) -> dict[str, Any]:
    """One measured step against ACF under each normalization (iso-peak at ``dtype``'s peak)."""
    from acf.evaluation import baselines as bl

    node = acf["tech_node_nm"]
    step = {**step, "time_s": step["time_s"] * per_sample, "energy_j": step["energy_j"] * per_sample}
    scaled = bl.scale_energy(acf["energy_j"], node, bl.GPUS["H200"].node_nm)
    iso = bl.iso_peak_time(acf["seconds"], acf["peak_macs_per_s"], "H200", dtype)
    pw = bl.iso_power_time(acf["seconds"], acf["energy_j"], "H200", node)
    ar = bl.iso_area_time(acf["seconds"], acf["area_mm2"], node, "H200")
    iso_text = iso["normalization"]  # the caveat is stated once, below the table
    return {
        "gpu_row": step["name"], "gpu_time_s": step["time_s"], "gpu_energy_j": step["energy_j"],
        "gpu_per_sample": per_sample,
        "gpu_note": step.get("note", ""), "provenance": step["provenance"],
        "acf_time_s_raw": acf["seconds"], "acf_numeric_mode": acf["numeric_mode"],
        "speedup_raw": step["time_s"] / acf["seconds"],
        "speedup_iso_peak": step["time_s"] / iso["time_s"], "iso_peak": iso_text,
        "speedup_iso_power": step["time_s"] / pw["time_s"], "iso_power": pw["normalization"],
        "speedup_iso_area": step["time_s"] / ar["time_s"], "iso_area": ar["normalization"],
        "acf_energy_j": acf["energy_j"], "acf_node_nm": node, "acf_energy_j_scaled": scaled["energy_j"],
        "energy_scaling": f"x{scaled['factor']:.4f} {node}->{scaled['to_nm']} nm, {scaled['method']}",
        "energy_reduction_scaled": step["energy_j"] / scaled["energy_j"],
        "scope": scope, **caveat,
    }


def compare_points(rows: list[dict[str, Any]], model: str = "resnet18-cifar", sparsity: float = 0.9,
                   anchors=None) -> tuple[list[dict[str, Any]], str | None]:
    """acf-base against every target at each point of the rows at ``model`` and ``sparsity``
    where acf-base ran, each row paired only with rows of its own point (the default point
    first, then the rest in a fixed order, whatever order the rows finished in); or, when
    there is none, why not."""
    rows = [_at_recorded_node(r) for r in rows if r.get("status", "ok") == "ok"]
    at = [r for r in rows if r["model"] == model and abs(r["sparsity"] - sparsity) < 1e-9]
    by_point: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in at:
        by_point[_point(r)][r["target"]] = r
    bases = sorted((targets[ACF] for targets in by_point.values() if ACF in targets), key=_point_order)
    if not bases:
        return [], _no_comparison(rows, at, model, sparsity)
    varying = tuple(k for k in _POINT_KEYS if len({json.dumps(_setting(b, k)) for b in bases}) > 1)
    out = []
    for acf in bases:
        peers, note = dict(by_point[_point(acf)]), ""
        dense_auto = by_point.get(_point(acf, "auto"), {}).get(DENSE)
        if DENSE not in peers and dense_auto is not None:  # as the main table pairs the NoC ablation
            peers[DENSE] = dense_auto
            note = "acf-dense with the compiler's NoC configuration (no run of it in this NoC mode); "
        c = _compare_point(acf, peers, anchors, note)
        c.update(point_text=point_text(acf, varying), points_compared=len(bases), varying=list(varying))
        out.append(c)
    return out, None


def comparison(rows: list[dict[str, Any]], model: str = "resnet18-cifar", sparsity: float = 0.9,
               anchors=None) -> dict[str, Any] | None:
    """The comparison at the default point of :func:`compare_points` (None where no acf-base
    row has the default settings)."""
    found, _ = compare_points(rows, model, sparsity, anchors)
    return found[0] if found and not _departures(found[0]["point"]) else None


def _no_comparison(rows: list[dict[str, Any]], at: list[dict[str, Any]], model: str, sparsity: float) -> str:
    what = f"no comparison for {model} at {100 * sparsity:g} % sparsity"
    ran = sorted({r["sparsity"] for r in rows if r["model"] == model})
    if not ran:
        return f"{what}: the sweep has no {model} rows"
    if not at:
        return f"{what}: {model} ran at {', '.join(f'{100 * s:g} %' for s in ran)} sparsity only"
    return f"{what}: no {ACF} row there (targets there: {', '.join(sorted({r['target'] for r in at}))})"


def _point_dict(r: dict[str, Any]) -> dict[str, Any]:
    d = {k: _setting(r, k) for k in _POINT_KEYS}
    d["overrides"] = json.loads(d["overrides"])
    return d


def _compare_point(acf: dict[str, Any], peers: dict[str, dict[str, Any]], anchors,
                   dense_note: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": acf["model"], "sparsity": acf["sparsity"], "mask": acf.get("mask"),
                           "point": _point_dict(acf), "acf_label": label(acf),
                           "acf_node_nm": acf["tech_node_nm"],
                           "sampled": acf["sampled"], "acf_seconds": acf["seconds"],
                           "acf_energy_j": acf["energy_j"], "vs_targets": [], "gemms": [], "gpu": []}
    for t, r in sorted(peers.items()):
        if t == ACF:
            continue
        out["vs_targets"].append({"target": t, "speedup": r["seconds"] / acf["seconds"],
                                  "energy_reduction": r["energy_j"] / acf["energy_j"],
                                  "normalization": (dense_note if t == DENSE else "")
                                  + hardware_difference(r, acf)})
    dense = peers.get(DENSE)
    if dense is not None:
        out["gemms"] = per_gemm_ideal(acf, dense)
        out.update(amdahl(acf, dense))
    if anchors is not None:
        out["gpu"] = gpu_comparison(acf, anchors, acf["model"], per_sample=_per_sample(acf, anchors, acf["model"]))
    return out


def _per_sample(row: dict[str, Any], anchors, model: str) -> float:
    """The row's batch over the anchor step's (``bs=N`` in its name): the GPU step scaled to
    the samples the ACF step processed (1 at the workload's default batch, which is the
    anchor's)."""
    step = anchors.training_step(model)
    m = re.search(r"bs=(\d+)", step["name"]) if step else None
    if m is None:
        return 1.0
    return int(effective_batch(row)) / int(m.group(1))


def _md_comparisons(found: list[dict[str, Any]]) -> list[str]:
    """Each point's comparison; where several points match, a line first that says so."""
    L: list[str] = []
    if len(found) > 1:
        c = found[0]
        first = ", the default settings first" if not _departures(c["point"]) else ""
        L += [f"{c['model']} at {100 * c['sparsity']:g} % sparsity ran at {len(found)} points "
              f"(they differ in {_join([_SETTING_NAME.get(k, k) for k in c['varying']])}): "
              f"each is compared on its own below{first}.", ""]
    for c in found:
        L += _md_comparison(c) + [""]
    return L[:-1]


def _md_comparison(c: dict[str, Any]) -> list[str]:
    L = [f"## {c['model']} at {100 * c['sparsity']:.0f} % weight sparsity ({c['point_text']})", "",
         f"ACF ({c['acf_label']}): {c['acf_seconds'] * 1e3:.3f} ms, {c['acf_energy_j']:.4f} J per step "
         f"({c['acf_node_nm']} nm; GEMMs only; {100 * c['sampled']:.2f} % of MACs emulated, rest scaled).", "",
         "| vs | speedup of ACF | energy reduction of ACF | normalization (hardware from the targets' configs) |",
         "|---|---|---|---|"]
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
    for g in c["gpu"]:
        if g.get("iso_peak_caveat"):  # a paragraph of its own, after the table
            L += ["", f"Caution on the H200 `{g['gpu_row']}` iso-peak line: {g['iso_peak_caveat']}."]
    if c["gpu"]:
        L += ["", f"H200 provenance: {c['gpu'][0]['provenance']['what']} "
                  f"(file {c['gpu'][0]['provenance']['anchor_file']}, {c['gpu'][0]['provenance']['device']})"]
    if c["gemms"]:
        L += ["", f"Whole step: realized {c['step_realized_speedup']:.2f}x vs acf-dense; Amdahl bound "
                  f"(each GEMM at its ideal) {c['step_amdahl_bound']:.2f}x; "
                  f"{100 * c['step_fraction_of_bound']:.1f} % of the bound realized.", "",
              "| GEMM | M x N x K | count | realized | ideal (dense MACs / nonzero products) | fraction of ideal | sampled |",
              "|---|---|---|---|---|---|---|"]
        for g in c["gemms"]:
            L.append(f"| {g['gemm']} | {g['m']}x{g['n']}x{g['k']} | {g['count']} | {g['realized']:.2f}x | "
                     f"{g['ideal']:.1f}x | {100 * g['fraction_of_ideal']:.1f} % | {100 * g['sampled']:.2f} % |")
    return L


def _mlp_step_text(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """acf-base's speedup over acf-dense at each MLP point of one sparsity (each named
    where there are several)."""
    pairs = sorted(pairs, key=lambda p: _point_order(p[0]))
    return "; ".join(f"{d['seconds'] / r['seconds']:.2f}x" + (f" ({point_text(r)})" if len(pairs) > 1 else "")
                     for r, d in pairs) or "-"


def _roofline_groups(rows: list[dict[str, Any]]) -> list[tuple[str, dict[float, dict[str, Any]]]]:
    """acf-base's default-settings rows by model and point but sparsity (the 0 % and 90 %
    rows of one line must be of one batch, mask...): (name, sparsity -> row), the name
    naming the point where a model has several."""
    groups: dict[tuple, dict[float, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r["target"] == ACF and default_settings(r):
            rest = tuple(v for k, v in zip(_POINT_KEYS, _point(r)) if k != "sparsity")
            groups[rest][r["sparsity"]] = r
    ordered = sorted(groups.values(), key=lambda g: (next(iter(g.values()))["model"],
                                                     _point_order(next(iter(g.values())))))
    per_model = defaultdict(int)
    for g in ordered:
        per_model[next(iter(g.values()))["model"]] += 1
    out = []
    for g in ordered:
        some = next(iter(g.values()))
        name = some["model"] if per_model[some["model"]] == 1 else f"{some['model']} ({point_text(some)})"
        out.append((name, g))
    return out


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
          "MLP layer at the same sparsity (from this sweep, where it ran; acf-dense at the "
          "same point):", "",
          "| sparsity | H200 sparse step vs dense | ACF (acf-base) vs acf-dense, MLP |", "|---|---|---|"]
    mlp: dict[float, list[tuple[dict[str, Any], dict[str, Any]]]] = defaultdict(list)
    for r, d in pair_with_dense(rows):
        if r["model"] == "mlp" and r["target"] == ACF and d is not None and default_settings(r):
            mlp[r["sparsity"]].append((r, d))
    for sp in (0.5, 0.9, 0.95, 0.99):
        ratio = anchors.sparse_step_ratio(sp)
        if ratio is None:
            continue
        L.append(f"| {100 * sp:.0f} % | {1 / ratio['ratio']:.2f}x ({ratio['n_shapes']} shapes) | "
                 f"{_mlp_step_text(mlp.get(sp, []))} |")
    # rooflines for the GEMMs of each compared model's dense step
    L += ["", "Datasheet rooflines (dense peaks; each GEMM moves its layer's activation, weight and "
          "output tensors once, not a convolution's im2col matrix, which cuDNN's implicit GEMM never "
          "forms in memory) for the GEMMs of each "
          "model's training step, against acf-base's emulated time for the same GEMMs at 0 % "
          "and 90 % sparsity (of one point: batch, mask, activation density) scaled to the "
          "GPU's dense peak MAC rate of the dtype (iso-peak, assuming the fabric scales linearly):", "",
          "| model | GPU | dtype | roofline (ms) | ACF 0 % iso-peak (ms) | ACF 90 % iso-peak (ms) |",
          "|---|---|---|---|---|---|"]
    for name, by_sp in _roofline_groups(rows):
        base = by_sp.get(0.0)
        if base is None:
            continue
        sparse = by_sp.get(0.9)
        for gname in ("A100", "H100", "H200"):
            for dtype in ("tf32", "bf16"):
                roof = bl.step_roofline(gname, base["model"], base["gemms"], dtype,
                                        base.get("batch"))["time_s"]
                iso0 = bl.iso_peak_time(base["seconds"], base["peak_macs_per_s"], gname, dtype)["time_s"]
                iso9 = (bl.iso_peak_time(sparse["seconds"], sparse["peak_macs_per_s"], gname, dtype)["time_s"]
                        if sparse else None)
                L.append(f"| {name} | {gname} | {dtype} | {roof * 1e3:.3f} | {iso0 * 1e3:.3f} | "
                         + (f"{iso9 * 1e3:.3f} |" if iso9 is not None else "- |"))
    return L


def _config_label(r: dict[str, Any]) -> str:
    """The target and its ``--set`` values: what decides its hardware."""
    return label({"target": r["target"], "overrides": r.get("overrides")})


def _hardware_vs(peer: dict[str, Any], base: dict[str, Any] | None) -> str:
    """The table cell: ``same`` or the figures where ``peer`` differs from ``base``."""
    if base is None or base is peer:
        return "-"
    parts = _hardware_parts(peer, base)
    if parts is None:
        return "?"
    return _join(parts[1]) if parts[1] else "same"


def _md_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Each target configuration of the rows with its hardware figures (from its config)
    and how it differs from acf-dense (of the same ``--set`` values, else the default one)."""
    configs: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=_point_order):
        configs.setdefault(_config_label(r), r)
    dense = {json.dumps(canonical_overrides(r.get("overrides")), sort_keys=True): r
             for r in configs.values() if r["target"] == DENSE}
    L = ["## Targets", "", "Hardware figures from each target's config (energies and areas at the node shown).", "",
         "| target | " + " | ".join(name for name, _ in HARDWARE_FIGURES) + " | area (mm2) | vs acf-dense |",
         "|---|" + "---|" * (len(HARDWARE_FIGURES) + 2)]
    for name, r in sorted(configs.items(), key=lambda kv: _natural(kv[0])):
        hw = hardware_of(r)
        if hw is None:
            L.append(f"| {name} | " + " | ".join("?" for _ in HARDWARE_FIGURES) + " | ? | "
                     "config changed since the run |")
            continue
        ref = dense.get(json.dumps(canonical_overrides(r.get("overrides")), sort_keys=True), dense.get("{}"))
        L.append(f"| {name} | " + " | ".join(text(hw) for _, text in HARDWARE_FIGURES)
                 + f" | {hw['area_mm2']:.1f} | {_hardware_vs(r, ref)} |")
    return L


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
        return (pair[0]["model"], _natural(_row_label(pair[0], shown)), pair[0]["sparsity"],
                _point_order(pair[0]))

    for r, d in sorted(pair_with_dense(rows), key=order):
        sp = f"{d['seconds'] / r['seconds']:.2f}x" if d else "-"
        er = f"{d['energy_j'] / r['energy_j']:.2f}x" if d else "-"
        if d and _iso_peak(r, d) is None:  # not a like-for-like comparison: say so
            sp += f" ({peak_ratio(r, d):.0f}x peak)"
        name = _row_label(r, shown) + (f" (from {origin[r['run_id']]})" if r.get("run_id") in origin else "")
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
    rows = [_at_recorded_node(r) for r in rows if r.get("status", "ok") == "ok"]
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
          f"Energies and areas are at {_nodes_text(rows)}. "
          "Times cover the GEMMs of one training step (forward, backward-data, weight gradient).", "",
          "`mask update` is apart from the step: every weight brought to a new mask in its "
          "storage format (read, masked, written back, a compressed one re-encoded with its "
          "mask), as a RigL/SET/GMP update step does, once per update.", ""]
    L += _md_rows(rows, origin)
    if rows:
        L += [""] + _md_targets(rows)
    comps, missing = [], []
    for model, sp in comparisons:
        found, why = compare_points(rows, model, sp, anchors)
        comps += found
        if why:
            missing.append(why)
            _note(why)
            L += ["", why[0].upper() + why[1:] + "."]
        else:
            L += [""] + _md_comparisons(found)
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
