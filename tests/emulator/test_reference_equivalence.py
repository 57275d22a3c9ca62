"""The fast emulator against the per-cycle reference (tests/emulator/reference/).

Both implement docs/timing.md. On randomized micro-programs (tests/emulator/microprograms.py)
they must give the same (start, end) cycle for every executed instruction instance and the
same total. The reference itself is checked here against closed forms of the contract worked
by hand (sections 3, 4, 6, 7), so a bug common to both models has to survive two derivations.
"""

from __future__ import annotations

import math
import os
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(__file__))

import microprograms as mp
from acf.isa.asm import assemble
from acf.isa.target import load_target
from reference import RefResult, simulate

EXAMPLES = int(os.environ.get("ACF_EQUIV_EXAMPLES", "400"))


# ---- the fast model, through its public API ------------------------------------------------


def fast_run():
    """``acf.emulator.run``, the fast model's public entry point."""
    from acf.emulator import run

    return run


def _get(obj, name):
    return obj[name] if isinstance(obj, dict) else getattr(obj, name)


def fast_total(result) -> int:
    for path in (("report", "total_cycles"), ("total_cycles",), ("report", "cycles"), ("cycles",)):
        obj = result
        try:
            for p in path:
                obj = _get(obj, p)
        except (AttributeError, KeyError, TypeError):
            continue
        return int(obj)
    raise AssertionError(f"cannot find the total cycle count on {type(result).__name__}")


def timeline(records) -> dict[tuple[int, int], tuple]:
    """{(index, occurrence): (mnemonic, unit, cluster, start, end)}; occurrences count the
    instances of one instruction (hardware loops) in start order."""
    rows = sorted(((int(_get(r, "index")), int(_get(r, "start")), int(_get(r, "end")),
                    str(_get(r, "mnemonic")), str(_get(r, "unit")), int(_get(r, "cluster")))
                   for r in records), key=lambda x: (x[0], x[1], x[2]))
    out, seen = {}, {}
    for index, start, end, mn, unit, cl in rows:
        k = seen.get(index, 0)
        seen[index] = k + 1
        out[(index, k)] = (mn, unit, cl, start, end)
    return out


def compare(ref: RefResult, fast) -> list[str]:
    """Differences between the reference and a fast Result ([] when they agree)."""
    ctl = {"loop", "setar", "addar", "barrier", "halt"}
    want = timeline(ref.records)
    got = {k: v for k, v in timeline(_get(fast, "records")).items() if v[0] not in ctl}
    diffs = []
    for key in sorted(set(want) | set(got)):
        w, g = want.get(key), got.get(key)
        if w != g:
            diffs.append(f"instruction {key[0]} (instance {key[1]}): reference {w}, fast {g}")
    if fast_total(fast) != ref.total_cycles:
        diffs.append(f"total: reference {ref.total_cycles}, fast {fast_total(fast)}")
    return diffs


def check_program(m: mp.MicroProgram, run=None) -> list[str]:
    run = run or fast_run()
    prog, target = mp.load(m)
    ref = simulate(prog, target, m.inputs)
    fast = run(prog, target, inputs=m.inputs)
    return compare(ref, fast)


# ---- equivalence --------------------------------------------------------------------------

_STATS = {"n": 0, "ref_s": 0.0, "fast_s": 0.0}


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms())
def test_fast_model_matches_reference(m):
    prog, target = mp.load(m)
    t0 = time.perf_counter()
    ref = simulate(prog, target, m.inputs)
    t1 = time.perf_counter()
    fast = fast_run()(prog, target, inputs=m.inputs)
    t2 = time.perf_counter()
    _STATS["n"] += 1
    _STATS["ref_s"] += t1 - t0
    _STATS["fast_s"] += t2 - t1
    diffs = compare(ref, fast)
    assert not diffs, "\n".join([repr(m), *diffs[:20]])


