"""The run report: every number carries its unit in its key name.

``Report.to_json()`` is deterministic (sorted keys, fixed float formatting by json), so two
runs of one program give byte-identical reports; ``to_csv()`` flattens it to
``metric,value`` rows; ``summary()`` renders a rich terminal table.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Report:
    """Cycles, time, per-unit activity, MACs, bytes, NoC load, energy and area of one run."""

    target: str
    target_config_hash: str
    numeric_mode: str
    total_cycles: int
    time_s: float
    clock_ghz: float
    instructions_count: int
    busy_cycles: dict[str, int] = field(default_factory=dict)
    stall_cycles: dict[str, dict[str, int]] = field(default_factory=dict)
    utilization_ratio: dict[str, float] = field(default_factory=dict)
    macs_issued_count: int = 0
    macs_effectual_count: int = 0
    macs_skipped_count: int = 0
    mac_array_utilization_ratio: float = 0.0
    memory_bytes: dict[str, int] = field(default_factory=dict)
    noc_link_flits: dict[str, int] = field(default_factory=dict)
    noc_flit_hops: dict[str, int] = field(default_factory=dict)
    energy_events_count: dict[str, int] = field(default_factory=dict)
    energy_pj: dict[str, float] = field(default_factory=dict)
    energy_j: dict[str, float] = field(default_factory=dict)
    energy_total_pj: float = 0.0
    energy_total_j: float = 0.0
    area_mm2: dict[str, float] = field(default_factory=dict)
    area_total_mm2: float = 0.0
    tech_node_nm: int = 0  # node the energy and area figures refer to
    # factors applied to the on-chip components (tech.scale_to_nm); DRAM energy and the DRAM
    # PHY area are reported as the target gives them (docs/energy.md)
    tech_energy_scale: float = 1.0
    tech_area_scale: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, indent=2) + "\n"

    def to_csv(self) -> str:
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(["metric", "value"])
        for key, value in _flatten(self.as_dict()):
            w.writerow([key, value])
        return out.getvalue()

    def summary(self, console=None) -> None:
        """Print a compact rich summary (cycles, MACs, bytes, energy, busiest units)."""
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        t = Table(title=f"ACF run on {self.target}", show_header=True)
        t.add_column("metric")
        t.add_column("value", justify="right")
        rows = [
            ("total cycles", f"{self.total_cycles:,}"),
            ("time", f"{self.time_s * 1e6:.3f} us"),
            ("instructions", f"{self.instructions_count:,}"),
            ("MACs issued / effectual", f"{self.macs_issued_count:,} / {self.macs_effectual_count:,}"),
            ("MAC array utilization", f"{100 * self.mac_array_utilization_ratio:.1f} %"),
        ]
        rows += [(f"{k.replace('_bytes', '')} bytes", f"{v:,}") for k, v in sorted(self.memory_bytes.items()) if v]
        rows += [("energy total", f"{self.energy_total_pj / 1e6:.3f} uJ"),
                 ("area total", f"{self.area_total_mm2:.2f} mm2")]
        for k, v in rows:
            t.add_row(k, v)
        console.print(t)
        busiest = sorted(self.busy_cycles.items(), key=lambda kv: (-kv[1], kv[0]))[:6]
        if busiest:
            u = Table(title="busiest units", show_header=True)
            for col in ("unit", "busy cycles", "util %", "token wait", "resource stall"):
                u.add_column(col, justify="right")
            for name, busy in busiest:
                st = self.stall_cycles.get(name, {})
                u.add_row(name, f"{busy:,}", f"{100 * self.utilization_ratio.get(name, 0):.1f}",
                          f"{st.get('token_wait_cycles', 0):,}", f"{st.get('resource_cycles', 0):,}")
            console.print(u)


def _flatten(d: dict[str, Any], prefix: str = ""):
    for key in sorted(d):
        value = d[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten(value, name + ".")
        else:
            yield name, value
