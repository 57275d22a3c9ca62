"""Chrome/Perfetto traces: fields, per-track order, flows, durations, bounded streaming."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from acf.debugger.trace import TraceWriter, write_trace
from acf.emulator import Emulator, run
from acf.isa.asm import assemble
from acf.isa.target import load_target

EMU_PROGRAMS = Path(__file__).parents[1] / "emulator" / "programs"


def _case(name: str):
    prog = assemble((EMU_PROGRAMS / name).read_text(), name)
    rng = np.random.default_rng(1)
    inputs = {n: rng.standard_normal(s.shape).astype(np.float32) for n, s in prog.symbols.items()}
    return prog, inputs


@pytest.mark.parametrize("name", ["noc.s", "loop.s", "gemm_sddmm.s"])
def test_trace_fields_order_flows_and_durations(tmp_path: Path, name: str) -> None:
    prog, inputs = _case(name)
    target = load_target("acf-small")
    path = tmp_path / "t.json"
    res = write_trace(Emulator(prog, target, inputs), prog, target, str(path), flush_every=16)
    doc = json.loads(path.read_text())
    assert "1 simulated cycle = 1 ns" in doc["metadata"]["time_convention"]
    events = doc["traceEvents"]
    slices = [e for e in events if e["ph"] == "X"]
    assert len(slices) == len(res.records)
    for e, r in zip(slices, res.records):
        assert {"name", "pid", "tid", "ts", "dur", "args"} <= e.keys()
        assert {"pc", "mnemonic", "operands", "source", "energy_pj"} <= e["args"].keys()
        assert (e["args"]["pc"], e["args"]["mnemonic"]) == (r.index, r.mnemonic)
        assert round(e["dur"] * 1000) == r.end - r.start and round(e["ts"] * 1000) == r.start
    last: dict = defaultdict(lambda: -1.0)
    for e in events:
        if e["ph"] in ("X", "C"):
            key = (e["pid"], e.get("tid"), e["name"] if e["ph"] == "C" else "X")
            assert e["ts"] >= last[key], e
            last[key] = e["ts"]
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts and starts.keys() == ends.keys()
    for fid, s in starts.items():
        assert s["ts"] <= ends[fid]["ts"] and ends[fid]["bp"] == "e"
    names = {e["name"] for e in events if e["ph"] == "C"}
    assert any(n.startswith("queue depth") for n in names) and any(
        n.startswith("power") for n in names
    )
    if name == "noc.s":
        assert any(n.startswith("link ") for n in names)


def test_trace_from_a_result_matches_the_stepped_one(tmp_path: Path) -> None:
    prog, inputs = _case("vector.s")
    target = load_target("acf-small")
    write_trace(run(prog, target, inputs), prog, target, str(tmp_path / "a.json"))
    doc = json.loads((tmp_path / "a.json").read_text())
    assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == len(prog.instructions) - 1


def test_long_trace_streams_with_a_bounded_buffer(tmp_path: Path) -> None:
    prog = assemble(
        ".target acf-small\n    loop 400, end\n"
        "        vop c0, add, sp[0x0], sp[0x0], rows=1, cols=8, bmode=imm, imm=1.0 sig(t128)\n"
        "        vop c1, add, sp[0x0], sp[0x0], rows=1, cols=8, bmode=imm, imm=1.0 wait(t128)\n"
        "end:\n    halt\n"
    )
    target = load_target("acf-small")
    path = tmp_path / "long.json"
    emu = Emulator(prog, target)
    sizes = []
    with TraceWriter(str(path), prog, target, flush_every=32) as w:
        while (rec := emu.step()) is not None:
            w.add(rec)
            w.sample(emu)
            sizes.append(os.path.getsize(path))
    assert w.max_buffered <= 32
    assert w.events_written > 20 * 32
    assert len(set(sizes)) > 20  # the file grew while the program ran
    doc = json.loads(path.read_text())
    assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == 800