@settings(max_examples=100, deadline=None, database=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms())
def test_fast_model_matches_reference_on_fresh_programs(m):
    """100 more programs, drawn afresh on every run (the 400 above are the same each run, so
    a failure there reproduces as is); a failure prints the blob that reproduces it."""
    diffs = compare(simulate(*mp.load(m), m.inputs), fast_run()(*mp.load(m), inputs=m.inputs))
    assert not diffs, "\n".join([repr(m), *diffs[:20]])


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms(max_blocks=5, blocks=["ldg", "ldg", "vec", "mm", "multiload"]))
def test_gathers_match_reference(m):
    """Gathers from DRAM, the global buffer and the scratchpad (the on-chip im2col gather,
    timed by the scratchpad banks alone) among bank- and port-contending neighbours."""
    diffs = check_program(m)
    assert not diffs, "\n".join([repr(m), *diffs[:20]])


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms(max_blocks=5, blocks=["mm_view", "mm_view", "ldg", "mm", "vec"]))
def test_operand_views_match_reference(m):
    """mm/sddmm operands read through MAC-unit view registers: strided, overlapping and
    bank-conflicting scratchpad reads overlapped with the MAC array, beside gathers."""
    diffs = check_program(m)
    assert not diffs, "\n".join([repr(m), *diffs[:20]])


# ---- the reference on its own: runs every generated program ---------------------------------


@settings(max_examples=200, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms())
def test_reference_runs_generated_programs(m):
    prog, target = mp.load(m)
    r = simulate(prog, target, m.inputs)
    queued = sum(1 for i in prog.instructions if i.op.queued)
    assert r.records or queued == 0 or "loop0" in m.blocks
    for rec in r.records:
        assert rec.end > rec.start >= 1
        assert rec.end <= r.total_cycles
    # in-order queues: one instruction at a time per queue
    byq: dict = {}
    for rec in sorted(r.records, key=lambda x: x.start):
        q = (rec.cluster if rec.unit not in ("dma", "cfg") else -1, rec.unit)
        assert rec.start >= byq.get(q, 0)
        byq[q] = rec.end


# ---- closed forms of docs/timing.md, worked independently of the stepped model ---------------


def c_ij(eff_k: np.ndarray, d: int) -> int:
    K = len(eff_k)
    return sum(max(1, int(eff_k[w:w + d].sum())) for w in range(0, K, d))


def closed_mm(A, B, skip, c, S=None) -> int:
    R, C, d, I, Fo = c.pe_rows, c.pe_cols, c.lookahead, c.issue_cycles, c.fold_cycles
    m, K = A.shape
    n = B.shape[1]
    za = (A != 0) if ("a" in skip and c.skip in ("a", "ab")) else np.ones_like(A, bool)
    zb = (B != 0) if ("b" in skip and c.skip == "ab") else np.ones_like(B, bool)
    eff = za[:, None, :] & zb.T[None, :, :]
    if S is not None:
        P = [tuple(p) for p in np.argwhere(S != 0)]
        if not P:
            return I
    if c.dataflow == "systolic":
        return I + math.ceil(m / R) * math.ceil(n / C) * (K + R + C - 2 + Fo)
    if c.dataflow == "flexible":
        E = int(eff.sum()) if S is None else int(sum(eff[i, j].sum() for i, j in P))
        return I + max(1, math.ceil(E / (R * C))) + c.reduce_cycles + Fo
    if S is None:
        folds = [[(i, j) for i in range(i0, min(m, i0 + R)) for j in range(j0, min(n, j0 + C))]
                 for i0 in range(0, m, R) for j0 in range(0, n, C)]
    else:
        folds = [P[p:p + R * C] for p in range(0, len(P), R * C)]
    return I + sum(max((c_ij(eff[i, j], d) for i, j in f), default=0) + Fo for f in folds)


def _one(text: str, target, inputs) -> RefResult:
    return simulate(assemble(".target acf-small\n" + text), target, inputs)


@pytest.mark.parametrize("variant", [v for v in mp.TARGET_VARIANTS if any(k.startswith("cluster.") for k in v)]
                         + [{}])
