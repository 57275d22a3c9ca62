"""Which storage format a masked weight gets at a measured density.

There is no ``acf.compiler.cost_model`` yet, so the runtime uses a documented density-band
rule: ``dense`` above ``dense_above`` (0.5), ``bitmap`` between ``csr_below`` and
``dense_above`` (0.2-0.5), ``csr`` below ``csr_below`` (0.2). A band is only left when the
density is past the boundary by more than ``hysteresis`` (0.02), so a density hovering at a
threshold does not flip formats every step.

The band rule is a proxy: whether a format change pays off depends on the target and the
shapes (on ``acf-small`` with small layers, dense storage with zero-skipping beats both
compressed formats even at 2 % density, because decode and the optimizer's pattern-keeping
work dominate). That is why the session, by default, *measures* a re-specialization on the
step that triggers it and keeps the faster program (see ``SessionOptions.verify``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DensityBands:
    dense_above: float = 0.5
    csr_below: float = 0.2
    hysteresis: float = 0.02

    def __post_init__(self) -> None:
        if not 0.0 <= self.csr_below <= self.dense_above <= 1.0:
            raise ValueError("DensityBands needs 0 <= csr_below <= dense_above <= 1")

    def format_for(self, density: float) -> str:
        if density > self.dense_above:
            return "dense"
        if density < self.csr_below:
            return "csr"
        return "bitmap"

    def band(self, density: float, current: str | None = None) -> str:
        """The band of ``density``; stays in ``current`` while within the hysteresis."""
        new = self.format_for(density)
        if current is None or new == current:
            return new
        h = self.hysteresis
        edges = {("dense", "bitmap"): self.dense_above, ("bitmap", "dense"): self.dense_above,
                 ("bitmap", "csr"): self.csr_below, ("csr", "bitmap"): self.csr_below}
        edge = edges.get((current, new))
        if edge is not None and abs(density - edge) <= h:
            return current
        return new
