"""Compile and emulate one training-step workload on one target: one result row.

Every GEMM of the step (:mod:`acf.evaluation.workloads`) is compiled by
``compile_module`` and run on ``acf.emulator.run``; a sampled GEMM's numbers are scaled to
the whole GEMM (time by waves x k-chunks, MACs and dynamic energy by work, leakage by time)
and the row says how much was emulated (``sampled``). Step totals are sums over GEMMs
(each times its layer's ``count``); non-GEMM work (elementwise, optimizer) is not included
(``scope = "gemm-only"``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from acf.evaluation.workloads import (
    Gemm,
    Workload,
    gemm_inputs,
    gemm_ir,
    sample_plan,
    sampled_gemm,
    weight_mask,
)

#: 2: ``tech_node_nm`` and ``area_mm2`` at the node the energies are at (``tech.scale_to_nm``
#: when set), the target's ``hardware`` figures
ROW_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class RunSpec:
    """One point of a sweep. ``overrides``: ``--set`` fields (``{"cluster.lookahead": "4"}``);
    ``formats``: ``auto`` (``select-formats`` picks the storage format of both operands on the
    target from their measured densities, and a structured weight mask's exact pattern:
    weights and ReLU-sparse activations alike),
    ``csr`` (weights CSR when sparse, activations dense) or ``dense`` (formats fixed);
    ``noc``: ``auto`` (the compiler configures the NoC: multicast groups sharing operand
    tiles) or ``unicast`` (NoC configuration off: every cluster loads its own tiles)."""

    model: str
    sparsity: float
    target: str
    mask: str = "random"
    act_density: float = 0.5
    batch: int | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    formats: str = "auto"
    max_waves: int = 1
    max_k_chunks: int = 8
    full: bool = False
    seed: int = 0
    noc: str = "auto"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["overrides"] = dict(self.overrides)
        return d

    def run_id(self, config_hash: str, version: str) -> str:
        blob = json.dumps({**self.as_dict(), "config_hash": config_hash, "version": version,
                           "schema": ROW_SCHEMA_VERSION}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def default_settings(row: dict[str, Any]) -> bool:
    """Whether a row ran with the defaults (no ``--set`` overrides, formats chosen, the
    compiler's NoC configuration): the rows comparisons and calibration read."""
    return (not row.get("overrides") and row.get("formats", "auto") == "auto"
            and row.get("noc", "auto") == "auto")


def package_version() -> str:
    """The package version and a fingerprint of the code a row's numbers come from
    (:func:`code_hash`): a resumed sweep reruns the rows an earlier version of the code
    made instead of mixing them in."""
    from acf import __version__

    return f"{__version__}+{code_hash()}"


#: the code that decides a sweep or accuracy row's numbers (targets enter by their config
#: hash; the reports and plots made from rows do not count): the stack from capture to
#: emulation, the training algorithms and the two runners
_CODE = ("isa", "emulator", "compiler", "runtime", "frontends", "algorithms",
         "evaluation/runner.py", "evaluation/workloads.py", "evaluation/accuracy.py")


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """A hash of the Python sources of :data:`_CODE` (12 hex digits)."""
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for entry in _CODE:
        where = root / entry
        for path in sorted(where.rglob("*.py")) if where.is_dir() else [where]:
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def load(spec: RunSpec):
    from acf.isa.target import load_target

    return load_target(spec.target, dict(spec.overrides) or None)


def hardware_figures(target) -> dict[str, Any]:
    """What a comparison of two targets must state (peak MAC rate and multiply type, clock,
    memory ports, DRAM, global buffer, node, area), with energy and area at the node the
    emulator reports them at: ``tech.scale_to_nm`` when set, else the tables' node (the
    DRAM PHY area, ``dram_phy_mm2``, is not scaled)."""
    from acf.emulator.energy import scale_area_components
    from acf.isa.tech import area_factor, check_node

    tables_nm = check_node(target.tech.node_nm)
    node_nm = check_node(target.tech.scale_to_nm) if target.tech.scale_to_nm else tables_nm
    area = scale_area_components(target.area_breakdown_mm2(), area_factor(tables_nm, node_nm))
    return {
        "peak_macs_per_s": target.peak_macs_per_s,
        "numeric_mode": str(target.numeric.mode),
        "clock_ghz": float(target.clock.freq_ghz),
        "clusters": target.num_clusters,
        "memory_ports": int(target.fabric.grid[1]),  # one per fabric row, each a NoC link
        "port_link_bytes": int(target.noc.link_bytes),
        "port_bytes_per_cycle": target.port_bytes_per_cycle,
        "dram_channels": int(target.dram.channels),
        "dram_bytes_per_s": target.dram_bytes_per_s,
        "gbuf_bytes": int(target.gbuf.bytes),
        "tech_node_nm": node_nm,
        "tech_tables_nm": tables_nm,
        # the emulator scales its area report the same way (emulator.emulator)
        "area_mm2": sum(area.values()),
        "dram_phy_mm2": area["dram_phy"],
    }


@dataclass
class GemmResult:
    key: str
    role: str
    op: str
    m: int
    n: int
    k: int
    count: int
    a_density: float
    w_density: float
    cycles: float
    energy_j: dict[str, float] = field(default_factory=dict)
    macs_issued: float = 0.0
    macs_effectual: float = 0.0
    dense_macs: int = 0
    sampled: float = 1.0
    noc_max_link_ratio: float = 0.0
    #: products of two nonzeros in the operands (sampled, scaled): the workload's effectual
    #: MACs whatever the target skips (its ``macs_effectual`` counts a zero it does not skip)
    macs_nonzero: float = 0.0
    ideal_speedup: float = 1.0  # dense MACs / nonzero products (measured on the operands)
    formats: dict[str, str] = field(default_factory=dict)  # operand -> storage format used
    weight_operand: str = ""  # the mm operand the weight was emulated as (a, b, mask)


def weight_as_a(g: Gemm) -> bool:
    """Whether ``g`` runs with its operands swapped (``C^T = W . X^T``): every target gets a
    layer's weight as the mm's ``a`` operand, as the conv kernels of the whole-step compile
    do, so every target runs the same mapping. A design that skips the zeros of ``a`` only
    (``cluster.skip = "a"``: weight-only skipping, procrustes-like) needs the weight there
    (ResNet-18 at 90 % on acf-base: 76.7 ms so, 80.3 ms with the weight as ``b``; over the
    sweep's grid points moved between 8.5 % faster and 9 % slower). The GEMMs of the
    workloads carry the weight as ``b``."""
    return g.op == "matmul" and g.w_operand == "b"


def nonzero_products(g: Gemm, args: list[np.ndarray]) -> int:
    """Products of two nonzeros in ``g``'s operands (``args`` in IR order): the MACs a
    design skipping every zero of both operands would do, 1/(d_w d_a) of the dense MACs for
    independent zeros. Per k: (nonzeros of A's column k) x (nonzeros of B's row k); an
    sddmm counts its sampled outputs only."""
    za = (args[0] != 0).T if g.ta else (args[0] != 0)  # (m, k)
    zb = (args[1] != 0).T if g.tb else (args[1] != 0)  # (k, n)
    if g.op == "sddmm":
        per_output = za.astype(np.float64) @ zb.astype(np.float64)
        return int(per_output[args[2] != 0].sum())
    return int(za.sum(axis=0, dtype=np.int64) @ zb.sum(axis=1, dtype=np.int64))


def run_gemm(g: Gemm, target, mask: str, rng: np.random.Generator, spec: RunSpec
             ) -> tuple[GemmResult, dict[str, float]]:
    """Emulate (a sample of) one GEMM; numbers scaled to the whole GEMM, one copy."""
    from acf import emulator
    from acf.compiler.codegen import CompileOptions, compile_module
    from acf.compiler.codegen.tiling import choose_tiling
    from acf.compiler.parser import parse_module
    from acf.compiler.passes.select_formats import SelectFormats
    from acf.compiler.sparse_encoding import encoding_to_format

    tile = choose_tiling(target).t
    plan = sample_plan(g, tile, target.num_clusters, spec.max_waves, spec.max_k_chunks, spec.full)
    gs = sampled_gemm(g, plan)
    args = gemm_inputs(gs, mask, rng)
    if weight_as_a(gs):  # the conv kernels' mapping: C^T = W . X^T
        gs, args = gs.swapped(), args[::-1]
    if spec.formats == "csr":
        gs_ir = gemm_ir(gs)
    else:  # dense types; "auto" then lets select-formats encode either operand
        gs_ir = gemm_ir(replace(gs, sparse_a=False, sparse_b=False))
    module = parse_module(gs_ir, f"{g.key}.acfir")
    if spec.formats == "auto":
        # measured densities; the exact masks only where their structure matters (n:m, blocks)
        # (costing every tile's exact pattern makes the choice as slow as the emulation)
        dens = {k: float(np.mean(x != 0)) for k, x in zip("ab", args)}
        w = gs.w_operand
        masks = {w: args["ab".index(w)] != 0} if mask != "random" and w in ("a", "b") else {}
        SelectFormats(masks=masks, target_config=target,
                      densities="-".join(f"{k}-{100 * d:g}" for k, d in dens.items()),
                      ).run(module)
    used = {arg.name_hint: encoding_to_format(arg.type.encoding) if arg.type.encoding else "dense"
            for arg in module.funcs[0].arguments}
    compiled = compile_module(module, target, CompileOptions(multicast=spec.noc == "auto"))
    rep = emulator.run(compiled.program, target, compiled.bind(args)).report
    energy = {k: v * (plan.time_scale if k.startswith("leakage") else plan.work_scale)
              for k, v in rep.energy_j.items()}
    cycles = rep.total_cycles * plan.time_scale
    flits = {k: v * plan.work_scale for k, v in rep.noc_link_flits.items()}
    max_ratio = max(rep.noc_link_flits.values(), default=0) / max(rep.total_cycles, 1)
    eff = rep.macs_effectual_count * plan.work_scale
    nonzero = nonzero_products(gs, args) * plan.work_scale
    res = GemmResult(
        key=g.key, role=g.role, op=g.op, m=g.m, n=g.n, k=g.k, count=g.count,
        a_density=g.a_density, w_density=g.w_density, cycles=cycles, energy_j=energy,
        macs_issued=rep.macs_issued_count * plan.work_scale, macs_effectual=eff,
        dense_macs=g.dense_macs, sampled=plan.fraction, noc_max_link_ratio=max_ratio,
        macs_nonzero=nonzero, ideal_speedup=g.dense_macs / max(nonzero, 1.0), formats=used,
        weight_operand=gs.w_operand,
    )
    return res, flits


#: weight rows a mask update emulates per layer (the rest scaled: it streams the weight)
MASK_UPDATE_ROWS = 288


def mask_update_cost(g: Gemm, fmt: str, target, kind: str, rng: np.random.Generator,
                     ) -> dict[str, float]:
    """The fabric's cost of bringing one layer's stored weight (``g``'s, ``n x k``, stored as
    ``fmt``) to a new mask, as the runtime emulates it (``Session.cost_mask_update``): the
    weight read, masked and written back (a compressed one decoded and re-encoded with its
    new pattern) and, when compressed, its mask encoded anew. A sweep point is the layer's
    GEMMs alone, with no optimizer state: the runtime's update also zeroes a weight's
    momentum where a connection grows, which this leaves out. The first
    :data:`MASK_UPDATE_ROWS` rows are emulated and the totals scaled to all ``n``."""
    from acf import emulator
    from acf.compiler.codegen import compile_module
    from acf.compiler.parser import parse_module
    from acf.runtime.session import mask_update_ir

    n, k = g.n, g.k
    rows = min(n, MASK_UPDATE_ROWS)
    text = mask_update_ir([((rows, k), fmt)])
    old = weight_mask((rows, k), g.w_density, kind, rng)
    new = weight_mask((rows, k), g.w_density, kind, rng)
    w = rng.standard_normal((rows, k)).astype(np.float32) * old
    compiled = compile_module(parse_module(text, f"{g.layer}.mask_update.acfir"), target)
    rep = emulator.run(compiled.program, target, compiled.bind([w, new.astype(np.float32)])).report
    scale = n / rows
    return {"cycles": rep.total_cycles * scale, "seconds": rep.time_s * scale,
            "energy_j": rep.energy_total_j * scale}


def run_spec(spec: RunSpec) -> dict[str, Any]:
    """Run one sweep point; returns the result row (``status`` ok, or error with a message)."""
    t0 = time.perf_counter()
    target = load(spec)
    version = package_version()
    hardware = hardware_figures(target)
    row: dict[str, Any] = {
        "run_id": spec.run_id(target.config_hash(), version),
        "package_version": version,
        "config_hash": target.config_hash(),
        "target": spec.target,
        "target_name": target.name,
        "numeric_mode": str(target.numeric.mode),
        # the node energy_j and area_mm2 are at (a report scaling them further starts here)
        "tech_node_nm": hardware["tech_node_nm"],
        "peak_macs_per_s": target.peak_macs_per_s,
        "area_mm2": hardware["area_mm2"],
        "hardware": hardware,
        **{k: v for k, v in spec.as_dict().items() if k != "target"},
        "scope": "gemm-only",
    }
    wl = Workload.build(spec.model, spec.sparsity, spec.mask, spec.act_density, spec.batch)
    rng = np.random.default_rng(spec.seed)
    gemms: list[dict[str, Any]] = []
    link_flits: dict[str, float] = {}
    cycles = 0.0
    energy: dict[str, float] = {}
    issued = effectual = nonzero = 0.0
    emulated_macs = 0.0
    noc_max = 0.0
    for g in wl.gemms:
        r, flits = run_gemm(g, target, spec.mask, rng, spec)
        gemms.append(asdict(r))
        cycles += r.cycles * g.count
        for k, v in r.energy_j.items():
            energy[k] = energy.get(k, 0.0) + v * g.count
        for k, v in flits.items():
            link_flits[k] = link_flits.get(k, 0.0) + v * g.count
        issued += r.macs_issued * g.count
        effectual += r.macs_effectual * g.count
        nonzero += r.macs_nonzero * g.count
        emulated_macs += r.sampled * g.dense_macs
        noc_max = max(noc_max, r.noc_max_link_ratio)
    # a mask update (RigL/SET/GMP's, every weight re-masked) costed apart from the step:
    # each layer's weight in the format its forward GEMM stored it in
    update = {"cycles": 0.0, "seconds": 0.0, "energy_j": 0.0}
    if spec.sparsity > 0:
        for g, r in zip(wl.gemms, gemms):
            if g.role == "fwd" and g.w_operand == "b":
                fmt = r["formats"].get(r["weight_operand"], "dense")
                for key, v in mask_update_cost(g, fmt, target, spec.mask, rng).items():
                    update[key] += v * g.count
    freq = float(target.clock.freq_ghz) * 1e9
    seconds = cycles / freq
    peak_per_cycle = target.num_clusters * target.macs_per_cluster
    row.update({
        "cycles": cycles,
        "seconds": seconds,
        "energy_j": sum(energy.values()),
        **{f"energy_{k}_j": v for k, v in sorted(energy.items())},
        "macs_dense": wl.dense_macs,
        "macs_issued": issued,
        "macs_effectual": effectual,
        "macs_nonzero": nonzero,
        "utilization": effectual / max(peak_per_cycle * cycles, 1.0),
        "noc_max_link_load": noc_max,
        "sampled": emulated_macs / max(wl.dense_macs, 1),
        "ideal_speedup": wl.dense_macs / max(nonzero, 1.0),
        "gemms": gemms,
        "mask_update_cycles": update["cycles"],
        "mask_update_seconds": update["seconds"],
        "mask_update_energy_j": update["energy_j"],
        "noc_link_flits": link_flits,
        "grid": list(target.fabric.grid),
        "wall_s": time.perf_counter() - t0,
        "status": "ok",
    })
    return row