@settings(max_examples=25, derandomize=True, deadline=None, database=None)
@given(data=st.data())
def test_reference_mm_matches_closed_form(variant, data):
    target = load_target("acf-small", overrides=variant or None)
    m, n, k = (data.draw(st.integers(1 if i < 2 else 0, 24)) for i in range(3))
    sddmm = data.draw(st.booleans()) and k > 0
    skip = data.draw(st.sampled_from(["none", "a", "b", "ab"]))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    dens = data.draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    A = np.where(rng.random((m, k)) < dens, rng.integers(1, 3, (m, k)), 0).astype(np.float32)
    B = np.where(rng.random((k, n)) < dens, rng.integers(1, 3, (k, n)), 0).astype(np.float32)
    S = (rng.random((m, n)) < data.draw(st.sampled_from([0.0, 0.3, 1.0]))).astype(np.float32)
    text = (f".tensor A sp 0x0 f32[{m},{k}]\n.tensor B sp 0x1000 f32[{k},{n}]\n"
            f".tensor S sp 0x2000 f32[{m},{n}]\n")
    if sddmm:
        text += f"sddmm acc[0], sp[A], sp[B], sp[S], m={m}, n={n}, k={k}, skip={skip}\nhalt\n"
    else:
        text += f"mm acc[0], sp[A], sp[B], m={m}, n={n}, k={k}, skip={skip}\nhalt\n"
    r = _one(text, target, {"A": A, "B": B, "S": S})
    (rec,) = r.records
    assert rec.start == 1
    assert rec.end - rec.start == closed_mm(A, B, skip, target.cluster, S if sddmm else None)


