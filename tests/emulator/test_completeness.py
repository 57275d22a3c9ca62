"""Every ISA row has semantics, a timing class the engine implements, and energy events
that exist in every target's energy table."""

from __future__ import annotations

import pytest
from acf.emulator.energy import COMPONENT, events_of_row
from acf.emulator.engine import TIMING_CLASSES
from acf.isa.semantics import SEMANTICS
from acf.isa.spec import OPS
from acf.isa.target import available_targets, load_target


def test_every_row_has_semantics_and_timing() -> None:
    assert {op.mnemonic for op in OPS} <= set(SEMANTICS)
    assert {op.timing for op in OPS} <= TIMING_CLASSES


@pytest.mark.parametrize("name", available_targets())
def test_every_energy_event_exists_in_the_target(name: str) -> None:
    t = load_target(name)
    table = t.energy.as_dict()
    for op in OPS:
        for ev in events_of_row(op, t):
            assert ev in table, (op.mnemonic, ev)
            assert ev in COMPONENT, (op.mnemonic, ev)


def test_stepped_emulator_exposes_the_machine(small) -> None:
    from acf.emulator import Emulator

    from tests.emulator.conftest import program, random_inputs

    prog = program("gemm_sddmm.s")
    emu = Emulator(prog, small, random_inputs(prog))
    assert emu.queues  # dispatched before the first step
    first = emu.step()
    assert first is not None and first.end >= first.start >= first.dispatch + 1
    while emu.step() is not None:
        pass
    assert emu.result().report.instructions_count == 7
