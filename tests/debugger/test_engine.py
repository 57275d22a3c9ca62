"""The debugger engine from Python: hits cross-checked against the emulator's records,
checkpoints and replay against straight runs, ``why`` on a crafted stall."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf.debugger.engine import Debugger
from acf.debugger.machine import Machine
from acf.debugger.points import PointError
from acf.debugger.why import why
from acf.emulator import run
from acf.isa.asm import assemble

SESSIONS = Path(__file__).parent / "sessions"
EMU_PROGRAMS = Path(__file__).parents[1] / "emulator" / "programs"


def _program(path: Path):
    return assemble(path.read_text(), str(path))


@pytest.fixture(scope="module")
def pipeline():
    prog = _program(SESSIONS / "pipeline.s")
    with np.load(SESSIONS / "pipeline.npz") as npz:
        inputs = {k: npz[k] for k in npz.files}
    return prog, inputs, run(prog, "acf-small", inputs)


def test_breakpoint_at_label_on_unit_stops_at_each_start(pipeline) -> None:
    prog, inputs, ref = pipeline
    dbg = Debugger(prog, "acf-small", inputs)
    bp = dbg.add_breakpoint("body c0.vec")
    assert bp.value == prog.labels["body"] + 1
    starts = [r.start for r in ref.records if r.index == bp.value]
    for cycle in starts:
        stop = dbg.cont()
        assert (stop.reason, stop.cycle, stop.hits[0].event.queue) == (
            "breakpoint",
            cycle,
            "c0.vec",
        )
    assert dbg.cont().reason == "end"


def test_write_watchpoint_fires_on_the_writer_at_its_end_cycle(pipeline) -> None:
    prog, inputs, ref = pipeline
    dbg = Debugger(prog, "acf-small", inputs)
    dbg.add_watchpoint("dram[0x1080:0x1100]")  # row 1 of Y
    stop = dbg.cont()
    stores = [r for r in ref.records if r.mnemonic == "st" and r.cluster == 0]
    assert stop.reason == "watchpoint"
    assert (stop.hits[0].event.index, stop.cycle) == (stores[1].index, stores[1].end)
    np.testing.assert_array_equal(dbg.tensor("Y")[1], ref.outputs["Y"][1])


def test_nan_watchpoint_and_unknown_points(pipeline) -> None:
    prog, inputs, _ = pipeline
    dbg = Debugger(prog, "acf-small", inputs)
    dbg.add_watchpoint("Z", kind="nan")
    stop = dbg.cont()
    assert stop.reason == "watchpoint" and np.isnan(dbg.tensor("Z")[0, 0])
    with pytest.raises(PointError, match="no label 'missing'"):
        dbg.add_breakpoint("missing")


def test_reverse_continue_state_equals_forward_run(pipeline) -> None:
    prog, inputs, _ = pipeline
    fwd = Debugger(prog, "acf-small", inputs, checkpoint_every=5)
    fwd.add_breakpoint("body c0.vec")
    fwd.cont()
    fwd.cont()
    second = (fwd.m.pos, fwd.m.digest())
    fwd.cont()
    fwd.cont()
    stop = fwd.reverse_cont()
    stop = fwd.reverse_cont()
    assert (stop.pos, fwd.m.digest()) == second
    fresh = Debugger(prog, "acf-small", inputs, checkpoint_every=10**9)
    fresh.add_breakpoint("body c0.vec")
    fresh.cont()
    fresh.cont()
    assert (fresh.m.pos, fresh.m.digest()) == second


@pytest.mark.parametrize("name", sorted(p.name for p in EMU_PROGRAMS.glob("*.s")))
def test_checkpoint_replay_matches_a_straight_run(name: str) -> None:
    prog = _program(EMU_PROGRAMS / name)
    rng = np.random.default_rng(0)
    inputs = {n: rng.standard_normal(s.shape).astype(np.float32) for n, s in prog.symbols.items()}
    ref = run(prog, "acf-small", inputs)
    m = Machine(prog, "acf-small", inputs, checkpoint_every=7)
    while m.advance() is not None:
        pass
    assert m.trap is None
    assert [(r.index, r.start, r.end) for r in m.engine.records] == [
        (r.index, r.start, r.end) for r in ref.records
    ]
    end, end_digest = m.pos, m.digest()
    m.goto(end // 2)
    mid = m.digest()
    m.goto(end)
    assert m.digest() == end_digest
    straight = Machine(prog, "acf-small", inputs, checkpoint_every=10**9)
    for _ in range(end // 2):
        straight.advance()
    assert straight.digest() == mid


def test_why_names_the_token_producer_and_the_critical_path() -> None:
    prog = _program(SESSIONS / "stall.s")
    dbg = Debugger(prog, "acf-small")
    dbg.run_to_cycle(100)
    lines = why(dbg.m, "c0.mac")
    assert "waits for token t128" in lines[0] and "signalled by c1.noc #2 sync" in lines[0]
    assert lines[-1].startswith("  <- c1.ld is busy: c1.ld #0 ld")


def test_conditions_and_cycle_breakpoints(pipeline) -> None:
    prog, inputs, ref = pipeline
    dbg = Debugger(prog, "acf-small", inputs)
    dbg.add_breakpoint("if t2 > 0")
    stop = dbg.cont()
    vop = next(r for r in ref.records if r.mnemonic == "vop")
    assert stop.reason == "breakpoint" and stop.cycle == vop.end and dbg.evaluate("t2") == 1
    dbg.delete()
    dbg.add_breakpoint("cycle 150")
    stop = dbg.cont()
    assert stop.cycle < 150 <= dbg.m.next_cycle()
