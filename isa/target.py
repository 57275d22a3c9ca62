"""Hardware configuration of one fabric instance (a *target*), loaded from a TOML file.

A target file has one table per component. Every size, width, latency and bandwidth is a
field with a unit; every energy and area number is an inline table with ``value``, ``unit``
and ``source``::

    [cluster]
    pe_rows = 16            # MAC array rows
    skip = "ab"             # zero-skipping: none | a | ab
    [energy]
    mac_fp32 = { value = 4.6, unit = "pJ", source = "Horowitz ISSCC 2014, 45 nm" }

Files may ``inherit = "acf-base"`` and override single fields; ``load_target(name,
overrides={"cluster.lookahead": 4})`` applies ``--set``-style overrides. Errors name the file,
the key and the reason (:class:`TargetError`). The ``[energy]`` and ``[area]`` tables take
only the numbers the cost model reads (a misspelt key is an error, not ignored).

A target is named by a shipped name (``acf-small``) or a file path: a name is a path when
it is an existing file, holds a path separator, or ends in ``.toml`` (so a folder that
happens to share a shipped target's name does not hide it). ``inherit`` is looked up beside
the inheriting file first (``inherit = "mybase"`` or ``"mybase.toml"`` finds
``mybase.toml`` in that file's folder; a path is taken from that folder), then as a shipped
name.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from acf.isa.target_schema import (
    COST_SECTIONS,
    SCHEMA,
    FieldSpec,
)
from acf.isa.tech import check_node


class TargetError(ValueError):
    """A target file or override is invalid; the message names file, key and reason."""


@dataclass(frozen=True)
class Cost:
    """One energy (pJ, or mW for leakage) or area (mm^2) number with its provenance."""

    value: float
    unit: str
    source: str


class Section:
    """Read-only attribute view of one validated TOML table (``target.cluster.pe_rows``)."""

    def __init__(self, name: str, values: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", dict(values))

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(f"target section [{self._name}] has no field {key!r}") from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("targets are immutable; use load_target(..., overrides=...)")

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)


class Target:
    """A validated fabric instance. Sections are attributes: ``t.cluster``, ``t.noc`` ..."""

    def __init__(self, name: str, source: str, data: dict[str, dict[str, Any]]):
        self.name = name
        self.source = source
        self._data = data
        for section, values in data.items():
            setattr(self, section, Section(section, values))

    # ---- derived figures -------------------------------------------------------------
    @property
    def num_clusters(self) -> int:
        return int(self.fabric.grid[0] * self.fabric.grid[1])

    @property
    def macs_per_cluster(self) -> int:
        return int(self.cluster.pe_rows * self.cluster.pe_cols)

    @property
    def peak_macs_per_s(self) -> float:
        return self.num_clusters * self.macs_per_cluster * self.clock.freq_ghz * 1e9

    @property
    def port_bytes_per_cycle(self) -> int:
        """Bytes per cycle into (or, on their own links, out of) the fabric: one memory port
        per fabric row, each a NoC link (docs/timing.md 7)."""
        return int(self.fabric.grid[1]) * int(self.noc.link_bytes)

    @property
    def dram_bytes_per_s(self) -> float:
        return self.dram.channels * self.dram.bytes_per_cycle * self.clock.freq_ghz * 1e9

    @property
    def bisection_bytes_per_s(self) -> float:
        """Bytes/s across the narrower cut of the mesh, both directions (torus doubles it)."""
        x, y = self.fabric.grid
        cut = min(x, y) if max(x, y) > 1 else 0
        links = 2 * cut * (2 if self.noc.topology == "torus" and max(x, y) > 2 else 1)
        return links * self.noc.link_bytes * self.clock.freq_ghz * 1e9

    def derived(self) -> dict[str, Any]:
        """Figures printed by ``acfc targets NAME``, each with its unit in the key."""
        return {
            "clusters": self.num_clusters,
            "macs_total": self.num_clusters * self.macs_per_cluster,
            "peak_tmac_per_s": self.peak_macs_per_s / 1e12,
            "peak_tflops_per_s": 2 * self.peak_macs_per_s / 1e12,
            "spad_total_KiB": self.num_clusters * self.cluster.spad_bytes / 1024,
            "acc_total_KiB": self.num_clusters * self.cluster.acc_bytes / 1024,
            "gbuf_KiB": self.gbuf.bytes / 1024,
            "dram_GB_per_s": self.dram_bytes_per_s / 1e9,
            "bisection_GB_per_s": self.bisection_bytes_per_s / 1e9,
            "area_mm2": self.total_area_mm2(),
        }

    def area_breakdown_mm2(self) -> dict[str, float]:
        """Area per component of the whole fabric, from per-unit areas and the sizes."""
        a = {k: c.value for k, c in self.area.as_dict().items()}
        n = self.num_clusters
        mib = 1024 * 1024
        return {
            "mac_arrays": n * self.macs_per_cluster * a["mac_pe"],
            "scratchpads": n * self.cluster.spad_bytes / mib * a["sram_mib"],
            "accumulators": n * self.cluster.acc_bytes / mib * a["sram_mib"],
            "vector_units": n * self.cluster.vec_lanes * a["vector_lane"],
            "codecs": n * a["codec"],
            "routers": n * a["router"],
            "global_buffer": self.gbuf.bytes / mib * a["sram_mib"],
            "dram_phy": self.dram.channels * a["dram_phy_channel"],
        }

    def total_area_mm2(self) -> float:
        return sum(self.area_breakdown_mm2().values())

    def as_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section, values in self._data.items():
            out[section] = {
                k: (v.__dict__ if isinstance(v, Cost) else (list(v) if isinstance(v, tuple) else v))
                for k, v in values.items()
            }
        return out

    def config_hash(self) -> str:
        """Stable short hash of every field value: results carry it so runs are comparable."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def get(self, dotted: str) -> Any:
        section, _, key = dotted.partition(".")
        return self._data[section][key]

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


