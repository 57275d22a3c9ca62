"""Energy: event counts x per-event energy from the target, plus leakage x time.

Every instruction's events follow its ISA row's ``energy`` list (``mac`` is ``mac_fp32`` or
``mac_bf16`` by the numeric mode); counts are exact (bytes, flits x routers/links, values,
elements). Components group events for the report.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from acf.isa.semantics import SPECIAL

#: Report component of each energy event.
COMPONENT = {
    "mac_fp32": "mac_arrays", "mac_bf16": "mac_arrays", "mac_skipped": "mac_arrays",
    "spad_read_byte": "scratchpads", "spad_write_byte": "scratchpads",
    "acc_access_byte": "accumulators", "gbuf_read_byte": "global_buffer",
    "gbuf_write_byte": "global_buffer", "dram_byte": "dram", "noc_router_flit": "noc",
    "noc_link_flit": "noc", "codec_value": "codecs", "codec_index": "codecs",
    "vec_op": "vector_units", "vec_special_op": "vector_units", "reconfig": "noc",
}


def mac_event(target) -> str:
    return "mac_bf16" if str(target.numeric.mode) == "bf16" else "mac_fp32"


def costs(target) -> dict[str, float]:
    return {k: c.value for k, c in target.energy.as_dict().items()}


def _local(space: str, write: bool = False) -> str:
    """The event for bytes a cluster moves through its own memory ``space``: the
    accumulator, or the scratchpad (read or written)."""
    if space == "acc":
        return "acc_access_byte"
    return "spad_write_byte" if write else "spad_read_byte"


def _add(c: dict[str, int], event: str, n: int) -> None:
    c[event] = c.get(event, 0) + n


def operand_read_bytes(cfg, cls: str, M: int, N: int, K: int, sampled=None) -> int:
    """Scratchpad bytes of A (M x K) and B (K x N) an ``mm``/``sddmm`` streams into the MAC
    array, as the timing model runs it (docs/timing.md section 3; ``cfg`` is the engine's
    :class:`~acf.emulator.timing_compute.ClusterTiming`). Zeros are read too: the skip logic
    looks at them.

    * ``os`` and ``systolic`` ``mm`` (and ``systolic`` ``sddmm``, timed as a dense ``mm``):
      the outputs are computed in folds of R x C, each streaming its A rows (R x K) and B
      columns (K x C) past the array, shared along its PE rows and columns. A is read once
      per column fold, B once per row fold: ``4 K (M ceil(N/C) + N ceil(M/R))``.
    * ``os`` ``sddmm``: the sampled outputs (``sampled``, the nonzeros of S) in row-major
      chunks of R*C, each streaming the distinct A rows and B columns its outputs use.
    * ``flexible``: no folds; the distribution network hands each operand element to the
      PEs that need it, so A and B are read once: ``4 K (M + N)``.
    """
    R, C = cfg.R, cfg.C
    if cfg.dataflow == "flexible":
        return 4 * K * (M + N)
    if cls == "sddmm" and cfg.dataflow == "os":  # sampled: the semantics' S mask, always set
        rows, cols = np.nonzero(sampled)  # row-major
        if rows.size == 0:
            return 0
        chunk = np.arange(rows.size) // (R * C)
        # (chunk, row) pairs come sorted, so a new pair is a change of either
        a_rows = 1 + int(np.count_nonzero((chunk[1:] != chunk[:-1]) | (rows[1:] != rows[:-1])))
        b_cols = int(np.unique(chunk * N + cols).size)
        return 4 * K * (a_rows + b_cols)
    return 4 * K * (M * -(-N // C) + N * -(-M // R))


def _counts(engine, ex) -> dict[str, int]:
    """Event counts of one retired instruction, added to ``ex.counts`` (which holds only the
    NoC flits of its grants). Scratchpad and accumulator bytes are counted per operand, in
    the memory the operand names (a store from the accumulator reads the accumulator);
    ``_add`` only where two operands can name the same memory, plain assignment elsewhere
    (this runs once per instruction)."""
    c: dict[str, int] = ex.counts
    ins, info, rec = ex.p.ins, ex.effect.info, ex.record
    m, cls = ins.mnemonic, ins.op.timing
    if cls in ("matmul", "sddmm"):
        M, N, K = ins["m"], ins["n"], ins["k"]
        c[engine.mac_event] = rec.effectual_macs
        c["mac_skipped"] = rec.issued_macs - rec.effectual_macs
        c["spad_read_byte"] = (operand_read_bytes(engine.cfg, cls, M, N, K, info.get("S"))
                               + (4 * M * N if cls == "sddmm" else 0))
        if ins["dst"].space == "acc":  # written, and read first when accumulating
            c["acc_access_byte"] = 4 * M * N * (2 if ins["accum"] else 1)
        else:
            c["spad_write_byte"] = 4 * M * N
            if ins["accum"]:
                c["spad_read_byte"] += 4 * M * N
    elif cls in ("load", "gather"):
        c[{"dram": "dram_byte", "gb": "gbuf_read_byte", "sp": "spad_read_byte"}[info["space"]]] = info["nbytes"]
        V, X = info["codec"]
        c["codec_value"] = V
        c["codec_index"] = X
        c["spad_write_byte"] = 4 * (ins["rows"] * ins["cols"] if m == "ld" else ins["d0"] * ins["d1"] * ins["d2"])
    elif cls == "store":
        c[_local(ins["src"].space)] = 4 * ins["rows"] * ins["cols"]
        V, X = info["codec"]
        c["codec_value"] = V
        c["codec_index"] = X
        c["dram_byte" if info["space"] == "dram" else "gbuf_write_byte"] = info["nbytes"]
    elif cls == "dma":
        c["dram_byte"] = info["nbytes"]
        c["gbuf_write_byte" if m == "dma.ld" else "gbuf_read_byte"] = info["nbytes"]
    elif m == "vop":
        n = ins["rows"] * ins["cols"]
        c["vec_special_op" if ins["fn"] in SPECIAL else "vec_op"] = n
        _add(c, _local(ins["a"].space), 4 * n)
        if info.get("bshape"):
            _add(c, _local(ins["b"].space), 4 * n)
        _add(c, _local(ins["dst"].space, write=True), 4 * n)
    elif m == "vred":
        n = ins["rows"] * ins["cols"]
        c["vec_op"] = n
        _add(c, _local(ins["a"].space), 4 * n)
        _add(c, _local(ins["dst"].space, write=True), 4 * info["out_shape"][0] * info["out_shape"][1])
    elif m in ("sgd", "adam"):
        n = ins["n"]
        c["vec_op"] = n * (3 + ins["nesterov"] if m == "sgd" else 6)
        if m == "adam":
            c["vec_special_op"] = n
        c["spad_read_byte"] = 4 * n * (3 if m == "sgd" else 4)
        c["spad_write_byte"] = 4 * n * (2 if m == "sgd" else 3)
    elif m == "fld":
        c["spad_read_byte"] = 4
    elif cls == "codec":
        V, X = info["codec"]
        c["codec_value"] = V
        c["codec_index"] = X
        dense = 4 * ins["rows"] * ins["cols"]
        c[_local(ins["src"].space)] = dense if m == "enc" else info["nbytes"]
        c["spad_write_byte"] = info["nbytes"] if m == "enc" else dense
    elif cls == "noc_config":
        c["reconfig"] = 1
    elif m == "send":
        c[_local(ins["src"].space)] = info["nbytes"]
        c["spad_write_byte"] = info["nbytes"]
    elif m == "bcast":
        src = {"sp": "spad_read_byte", "gb": "gbuf_read_byte", "dram": "dram_byte"}[info["space"]]
        c[src] = info["nbytes"]
        c["spad_write_byte"] = info["nbytes"] * info["written"]
    elif m == "reduce":
        k = len(info["members"])
        c[_local(ins["src"].space)] = info["nbytes"] * k
        c["vec_op"] = (info["nbytes"] // 4) * max(0, k - 1)
        c["spad_write_byte"] = info["nbytes"]
    return c


def event_counts(engine, ex) -> float:
    """Count one instruction's events into the engine's totals; return its energy in pJ."""
    if not hasattr(engine, "event_totals"):
        engine.event_totals = Counter()
        engine.costs = costs(engine.t)
        engine.mac_event = mac_event(engine.t)
    c = _counts(engine, ex)
    totals = engine.event_totals
    for k, n in c.items():  # Counter.update, without its per-call Mapping check
        totals[k] = totals.get(k, 0) + n
    cost = engine.costs
    return float(sum([n * cost[k] for k, n in c.items()]))


def breakdown(target, totals: Counter, seconds: float) -> dict[str, float]:
    """Energy per component in pJ: dynamic events plus leakage x time."""
    cost = costs(target)
    out: dict[str, float] = {}
    for ev, n in sorted(totals.items()):
        comp = COMPONENT[ev]
        out[comp] = out.get(comp, 0.0) + n * cost[ev]
    mw_to_pj = seconds * 1e-3 * 1e12  # mW x s = mJ; 1 mJ = 1e9 pJ
    for comp, mw in leakage_mw(target).items():
        out[comp] = mw * mw_to_pj
    return out


# The leakage constants are estimates for acf-base's components, as their sources say: a
# cluster of 16x16 PEs with 512 KiB of scratchpad, 256 KiB of accumulator and 32 vector
# lanes; an 8 MiB global buffer; 16 routers. Leakage scales with what leaks: a cluster's
# with its area (the target's own per-unit areas, so a larger array or SRAM leaks more), the
# global buffer's with its capacity, the NoC's with its router count.
LEAK_REFERENCE = {"pe": 16 * 16, "spad_mib": 0.5, "acc_mib": 0.25, "vec_lanes": 32,
                  "gbuf_mib": 8.0, "routers": 16}


def leakage_mw(target) -> dict[str, float]:
    """Leakage power per component in mW (see LEAK_REFERENCE)."""
    cost = costs(target)
    a = {k: c.value for k, c in target.area.as_dict().items()}
    ref = LEAK_REFERENCE
    ref_cluster = (ref["pe"] * a["mac_pe"] + (ref["spad_mib"] + ref["acc_mib"]) * a["sram_mib"]
                   + ref["vec_lanes"] * a["vector_lane"] + a["codec"])
    area = target.area_breakdown_mm2()
    clusters = sum(area[k] for k in ("mac_arrays", "scratchpads", "accumulators", "vector_units",
                                     "codecs"))
    return {
        "leakage_clusters": cost["leak_cluster_mw"] * clusters / ref_cluster,
        "leakage_global_buffer": cost["leak_gbuf_mw"] * target.gbuf.bytes / (1 << 20) / ref["gbuf_mib"],
        "leakage_noc": cost["leak_noc_mw"] * target.num_clusters / ref["routers"],
    }


# ---- technology scaling ------------------------------------------------------------------
# tech.scale_to_nm scales the CMOS logic and SRAM of the fabric (acf.isa.tech). The DRAM
# energy is an HBM interface figure (pJ/bit at the pins and in the DRAM dies), set by the
# memory technology, not by the node the fabric is built in; a PHY is mostly analog and I/O
# (drivers, ESD, bumps), whose area barely shrinks with the logic node. Both stay as given.
#: report components (energy, area) technology scaling leaves as the target gives them
UNSCALED_ENERGY = ("dram",)
UNSCALED_AREA = ("dram_phy",)


def scale_energy_components(energy: dict[str, float], factor: float) -> dict[str, float]:
    """Per-component energies at another node: each on-chip component times ``factor``,
    DRAM (:data:`UNSCALED_ENERGY`) as it is."""
    return {k: v if k in UNSCALED_ENERGY else v * factor for k, v in energy.items()}


def scale_area_components(area: dict[str, float], factor: float) -> dict[str, float]:
    """Per-component areas at another node: logic and SRAM times ``factor``, the DRAM PHY
    (:data:`UNSCALED_AREA`) as it is."""
    return {k: v if k in UNSCALED_AREA else v * factor for k, v in area.items()}


def events_of_row(op: Any, target) -> list[str]:
    """Target energy keys an ISA row's events map to (``mac`` -> fp32/bf16 variant)."""
    return [mac_event(target) if e == "mac" else e for e in op.energy]
