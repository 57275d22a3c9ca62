"""Frozen targets stay as the committed results were made with them.

A target marked ``frozen = true`` was fixed before results were taken: changing any of its
fields must make a new, named target instead. The committed sweep (results/sweep_main)
records, in every row, the hash of the configuration it ran (``Target.config_hash``);
each frozen shipped target run there without overrides must still hash to it, so an edit
of a frozen TOML (or of a default it inherits) fails here instead of silently drifting
from the published numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from acf.isa.target import available_targets, load_target

ROWS = Path(__file__).parents[2] / "results" / "sweep_main" / "rows.jsonl"
if not ROWS.exists():  # a source tree without the committed results
    pytest.skip("results/sweep_main/rows.jsonl is not in this checkout", allow_module_level=True)


def _recorded_hashes() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    with ROWS.open() as f:
        for line in f:
            row = json.loads(line)
            if not row.get("overrides"):
                out.setdefault(row["target"], set()).add(row["config_hash"])
    return out


def test_every_frozen_target_in_the_sweep_hashes_as_recorded() -> None:
    recorded = _recorded_hashes()
    frozen = [n for n in available_targets() if bool(load_target(n).target.frozen)]
    checked = [n for n in frozen if n in recorded]
    # the sweep runs acf-base, acf-dense, the four peers, tpu-like-iso-ports and acf-h200-iso
    assert len(checked) >= 8, checked
    for name in checked:
        assert recorded[name] == {load_target(name).config_hash()}, (
            f"{name} is frozen but no longer hashes as in {ROWS.name}: give the changed "
            f"configuration a new name")


def test_the_check_sees_a_changed_field() -> None:
    """A one-field override of a frozen target hashes differently (the check can fail)."""
    base = load_target("acf-base")
    assert load_target("acf-base", {"cluster.lookahead": 9}).config_hash() != base.config_hash()
    assert load_target("acf-base", {"noc.link_bytes": 64}).config_hash() != base.config_hash()
