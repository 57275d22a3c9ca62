"""Rows and points in words: the target labels of the tables and plots, a point as a phrase.

A label names the target and what sets the row apart from the other rows of its model
(``acf-base[cluster.lookahead=4]``, ``acf-base[noc=unicast,batch=128]``); :func:`point_text`
says a point's settings in a sentence (``random masks; batch 32; activation density 0.5``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from acf.evaluation.points import POINT_KEYS, canonical_overrides, departures, setting_of

#: settings a row label names when the rows of its model take more than one value of them
#: (the mask has a column of its own; ``--set``, formats and NoC mode are always named)
_LABELLED = ("batch", "act_density", "seed", "max_waves", "max_k_chunks", "full")

#: how a setting reads in a sentence
_SETTING_TEXT = {"mask": "{} masks", "batch": "batch {}", "act_density": "activation density {:g}",
                 "formats": "formats {}", "noc": "NoC {}", "seed": "seed {}", "max_waves": "max waves {}",
                 "max_k_chunks": "max k-chunks {}"}


SETTING_NAME = {"overrides": "--set values", "act_density": "activation density", "noc": "NoC mode",
                 "max_waves": "max waves", "max_k_chunks": "max k-chunks", "full": "sampling"}


def _setting_text(r: dict[str, Any], key: str) -> str:
    v = setting_of(r, key)
    if key == "overrides":
        return ", ".join(f"{k}={x}" for k, x in sorted(json.loads(v).items())) or "no --set"
    if key == "full":
        return "every tile emulated" if v else "sampled"
    return _SETTING_TEXT.get(key, key + " {}").format(v)


def point_text(r: dict[str, Any], also: tuple[str, ...] = ()) -> str:
    """``r``'s point in words: mask, batch and activation density always, the other
    settings where they are not the defaults or are in ``also``."""
    keys = [k for k in POINT_KEYS if k not in ("model", "sparsity")
            and (k in ("mask", "batch", "act_density") or k in also or k in departures(r))]
    return "; ".join(_setting_text(r, k) for k in keys)


def distinguishing(rows: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Per model, the settings of :data:`_LABELLED` its rows take more than one value of:
    what a label must name so that rows of two points do not read alike."""
    values: dict[tuple[str, str], set] = defaultdict(set)
    for r in rows:
        for key in _LABELLED:
            values[(r["model"], key)].add(json.dumps(setting_of(r, key)))
    out: dict[str, tuple[str, ...]] = {}
    for r in rows:
        out[r["model"]] = tuple(k for k in _LABELLED if len(values[(r["model"], k)]) > 1)
    return out


def label(r: dict[str, Any], shown: tuple[str, ...] = ()) -> str:
    """The target and what sets the row apart: ``--set`` values, formats and NoC mode when
    not the defaults, and the settings in ``shown`` (:func:`distinguishing`)."""
    parts = [f"{k}={v}" for k, v in sorted(canonical_overrides(r.get("overrides")).items())]
    parts += [f"{k}={r[k]}" for k in ("formats", "noc") if r.get(k, "auto") != "auto"]
    parts += [f"{k}={setting_of(r, k)}" for k in shown]
    return r["target"] + (f"[{','.join(parts)}]" if parts else "")


def row_label(r: dict[str, Any], shown: Mapping[str, tuple[str, ...]]) -> str:
    return label(r, shown.get(r["model"], ()))


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
