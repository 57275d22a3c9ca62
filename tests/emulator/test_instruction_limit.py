"""A run stops at a limit on the instructions it executes (hardware loops nest, so a few
lines can ask for 2^96 iterations), with a trap naming the instruction, unit and cycle;
runs that end within it are unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from acf.emulator import Emulator, EmulatorTrap, run
from acf.isa.asm import assemble
from acf.isa.target import load_target

QUEUED = """.target acf-small
    loop 16777215, outer_end
    loop 16777215, inner_end
    vop c0, relu, sp[0x0], sp[0x0], rows=1, cols=1
inner_end:
    addar ar1, 0
outer_end:
    halt
"""

# only the dispatcher's own instructions: no unit ever runs, nothing is recorded
DISPATCHER_ONLY = """.target acf-small
    loop 16777215, e1
    loop 16777215, e2
    addar ar1, 1
e2:
    addar ar2, 0
e1:
    halt
"""


@pytest.mark.parametrize("mode", ["batched", "stepped"])
def test_a_runaway_loop_traps_at_the_limit(mode: str) -> None:
    with pytest.raises(EmulatorTrap) as info:
        run(assemble(QUEUED), "acf-small", mode=mode, max_instructions=1000)
    trap = info.value
    assert trap.kind == "limit" and (trap.index, trap.mnemonic, trap.unit, trap.cluster) == (2, "vop", "vec", 0)
    assert "instruction limit of 1000 reached" in str(trap)
    assert str(trap).startswith(f"trap at cycle {trap.cycle}: c0.vec #2 vop: ") and trap.cycle > 0


def test_a_loop_of_dispatcher_instructions_traps_too() -> None:
    with pytest.raises(EmulatorTrap) as info:
        run(assemble(DISPATCHER_ONLY), "acf-small", max_instructions=100_000)
    assert info.value.kind == "limit" and info.value.mnemonic == "addar"
    assert "ctl #" in str(info.value) and "instruction limit of 100000 reached" in str(info.value)


def test_the_limit_is_exact_and_a_halt_is_not_counted() -> None:
    """Five instructions and a halt run under a limit of five, not four."""
    prog = assemble(open_example("relu_encode.s"))
    assert len(prog.instructions) == 6 and prog.instructions[-1].mnemonic == "halt"
    x = np.arange(256, dtype=np.float32).reshape(16, 16) - 100
    full = run(prog, "acf-small", {"X": x})
    capped = run(prog, "acf-small", {"X": x}, max_instructions=5)
    assert capped.report.to_json() == full.report.to_json()
    assert all(np.array_equal(capped.outputs[k], full.outputs[k]) for k in full.outputs)
    with pytest.raises(EmulatorTrap, match="instruction limit of 4 reached") as info:
        run(prog, "acf-small", {"X": x}, max_instructions=4)
    assert info.value.mnemonic == "st"


def test_bad_limits_are_refused() -> None:
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="max_instructions must be a positive integer"):
            Emulator(assemble("halt\n"), "acf-small", max_instructions=bad)


def test_memories_larger_than_the_host_can_map_are_backed_lazily() -> None:
    """The largest sizes a target may declare are backed by what the host grants (a size
    past 2^63 bytes used to fail with an OverflowError while allocating)."""
    big = str(1 << 48)
    t = load_target("acf-small", {"cluster.spad_bytes": big, "cluster.acc_bytes": big,
                                  "gbuf.bytes": big, "dram.size_bytes": big})
    x = np.eye(16, dtype=np.float32) - 0.5
    res = run(assemble(open_example("relu_encode.s")), t, {"X": x})
    small = run(assemble(open_example("relu_encode.s")), "acf-small", {"X": x})
    np.testing.assert_array_equal(res.outputs["H"], np.maximum(x, 0))
    assert res.report.total_cycles == small.report.total_cycles  # sizes do not change timing


def test_state_backs_a_size_past_what_a_mapping_can_be_asked_for() -> None:
    from acf.emulator.state import _zeros

    buf = _zeros(99999999999999999999)
    assert 1 << 30 <= buf.size < 99999999999999999999


def open_example(name: str) -> str:
    from pathlib import Path

    return (Path(__file__).resolve().parents[2] / "examples" / name).read_text()
