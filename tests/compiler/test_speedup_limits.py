"""``benchmarks/speedup_limits.py``'s skip cap is the timing contract's window rule: what
zero-skipping alone allows, checked on crafted masks and against ``cost_model.mm_cycles``
(itself exact against the emulator, ``test_cost_model.py``)."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
from acf.benchmarks.speedup_limits import parse_shape, skip_cap
from acf.compiler import cost_model as cm
from acf.isa.target import load_target


def test_skip_cap_of_crafted_masks() -> None:
    k = 64
    assert skip_cap(np.ones((4, k), bool), 8) == 1.0  # dense: no window skips anything
    one_per_window = np.zeros((4, k), bool)
    one_per_window[:, ::8] = True
    assert skip_cap(one_per_window, 8) == 8.0  # each window down to its one pair
    assert skip_cap(np.zeros((4, k), bool), 8) == 8.0  # an empty window still costs a cycle
    two_in_one = np.zeros((1, k), bool)
    two_in_one[0, :2] = True  # 8 windows: one of 2 pairs, seven empty
    assert skip_cap(two_in_one, 8) == pytest.approx(k / 9)
    ragged = np.ones((2, 20), bool)  # windows of 8, 8 and a last of 4
    assert skip_cap(ragged, 8) == 1.0
    assert skip_cap(one_per_window, 64) == pytest.approx(k / 8)  # one window: its 8 pairs


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5])
def test_skip_cap_is_the_contracts_cost_of_one_fold(density: float) -> None:
    """A fold whose 16 weight rows share one pattern (so its slowest output is any output):
    the mm costs issue + K / skip cap + the fold drain."""
    t = load_target("acf-base")
    c = t.cluster
    rng = np.random.default_rng(3)
    k = 144
    row = rng.random(k) < density
    mask = np.repeat(row[None, :], int(c.pe_cols), axis=0)
    cycles = cm.mm_cycles(t, int(c.pe_rows), int(c.pe_cols), k, b_mask=mask.T)
    mac = cycles - int(c.issue_cycles) - int(c.fold_cycles)
    assert mac == pytest.approx(k / skip_cap(mask, int(c.lookahead)))
    assert skip_cap(mask, int(c.lookahead)) <= int(c.lookahead)


def test_shapes_are_checked() -> None:
    assert parse_shape("64x256x512") == (64, 256, 512)
    for bad in ("64x256", "64x0x512", "axbxc"):
        with pytest.raises(argparse.ArgumentTypeError, match="expected MxNxK|must be positive"):
            parse_shape(bad)
