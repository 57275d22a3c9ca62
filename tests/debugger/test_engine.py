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


VLOOP = """.target acf-small
    loop {n}, e
        vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=32, bmode=imm, imm=3.0
e:
    halt
"""


def test_reverse_commands_stop_at_a_checkpoint_position() -> None:
    """Position 256 is a checkpoint: the event that led to it ends the segment before it,
    and reverse commands used to skip it (a scan covered (base, end) only)."""
    prog = assemble(VLOOP.format(n=200), "vloop.s")
    dbg = Debugger(prog, "acf-small")
    assert dbg.stepi(258).pos == 258
    stop = dbg.reverse_step()
    assert (stop.pos, stop.cycle) == (256, 1154)
    dbg.goto_pos(258)
    assert [dbg.reverse_stepi().pos for _ in range(2)] == [257, 256]
    dbg.goto_pos(258)
    dbg.add_watchpoint("c0.sp[0x200:0x280]")
    stop = dbg.reverse_cont()
    assert (stop.reason, stop.pos, stop.cycle) == ("watchpoint", 256, 1154)


def test_reverse_stepping_visits_every_position_once(pipeline) -> None:
    """With a checkpoint every 7 events, stepping back one event at a time from the end
    visits each position a forward stepi visits, once, in reverse order (7, 28 and 42
    were missed)."""
    prog, inputs, _ = pipeline
    dbg = Debugger(prog, "acf-small", inputs, checkpoint_every=7)
    forward = []
    while (stop := dbg.stepi()).reason == "step":
        forward.append(stop.pos)
    end = dbg.m.pos
    backward = []
    while (stop := dbg.reverse_stepi()).reason != "beginning":
        backward.append(stop.pos)
    assert backward == [p for p in forward if p < end][::-1]
    assert {7, 28, 42} <= set(backward)


def test_a_checkpoint_costs_the_same_late_as_early() -> None:
    """Checkpoints copied every record (and the race detector's whole history) so far:
    a run's memory and time grew with the square of its length. What a checkpoint
    allocates must not grow with its position."""
    import tracemalloc

    prog = assemble(VLOOP.format(n=3000), "vloop.s")
    m = Machine(prog, "acf-small", checkpoint_every=10**9)
    cost = []
    for pos in (301, 5901):
        while m.pos < pos:
            m.advance()
        tracemalloc.start()
        try:
            m._checkpoint()
            cost.append(tracemalloc.get_traced_memory()[0])
        finally:
            tracemalloc.stop()
    assert len(m.engine.records) > 2900 and len(m.engine.races.archive) > 0
    assert cost[1] < cost[0] * 2, cost  # it was 11 times as much here


#: VLOOP on 4 x 8 tiles of 16-element rows: the race detector keeps them as tiles
VLOOP_TILES = VLOOP.replace("rows=1, cols=32", "rows=4, cols=8, pitch=16")


