"""Which storage format a masked weight gets at a measured density.

The runtime uses a documented density-band rule: ``dense`` above ``dense_above`` (0.5),
``bitmap`` between ``csr_below`` and ``dense_above`` (0.2-0.5), ``csr`` below ``csr_below``
(0.2). A weight leaves its band only for a band the density is in by more than
``hysteresis`` (0.02), so a density hovering at a threshold does not flip formats every step:
moving up it must still be in the higher band at ``density - hysteresis``, moving down in
the lower one at ``density + hysteresis``. The rule is the same at every edge and whichever
band the weight comes from, also when one step jumps across two bands (from ``csr`` at 0.51
the weight goes to ``bitmap``, as it would from ``bitmap``; see :meth:`DensityBands.band`).

The band rule is a proxy. ``select-formats``' cost model (``acf.compiler.cost_model``)
ranks a weight's formats by its GEMMs alone, while in a training step the weight's format
also decides how its optimizer update, sampled gradient and mask move (the session stores
them in the weight's format). Measured on a 784-256-10 MLP step at batch 32 on acf-base:
at 50 % density the cost model prefers dense on the GEMMs, but the step takes 77.0k cycles
with dense weights and 55.5k with bitmap ones (the dense update alone 42.0k vs 22.6k).
Whether a format change pays off also depends on the target and the shapes (on
``acf-small`` with small layers, dense storage with zero-skipping beats both compressed
formats even at 2 % density, because decode and the optimizer's pattern-keeping work
dominate). That is why the session, by default, *measures* a re-specialization on the
step that triggers it and keeps the faster program (see ``SessionOptions.verify``).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

#: the bands from the sparsest to the densest
_ORDER = ("csr", "bitmap", "dense")


@dataclass(frozen=True)
class DensityBands:
    dense_above: float = 0.5
    csr_below: float = 0.2
    hysteresis: float = 0.02

    def __post_init__(self) -> None:
        for name in ("dense_above", "csr_below", "hysteresis"):
            v = getattr(self, name)
            # a non-number would raise a bare TypeError below, or (hysteresis) only at a
            # band change, deep in a training step
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"DensityBands: {name} must be a number, got {v!r}")
        if not 0.0 <= self.csr_below <= self.dense_above <= 1.0:
            raise ValueError("DensityBands needs 0 <= csr_below <= dense_above <= 1")
        if self.hysteresis < 0:
            raise ValueError(f"DensityBands: hysteresis must be >= 0, got {self.hysteresis!r}")

    def format_for(self, density: float) -> str:
        if density > self.dense_above:
            return "dense"
        if density < self.csr_below:
            return "csr"
        return "bitmap"

    def band(self, density: float, current: str | None = None) -> str:
        """The band of ``density`` for a weight now in band ``current`` (None: no band yet).

        The weight moves to a higher band only as far as ``density - hysteresis`` reaches,
        to a lower one only as far as ``density + hysteresis`` reaches, and otherwise stays:
        with the defaults, ``bitmap`` -> ``dense`` above 0.52 and ``dense`` -> ``bitmap`` at
        0.48 or below; ``bitmap`` -> ``csr`` below 0.18 and ``csr`` -> ``bitmap`` at 0.22
        or above. A jump across two bands stops short of the far one when the density is
        within the hysteresis of its edge (``csr`` at 0.51 -> ``bitmap``, ``dense`` at
        0.19 -> ``bitmap``), so the band a density leads to does not depend on how far the
        weight came. With ``hysteresis`` 0 this is :meth:`format_for`."""
        if current not in _ORDER:
            return self.format_for(density)
        h = self.hysteresis
        # format_for is monotone in the density, so reached_up ranks at most reached_down
        reached_up, reached_down = self.format_for(density - h), self.format_for(density + h)
        if _ORDER.index(reached_up) > _ORDER.index(current):
            return reached_up
        if _ORDER.index(reached_down) < _ORDER.index(current):
            return reached_down
        return current

def codec_keeps_up(target) -> bool:
    """Whether a dense-stored weight's optimizer state pays for being stored compressed on
    ``target``: its update then runs tile by tile through the format codecs (a decode and an
    encode per element) instead of streaming flat rows, which only wins where the codecs of
    all clusters handle at least twice as many elements per cycle as the memory ports bring
    in fp32 values. Measured on a 512x256x3x3 masked SGD at 10 %: acf-base (256 vs 32 per
    cycle) 159k -> 119k cycles; acf-small (16 vs 16) a 128x64x3x3 one 28.3k -> 31.5k."""
    codec = target.num_clusters * int(target.cluster.codec_values_per_cycle)
    ports = target.port_bytes_per_cycle / 4
    return codec >= 2 * ports
