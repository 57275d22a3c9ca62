"""The fabric against GPUs: the measured H200 step under each normalization, and the
summary's GPU baselines section.

:func:`gpu_comparison` sets an acf-base row against the H200 training step of the anchors
(``evaluation/anchors``), raw and at iso-peak, iso-power and iso-area, energies scaled to the
GPU's node, each line stating its normalization. :func:`md_gpu_baselines` writes the
anchors' software-sparse GPU kernels beside the fabric's own speedups, and datasheet
rooflines of A100/H100/H200 beside the fabric at iso-peak.
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from typing import Any

from acf.evaluation import baselines as bl
from acf.evaluation.labels import point_text
from acf.evaluation.points import (
    ACF,
    POINT_KEYS,
    effective_batch,
    pair_with_dense,
    point_of,
    point_order,
)
from acf.evaluation.runner import RunSpec, default_settings, hardware_figures, load

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
    ``tech.scale_to_nm`` when set): their on-chip parts are scaled from there to the GPU's
    node, its DRAM energy (``energy_dram_j``, an HBM interface figure) and DRAM PHY area are
    kept as they are. A bf16-amp step no faster than the fp32 one carries
    :func:`bf16_iso_peak_caveat`'s flag and caveat."""
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
    node = acf["tech_node_nm"]
    step = {**step, "time_s": step["time_s"] * per_sample, "energy_j": step["energy_j"] * per_sample}
    # required: a row without it would have its DRAM energy scaled with the logic while the
    # notes say it is not (the step report's rows lacked it: 37x instead of 6.4x)
    dram_j = float(acf["energy_dram_j"])
    scaled = bl.scale_energy(acf["energy_j"], node, bl.GPUS["H200"].node_nm, dram_j)
    iso = bl.iso_peak_time(acf["seconds"], acf["peak_macs_per_s"], "H200", dtype)
    pw = bl.iso_power_time(acf["seconds"], acf["energy_j"], "H200", node, dram_j)
    ar = bl.iso_area_time(acf["seconds"], acf["area_mm2"], node, "H200", dram_phy_mm2(acf))
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
        "acf_energy_dram_j": dram_j,
        "energy_scaling": f"{scaled['text']}, {scaled['method']}",
        "energy_reduction_scaled": step["energy_j"] / scaled["energy_j"],
        "scope": scope, **caveat,
    }


def dram_phy_mm2(row: dict[str, Any]) -> float:
    """The DRAM PHY area in the row's ``area_mm2`` (not scaled with the node): from its
    hardware figures, or, for a row made before they recorded it, from its target as loaded
    now if its config is unchanged (0 where neither says: all of the area is scaled)."""
    hw = row.get("hardware") or {}
    if "dram_phy_mm2" in hw:
        return float(hw["dram_phy_mm2"])
    return _loaded_dram_phy_mm2(row["target"], json.dumps(row.get("overrides") or {}, sort_keys=True),
                                row.get("config_hash", ""))


@functools.lru_cache(maxsize=64)
def _loaded_dram_phy_mm2(target: str, overrides: str, config_hash: str) -> float:
    try:
        t = load(RunSpec("", 0.0, target, overrides=tuple(json.loads(overrides).items())))
    except (OSError, ValueError):  # a target gone or changed past loading
        return 0.0
    if config_hash and t.config_hash() != config_hash:
        return 0.0
    return hardware_figures(t)["dram_phy_mm2"]


def gpu_samples_scale(row: dict[str, Any], anchors, model: str) -> float:
    """The row's batch over the anchor step's (``bs=N`` in its name): the GPU step scaled to
    the samples the ACF step processed (1 at the workload's default batch, which is the
    anchor's)."""
    step = anchors.training_step(model)
    m = re.search(r"bs=(\d+)", step["name"]) if step else None
    if m is None:
        return 1.0
    return int(effective_batch(row)) / int(m.group(1))


def _mlp_step_text(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    """acf-base's speedup over acf-dense at each MLP point of one sparsity (each named
    where there are several)."""
    pairs = sorted(pairs, key=lambda p: point_order(p[0]))
    return "; ".join(f"{d['seconds'] / r['seconds']:.2f}x" + (f" ({point_text(r)})" if len(pairs) > 1 else "")
                     for r, d in pairs) or "-"


def _roofline_groups(rows: list[dict[str, Any]]) -> list[tuple[str, dict[float, dict[str, Any]]]]:
    """acf-base's default-settings rows by model and point but sparsity (the 0 % and 90 %
    rows of one line must be of one batch, mask...): (name, sparsity -> row), the name
    naming the point where a model has several."""
    groups: dict[tuple, dict[float, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        if r["target"] == ACF and default_settings(r):
            rest = tuple(v for k, v in zip(POINT_KEYS, point_of(r)) if k != "sparsity")
            groups[rest][r["sparsity"]] = r
    ordered = sorted(groups.values(), key=lambda g: (next(iter(g.values()))["model"],
                                                     point_order(next(iter(g.values())))))
    per_model = defaultdict(int)
    for g in ordered:
        per_model[next(iter(g.values()))["model"]] += 1
    out = []
    for g in ordered:
        some = next(iter(g.values()))
        name = some["model"] if per_model[some["model"]] == 1 else f"{some['model']} ({point_text(some)})"
        out.append((name, g))
    return out


def md_gpu_baselines(anchors, rows: list[dict[str, Any]]) -> list[str]:
    """The anchors' software-sparse GPU rows (CSR, 2:4, the cuSPARSE linear training step)
    beside the fabric's own dense-to-sparse ratio, and datasheet rooflines of A100/H100/H200
    for the compared GEMMs against the fabric at iso-peak."""
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
