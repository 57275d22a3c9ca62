"""Traps: a program error stops the emulator with the instruction, unit, cluster and cycle."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Where:
    """One instruction instance, as traps and race reports name it."""

    index: int
    mnemonic: str
    unit: str
    cluster: int
    label: str = ""

    def __str__(self) -> str:
        unit = self.unit if self.unit in ("dma", "cfg", "ctl") else f"c{self.cluster}.{self.unit}"
        text = f"{unit} #{self.index} {self.mnemonic}"
        return text + (f" (label {self.label})" if self.label else "")


class EmulatorTrap(Exception):
    """A trap: ``str()`` reads ``trap at cycle 1234: c0.mac #17 mm (label top+3): message``."""

    def __init__(self, message: str, cycle: int, where: Where | None = None, kind: str = "trap",
                 address: str = "", other: Where | None = None, blocked: tuple[Where, ...] = ()):
        self.message = message
        #: a token deadlock's blocked queue heads (``where`` is the one dispatched first)
        self.blocked = blocked
        self.cycle = cycle
        self.where = where
        self.kind = kind
        self.address = address
        self.other = other
        self.index = where.index if where else -1
        self.mnemonic = where.mnemonic if where else ""
        self.unit = where.unit if where else ""
        self.cluster = where.cluster if where else -1
        self.label = where.label if where else ""
        head = f"trap at cycle {cycle}: " + (f"{where}: " if where else "")
        super().__init__(head + message)


def label_of(labels: dict[str, int], index: int) -> str:
    """``name+offset`` of the nearest label at or before an instruction index."""
    best = None
    for name, at in labels.items():
        if at <= index and (best is None or at > best[1] or (at == best[1] and name < best[0])):
            best = (name, at)
    if best is None:
        return ""
    return best[0] if best[1] == index else f"{best[0]}+{index - best[1]}"
