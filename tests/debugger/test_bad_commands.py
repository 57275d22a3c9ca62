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
