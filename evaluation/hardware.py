"""The targets' hardware as the reports state it: figures, how two targets differ, the node.

A row records its target's :func:`acf.evaluation.runner.hardware_figures` (peak MAC rate
and multiply type, clock, memory ports, DRAM, global buffer, node, area); a row made before
rows recorded them gets the target's figures as loaded now, where its config is unchanged.
From them: the sentence that says how a peer's hardware differs from acf-base's, the node
the rows' energies and areas are at, and the summary's Targets table.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import lru_cache
from typing import Any

from acf.evaluation.labels import join_words, label
from acf.evaluation.points import DENSE, canonical_overrides, natural_key, point_order
from acf.evaluation.runner import RunSpec, hardware_figures, load


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


def at_recorded_node(r: dict[str, Any]) -> dict[str, Any]:
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
        return "same hardware: " + join_words(same)
    out = f"{label(peer)} differs from {label(base)} in {join_words(differ)}"
    return out + (f"; same {join_words(same)}" if same else "")


def nodes_text(rows: list[dict[str, Any]]) -> str:
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
    return join_words(parts[1]) if parts[1] else "same"


def md_targets(rows: list[dict[str, Any]]) -> list[str]:
    """Each target configuration of the rows with its hardware figures (from its config)
    and how it differs from acf-dense (of the same ``--set`` values, else the default one)."""
    configs: dict[str, dict[str, Any]] = {}
    for r in sorted(rows, key=point_order):
        configs.setdefault(_config_label(r), r)
    dense = {json.dumps(canonical_overrides(r.get("overrides")), sort_keys=True): r
             for r in configs.values() if r["target"] == DENSE}
    L = ["## Targets", "", "Hardware figures from each target's config (energies and areas at the node shown).", "",
         "| target | " + " | ".join(name for name, _ in HARDWARE_FIGURES) + " | area (mm2) | vs acf-dense |",
         "|---|" + "---|" * (len(HARDWARE_FIGURES) + 2)]
    for name, r in sorted(configs.items(), key=lambda kv: natural_key(kv[0])):
        hw = hardware_of(r)
        if hw is None:
            L.append(f"| {name} | " + " | ".join("?" for _ in HARDWARE_FIGURES) + " | ? | "
                     "config changed since the run |")
            continue
        ref = dense.get(json.dumps(canonical_overrides(r.get("overrides")), sort_keys=True), dense.get("{}"))
        L.append(f"| {name} | " + " | ".join(text(hw) for _, text in HARDWARE_FIGURES)
                 + f" | {hw['area_mm2']:.1f} | {_hardware_vs(r, ref)} |")
    return L
