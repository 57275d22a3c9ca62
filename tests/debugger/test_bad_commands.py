"""Debugger commands that cannot be carried out: each prints one ``error: ...`` (no
internal error), and the machine is left exactly where it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf.debugger.engine import Debugger
from acf.debugger.expr import Expr, ExprError
from acf.debugger.shell import Shell
from acf.isa.asm import assemble

SESSIONS = Path(__file__).parent / "sessions"
RELU = Path(__file__).resolve().parents[2] / "examples" / "relu_encode.s"


def _shell(path: Path, inputs: dict | None = None) -> tuple[Shell, list[str]]:
    prog = assemble(path.read_text(), str(path))
    out: list[str] = []
    return Shell(Debugger(prog, "acf-small", inputs), out.append), out


@pytest.fixture
def pipeline() -> tuple[Shell, list[str]]:
    with np.load(SESSIONS / "pipeline.npz") as npz:
        inputs = {k: npz[k] for k in npz.files}
    return _shell(SESSIONS / "pipeline.s", inputs)


@pytest.mark.parametrize(("command", "error"), [
    ("watch -change c9.sp[0:4]", "error: c9.sp[0:4]: cluster c9 does not exist (4 clusters)"),
    ("watch dram[-1:4]", "error: negative address -1 in 'dram[-1:4]'"),
    ("watch dram[0xfffffffff0:0xfffffffff8]", "error: dram[0xfffffffff0:0xfffffffff8]: out-of-bounds"),
    ("x/4f c9.sp[0]", "error: c9.sp[0]: cluster c9 does not exist (4 clusters)"),
    ("x/4f dram[-8]", "error: negative address -8 in 'dram[-8]'"),
    ("x/0f dram[0]", "error: bad format /0f: the count must be at least 1"),
    ("break c99.mac", "error: no unit 'c99.mac' (e.g. c0.ld, dma, cfg)"),
    ("break cycle -1", "error: cycle -1: cycles count from 0"),
    ("break if t999 > 0", "error: no token 't999' (t1..t255) at column 1: t999 > 0"),
    ("break if c9.t1 > 0", "error: no cluster c9 for 'c9.t1' (4 clusters) at column 1: c9.t1 > 0"),
    ("break if loop7 > 0", "error: no loop level 7 (loop0..loop3) at column 1: loop7 > 0"),
    ("print X[9,0]", "error: X[9, 0] is outside f32[4, 32] at column 1: X[9,0]"),
    ("print " + "-" * 5000 + "1", "error: expression nested more than 100 deep at column 1: "),
    ("print " + "!" * 3000 + "1", "error: expression nested more than 100 deep"),
    ("step -5", "error: expected a positive count, got -5"),
    ("stepi 0", "error: expected a positive count, got 0"),
    ("reverse-step -1", "error: expected a positive count, got -1"),
    ("rsi 0", "error: expected a positive count, got 0"),
    ("next c0.vec 0", "error: expected a positive count, got 0"),
    ("disas 0 abc", "error: expected a number, got 'abc'"),
    ("disas 0 -2", "error: expected a positive count, got -2"),
    # a whole tensor is no number (it evaluated to NaN, and a condition on it never held)
    ("print X + 1", ("error: X is a tensor; index it, X[i,j] (it is f32[4, 32]; print X "
                     "shows it whole) at column 1: X + 1")),
    ("break if Z > 0", "error: Z is a tensor; index it, Z[i,j]"),
    # words a command does not take are refused, not dropped
    ("step 3 extra", "error: expected one number, got '3 extra'"),
    ("goto 5 6", "error: expected one number, got '5 6'"),
    ("until 500 6", "error: expected one number, got '500 6'"),
    ("next c0.vec 1 2", "error: expected one number, got '1 2'"),
    ("continue 5", "error: continue takes no arguments, got '5'"),
    ("reverse-continue now", "error: reverse-continue takes no arguments, got 'now'"),
    ("where x", "error: where takes no arguments, got 'x'"),
    ("delete 1 2", "error: no breakpoint or watchpoint number 1"),
    # values past what a float or an index holds are located errors, not internal ones
    ("print X[inf,0]", "error: index inf is not a whole number at column 3: X[inf,0]"),
    ("print X[1e999,0]", "error: index inf is not a whole number at column 3: X[1e999,0]"),
    ("print X[nan,0]", "error: index nan is not a whole number at column 3: X[nan,0]"),
    ("print X[0.5,0]", "error: index 0.5 is not a whole number at column 3"),
    ("break if X[inf,0] > 0", "error: index inf is not a whole number at column 3"),
    ("print isnan(" + "1" * 400 + ")", ("error: isnan: the value is too large for a float "
                                       "at column 7")),
    ("print " + "1" * 400 + " / 3", ("error: the result of '/' is too large for a float at "
                                    "column 402")),
    ("print " + "9" * 5000, "error: number too long (5000 digits) at column 1"),
    ("break if 1 + " + "1" * 400 + " / 3 > 0", "error: the result of '/' is too large"),
    ("watch -nan X Y", "error: no tensor or memory range 'X Y'"),
])
def test_a_bad_command_is_one_error_and_moves_nothing(pipeline, command: str, error: str) -> None:
    shell, out = pipeline
    shell.execute("step 5")
    before = (shell.dbg.m.pos, shell.dbg.m.digest(), len(shell.dbg.breakpoints),
              len(shell.dbg.watchpoints))
    out.clear()
    assert shell.execute(command)
    assert out[0].startswith(error), out
    assert not any(line.startswith("internal error") for line in out)
    after = (shell.dbg.m.pos, shell.dbg.m.digest(), len(shell.dbg.breakpoints),
             len(shell.dbg.watchpoints))
    assert after == before
    out.clear()
    shell.execute("continue")  # nothing left behind fails at every stop
    assert out == ["program finished at cycle 243"]


def test_a_never_written_sparse_tensor_has_no_values_yet() -> None:
    shell, out = _shell(RELU, {"X": np.eye(16, dtype=np.float32)})
    shell.execute("print H")
    assert out == [("error: tensor 'H' has no values yet: its csr tiles were never written "
                    "(no tile headers in its memory)")]
    out.clear()
    # a condition on it is false until the tiles are there, then fires
    shell.execute("break if H[0,0] > 0")
    shell.execute("continue")
    assert out[0] == "breakpoint 1: condition if H[0,0] > 0"
    assert out[1].startswith("breakpoint 1 (condition if H[0,0] > 0) reached")
    out.clear()
    shell.execute("print H[0,0]")
    assert out == ["H[0,0] = 1.0"]


def test_a_command_that_fails_half_way_is_taken_back(pipeline) -> None:
    """An error raised after the machine moved (here the per-event check of breakpoints
    and watches, made to fail at the first event) leaves it where the command started."""
    shell, out = pipeline
    shell.execute("step 3")
    before = (shell.dbg.m.pos, shell.dbg.m.digest())

    def broken(*_args):
        raise RuntimeError("boom")

    shell.dbg._event_hits = broken  # fails at the first event, after the machine moved
    shell.execute("step 4")
    assert out[-1] == "internal error: RuntimeError: boom"
    assert (shell.dbg.m.pos, shell.dbg.m.digest()) == before


def test_deep_expressions_are_refused_without_exhausting_the_stack() -> None:
    with pytest.raises(ExprError, match="nested more than 100 deep"):
        Expr("-" * 5000 + "1")
    assert Expr("-" * 99 + "1").evaluate(lambda name, idx: 0) == -1
    long = Expr("1 + " * 40 + "1")
    assert long.evaluate(lambda name, idx: 0) == 41


def test_debug_api_counts_are_positive(pipeline) -> None:
    dbg = pipeline[0].dbg
    for call in (dbg.step, dbg.stepi, dbg.reverse_step, dbg.reverse_stepi):
        with pytest.raises(ValueError, match="positive count"):
            call(0)
    assert dbg.m.pos == 0


def test_delete_takes_every_number_given(pipeline) -> None:
    shell, out = pipeline
    for command in ("break body c0.vec", "watch Y", "watch Z", "delete 1 3"):
        shell.execute(command)
    assert out[-1] == "deleted 1 3"
    assert sorted([*shell.dbg.breakpoints, *shell.dbg.watchpoints]) == [2]
    out.clear()
    shell.execute("delete 2 9")  # one wrong number: nothing is deleted
    assert out == ["error: no breakpoint or watchpoint number 9"]
    assert list(shell.dbg.watchpoints) == [2]


def test_a_failing_condition_stops_at_its_event(tmp_path: Path) -> None:
    """It rewound to where ``continue`` began and failed there again at every later one."""
    src = tmp_path / "v.s"
    src.write_text(".target acf-small\n    loop 200, e\n"
                   "        vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=32, bmode=imm, imm=3.0\n"
                   "e:\n    halt\n")
    shell, out = _shell(src)
    shell.execute("break if 1/(cycle-11) > 1")
    shell.execute("continue")
    assert out[-1] == ("breakpoint 1 (condition if 1/(cycle-11) > 1): its condition failed at "
                       "cycle 11: division by zero at column 2: 1/(cycle-11) > 1")
    assert shell.dbg.m.cycle == 11 and shell.dbg.m.pos > 0
    for _ in range(5):
        shell.execute("continue")
        if out[-1].startswith("program finished"):
            break
    assert out[-1] == "program finished at cycle 1802"


def test_until_a_past_cycle_suggests_goto(pipeline) -> None:
    shell, out = pipeline
    shell.execute("until 100")
    out.clear()
    shell.execute("until 5")
    assert out[0].startswith("cycle 5 is in the past: the last event was at cycle ")
    assert out[0].endswith("(until only runs forward; goto 5 goes back to it)")


def test_examine_a_tensor_and_tiles_named_wrongly() -> None:
    shell, out = _shell(RELU, {"X": np.eye(16, dtype=np.float32)})
    shell.execute("x/4f X")  # the message for a bad range said a tensor name would do
    assert out == ["  dram[0x0]: 1  0  0  0"]
    out.clear()
    shell.execute("print H[tile -1,0]")
    assert out == ["error: H has a 1x1 tile grid: tile (-1,0) is not in it"]
    out.clear()
    shell.execute("print H[tile x]")
    assert out[0].startswith("error: cannot read 'H[tile x]': H[tile I,J] shows one packed tile")


def test_a_watch_on_a_tensor_without_elements_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "z.s"
    src.write_text(".target acf-small\n.tensor Z dram 0x100 f32[0,4]\n    halt\n")
    shell, out = _shell(src)
    shell.execute("watch Z")
    assert out == [("error: tensor 'Z' is f32[0, 4]: it holds no elements, so a watch on it "
                    "could never fire")]
    assert not shell.dbg.watchpoints