# ---- loading -------------------------------------------------------------------------


def _targets_dir() -> Path:
    return Path(str(resources.files("acf.isa") / "targets"))


def available_targets() -> list[str]:
    """Names of the targets shipped with the package, sorted."""
    return sorted(p.stem for p in _targets_dir().glob("*.toml"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TargetError(f"{path}: error: no such target file") from None
    except OSError as exc:  # a folder, no permission, a name too long for the system...
        raise TargetError(f"{path}: error: cannot read a target file there: "
                          f"{exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:  # TOML is UTF-8 (tomllib decodes before it parses)
        where = _byte_line_col(path, exc.start)
        raise TargetError(f"{path}:{where}: error: not valid TOML: the file is not UTF-8 text "
                          f"(byte {exc.object[exc.start]:#04x})") from None
    except tomllib.TOMLDecodeError as exc:
        raise TargetError(_toml_error(path, exc)) from None
    except ValueError as exc:  # a NUL in the name (after the two ValueErrors above)
        raise TargetError(f"{str(path)!r}: error: cannot read a target file there: {exc}") from None


def _toml_error(path: Path, exc: Exception) -> str:
    """``path:line:col: error: not valid TOML: ...`` at the position tomllib gives (its
    message ends ``(at line L, column C)``, or ``(at end of document)``)."""
    msg = str(exc)
    m = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", msg, re.DOTALL)
    if m:
        return f"{path}:{m.group(2)}:{m.group(3)}: error: not valid TOML: {m.group(1)}"
    m = re.fullmatch(r"(.*) \(at end of document\)", msg, re.DOTALL)
    if m:
        try:
            text = path.read_bytes().decode("utf-8", "replace")
        except OSError:
            return f"{path}: error: not valid TOML: {msg}"
        lines = text.split("\n")
        return (f"{path}:{len(lines)}:{len(lines[-1]) + 1}: error: not valid TOML: "
                f"{m.group(1)} (at the end of the file)")
    return f"{path}: error: not valid TOML: {msg}"


def _byte_line_col(path: Path, offset: int) -> str:
    """``line:col`` of a byte offset in a file (col counts characters before it)."""
    try:
        head = path.read_bytes()[:offset]
    except OSError:
        return "1:1"
    text = head.decode("utf-8", "replace")
    return f"{text.count(chr(10)) + 1}:{len(text) - text.rfind(chr(10))}"


def _exists(path: Path) -> bool:
    """Whether a file is there; a name the system cannot even look up (too long, a NUL in
    it) names no file, it is not an error of its own."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    """:func:`_exists`, for a file only (a folder named like a target is no target)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _names_a_path(text: str) -> bool:
    """Whether a target name is meant as a file path: it has a folder part or ends in .toml."""
    return text.endswith(".toml") or any(sep and sep in text for sep in (os.sep, os.altsep))


def _shown_name(name: str) -> str:
    if len(name) > 80:  # a name this long is no target: show its start
        return name[:60] + f"... ({len(name)} characters)"
    return name


def _resolve_path(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if _is_file(p):
        return p
    if _names_a_path(str(name_or_path)):
        if not _exists(p):  # said here, where a name too long to show is shortened
            raise TargetError(f"{_shown_name(str(name_or_path))}: error: no such target file")
        return p
    shipped = _targets_dir() / f"{name_or_path}.toml"
    if not _exists(shipped):
        known = ", ".join(available_targets())
        raise TargetError(f"unknown target {_shown_name(str(name_or_path))!r} (known: {known})")
    return shipped


def _resolve_inherit(path: Path, parent_name: str) -> Path:
    """The file ``inherit = parent_name`` in ``path`` names: beside ``path`` first (as a
    path, or ``NAME.toml``), then a shipped target; errors name ``path`` and the key."""
    if _names_a_path(parent_name):
        parent = path.parent / parent_name  # an absolute path stays as it is
        if not _exists(parent):
            raise TargetError(f"{path}: error: key 'inherit': no such target file {str(parent)!r}")
        return parent
    for parent in (path.parent / f"{parent_name}.toml", path.parent / parent_name):
        if _is_file(parent):
            return parent
    shipped = _targets_dir() / f"{parent_name}.toml"
    if _exists(shipped):
        return shipped
    known = ", ".join(available_targets())
    raise TargetError(f"{path}: error: key 'inherit': unknown target "
                      f"{_shown_name(parent_name)!r} (no {parent_name}.toml beside this file; "
                      f"known: {known})")


def _real(path: Path) -> str:
    """A path's canonical form, so an inherit cycle is found however its files are named."""
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return str(path)


def _merge_raw(path: Path, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if _real(path) in seen:
        raise TargetError(f"{path}: error: inherit cycle through {path.name}")
    raw = _read_toml(path)
    parent_name = raw.pop("inherit", None)
    if parent_name is None:
        return raw
    if not isinstance(parent_name, str):
        raise TargetError(f"{path}: error: key 'inherit': must be a target name string")
    base = _merge_raw(_resolve_inherit(path, parent_name), seen + (_real(path),))
    for section, values in raw.items():
        if isinstance(values, dict) and isinstance(base.get(section), dict):
            base[section] = {**base[section], **values}
        else:
            base[section] = values
    return base


def _check_field(where: str, key: str, spec: FieldSpec, value: Any) -> Any:
    try:
        return spec.check(value)
    except (TypeError, ValueError) as exc:
        raise TargetError(f"{where}: error: key '{key}': {exc}") from None


def _check_cost(where: str, key: str, value: Any, unit: str) -> Cost:
    if not isinstance(value, dict) or set(value) != {"value", "unit", "source"}:
        raise TargetError(
            f"{where}: error: key '{key}': must be {{ value = ..., unit = \"{unit}\", source = \"...\" }}"
        )
    v = value["value"]
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not _finite(v) or v < 0:
        raise TargetError(f"{where}: error: key '{key}.value': must be a number >= 0, got {v!r}")
    if value["unit"] != unit:
        raise TargetError(f"{where}: error: key '{key}.unit': must be {unit!r}, got {value['unit']!r}")
    if not isinstance(value["source"], str) or not value["source"].strip():
        raise TargetError(f"{where}: error: key '{key}.source': every cost number needs a source")
    return Cost(float(v), unit, value["source"])


def _finite(v: float) -> bool:
    """Not nan or inf, and within a float (a TOML integer may be of any size)."""
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def _parse_override(text: str) -> Any:
    """``--set`` values are TOML literals; bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def validate(raw: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Check every section against the schema; return typed values."""
    data: dict[str, dict[str, Any]] = {}
    for section in raw:
        if section not in SCHEMA and section not in COST_SECTIONS and section != "target":
            raise TargetError(f"{where}: error: unknown section [{section}]")
    for section, fields in SCHEMA.items():
        values = raw.get(section)
        if not isinstance(values, dict):
            raise TargetError(f"{where}: error: missing section [{section}]")
        for key in values:
            if key not in fields:
                raise TargetError(f"{where}: error: key '{section}.{key}': unknown field")
        typed: dict[str, Any] = {}
        for key, spec in fields.items():
            if key not in values:
                if spec.default is None:
                    raise TargetError(f"{where}: error: key '{section}.{key}': missing ({spec.doc})")
                typed[key] = spec.default
            else:
                typed[key] = _check_field(where, f"{section}.{key}", spec, values[key])
        data[section] = typed
    for section, (unit_of, required) in COST_SECTIONS.items():
        values = raw.get(section)
        if not isinstance(values, dict):
            raise TargetError(f"{where}: error: missing section [{section}]")
        for key in required:
            if key not in values:
                raise TargetError(f"{where}: error: key '{section}.{key}': missing")
        for key in values:  # a misspelt key would leave its number unused, as --set refuses it
            if key not in required:
                raise TargetError(f"{where}: error: key '{section}.{key}': unknown field")
        data[section] = {
            key: _check_cost(where, f"{section}.{key}", value, unit_of(key))
            for key, value in values.items()
        }
    _check_consistency(where, data)
    return data


def _check_consistency(where: str, d: dict[str, dict[str, Any]]) -> None:
    c = d["cluster"]
    if c["dataflow"] == "systolic" and c["skip"] != "none":
        raise TargetError(f"{where}: error: key 'cluster.skip': a systolic array cannot skip ('none')")
    if d["noc"]["topology"] == "torus" and d["noc"]["virtual_channels"] < 2:
        raise TargetError(
            f"{where}: error: key 'noc.virtual_channels': a torus needs >= 2 (dateline) virtual channels"
        )
    # a node the scaling tables lack would be scaled as another node while the report named
    # the one asked for: refused (acf.isa.tech); scale_to_nm = 0 means no scaling
    for key in ("node_nm", "scale_to_nm"):
        nm = d["tech"][key]
        if key == "node_nm" or nm:
            try:
                check_node(nm)
            except ValueError as exc:
                raise TargetError(f"{where}: error: key 'tech.{key}': {exc}") from None


#: Energy per flit of a NoC router traversal and of a link hop: set per flit width.
FLIT_ENERGIES = ("noc_router_flit", "noc_link_flit")


def _scale_flit_energies(data: dict[str, dict[str, Any]], inherited_link_bytes: Any,
                         overrides: dict[str, Any]) -> None:
    """A ``--set noc.link_bytes`` widens or narrows every flit; the flit energies, given per
    flit of the file's width, are rescaled to keep the energy per bit, unless they are set
    too. The source text says so."""
    new = data["noc"]["link_bytes"]
    old = inherited_link_bytes
    if not isinstance(old, int) or isinstance(old, bool) or old <= 0 or old == new:
        return
    ratio = new / old
    for key in FLIT_ENERGIES:
        if f"energy.{key}" in overrides:
            continue
        cost = data["energy"][key]
        data["energy"][key] = Cost(
            cost.value * ratio, cost.unit,
            f"{cost.value:g} pJ per {8 * old}-bit flit x{ratio:g} for {8 * new}-bit flits "
            f"(noc.link_bytes={new} set; same energy per bit): {cost.source}")


def load_target(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Target:
    """Load a shipped target by name (``"acf-base"``) or a TOML file path, applying overrides.

    Override values may be Python values or ``--set`` text (``"cluster.lookahead=4"`` ->
    ``{"cluster.lookahead": "4"}``, parsed as a TOML literal).
    """
    path = _resolve_path(name_or_path)
    raw = _merge_raw(path)
    where = str(path)
    name = raw.get("target", {}).get("name", path.stem)
    noc = raw.get("noc")
    inherited_link_bytes = noc.get("link_bytes") if isinstance(noc, dict) else None
    for dotted, value in (overrides or {}).items():
        section, dot, key = dotted.partition(".")
        if not dot or section not in raw or not isinstance(raw[section], dict):
            raise TargetError(f"--set {dotted}: error: key '{dotted}': no such section.field")
        if key not in raw[section] and key not in SCHEMA.get(section, {}):
            raise TargetError(f"--set {dotted}: error: key '{dotted}': unknown field")
        raw[section][key] = _parse_override(value) if isinstance(value, str) else value
    data = validate(raw, where + (" with --set " + " ".join(f"{k}={v}" for k, v in overrides.items())
                                  if overrides else ""))
    if overrides and "noc.link_bytes" in overrides:
        _scale_flit_energies(data, inherited_link_bytes, overrides)
    if overrides:
        name = name + "+" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    return Target(name, where, data)


def parse_set_args(items: list[str]) -> dict[str, str]:
    """``["cluster.lookahead=4", ...]`` -> ``{"cluster.lookahead": "4"}``."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise TargetError(f"--set {item}: error: expected SECTION.FIELD=VALUE")
        out[key.strip()] = value.strip()
    return out
