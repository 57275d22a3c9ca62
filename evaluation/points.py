"""Sweep points: which rows measured the same thing, and which rows a comparison pairs.

A row's point is its run spec: model, sparsity, target, mask, batch, activation density,
``--set`` values, formats, NoC mode and sampling. Two spellings of one ``--set`` value
(``0x20`` and ``32``) and a missing ``--batch`` beside the model's default batch are one
point. :func:`latest_rows` keeps one row per point and target config (the newest);
:func:`pair_with_dense` pairs each row with ``acf-dense`` at its point, everything but the
target alike. The sweep and the reports both read points from here.
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import tomllib
from dataclasses import MISSING, fields
from typing import Any

from acf.evaluation.runner import RunSpec
from acf.evaluation.workloads import MODELS

DENSE = "acf-dense"
ACF = "acf-base"


# ---- --set values, written one way -----------------------------------------------------------


#: a decimal integer written with leading zeros (``04``, ``-007``, the ``00`` of ``00.5``);
#: not a hex/octal/binary prefix (``0x20``) and not the digits after a point or an exponent
_LEADING_ZEROS = re.compile(r"(?<![\w.])([+-]?)0+(?=\d)")


def _field_spec(key: str):
    from acf.isa.target_schema import SCHEMA

    section, _, name = key.partition(".")
    return SCHEMA.get(section, {}).get(name)


def _toml_literal(text: str, numeric: bool) -> Any:
    """``text`` as the target loader reads a ``--set`` value (a TOML literal, else a bare
    word), except that a number field takes plain decimals with leading zeros (``04``):
    TOML refuses them while it takes ``0x20``, and a user means 4."""
    if numeric:
        text = _LEADING_ZEROS.sub(r"\1", text)
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _toml_text(value: Any) -> str:
    """The one way a checked field value is written back as ``--set`` text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_text(v) for v in value) + "]"
    text = str(value)
    # a bare word reads back as itself; anything else ("1", "a b") is quoted
    return text if _toml_literal(text, numeric=False) == text else json.dumps(text)


@functools.lru_cache(maxsize=4096)
def canonical_set_value(key: str, text: str) -> str:
    """``text`` parsed to the type the target schema gives ``key`` and printed one way
    (``0x20``, ``+32``, ``032`` -> ``32``; ``[2,2]`` -> ``[2, 2]``; ``1`` for a GHz field ->
    ``1.0``). A value the field does not take, or a key outside the schema, is left as it
    was: loading the target reports it by name."""
    text = text.strip()
    spec = _field_spec(key)
    if spec is None:
        return text
    value = _toml_literal(text, numeric=spec.kind in ("int", "float", "grid"))
    try:
        return _toml_text(spec.check(value))
    except (TypeError, ValueError, OverflowError):
        return text


def canonical_overrides(overrides: dict[str, Any] | None) -> dict[str, str]:
    """A row's ``--set`` values, each written canonically (rows made before the values
    were canonicalized compare equal to new ones)."""
    return {k: canonical_set_value(k, v if isinstance(v, str) else _toml_text(v))
            for k, v in (overrides or {}).items()}


# ---- the point a row measured, one row per point ---------------------------------------------


def effective_batch(row: dict[str, Any]) -> int | None:
    """The batch a row ran at: its ``batch``, else its model's default (a row without
    ``--batch`` and one with the default batch measured the same workload)."""
    if row.get("batch"):
        return int(row["batch"])
    model = MODELS.get(row.get("model", ""))
    return None if model is None else inspect.signature(model).parameters["batch"].default


def point_key(row: dict[str, Any]) -> str:
    """What a row measured, whatever code measured it: its run spec (``--set`` values
    written canonically, the batch the model ran at) and target config."""
    spec = {f.name: row.get(f.name) for f in fields(RunSpec)}
    spec.update(overrides=canonical_overrides(row.get("overrides")), batch=effective_batch(row))
    return json.dumps({**spec, "config_hash": row.get("config_hash")}, sort_keys=True, default=str)


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per point (:func:`point_key`): the last ok one in the file, so a point
    rerun by newer code replaces the older code's row instead of standing beside it."""
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r.get("status") == "ok":
            by[point_key(r)] = r
    return list(by.values())


# ---- the point a comparison pairs: everything but the target ---------------------------------


_SPEC_DEFAULTS = {f.name: f.default for f in fields(RunSpec) if f.default is not MISSING}
#: what a point is besides its target: every field of the run spec (a row missing one
#: predates it and ran at its default)
POINT_KEYS = tuple(f.name for f in fields(RunSpec) if f.name != "target")


def setting_of(r: dict[str, Any], key: str) -> Any:
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


def point_of(r: dict[str, Any], noc: str | None = None) -> tuple:
    """Everything but the target (``noc``: the point in that NoC mode instead)."""
    return tuple(noc if key == "noc" and noc else setting_of(r, key) for key in POINT_KEYS)


def point_dict(r: dict[str, Any]) -> dict[str, Any]:
    """The point as ``comparison.json`` records it (``--set`` values as a mapping)."""
    d = {k: setting_of(r, k) for k in POINT_KEYS}
    d["overrides"] = json.loads(d["overrides"])
    return d


def departures(r: dict[str, Any]) -> list[str]:
    """The settings of ``r``'s point that are not a sweep's defaults (model and sparsity
    aside): the default point has none."""
    return [k for k in POINT_KEYS if k not in ("model", "sparsity")
            and setting_of(r, k) != _default_setting(r, k)]


def natural_key(text: str) -> tuple:
    """Sorts ``lookahead=8`` before ``lookahead=32``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def point_order(r: dict[str, Any]) -> tuple:
    """Default point first, then a fixed order: never the order rows finished in."""
    return len(departures(r)), natural_key(json.dumps(point_of(r), default=str))


def pair_with_dense(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Each row with acf-dense at its point (its NoC mode's, else the default mode's: the
    NoC-off ablation is measured against the usual dense baseline)."""
    dense = {point_of(r): r for r in rows if r["target"] == DENSE}
    return [(r, dense.get(point_of(r)) or dense.get(point_of(r, "auto"))) for r in rows]


def peak_ratio(r: dict[str, Any], d: dict[str, Any]) -> float:
    """The target's peak MAC rate over acf-dense's (1 for a peer of the same MAC count)."""
    return r["peak_macs_per_s"] / d["peak_macs_per_s"]


def same_peak_or_none(r: dict[str, Any], d: dict[str, Any] | None) -> dict[str, Any] | None:
    """``d`` where the comparison is at equal peak MAC rate, else None (plots leave such a
    point out: acf-h200-iso's 121x peak is not a sparsity effect)."""
    return d if d is not None and abs(peak_ratio(r, d) - 1) < 0.01 else None