def test_reference_mm_hand_worked():
    # 1x1 output, K=8, d=4, A row [1,0,0,0, 0,0,0,0], B all ones, skip ab:
    # windows: max(1,1) + max(1,0) = 2; cycles = I(1) + 2 + Fo(2) = 5
    t = load_target("acf-small")
    A = np.array([[1, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    B = np.ones((8, 1), np.float32)
    r = _one(".tensor A sp 0 f32[1,8]\n.tensor B sp 0x100 f32[8,1]\n"
             "mm acc[0], sp[A], sp[B], m=1, n=1, k=8\nhalt\n", t, {"A": A, "B": B})
    assert (r.records[0].start, r.records[0].end) == (1, 6)
    assert r.total_cycles == 6
    # the same without skipping: K=8 cycles -> 1 + 8 + 2
    r = _one(".tensor A sp 0 f32[1,8]\n.tensor B sp 0x100 f32[8,1]\n"
             "mm acc[0], sp[A], sp[B], m=1, n=1, k=8, skip=none\nhalt\n", t, {"A": A, "B": B})
    assert r.records[0].end == 12


def test_reference_vec_bank_conflicts():
    # acf-small: 4 banks x 8 bytes, 8 lanes, I = 1. vop add over 4x4 with pitch 16 elements
    # (64 bytes = 8 words = 2 rounds of the 4 banks): each row's 4 elements (16 bytes) touch
    # words 8r, 8r+1 -> banks 0 and 1 only. dst, a, b each: 4 rows x 2 words = 8 words, on
    # banks 0/1 -> 4 per bank per operand; 3 operands -> 12 on bank 0. compute = 2 groups.
    t = load_target("acf-small")
    r = _one("vop add, sp[0x0], sp[0x400], sp[0x800], rows=4, cols=4, pitch=16\nhalt\n", t, {})
    assert r.records[0].end - r.records[0].start == 1 + 12
    # unit pitch: 16 elements = 64 bytes = 8 words over 4 banks -> 2 each x 3 operands = 6;
    # compute 2 -> 1 + 6
    r = _one("vop add, sp[0x0], sp[0x400], sp[0x800], rows=4, cols=4\nhalt\n", t, {})
    assert r.records[0].end - r.records[0].start == 7
    # exp: work 1 + vec_special_cycles; 64 elements / 8 lanes = 8 groups
    t3 = load_target("acf-small", overrides={"cluster.vec_special_cycles": 3})
    r = _one("vop exp, sp[0x0], sp[0x400], rows=8, cols=8, bmode=imm\nhalt\n", t3, {})
    assert r.records[0].end - r.records[0].start == 1 + 8 * 4
    # sync/fset: I + 1
    r = _one("fset c1, fr1, 2.0\nsync c2, dma\nhalt\n", t, {})
    assert [x.end - x.start for x in r.records] == [2, 2]


def test_reference_dram_and_noc_load():
    # ld of a dense 8x8 tile (8 rows of 32 B at 0x1000) into c0, acf-small:
    # s = 1, s' = 2. DRAM: all 8 runs in channel (0x1000 // 256) % 2 = 0, 1 burst each ->
    # 8 x 64 B / 32 B per cycle = 16 cycles: 2..18, + latency 20 = 38. NoC from P0 at 22:
    # F = 256/32 = 8 flits, H = 1, r = 2 -> 32. bank cycles 8 -> 10. e = 38.
    t = load_target("acf-small")
    x = np.ones((8, 8), np.float32)
    r = _one(".tensor A dram 0x1000 f32[8,8]\nld c0, sp[0], dram[A], fmt=dense, rows=8, cols=8\nhalt\n",
             t, {"A": x})
    assert (r.records[0].start, r.records[0].end) == (1, 38)
    # into c3 = (1,1): memory port P1, route P1 -> (0,1) -> (1,1), H = 2: NoC ends at 22+4+8 = 34
    # a second ld on c1 = (1,0) in the same cycle is queued behind c0's on DRAM channel 0
    # (FCFS, ties by queue id: c0's ld first): 18..34 + 20 = 54.
    r = _one(".tensor A dram 0x1000 f32[8,8]\n"
             "ld c0, sp[0], dram[A], fmt=dense, rows=8, cols=8\n"
             "ld c1, sp[0], dram[A], fmt=dense, rows=8, cols=8\nhalt\n", t, {"A": x})
    ends = {rec.cluster: (rec.start, rec.end) for rec in r.records}
    # c1 dispatched one cycle later: starts at 2, requests at 3 -> channel 0 free at 18.
    assert ends[0] == (1, 38)
    assert ends[1] == (2, 18 + 16 + 20)


def test_reference_dram_interleave_and_gbuf():
    # dma.ld of one 512-byte row at 0x1000: pieces 0x1000..0x10ff (ch 0, 4 bursts) and
    # 0x1100..0x11ff (ch 1, 4 bursts): each channel 8 cycles from s' = 2 -> 10 + 20 = 30.
    # GB: 512 B / (4 banks x 32 B) = 4 cycles + latency 8 -> 14. e = 30.
    t = load_target("acf-small")
    r = _one("dma.ld gb[0], dram[0x1000], rows=1, rowbytes=512\nhalt\n", t, {})
    assert (r.records[0].start, r.records[0].end) == (1, 30)
    # an unaligned 4-byte run still costs a whole burst: 64 B / 32 -> 2 cycles: 2..4 + 20
    r = _one("dma.ld gb[0], dram[0x1004], rows=1, rowbytes=4\nhalt\n", t, {})
    assert r.records[0].end == 24
    # per-row runs: 3 rows of 12 B (contiguous) -> 3 bursts on channel 0 -> 6 cycles
    r = _one("dma.ld gb[0], dram[0x1000], rows=3, rowbytes=12\nhalt\n", t, {})
    assert r.records[0].end == 2 + 6 + 20


def test_reference_noc_contention():
    # acf-small 2x2, W = 32, r = 2. Two sends c0 -> c1 of 320 B (F = 10) dispatched at 0, 1:
    # first: request 2, t0 = 2, ends 2 + 1*2 + 10 = 14, link (c0->c1) free at 12.
    # second (queued behind on c0's noc queue, starts at 14): t0 = 15 -> ends 27.
    # A send c2 -> c1 (route (0,1)->(1,1)->(1,0): xy) requested at 4 uses other links.
    t = load_target("acf-small")
    r = _one("send c0, c1, sp[0], sp[0], 320\nsend c0, c1, sp[0x200], sp[0], 320\n"
             "send c2, c1, sp[0x400], sp[0], 320\nhalt\n", t, {})
    got = [(x.cluster, x.start, x.end) for x in sorted(r.records, key=lambda x: x.index)]
    assert got[0] == (0, 1, 14)
    assert got[1] == (0, 14, 27)
    assert got[2] == (2, 3, 4 + 2 * 2 + 10)
    # two sends from different clusters sharing a link, requested in the same cycle: the
    # lower queue id wins. c0 -> c3 (xy: (0,0)->(1,0)->(1,1)) and c1 -> c3 ((1,0)->(1,1)).
    # c1's send is dispatched first (cycle 0), c0's at cycle 1: c1 requests at 2 and takes
    # link (1,0)->(1,1) at [2, 12); c0 requests at 3: link h=1 needs t0 + 2 >= 12 -> t0 = 10,
    # ends 10 + 4 + 10 = 24.
    r = _one("send c1, c3, sp[0], sp[0], 320\nsend c0, c3, sp[0x200], sp[0], 320\nhalt\n", t, {})
    got = {x.cluster: (x.start, x.end) for x in r.records}
    assert got[1] == (1, 14)
    assert got[0] == (2, 24)


def test_reference_multicast_and_reduction():
    # group 0 = whole 2x2 grid; bcast from c0's sp, 64 B (F = 2), xy tree: (0,0)->(1,0) depth
    # 0, (0,0)->(0,1) depth 0, (1,0)->(1,1) depth 1 -> Hmax = 2. noc.mcast takes I +
    # reconfig (64) = 65 cycles: 1..66, token; bcast starts at 66, t0 = 67, ends 67+4+2 = 73.
    t = load_target("acf-small")
    r = _one("noc.mcast 0, 0, 0, 1, 1 sig(t128)\nbcast c0, 0, sp[0x100], sp[0], 64 wait(t128)\nhalt\n", t, {})
    got = [(x.mnemonic, x.start, x.end) for x in sorted(r.records, key=lambda x: x.index)]
    assert got == [("noc.mcast", 1, 66), ("bcast", 66, 73)]
    # reduction into c0 over the same tree, 16 floats = 64 B: ends t0 + Hmax*(r+1) + F = 67+6+2
    r = _one("noc.mcast 0, 0, 0, 1, 1 sig(t128)\nreduce c0, 0, sp[0x100], sp[0], 16 wait(t128)\nhalt\n", t, {})
    assert sorted((x.start, x.end) for x in r.records)[1] == (66, 75)


def test_reference_dispatch_queue_depth_barrier_tokens():
    # queue_depth 1: the second sync on c0 mac cannot be dispatched while the first waits
    # in the queue; it is dispatched the cycle after the first starts.
    t = load_target("acf-small", overrides={"cluster.queue_depth": 1, "cluster.issue_cycles": 3})
    r = _one("sync c0, mac\nsync c0, mac\nsync c0, mac\nhalt\n", t, {})
    got = sorted((x.start, x.end) for x in r.records)
    # first: D=0, start 1, end 5. second: D=2 (stalled at 1, start of first at 1), start 5,
    # end 9. third: dispatched at 6 (after the second starts at 5), start 9, end 13.
    assert got == [(1, 5), (5, 9), (9, 13)]
    # barrier: stalls dispatch until everything dispatched has ended
    t = load_target("acf-small")
    r = _one("sync c0, mac\nbarrier\nsync c1, vec\nhalt\n", t, {})
    got = sorted((x.start, x.end) for x in r.records)
    assert got == [(1, 3), (4, 6)]  # resumes dispatching at 3, starts at 4
    # tokens: a start consumes one count; waiting queue-id order decides who gets a (shared)
    # token
    r = _one("sync c1, vec wait(t200)\nsync c0, st wait(t200)\nsync c2, mac sig(t200)\n"
             "sync c3, mac sig(t200)\nhalt\n", t, {})
    got = {x.index: (x.start, x.end) for x in r.records}
    assert got[2] == (3, 5) and got[3] == (4, 6)
    assert got[1] == (5, 7)   # c0 st comes before c1 vec in queue-id order
    assert got[0] == (6, 8)
    assert r.total_cycles == 8
    with pytest.raises(Exception, match="deadlock"):
        _one("sync c1, vec wait(t9)\nhalt\n", t, {})


def test_reference_hardware_loop_dispatch():
    # loop is dispatched once, its back-edge is free; setar/addar take a dispatch slot each
    t = load_target("acf-small")
    r = _one("setar ar1, 0\nloop 3, end\nsync c0, vec\naddar ar1, 4\nend:\nhalt\n", t, {})
    starts = sorted(x.start for x in r.records)
    # dispatch: setar 0, loop 1, sync 2, addar 3, sync 4, addar 5, sync 6, addar 7, halt 8
    assert starts == [3, 5, 7]
    assert r.total_cycles == 9
