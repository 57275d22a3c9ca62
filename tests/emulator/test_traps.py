"""Traps: races, token deadlock, out-of-bounds, bad format headers, capacity, routing."""

from __future__ import annotations

import numpy as np
import pytest
from acf.emulator import EmulatorTrap, run
from acf.emulator.emulator import Emulator
from acf.isa.asm import assemble
from acf.isa.target import load_target


def trap_of(src: str, target="acf-small", inputs=None, mode="batched") -> EmulatorTrap:
    with pytest.raises(EmulatorTrap) as info:
        run(assemble(".target acf-small\n" + src), target, inputs, mode=mode)
    return info.value


@pytest.mark.parametrize("mode", ["batched", "stepped"])
def test_missing_token_is_a_race_naming_both_instructions(mode) -> None:
    t = trap_of("""
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4
    top:
        mm c0, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4
        halt
    """, mode=mode)
    assert t.kind == "race"
    text = str(t)
    assert "c0.ld #0 ld" in text and "c0.mac #1 mm (label top)" in text
    assert (t.index, t.mnemonic, t.unit, t.cluster) == (1, "mm", "mac", 0)
    assert t.other.index == 0


@pytest.mark.parametrize("where", ["cluster", "dram"])
def test_race_with_a_queue_idle_past_a_history_pruning(where) -> None:
    """The detector prunes history every active queue's clock has passed; a queue that has
    started nothing yet (its clock knows none of it) must still see those entries: a long
    loop on the load queue (thousands of accesses, several prunings) before the unordered
    reader starts used to hide the race."""
    if where == "cluster":
        src = """
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4
        loop 2100, e
        ld c0, sp[0x8000], dram[0x1000], dense, rows=1, cols=1
    e:
        vop c0, copy, sp[0x100], sp[0x0], rows=4, cols=4
        halt
        """
        first, second = "c0.ld #0 ld", "c0.vec #3 vop"
    else:
        src = """
        st c0, dram[0x0], sp[0x100], dense, rows=4, cols=4
        loop 2100, e
        st c0, dram[0x8000], sp[0x100], dense, rows=1, cols=1
    e:
        ld c1, sp[0x0], dram[0x0], dense, rows=4, cols=4
        halt
        """
        first, second = "c0.st #0 st", "c1.ld #3 ld"
    t = trap_of(src)
    assert t.kind == "race" and first in str(t) and second in str(t)


@pytest.mark.parametrize(("first", "second"), [
    ("st c0, dram[0x1000], sp[0x400], dense, rows=16, cols=16", "c0.st #0 st"),
    ("ld c0, sp[0x0], dram[0x1000], dense, rows=16, cols=16", "c0.ld #0 ld"),
    ("dma.st dram[0x1000], gb[0x0], rows=16, rowbytes=64", "dma #0 dma.st"),
])
def test_clusters_racing_on_dram_are_caught(first, second) -> None:
    """DRAM (and the global buffer) is one memory for every cluster: an unordered write by
    another cluster or the DMA engine to the same bytes is a race (it was checked only
    within a cluster)."""
    t = trap_of(f"""
        {first}
        st c1, dram[0x1000], sp[0x400], dense, rows=16, cols=16
        halt
    """)
    assert t.kind == "race" and second in str(t) and "c1.st #1 st" in str(t)


def test_clusters_racing_on_the_global_buffer_are_caught() -> None:
    t = trap_of("""
        dma.ld gb[0x100], dram[0x1000], rows=4, rowbytes=64
        ld c3, sp[0x0], gb[0x100], dense, rows=4, cols=16
        halt
    """)
    assert t.kind == "race" and "dma #0 dma.ld" in str(t) and "c3.ld #1 ld" in str(t)


def test_an_instruction_on_a_missing_cluster_traps_before_it_runs() -> None:
    t = trap_of("""
        ld c9, sp[0x0], dram[0x0], dense, rows=4, cols=4
        halt
    """)
    assert (t.kind, t.cycle, t.index, t.unit, t.cluster) == ("out-of-bounds", 0, 0, "ld", 9)
    assert "cluster c9 does not exist (4 clusters)" in str(t)


@pytest.mark.parametrize(("tensor", "message"), [
    (".tensor X dram 0xFFFFFFFFFF f32[4,4]", "'X' at dram[0xffffffffff] does not fit acf-small: "
                                            "out-of-bounds DRAM access"),
    (".tensor X sp 0x0 f32[4,4] c9", "'X' at sp[0x0] c9 does not fit acf-small: cluster c9 "
                                     "does not exist"),
])
def test_a_tensor_outside_the_targets_memories_is_refused(tensor, message) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(assemble(f".target acf-small\n{tensor}\nhalt\n"), "acf-small")


