"""The density-band rule with hysteresis (``DensityBands.band``): one rule at every edge,
whichever band a weight comes from, also across two bands at once."""

from __future__ import annotations

import pytest
from acf.runtime import DensityBands

# (density, current band, band): defaults dense above 0.5, csr below 0.2, hysteresis 0.02
TABLE = [
    # no band yet: the plain band
    (0.51, None, "dense"), (0.5, None, "bitmap"), (0.2, None, "bitmap"), (0.19, None, "csr"),
    # within the hysteresis of an edge: stay, from either side
    (0.51, "bitmap", "bitmap"), (0.49, "dense", "dense"), (0.515, "bitmap", "bitmap"),
    (0.19, "bitmap", "bitmap"), (0.21, "csr", "csr"), (0.185, "bitmap", "bitmap"),
    # past it by more than the hysteresis: move
    (0.53, "bitmap", "dense"), (0.47, "dense", "bitmap"), (0.17, "bitmap", "csr"),
    (0.23, "csr", "bitmap"),
    # across two bands: the far edge has its hysteresis too
    (0.51, "csr", "bitmap"), (0.53, "csr", "dense"), (0.19, "dense", "bitmap"),
    (0.17, "dense", "csr"), (0.9, "csr", "dense"), (0.05, "dense", "csr"),
    # inside a band: stay
    (0.3, "bitmap", "bitmap"), (0.9, "dense", "dense"), (0.05, "csr", "csr"),
]


@pytest.mark.parametrize("density, current, band", TABLE)
def test_band_table(density, current, band) -> None:
    assert DensityBands().band(density, current) == band


def test_a_density_leads_to_one_band_whichever_band_it_comes_from() -> None:
    """Once a weight leaves csr or dense, it lands where a bitmap one at that density
    goes: how far it came does not matter (no far-edge exception)."""
    bands = DensityBands()
    for i in range(1001):
        d = i / 1000
        for far in ("csr", "dense"):
            reached = bands.band(d, far)
            if reached != far:
                assert reached == bands.band(d, "bitmap"), (d, far)


def test_no_hysteresis_is_the_plain_band() -> None:
    bands = DensityBands(hysteresis=0.0)
    for i in range(101):
        d = i / 100
        for current in ("csr", "bitmap", "dense"):
            assert bands.band(d, current) == bands.format_for(d)
