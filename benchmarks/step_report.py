"""The ResNet-18/CIFAR training step at 90 % weight sparsity, whole step emulated, reported
against its dense baseline, the peer targets and the measured H200 step.

    python benchmarks/step_report.py --batch 32 --out results/resnet18_cifar_step
    python benchmarks/step_report.py --batch 4 --width 16 --targets acf-base   # quick

Rows (each in its own process, as ``train_step.py`` runs them): the step with dense weights
and with random masks of density ``--density`` on every conv and linear weight, on
``acf-base``; the masked step on every other ``--targets`` entry. Reported:

* per GEMM (every conv forward / input gradient / weight gradient and the linear layer, as
  compiled, matched by layer, kind and order): realized speedup (its cycles in the dense
  step / in the masked step, both on acf-base), ideal speedup (the dense step's effectual
  MACs over the masked step's, both measured: the dense step already skips its ReLU and
  padding zeros, so this is about 1 / weight density, not dense MACs over products of two
  non-zeros as in the GEMM sweep) and the fraction of the ideal realized. Where the masked
  step's plan takes the wide-K conv kernel and the dense step's does not (a stride-2 conv:
  ``conv_wide`` computes about twice the output columns it keeps), the masked effectual MACs
  include the discarded half and that GEMM's ideal comes out about halved (layer2.0.conv1
  and layer4.0.conv1 forward: 5.1x where the others are ~10x);
* per GEMM, its port floor: the bytes the masked GEMM moved through the memory ports, per
  direction, over the ports' bandwidth (one ``noc.link_bytes`` link per fabric row each way;
  DRAM's own rate where lower), and the speedup attainable with the GEMM at the larger of
  its ideal and that floor: what the fabric's ports leave of the ideal for the traffic the
  kernel moves (a kernel moving fewer bytes would lower the floor);
* the whole step: realized speedup, and Amdahl's bound (the non-GEMM cycles as in the dense
  step, every GEMM at its ideal) and the fraction of it realized; the same bound with each
  GEMM at its attainable speedup (the port-aware bound);
* the masked step on each target against acf-base (time and energy), and what a mask
  update (every mask re-drawn at the same density) costs there, apart from the step;
* the H200 step (``evaluation/anchors``: measured at batch 128, scaled per sample to this
  batch), raw and normalized (iso-peak at each GPU row's own dtype, iso-power, iso-area;
  on-chip energies scaled to the GPU's node, DRAM energy as it is), with the anchor's
  provenance and each row's caveat;
* the same analysis on other fabrics (``--fabrics``: acf-wide, acf-base with four times the
  port and link width; acf-h200-iso, the H200's peak in bf16 MACs; or a variant written
  ``NAME+section.field=value``), each masked step against its own dense step, and the
  iso-peak fabric against the H200 as measured (no scaling).

An op's cycles are its span (first start to last end of its instructions); ops run one
after another, so the spans add up to the step less the gaps between ops.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

GEMM_KINDS = ("forward", "backward_data", "wgrad_sddmm", "wgrad_dense")


def fabric_target(spec: str):
    """A target from ``NAME`` or ``NAME+section.field=value+...`` (``--set`` overrides: a
    co-design variant of a shipped target)."""
    from acf.isa.target import load_target

    from acf.isa.target import TargetError

    name, *sets = spec.split("+")
    bad = [s for s in sets if "=" not in s]
    if bad:
        raise TargetError(f"{bad[0]!r}: a variant's override is section.field=value")
    return load_target(name, dict(s.split("=", 1) for s in sets))


def _row(target: str, density: float, batch: int, width: int, queue) -> None:
    import torch

    from acf.algorithms.models import ResNet18
    from acf.evaluation.runner import hardware_figures
    from acf.frontends.training_step import capture_training_step
    from acf.runtime import Session, SessionOptions

    torch.manual_seed(0)
    model = ResNet18(classes=10, width=width)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    masks = {n: torch.rand(p.shape) < density for n, p in model.named_parameters()
             if p.dim() >= 2} if density < 1.0 else {}
    step = capture_training_step(model, (x,), labels=y, optimizer="sgd",
                                 optimizer_options={"lr": 0.1, "momentum": 0.9},
                                 masks=masks or None)
    t = fabric_target(target)
    # masked weights in their density band's format where one applies (the linear layer;
    # conv kernels stay dense-stored), as benchmarks/train_step.py runs them
    sess = Session(t, SessionOptions(formats="auto"))
    loaded = sess.load(step.module)
    for n, m in masks.items():
        sess.bind_mask(n, m)
    rep = sess.run_step(dict(zip(loaded.arg_names, step.bind(model, (x,), y,
                                                             masks=masks or None)))).report
    # a mask update (every mask re-drawn at the same density, as SET does): its cost
    update = sess.cost_mask_update({n: torch.rand(m.shape) < density for n, m in masks.items()}) \
        if masks else {}
    # the node and area the report's energies are at (tech.scale_to_nm where a fabric sets it)
    hw = hardware_figures(t)
    queue.put({"target": target, "density": density, "cycles": rep.total_cycles,
               "mask_update": update,
               "seconds": rep.seconds, "energy_j": rep.energy_j,
               # the DRAM (HBM interface) part stays unscaled in the GPU comparison
               "energy_dram_j": float(rep.emulator.energy_j.get("dram", 0.0)), "hardware": hw,
               "effectual_macs": rep.effectual_macs, "by_op": rep.by_op,
               "peak_macs_per_s": t.peak_macs_per_s, "area_mm2": hw["area_mm2"],
               "port_bytes_per_cycle": t.port_bytes_per_cycle,
               "dram_bytes_per_cycle": int(t.dram.channels) * int(t.dram.bytes_per_cycle),
               "tech_node_nm": hw["tech_node_nm"], "numeric_mode": str(t.numeric.mode)})


def run_row(target: str, density: float, batch: int, width: int) -> dict:
    from acf.benchmarks.train_step import run_in_process

    out = run_in_process(_row, target, density, batch, width)
    out.setdefault("target", target)
    out.setdefault("density", density)
    return out


def gemms(row: dict) -> dict[tuple, dict]:
    """The row's GEMM ops keyed (layer, kind, n-th GEMM of that layer and kind), in program
    order. The op's name is no part of the key: a masked step may compute a GEMM with
    another op than the dense step (the linear layer's weight gradient: ``matmul`` dense,
    ``sddmm`` masked), and it must still be paired."""
    seen: Counter = Counter()
    out = {}
    for op in row["by_op"].values():
        if op["kind"] in GEMM_KINDS and op["effectual_macs"] > 0:
            kind = "wgrad" if op["kind"].startswith("wgrad") else op["kind"]
            k = (op["layer"], kind)
            out[(*k, seen[k])] = op
            seen[k] += 1
    return out


def port_floor(op: dict, row: dict) -> int | None:
    """Cycles the op's memory-port traffic needs at least: each direction over its links,
    both together over DRAM (None for a row measured without port byte counts)."""
    port, dram = row.get("port_bytes_per_cycle"), row.get("dram_bytes_per_cycle")
    if not port or "port_in_bytes" not in op:
        return None
    i, o = op["port_in_bytes"], op["port_out_bytes"]
    return max(-(-i // port), -(-o // port), -(-(i + o) // (dram or port)))


def analyse(dense: dict, sparse: dict) -> dict:
    dg, sg = gemms(dense), gemms(sparse)
    rows = []
    for key, d in dg.items():
        s = sg.get(key)
        if s is None:
            continue
        realized = d["span_cycles"] / max(s["span_cycles"], 1)
        ideal = d["effectual_macs"] / max(s["effectual_macs"], 1)
        op = d["op"] if d["op"] == s["op"] else f"{d['op']} / {s['op']}"  # dense / masked
        row = {"layer": key[0], "kind": key[1], "op": op, "dense_cycles": d["span_cycles"],
               "sparse_cycles": s["span_cycles"], "realized": realized, "ideal": ideal,
               "fraction_of_ideal": realized / ideal}
        floor = port_floor(s, sparse)
        if floor is not None:
            attainable = d["span_cycles"] / max(d["span_cycles"] / ideal, floor, 1)
            row.update(port_floor_cycles=floor, attainable=attainable,
                       fraction_of_attainable=realized / attainable)
        rows.append(row)
    t_dense = dense["cycles"]
    gemm_dense = sum(r["dense_cycles"] for r in rows)
    non_gemm = max(t_dense - gemm_dense, 0)
    bound = t_dense / (non_gemm + sum(r["dense_cycles"] / r["ideal"] for r in rows))
    realized = t_dense / sparse["cycles"]
    out = {"gemms": rows, "gemm_share_of_dense_step": gemm_dense / t_dense,
           "step_realized_speedup": realized, "step_amdahl_bound": bound,
           "step_fraction_of_bound": realized / bound}
    if rows and all("attainable" in r for r in rows):
        ports = t_dense / (non_gemm + sum(r["dense_cycles"] / r["attainable"] for r in rows))
        out.update(step_port_bound=ports, step_fraction_of_port_bound=realized / ports)
    return out


def versus_h200(acf: dict, batch: int) -> list[dict]:
    """The H200 comparison of ``evaluation.gpu_tables``, the GPU step (measured at batch 128)
    scaled per sample to ``batch``."""
    from acf.evaluation.baselines import load_anchors
    from acf.evaluation.gpu_tables import gpu_comparison

    rows = gpu_comparison(acf, load_anchors(), "resnet18-cifar", per_sample=batch / 128,
                          scope="ACF: the whole training step; GPU: the whole measured step")
    for g in rows:
        g["notes"] = [g["iso_peak"], g["iso_power"], g["iso_area"],
                      f"energy {g['energy_scaling']}",
                      f"GPU step measured at batch 128, scaled x{batch / 128:g} per sample"]
    return rows


def gpu_notes(gpu: list[dict]) -> list[str]:
    """The notes under the H200 table: the first row's in full, then each other row's
    iso-peak normalization (its own dtype's peak), and every row's caveat."""
    out = list(gpu[0]["notes"]) if gpu else []
    for g in gpu[1:]:
        out.append(f"{g['gpu_row']}: {g['iso_peak']}")
    for g in gpu:
        if g.get("iso_peak_caveat"):
            out.append(f"{g['gpu_row']}: {g['iso_peak_caveat']}")
    return out


def fabric_rows(rows: list[dict], batch: int) -> list[dict]:
    """Per fabric other than acf-base with both a dense and a masked row: the step analysis,
    the per-GEMM spread and (iso-peak fabric) the H200 comparison."""
    out = []
    for target in dict.fromkeys(r["target"] for r in rows if r.get("fabric")):
        pair = {r["density"] == 1.0: r for r in rows if r["target"] == target and r.get("fabric")}
        if set(pair) != {True, False}:
            continue
        dense, masked = pair[True], pair[False]
        a = analyse(dense, masked)
        fr = sorted(g["fraction_of_ideal"] for g in a["gemms"]) or [0.0]
        gpu = versus_h200(masked, batch) if target == "acf-h200-iso" else []
        out.append({"target": target, "peak_macs_per_s": masked["peak_macs_per_s"],
                    "numeric_mode": masked["numeric_mode"], "dense_cycles": dense["cycles"],
                    "masked_cycles": masked["cycles"], "masked_seconds": masked["seconds"],
                    "speedup": dense["cycles"] / masked["cycles"],
                    "energy_reduction": dense["energy_j"] / masked["energy_j"],
                    "amdahl_bound": a["step_amdahl_bound"],
                    "fraction_of_bound": a["step_fraction_of_bound"],
                    "port_bound": a.get("step_port_bound"),
                    "fraction_of_port_bound": a.get("step_fraction_of_port_bound"),
                    "gemm_fraction_min": fr[0], "gemm_fraction_median": fr[len(fr) // 2],
                    "gemm_fraction_max": fr[-1], "h200": gpu})
    return out


def report(rows: list[dict], batch: int, density: float) -> tuple[str, dict]:
    fabrics = fabric_rows(rows, batch)
    rows = [r for r in rows if not r.get("fabric")]
    dense = next(r for r in rows if r["target"] == "acf-base" and r["density"] == 1.0)
    acf = next(r for r in rows if r["target"] == "acf-base" and r["density"] < 1.0)
    a = analyse(dense, acf)
    gpu = versus_h200(acf, batch)
    lines = [f"# ResNet-18/CIFAR training step, batch {batch}, weight density {density:g}",
             "", f"acf-base: dense weights {dense['cycles']:,} cycles, {dense['energy_j'] * 1e3:.1f} mJ; "
             f"masked {acf['cycles']:,} cycles, {acf['energy_j'] * 1e3:.1f} mJ: "
             f"{dense['cycles'] / acf['cycles']:.2f}x faster, "
             f"{dense['energy_j'] / acf['energy_j']:.2f}x less energy.",
             f"GEMMs are {100 * a['gemm_share_of_dense_step']:.0f} % of the dense step's cycles. "
             f"Amdahl bound (non-GEMM work as dense, every GEMM at its ideal): "
             f"{a['step_amdahl_bound']:.2f}x; realized {a['step_realized_speedup']:.2f}x = "
             f"{100 * a['step_fraction_of_bound']:.0f} % of it." + (
                 f" With every GEMM at the larger of its ideal and its port floor (the bytes "
                 f"it moved through the {acf['port_bytes_per_cycle']} B/cycle memory ports, "
                 f"per direction): {a['step_port_bound']:.2f}x; realized "
                 f"{100 * a['step_fraction_of_port_bound']:.0f} % of it."
                 if "step_port_bound" in a else ""), "",
             ("| target (masked step) | cycles | time ms | energy mJ | acf-base speedup | "
              "acf-base energy red. | mask update cycles (of the step) |"),
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["density"] == 1.0:
            continue
        mu = r.get("mask_update") or {}
        upd = f"{mu['cycles']:,} ({100 * mu['cycles'] / r['cycles']:.1f} %)" if mu else "-"
        lines.append(f"| {r['target']} | {r['cycles']:,} | {r['seconds'] * 1e3:.2f} | "
                     f"{r['energy_j'] * 1e3:.1f} | {r['seconds'] / acf['seconds']:.2f}x | "
                     f"{r['energy_j'] / acf['energy_j']:.2f}x | {upd} |")
    lines += ["", ("Mask update: every mask re-drawn at the same density (as SET does), each "
                   "weight brought to its new mask in its storage format (compressed ones "
                   "re-encoded with their masks) and its momentum zeroed where a connection "
                   "grows, in the momentum's storage format; emulated apart from the step "
                   "(`Session.cost_mask_update`).")]
    if gpu:
        lines += ["", "| vs H200 | GPU ms | GPU mJ | raw | iso-peak | iso-power | iso-area | energy red. (scaled) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for g in gpu:
            lines.append(f"| {g['gpu_row']} | {g['gpu_time_s'] * 1e3:.2f} | {g['gpu_energy_j'] * 1e3:.0f} | "
                         f"{g['speedup_raw']:.3f}x | {g['speedup_iso_peak']:.2f}x | "
                         f"{g['speedup_iso_power']:.2f}x | {g['speedup_iso_area']:.2f}x | "
                         f"{g['energy_reduction_scaled']:.1f}x |")
        prov = gpu[0]["provenance"]
        prov = (f"{prov.get('what', '')} (file {prov.get('anchor_file', '?')}, {prov.get('device', '')})"
                if isinstance(prov, dict) else str(prov))
        lines += [""] + [f"- {n}" for n in gpu_notes(gpu)] + [f"- H200 provenance: {prov}"]
    if fabrics:
        lines += ["", "## Other fabrics: each masked step against its own dense step", "",
                  ("| fabric | peak TMAC/s | dense cycles | masked cycles | masked ms | speedup | "
                   "energy red. | Amdahl bound | of bound | port-aware bound (of it) | "
                   "per-GEMM of ideal (min / median / max) |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for f in fabrics:
            ports = (f"{f['port_bound']:.2f}x ({100 * f['fraction_of_port_bound']:.0f} %)"
                     if f.get("port_bound") else "-")
            lines.append(
                f"| {f['target']} ({f['numeric_mode']}) | {f['peak_macs_per_s'] / 1e12:.1f} | "
                f"{f['dense_cycles']:,} | {f['masked_cycles']:,} | {f['masked_seconds'] * 1e3:.2f} | "
                f"{f['speedup']:.2f}x | {f['energy_reduction']:.2f}x | {f['amdahl_bound']:.2f}x | "
                f"{100 * f['fraction_of_bound']:.0f} % | {ports} | {100 * f['gemm_fraction_min']:.0f} / "
                f"{100 * f['gemm_fraction_median']:.0f} / {100 * f['gemm_fraction_max']:.0f} % |")
        for f in fabrics:
            for g in f["h200"]:
                lines.append(f"\n{f['target']} masked step ({f['peak_macs_per_s'] / 1e12:.0f} "
                             f"TMAC/s peak, the H200's dense BF16 rate) vs {g['gpu_row']}, both "
                             f"as measured: {g['speedup_raw']:.2f}x the GPU's speed, "
                             f"{g['energy_reduction_scaled']:.1f}x less energy "
                             f"({g['energy_scaling']}).")
    lines += ["", ("| layer | GEMM | dense cycles | masked cycles | realized | ideal | fraction | "
                   "masked port floor | attainable | of attainable |"),
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in a["gemms"]:
        ports = (f"{g['port_floor_cycles']:,} | {g['attainable']:.2f}x | "
                 f"{100 * g['fraction_of_attainable']:.0f} %" if "attainable" in g else "- | - | -")
        lines.append(f"| {g['layer']} | {g['kind']} | {g['dense_cycles']:,} | {g['sparse_cycles']:,} | "
                     f"{g['realized']:.2f}x | {g['ideal']:.1f}x | {100 * g['fraction_of_ideal']:.0f} % | "
                     f"{ports} |")
    return "\n".join(lines) + "\n", {"analysis": a, "h200": gpu, "fabrics": fabrics}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--targets", default="acf-base,acf-dense,procrustes-like,tensordash-like,"
                                         "sigma-like,tpu-like")
    ap.add_argument("--fabrics", default="acf-wide,acf-h200-iso",
                    help="other fabrics to run dense and masked ('' for none); "
                         "NAME+section.field=value is a variant, e.g. acf-base+cluster.fold_cycles=0")
    ap.add_argument("--out", default=None, help="write step_report.md and .json here")
    a = ap.parse_args(argv)
    if not 0.0 < a.density < 1.0:
        ap.error(f"--density must be in (0, 1), got {a.density}")
    targets = [t for t in a.targets.split(",") if t]
    if "acf-base" not in targets:
        targets.insert(0, "acf-base")
    fabrics = [f for f in a.fabrics.split(",") if f]
    for spec in targets + fabrics:  # before the first step runs, not in its process
        try:
            fabric_target(spec)
        except ValueError as exc:  # TargetError is one
            ap.error(f"{spec}: {exc}")
    rows = [run_row("acf-base", 1.0, a.batch, a.width)]
    rows += [run_row(t, a.density, a.batch, a.width) for t in targets]
    for f in fabrics:
        rows += [{**run_row(f, d, a.batch, a.width), "fabric": True} for d in (1.0, a.density)]
    failed = [r for r in rows if "error" in r]
    for r in failed:
        print(f"{r['target']} d={r['density']:g}: {r['error']}", file=sys.stderr)
    rows = [r for r in rows if "error" not in r]
    if not any(r["target"] == "acf-base" and r["density"] == 1.0 for r in rows) or \
            not any(r["target"] == "acf-base" and r["density"] < 1.0 for r in rows):
        print("error: the acf-base rows failed; no report", file=sys.stderr)
        return 1
    text, data = report(rows, a.batch, a.density)
    print(text)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "step_report.md").write_text(text)
        slim = [{k: v for k, v in r.items() if k != "by_op"} for r in rows]
        (out / "step_report.json").write_text(json.dumps({"rows": slim, **data}, indent=2) + "\n")
    return 1 if failed else 0  # the report leaves the failed rows out


if __name__ == "__main__":
    sys.exit(main())