def test_token_orders_the_same_accesses() -> None:
    res = run(assemble(""".target acf-small
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4 sig(t1)
        mm c0, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t1)
        halt
    """), "acf-small")
    assert len(res.records) == 2


def test_disjoint_strided_blocks_do_not_race() -> None:
    """Two unordered stores interleave by rows into one 4 x 8 DRAM matrix: c0's rows land at
    bytes 32 r .. 32 r + 15 (columns 0-3 of row r, row pitch 8 elements), c1's at
    0x10 + 32 r .. (columns 4-7). No byte is written twice, so no race, and Y holds c0's
    block left of c1's."""
    a = np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    b = -np.arange(1, 17, dtype=np.float32).reshape(4, 4)
    res = run(assemble(""".target acf-small
        .tensor A acc 0x0 f32[4,4] c0
        .tensor B acc 0x0 f32[4,4] c1
        .tensor Y dram 0x0 f32[4,8]
        st c0, dram[0x0], acc[0x0], dense, rows=4, cols=4, stride=8
        st c1, dram[0x10], acc[0x0], dense, rows=4, cols=4, stride=8
        halt
    """), "acf-small", {"A": a, "B": b})
    want = np.zeros((4, 8), np.float32)
    want[:, :4], want[:, 4:] = a, b
    np.testing.assert_array_equal(res.outputs["Y"], want)
    assert [(r.mnemonic, r.cluster, r.bytes) for r in res.records] == [("st", 0, 64),
                                                                      ("st", 1, 64)]


def test_a_senders_reads_may_overlap_its_own_multicast_but_a_receivers_may_not() -> None:
    """``bcast`` from a cluster's scratchpad to the same address leaves the sender's copy
    unwritten (it is the source), so the sender's ``mm`` reading it while the multicast is
    under way is no race; a receiver reading it without waiting for the multicast is. The
    receiver's data arrives; to another address the sender's copy is written (64 more
    scratchpad bytes written)."""
    prog = """.tensor X dram 0x0 f32[4,4]
        .tensor Y dram 0x100 f32[4,4]
        noc.mcast 1, 0, 0, 1, 0 sig(t128)
        ld c0, sp[0x0], dram[X], dense, rows=4, cols=4 sig(t1, t2)
        bcast c0, 1, sp[{dst}], sp[0x0], 64 wait(t1, t128) sig(t129)
        mm c0, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t2)
        mm c1, acc[0x0], sp[{dst}], sp[{dst}], m=4, n=4, k=4 {wait} sig(t3)
        st c1, dram[Y], acc[0x0], dense, rows=4, cols=4 wait(t3)
        halt
    """
    x = np.arange(16, dtype=np.float32).reshape(4, 4)

    def go(dst: str):
        return run(assemble(".target acf-small\n" + prog.format(dst=dst, wait="wait(t129)")),
                   "acf-small", {"X": x})

    res = go("0x0")
    recs = {(r.mnemonic, r.cluster): r for r in res.records}
    assert recs[("mm", 0)].start < recs[("bcast", 0)].end  # overlapped, and legal
    assert recs[("mm", 1)].start >= recs[("bcast", 0)].end
    np.testing.assert_array_equal(res.outputs["Y"], x @ x)
    written = res.report.energy_events_count["spad_write_byte"]
    assert go("0x100").report.energy_events_count["spad_write_byte"] == written + 64
    t = trap_of(prog.format(dst="0x0", wait=""))
    assert t.kind == "race"
    assert {(t.mnemonic, t.cluster), (t.other.mnemonic, t.other.cluster)} == {("bcast", 0), ("mm", 1)}


def test_token_deadlock_names_blocked_heads() -> None:
    t = trap_of("""
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4 wait(t128) sig(t129)
        mm c1, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t129) sig(t128)
        halt
    """)
    assert t.kind == "deadlock"
    assert "c0.ld #0 ld waits for token t128" in str(t) and "c1.mac #1 mm waits for token t129" in str(t)


def test_a_local_token_does_not_cross_clusters() -> None:
    """t1..t127 are per cluster: c0's signal of t1 is not c1's t1 (so c1 waits forever),
    while the same wait on c0 is released."""
    t = trap_of("""
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4 sig(t1)
        mm c1, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t1)
        halt
    """)
    assert t.kind == "deadlock" and "c1.mac #1 mm waits for token c1.t1" in str(t)
    assert "c0." not in str(t).split("progress;")[1]
    r = run(assemble(""".target acf-small
        ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4 sig(t1)
        ld c1, sp[0x0], dram[0x0], dense, rows=4, cols=4 sig(t1)
        mm c0, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t1)
        mm c1, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t1)
        halt
    """), "acf-small", {})
    ld = {r.cluster: r for r in r.records if r.unit == "ld"}
    for rec in r.records:
        if rec.unit == "mac":  # each mm waits for its own cluster's load, not the first one
            assert rec.start >= ld[rec.cluster].end


