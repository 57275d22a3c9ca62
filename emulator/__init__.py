"""acf.emulator: functional semantics + cycle-accurate timing + energy of ACF programs.

Public API::

    from acf.emulator import run, Emulator
    res = run(program, load_target("acf-small"), inputs={"X": x})   # batched (default)
    res.outputs["Y"], res.report.total_cycles, res.records[0].end
    emu = Emulator(program, target, inputs)                           # instruction-stepped
    while (rec := emu.step()) is not None: ...
    res = emu.result()

Both modes run the same event-driven engine, so results and cycles are identical; the
stepped one returns after every retired instruction. Program errors raise
:class:`EmulatorTrap`.
"""

from __future__ import annotations

from acf.emulator.emulator import Emulator, Result, run
from acf.emulator.engine import Record
from acf.emulator.report import Report
from acf.emulator.traps import EmulatorTrap

__all__ = ["Emulator", "EmulatorTrap", "Record", "Report", "Result", "run"]