@pytest.mark.parametrize("text", [VLOOP, VLOOP_TILES])
def test_a_restore_rebuilds_records_and_race_history_exactly(text: str) -> None:
    """What a checkpoint keeps by length (records, ends of sends, the race detector's
    access lists) reads back as a straight run to the same position has it."""
    prog = assemble(text.format(n=2500), "vloop.s")

    def state(m: Machine) -> tuple:
        eng = m.engine
        races = eng.races
        return ([(r.index, r.start, r.end) for r in eng.records], dict(eng.send_end),
                races.history, races.archive, races.tiles, races.tile_archive, races.latest,
                m.digest())

    m = Machine(prog, "acf-small", checkpoint_every=97)
    while m.advance() is not None:
        pass
    end, at_end = m.pos, state(m)
    assert bool(m.engine.races.tiles or m.engine.races.tile_archive) == (text is VLOOP_TILES)
    for pos in (end // 2, 5, end - 3, end // 3):
        m.goto(pos)
        straight = Machine(prog, "acf-small", checkpoint_every=10**9)
        while straight.pos < pos:
            straight.advance()
        assert state(m) == state(straight), pos
    m.goto(end)
    assert state(m) == at_end


def test_going_back_to_the_start_keeps_the_data_directives() -> None:
    """A ``.data`` tensor's bytes are part of the start: a program that overwrites them,
    run back to position 0, shows them again."""
    prog = assemble(".target acf-small\n.tensor A sp 0 f32[1,4]\n.data A 1 2 3 4\n"
                    "    vop c0, mul, sp[0x0], sp[0x0], rows=1, cols=4, bmode=imm, imm=3.0\n"
                    "    halt\n", "d.s")
    dbg = Debugger(prog, "acf-small")
    dbg.cont()
    np.testing.assert_array_equal(dbg.tensor("A"), [[3, 6, 9, 12]])
    dbg.goto_pos(0)
    np.testing.assert_array_equal(dbg.tensor("A"), [[1, 2, 3, 4]])


def test_a_condition_that_fails_stops_where_it_failed() -> None:
    prog = assemble(VLOOP.format(n=200), "vloop.s")
    dbg = Debugger(prog, "acf-small")
    dbg.add_breakpoint("if 1/(cycle-11) > 1")
    stop = dbg.cont()
    assert (stop.reason, stop.cycle, stop.pos) == ("breakpoint", 11, dbg.m.pos)
    assert stop.hits[0].detail.startswith("division by zero at column 2")
    for _ in range(5):  # each event at cycle 11 stops once; then the run goes on
        stop = dbg.cont()
        if stop.reason == "end":
            break
    assert stop.reason == "end"
    dbg.add_breakpoint("if 1/cycle > 0")  # fails at cycle 0 only: still a condition to set


def test_until_a_cycle_already_past_says_so() -> None:
    prog = assemble(VLOOP.format(n=200), "vloop.s")
    dbg = Debugger(prog, "acf-small")
    dbg.run_to_cycle(500)
    pos = dbg.m.pos
    stop = dbg.run_to_cycle(5)
    assert dbg.m.pos == pos
    assert stop.message.startswith("cycle 5 is in the past: the last event was at cycle 497")
    assert "goto 5" in stop.message


def test_why_after_a_trap_says_the_run_stopped() -> None:
    prog = assemble(".target acf-small\n"
                    "    ld c0, sp[0x0], dram[0x0], dense, rows=1, cols=32\n"
                    "    vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=32, bmode=imm, imm=3.0\n"
                    "    halt\n", "race.s")
    dbg = Debugger(prog, "acf-small")
    assert dbg.cont().reason == "trap"
    for unit in ("c0.vec", "c0.ld", "c0.mac"):
        lines = why(dbg.m, unit)
        assert lines[0].startswith("the run has stopped: trap at cycle 2: c0.vec #1 vop: race")
        assert not any("can start" in line or "starts at cycle" in line for line in lines)
    assert why(dbg.m, "c0.vec")[1] == "c0.vec trapped in c0.vec #1 vop"
    assert why(dbg.m, "c0.ld")[1].startswith("when it stopped, c0.ld is busy")


@pytest.mark.parametrize(("text", "error"), [
    ("setar", "setar runs in the dispatcher, ahead of the units, and never starts or retires"),
    ("loop", "loop runs in the dispatcher"),
    ("addar", "addar runs in the dispatcher"),
    ("barrier", "barrier runs in the dispatcher"),
    ("halt", "halt runs in the dispatcher"),
    ("0", "#0 setar runs in the dispatcher"),
    ("1", "#1 loop runs in the dispatcher"),
    ("body_end", "#6 barrier (at body_end) runs in the dispatcher"),
    ("body+3", "#5 addar (at body+3) runs in the dispatcher"),
])
def test_a_breakpoint_on_a_dispatcher_instruction_is_refused(pipeline, text: str,
                                                             error: str) -> None:
    """The dispatcher runs them ahead of the event clock: a breakpoint there never fired."""
    prog, inputs, _ = pipeline
    dbg = Debugger(prog, "acf-small", inputs)
    with pytest.raises(PointError) as info:
        dbg.add_breakpoint(text)
    assert str(info.value).startswith(error)
    assert not dbg.breakpoints
    if text.isdigit():
        assert "(the next one in the program that a unit runs is #2 ld on c0.ld: break 2)" \
            in str(info.value)
