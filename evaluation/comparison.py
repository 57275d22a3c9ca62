"""acf-base against the other targets at one point: speedups, energy reductions, the
per-GEMM ideal and the whole step's Amdahl bound, the H200 lines, and their markdown.

:func:`compare_points` pairs acf-base only with rows of its own point (the default point
first, then the rest in a fixed order); :func:`comparison` is the default point's.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from acf.evaluation.gpu_tables import gpu_comparison, gpu_samples_scale
from acf.evaluation.hardware import at_recorded_node, hardware_difference
from acf.evaluation.labels import SETTING_NAME, join_words, label, point_text
from acf.evaluation.points import (
    ACF,
    DENSE,
    POINT_KEYS,
    departures,
    point_dict,
    point_of,
    point_order,
    setting_of,
)


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


def compare_points(rows: list[dict[str, Any]], model: str = "resnet18-cifar", sparsity: float = 0.9,
                   anchors=None) -> tuple[list[dict[str, Any]], str | None]:
    """acf-base against every target at each point of the rows at ``model`` and ``sparsity``
    where acf-base ran, each row paired only with rows of its own point (the default point
    first, then the rest in a fixed order, whatever order the rows finished in); or, when
    there is none, why not."""
    rows = [at_recorded_node(r) for r in rows if r.get("status", "ok") == "ok"]
    at = [r for r in rows if r["model"] == model and abs(r["sparsity"] - sparsity) < 1e-9]
    by_point: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in at:
        by_point[point_of(r)][r["target"]] = r
    bases = sorted((targets[ACF] for targets in by_point.values() if ACF in targets), key=point_order)
    if not bases:
        return [], _no_comparison(rows, at, model, sparsity)
    varying = tuple(k for k in POINT_KEYS if len({json.dumps(setting_of(b, k)) for b in bases}) > 1)
    out = []
    for acf in bases:
        peers, note = dict(by_point[point_of(acf)]), ""
        dense_auto = by_point.get(point_of(acf, "auto"), {}).get(DENSE)
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
    return found[0] if found and not departures(found[0]["point"]) else None


def _no_comparison(rows: list[dict[str, Any]], at: list[dict[str, Any]], model: str, sparsity: float) -> str:
    what = f"no comparison for {model} at {100 * sparsity:g} % sparsity"
    ran = sorted({r["sparsity"] for r in rows if r["model"] == model})
    if not ran:
        return f"{what}: the sweep has no {model} rows"
    if not at:
        return f"{what}: {model} ran at {', '.join(f'{100 * s:g} %' for s in ran)} sparsity only"
    return f"{what}: no {ACF} row there (targets there: {', '.join(sorted({r['target'] for r in at}))})"


def _compare_point(acf: dict[str, Any], peers: dict[str, dict[str, Any]], anchors,
                   dense_note: str) -> dict[str, Any]:
    out: dict[str, Any] = {"model": acf["model"], "sparsity": acf["sparsity"], "mask": acf.get("mask"),
                           "point": point_dict(acf), "acf_label": label(acf),
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
        out["gpu"] = gpu_comparison(acf, anchors, acf["model"], per_sample=gpu_samples_scale(acf, anchors, acf["model"]))
    return out


def md_comparisons(found: list[dict[str, Any]]) -> list[str]:
    """Each point's comparison; where several points match, a line first that says so."""
    L: list[str] = []
    if len(found) > 1:
        c = found[0]
        first = ", the default settings first" if not departures(c["point"]) else ""
        L += [f"{c['model']} at {100 * c['sparsity']:g} % sparsity ran at {len(found)} points "
              f"(they differ in {join_words([SETTING_NAME.get(k, k) for k in c['varying']])}): "
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
