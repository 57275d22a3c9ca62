"""Schema of a target file: every field, its type, unit, allowed range and meaning.

The loader (:mod:`acf.isa.target`) validates against this table and ``acfc targets``
prints from it, so a field is described exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

#: Largest memory size a target may declare (256 TiB): memories are lazy host mappings
#: (``acf.emulator.state``), and a size past what a mapping can even be asked for (2^63
#: bytes) failed with an OverflowError there.
MAX_MEMORY_BYTES = 1 << 48


def _bound(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class FieldSpec:
    kind: str  # "int" | "float" | "str" | "bool" | "grid"
    unit: str
    doc: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    default: Any = None

    def check(self, value: Any) -> Any:
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"must be an integer ({self.unit}), got {value!r}")
        elif self.kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"must be a number ({self.unit}), got {value!r}")
            try:
                value = float(value)
            except OverflowError:  # an integer past every float
                value = math.inf
            if not math.isfinite(value):  # nan passes every range test; inf has no meaning
                raise ValueError(f"must be a finite number ({self.unit}), got {value!r}")
        elif self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"must be true or false, got {value!r}")
        elif self.kind == "str":
            if not isinstance(value, str):
                raise TypeError(f"must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ValueError(f"must be one of {', '.join(self.choices)}; got {value!r}")
        elif self.kind == "grid":
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            ):
                raise ValueError(f"must be [x, y] with positive integers, got {value!r}")
            if value[0] * value[1] > 256:
                raise ValueError("at most 256 clusters (cluster ids are 8-bit)")
            return tuple(value)
        if self.lo is not None and value < self.lo:
            raise ValueError(f"must be >= {_bound(self.lo)}, got {value!r}")
        if self.hi is not None and value > self.hi:
            raise ValueError(f"must be <= {_bound(self.hi)}, got {value!r}")
        return value


def _i(unit: str, doc: str, lo: float = 1, hi: float | None = None, default: Any = None) -> FieldSpec:
    return FieldSpec("int", unit, doc, lo=lo, hi=hi, default=default)


def _f(unit: str, doc: str, lo: float = 0, hi: float | None = None, default: Any = None) -> FieldSpec:
    return FieldSpec("float", unit, doc, lo=lo, hi=hi, default=default)


def _s(doc: str, choices: tuple[str, ...], default: Any = None) -> FieldSpec:
    return FieldSpec("str", "", doc, choices=choices, default=default)


SCHEMA: dict[str, dict[str, FieldSpec]] = {
    "target": {
        "name": FieldSpec("str", "", "target name"),
        "description": FieldSpec("str", "", "one-line description", default=""),
        "models": FieldSpec("str", "", "published design this instance models, if any", default=""),
        "frozen": FieldSpec("bool", "", "frozen before results were taken: change = new name", default=False),
    },
    "clock": {
        "freq_ghz": _f("GHz", "core clock; 1 cycle = 1/freq", lo=0.01),
    },
    "fabric": {
        "grid": FieldSpec("grid", "clusters", "cluster grid [x, y] on the mesh"),
    },
    "cluster": {
        "pe_rows": _i("PEs", "MAC array rows (output rows per fold)", hi=256),
        "pe_cols": _i("PEs", "MAC array columns (output columns per fold)", hi=256),
        "dataflow": _s(
            "os: output-stationary, every PE streams its own effectual pairs; "
            "flexible: effectual MACs spread over all PEs (SIGMA-like); "
            "systolic: dense output-stationary systolic array with fill/drain",
            ("os", "flexible", "systolic"),
        ),
        "skip": _s("zero-skipping hardware: none | a (first operand only) | ab (either)", ("none", "a", "ab")),
        "lookahead": _i("pairs", "operand window a PE searches for effectual pairs per step", hi=4096),
        "fold_cycles": _i("cycles", "per-fold overhead (accumulator drain / reload)", lo=0, hi=4096),
        "issue_cycles": _i("cycles", "fixed overhead of every queued instruction", hi=1024),
        "reduce_cycles": _i("cycles", "adder-tree depth of the flexible dataflow", lo=0, hi=64, default=0),
        "spad_bytes": _i("bytes", "scratchpad capacity", lo=1024, hi=MAX_MEMORY_BYTES),
        "spad_banks": _i("banks", "scratchpad banks", hi=1024),
        "spad_bank_bytes": _i("bytes", "scratchpad bank word width (bytes per bank per cycle)", hi=1024),
        "acc_bytes": _i("bytes", "accumulator buffer capacity (fp32)", lo=1024, hi=MAX_MEMORY_BYTES),
        "vec_lanes": _i("lanes", "vector unit fp32 lanes", hi=4096),
        "vec_special_cycles": _i("cycles", "extra cycles per element group for exp/log/div/sqrt/erf", lo=0, hi=64),
        "codec_values_per_cycle": _i("values/cycle", "format codec throughput in stored values"),
        "codec_index_per_cycle": _i("indices/cycle", "format codec throughput in pointers/indices"),
        "queue_depth": _i("instructions", "depth of each unit's instruction queue", hi=65536),
    },
    "gbuf": {
        "bytes": _i("bytes", "global buffer capacity", lo=0, hi=MAX_MEMORY_BYTES),
        "banks": _i("banks", "global buffer banks"),
        "bank_bytes": _i("bytes", "bank word width"),
        "latency_cycles": _i("cycles", "access latency", lo=0),
    },
    "noc": {
        "topology": _s("mesh, or torus (wrap links; needs dateline virtual channels)", ("mesh", "torus")),
        "routing": _s("default routing: xy or yx dimension order", ("xy", "yx")),
        "link_bytes": _i("bytes/cycle", "link width (one flit per cycle)"),
        "router_latency": _i("cycles", "router pipeline depth per hop", hi=64),
        "virtual_channels": _i("VCs", "virtual channels per link", hi=16),
        "reconfig_cycles": _i("cycles", "cost of a routing/multicast reconfiguration", lo=0),
    },
    "dram": {
        "channels": _i("channels", "DRAM/HBM channels", hi=256),
        "bytes_per_cycle": _i("bytes/cycle", "per-channel bandwidth"),
        "burst_bytes": _i("bytes", "burst size: transfers are rounded up to bursts"),
        "interleave_bytes": _i("bytes", "address interleaving granularity across channels"),
        "latency_cycles": _i("cycles", "access latency", lo=0),
        "size_bytes": _i("bytes", "capacity", lo=4096, hi=MAX_MEMORY_BYTES),
    },
    "numeric": {
        "mode": _s("fp32, or bf16 (bf16 multiply, fp32 accumulate)", ("fp32", "bf16")),
    },
    "tech": {
        "node_nm": _i("nm", "process node the energy/area tables refer to"),
        "scale_to_nm": _i("nm", "report energies/areas scaled to this node (Stillmaker & Baas 2017)", default=0, lo=0),
    },
}

# Energy events (pJ per event) and leakage (mW per component); area (mm^2 per component).
ENERGY_EVENTS = (
    "mac_fp32", "mac_bf16", "mac_skipped", "spad_read_byte", "spad_write_byte",
    "acc_access_byte", "gbuf_read_byte", "gbuf_write_byte", "dram_byte",
    "noc_router_flit", "noc_link_flit", "codec_value", "codec_index", "vec_op",
    "vec_special_op", "reconfig",
)
LEAKAGE = ("leak_cluster_mw", "leak_gbuf_mw", "leak_noc_mw")
AREA_COMPONENTS = ("mac_pe", "sram_mib", "vector_lane", "codec", "router", "dram_phy_channel")


def _energy_unit(key: str) -> str:
    return "mW" if key.startswith("leak_") else "pJ"


COST_SECTIONS: dict[str, tuple[Callable[[str], str], tuple[str, ...]]] = {
    "energy": (_energy_unit, ENERGY_EVENTS + LEAKAGE),
    "area": (lambda key: "mm2", AREA_COMPONENTS),
}