def test_recv_without_send_deadlocks() -> None:
    t = trap_of("    recv c1, c0\n    halt\n")
    assert "waits for a send from c0" in str(t)


def test_out_of_bounds_message() -> None:
    t = trap_of("    setar ar1, 0x100\nx:\n    vop c3, add, sp[0xffc0+ar1], sp[0x0], sp[0x0], rows=1, cols=4\n    halt\n")
    assert str(t) == ("trap at cycle 2: c3.vec #1 vop (label x): out-of-bounds scratchpad access "
                      "0x100c0+0x10 > 0x10000")
    assert t.cycle == 2 and t.kind == "out-of-bounds"


def test_bad_format_header() -> None:
    x = np.eye(8, dtype=np.float32)
    t = trap_of(".tensor X dram 0x0 f32[8,8] csr\n"
                "    ld c0, sp[0x0], dram[X], coo, rows=8, cols=8\n    halt\n", inputs={"X": x})
    assert t.kind == "bad format header" and "bad format header at dram[0x0]" in str(t)
    t = trap_of(".tensor X dram 0x0 f32[8,8] csr\n"
                "    ld c0, sp[0x0], dram[X], csr, rows=4, cols=16\n    halt\n", inputs={"X": x})
    assert t.kind == "bad format header"
    t = trap_of("    dec c0, sp[0x100], sp[0x0], csr, rows=4, cols=4\n    halt\n")
    assert t.kind == "bad format header"


def test_capacity_overflow() -> None:
    t = trap_of(".tensor X sp 0x0 f32[8,8] c0\n"
                "    st c0, dram[0x0], sp[0x0], csr, rows=8, cols=8, cap=64\n    halt\n",
                inputs={"X": np.ones((8, 8), np.float32)})
    assert t.kind == "capacity overflow" and "exceeds cap 64" in str(t)
    t = trap_of(".tensor X sp 0x0 f32[8,8] c0\n"
                "    enc c0, sp[0x400], sp[0x0], bitmap, rows=8, cols=8, cap=16\n    halt\n",
                inputs={"X": np.ones((8, 8), np.float32)})
    assert t.kind == "capacity overflow"


def test_routing_deadlock_and_undefined_group() -> None:
    t1 = load_target("acf-base", {"noc.virtual_channels": 1})
    t = trap_of("    noc.topo torus\n    halt\n", target=t1)
    assert t.kind == "routing" and t.mnemonic == "noc.topo" and t.cycle == 1 + 4 + 64
    assert "routing deadlock" in str(t)
    t = trap_of("    bcast c0, 3, sp[0x0], sp[0x0], 64\n    halt\n")
    assert t.kind == "routing" and "group 3 is not defined" in str(t)


def test_loops_nest_four_deep() -> None:
    deep = ("".join(f"    loop 2, e{i}\n" for i in range(5)) + "    sync c0, vec\n"
            + "".join(f"e{4 - i}:\n" for i in range(5)))
    t = trap_of(deep + "    halt\n")
    assert "nest deeper than 4" in str(t)


@pytest.mark.parametrize(("src", "kind", "message"), [
    ("vop c0, add, sp[0x0], sp[0x0], sp[0x0], rows=1, cols=4, bmode=freg, imm=inf", "operand",
     "bmode=freg reads float register imm=inf; registers are 0-15"),
    ("vop c0, add, sp[0x0], sp[0x0], sp[0x0], rows=1, cols=4, bmode=freg, imm=-3.5", "operand",
     "bmode=freg reads float register imm=-3.5"),
    ("ldg c0, sp[0x0], dram[0x0], d0=65535, d1=65535, d2=65535, s0=0, s1=0, s2=0", "out-of-bounds",
     "out-of-bounds scratchpad access"),
    ("mview c0, vr=1, d2=65535, s0=0, s1=0, s2=0\n    mview c0, vr=2, d2=1, s0=0, s1=0, s2=0\n"
     "    mm c0, acc[0x0], sp[0x0], sp[0x0], m=65535, n=1, k=65535, va=1, vb=2", "out-of-bounds",
     "out-of-bounds accumulator access"),
], ids=["freg-inf", "freg-fraction", "ldg-huge", "mm-huge-view"])
def test_operands_the_machine_cannot_have_trap_before_they_are_built(src, kind, message) -> None:
    """A float register named by a non-integer, and operands far beyond the memories (a
    stride-0 gather or view of 65535^2 elements), trap at the instruction instead of a
    Python error (or building a 16 GiB array first)."""
    t = trap_of(src + "\n    halt\n")
    assert t.kind == kind and message in str(t)


