"""Per-step reports: cycles, time and energy of one training step, by layer and GEMM kind.

Every emulator :class:`~acf.emulator.Record` is attributed through the program's debug info
(``program.debug[index]`` -> :class:`~acf.isa.program.SourceLoc` with the IR op id and layer)
to an IR op of the compiled function; the op gives the layer and the kind of work:

``forward``, ``backward_data``, ``wgrad_sddmm``, ``wgrad_dense``, ``optimizer``, ``other``
(non-GEMM work: activations, losses, reductions, copies), and ``control`` for instructions
with no op (barriers, halt).

Per bucket: ``busy_cycles`` (sum of instruction durations; units overlap, so these add up to
more than the step's ``total_cycles``), ``span_cycles`` (first start to last end),
``effectual_macs``, ``issued_macs``, ``energy_j`` (dynamic energy of the instructions; the
step's ``energy_j`` adds leakage over the whole step), ``instructions``, and
``port_in_bytes`` / ``port_out_bytes``: the bytes that crossed the memory ports into the
fabric (``ld``, ``ldg``, ``bcast`` from DRAM or the global buffer) and out of it (``st``),
each direction its own links (docs/timing.md 7), which bound how fast the work can go.

``profile()`` collects the reports of every step run inside it::

    with acf.runtime.profile("report.json") as prof:
        session.run_step(...)
    prof.reports[0].total_cycles
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KINDS = ("forward", "backward_data", "wgrad_sddmm", "wgrad_dense", "optimizer", "other", "control")


@dataclass
class Bucket:
    """Activity of one layer or one kind of work."""

    busy_cycles: int = 0
    span_cycles: int = 0
    effectual_macs: int = 0
    issued_macs: int = 0
    energy_j: float = 0.0
    instructions: int = 0
    port_in_bytes: int = 0
    port_out_bytes: int = 0
    _first: int = -1
    _last: int = 0

    def add(self, rec: Any, port: str | None = None) -> None:
        """Count one instruction's record (``port``: its :func:`port_direction`)."""
        self.busy_cycles += int(rec.end - rec.start)
        if port == "in":
            self.port_in_bytes += int(rec.bytes)
        elif port == "out":
            self.port_out_bytes += int(rec.bytes)
        self.effectual_macs += int(rec.effectual_macs)
        self.issued_macs += int(rec.issued_macs)
        self.energy_j += float(rec.energy_pj) * 1e-12
        self.instructions += 1
        self._first = rec.start if self._first < 0 else min(self._first, rec.start)
        self._last = max(self._last, rec.end)
        self.span_cycles = int(self._last - self._first)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


@dataclass
class StepReport:
    """One step on the fabric. ``respecialized``: re-specializations decided at this step
    (``{"param", "density", "from", "to", "old_cycles", "new_cycles", "kept"}``; a format
    that did not compile: ``kept`` False and its ``error`` instead of the cycles);
    ``host_ops``: ops that ran on the host (frontend fallback)."""

    step: int
    program: str
    variant: str
    target: str
    total_cycles: int
    seconds: float
    energy_j: float
    compiled: bool = False
    densities: dict[str, float] = field(default_factory=dict)
    formats: dict[str, str] = field(default_factory=dict)
    by_layer: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_kind: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per op of the compiled function (``"12"``: its index), a Bucket plus its ``op`` name,
    #: ``kind`` and ``layer``: e.g. each GEMM's span and effectual MACs
    by_op: dict[str, dict[str, Any]] = field(default_factory=dict)
    respecialized: list[dict[str, Any]] = field(default_factory=list)
    #: the fabric's cost of applying masks that changed since the previous step
    #: (``{"params", "cycles", "seconds", "energy_j"}``, and ``"converted"``: ``{param:
    #: [from, to]}`` for weights the new mask moved to another storage format, converted in
    #: the same pass; empty when none changed), reported apart: ``total_cycles`` and
    #: ``energy_j`` are the training step's own
    mask_update: dict[str, Any] = field(default_factory=dict)
    host_ops: list[str] = field(default_factory=list)
    effectual_macs: int = 0
    issued_macs: int = 0
    emulator: Any = None  # the emulator's full Report (not serialized by to_json)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("emulator")
        return d

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


_OFF_CHIP = ("dram", "gb")


def port_direction(ins: Any) -> str | None:
    """``"in"`` for an instruction whose bytes enter the fabric through a memory port (a
    load, gather or multicast from DRAM or the global buffer), ``"out"`` for a store to
    them, else None (on-chip gathers, cluster-to-cluster transfers, compute)."""
    m = ins.mnemonic
    if m in ("ld", "ldg", "bcast"):
        return "in" if ins["src"].space in _OFF_CHIP else None
    if m == "st":
        return "out" if ins["dst"].space in _OFF_CHIP else None
    return None


def build_step_report(step: int, name: str, variant: str, result: Any, program: Any,
                      op_kinds: dict[int, str], op_layers: dict[int, str],
                      op_names: dict[int, str] | None = None) -> StepReport:
    """Attribute ``result.records`` to layers, kinds and ops through ``program.debug``."""
    layers: dict[str, Bucket] = {}
    kinds: dict[str, Bucket] = {}
    ops: dict[int, tuple[str, str, Bucket]] = {}
    for rec in result.records:
        loc = program.debug.get(rec.index)
        op_id = loc.op_id if loc is not None else -1
        kind = op_kinds.get(op_id, "control") if op_id >= 0 else "control"
        layer = (loc.layer if loc is not None and loc.layer else op_layers.get(op_id, "")) or \
            ("(control)" if kind == "control" else "(unnamed)")
        port = port_direction(program.instructions[rec.index]) if rec.bytes else None
        kinds.setdefault(kind, Bucket()).add(rec, port)
        layers.setdefault(layer, Bucket()).add(rec, port)
        if op_id >= 0:
            ops.setdefault(op_id, (kind, layer, Bucket()))[2].add(rec, port)
    by_op = {str(i): {"op": (op_names or {}).get(i, ""), "kind": kind, "layer": layer,
                      **b.as_dict()} for i, (kind, layer, b) in sorted(ops.items())}
    rep = result.report
    return StepReport(
        step=step, program=name, variant=variant, target=rep.target,
        total_cycles=int(rep.total_cycles), seconds=float(rep.time_s),
        energy_j=float(rep.energy_total_j),
        by_layer={k: b.as_dict() for k, b in sorted(layers.items())},
        by_kind={k: kinds[k].as_dict() for k in KINDS if k in kinds}, by_op=by_op,
        effectual_macs=int(rep.macs_effectual_count), issued_macs=int(rep.macs_issued_count),
        emulator=rep)


class Profile:
    """Reports of the steps run inside :func:`profile`."""

    def __init__(self) -> None:
        self.reports: list[StepReport] = []

    def to_json(self) -> str:
        return json.dumps({"steps": [r.as_dict() for r in self.reports]}, sort_keys=True,
                          indent=2) + "\n"

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


_ACTIVE: list[Profile] = []


def record(report: StepReport) -> None:
    """Hand a finished step's report to every active profile."""
    for prof in _ACTIVE:
        prof.reports.append(report)


@contextlib.contextmanager
def profile(path: str | Path | None = None) -> Iterator[Profile]:
    """Collect the :class:`StepReport` of every step run in the block; write ``path`` (JSON)
    at exit when given."""
    prof = Profile()
    _ACTIVE.append(prof)
    try:
        yield prof
    finally:
        _ACTIVE.remove(prof)
        if path is not None:
            prof.write(path)