def test_edge_values_are_defined_results() -> None:
    """Adam with beta2 above 1 (a negative bias correction) gives NaN as fp32 would, and a
    strided dma.ld of no rows moves nothing; neither is a Python error."""
    prog = assemble(""".target acf-small
    .tensor W sp 0x0 f32[4] c0
    .tensor G gb 0x100 f32[4]
    fset c0, fr0, 0.1
    fset c0, fr1, 0.9
    fset c0, fr2, 1.5
    fset c0, fr5, 0.1
    fset c0, fr6, -0.5
    adam c0, sp[0x0], sp[0x100], sp[0x200], sp[0x300], n=4, fr=fr0
    dma.ld gb[0x100], dram[0x100], rows=0, rowbytes=5, stride=17
    halt
    """)
    res = run(prog, "acf-small", {"W": np.ones(4, np.float32), "G": np.full(4, 7, np.float32)})
    assert np.isnan(res.outputs["W"]).all()
    assert (res.outputs["G"] == 7).all()  # the empty dma.ld wrote nothing


def test_loops_that_do_not_nest_are_refused() -> None:
    """An inner loop whose body runs past its outer loop's end: the assembler refuses it at
    its line, and a program built without the assembler traps at the dispatcher (the outer
    back-edge was silently never taken)."""
    from acf.isa.asm import AsmError
    from acf.isa.program import Program, make

    src = """.target acf-small
    loop 2, e
    sync c0, vec
    loop 2, f
    sync c0, mac
e:
    sync c0, ld
f:
    halt
"""
    with pytest.raises(AsmError, match=r"p.s:4:5: error: this loop's body ends after the body of "
                                       r"the loop it is in \(instruction 0, ending at 4\)"):
        assemble(src, "p.s")
    prog = Program([make("loop", count=2, end=3), make("sync", cl=0, unit="vec"),
                    make("loop", count=2, end=2), make("sync", cl=0, unit="mac"),
                    make("sync", cl=0, unit="ld"), make("halt")], target="acf-small")
    with pytest.raises(EmulatorTrap) as info:
        run(prog, "acf-small", {})
    assert info.value.kind == "loop" and "loops must nest" in str(info.value)


@pytest.mark.parametrize(("value", "message"), [
    (np.ones((4, 4), complex), "input 'A': complex128 values; the fabric holds fp32 numbers"),
    (np.full((4, 4), 1e300), "input 'A': 1e+300 is beyond the fp32 range"),
    (np.array([["a"] * 4] * 4), "input 'A': <U1 values"),
])
def test_inputs_fp32_cannot_hold_are_refused(value, message) -> None:
    """Complex, text and out-of-range values were cast with only a numpy warning (the
    imaginary part dropped, 1e300 turned into inf)."""
    prog = assemble(".target acf-small\n.tensor A dram 0x0 f32[4,4]\nhalt\n")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("+", r"\+")):
        run(prog, "acf-small", {"A": value})
    out = run(prog, "acf-small", {"A": np.full((4, 4), 3.0, np.float64)}).outputs["A"]
    assert out.dtype == np.float32 and (out == 3).all()


def _archived(emu: Emulator) -> int:
    return sum(len(lists[0]) for buckets in emu.engine.races.archive.values()
               for per_q in buckets.values() for lists in per_q.values())


LOOP = """
    loop {n}, e
        vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=1, bmode=imm, imm=3.0
e:
"""


def test_the_race_archive_stays_small_over_a_long_loop() -> None:
    """While some queue never starts, pruned accesses are archived for it; a loop repeating
    one access keeps only its latest instance there (12,000 iterations archived about
    20,000 entries before), and an access of a queue that starts after the loop still races
    with the loop's."""
    emu = Emulator(assemble(".target acf-small\n" + LOOP.format(n=12000) + "    halt\n"),
                   load_target("acf-small"))
    emu.run()
    assert 0 < _archived(emu) <= 4
    t = trap_of(LOOP.format(n=6000) + "    ld c0, sp[0x200], dram[0x0], dense, rows=1, cols=1\n"
                "    halt\n")
    assert t.kind == "race" and "c0.vec #1 vop and c0.ld #2 ld" in str(t)
