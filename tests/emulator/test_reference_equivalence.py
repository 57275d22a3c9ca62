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


@settings(max_examples=40, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(mp.microprograms(max_blocks=3, blocks=["mcast_redefine", "mcast_redefine", "mcast", "burst"]))
def test_group_redefinition_matches_reference(m):
    """A bcast or reduce whose group a second noc.mcast redefines between its start and its
    NoC request, or near them (docs/timing.md section 7: the group binds at the start, the
    routes at the request)."""
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


# ---- crafted programs: both models against cycles counted by hand -----------------------------
#
# acf-small unless overridden: I = 1, 2x2 grid, W = 32 B, r = 2, noc.* take I + 64; DRAM 2
# channels of 32 B/cycle, bursts of 64 B, latency 20; global buffer 128 B/cycle, latency 8;
# 4 scratchpad banks of 8 B, 8 vector lanes, vec_special_cycles 3. Each case lists every
# executed instance as (index, start, end), and the program's cycle count.

GRID4 = {"fabric.grid": [4, 4]}
CRAFTED = {
    # -- section 7: bcast binds its group at the start, its routes at the request ----------
    # group 1 = {c0} until the second noc.mcast ends at 131. relu over 1008 elements: 126
    # lane groups, and a's 504 words put 126 on each sp bank (dst's likewise on the acc
    # banks): 3..130. The bcast starts at 130 with group {c0}; its request at 131 finds
    # group 1 = all 16 clusters but keeps {c0}: no link, ends 131 + F(2) = 133 (with the
    # group read at the request: Hmax 6 from c0, 131 + 12 + 2 = 145).
    "bcast from sp keeps the group of its start": (GRID4, """
        noc.mcast 1, 0, 0, 0, 0 sig(t130)
        noc.mcast 1, 0, 0, 3, 3
        vop c0, relu, acc[0x0], sp[0x0], rows=1, cols=1008 sig(t1)
        bcast c0, 1, sp[0x3000], sp[0x1000], bytes=64 wait(t130, t1)
        halt""", [(0, 1, 66), (1, 66, 131), (2, 3, 130), (3, 130, 133)], 133),
    # exp over 232 elements: 29 lane groups x (1 + 3) = 116 > 58 bank accesses: 3..120. The
    # bcast from dram starts at 120 with group {c0}: DRAM 121 + 2 + 20 = 143; multicast from
    # P0 requested at 141, after the redefinition (131): still {c0}, one link: 141 + 2 + 2 =
    # 145 (with the group read at the request: Hmax 7 from P0, 141 + 14 + 2 = 157).
    "bcast from dram keeps the group of its start": (GRID4, """
        noc.mcast 1, 0, 0, 0, 0 sig(t130)
        noc.mcast 1, 0, 0, 3, 3
        vop c0, exp, sp[0x1000], sp[0x0], rows=1, cols=232 sig(t1)
        bcast c0, 1, sp[0x100], dram[0x0], bytes=64 wait(t130, t1)
        halt""", [(0, 1, 66), (1, 66, 131), (2, 3, 120), (3, 120, 145)], 145),
    # -- section 6: transfers of no bytes ---------------------------------------------------
    # DRAM part ends at its request s' = 2; NoC from P0 still requested at 2 + 20, one flit,
    # one hop: 25
    "ld of 0 rows from dram": ({}, """
        ld c0, sp[0x0], dram[0x1000], fmt=dense, rows=0, cols=8
        halt""", [(0, 1, 25)], 25),
    "ld of 0 columns from dram": ({}, """
        ld c0, sp[0x0], dram[0x1000], fmt=dense, rows=4, cols=0
        halt""", [(0, 1, 25)], 25),
    "ldg of nothing from dram": ({}, """
        ldg c0, sp[0x0], dram[0x1000], 0, 1, 1, 1, 1, 1
        halt""", [(0, 1, 25)], 25),
    # the global buffer part of no bytes still pays its latency: 2 + 0 + 8, NoC 10 + 2 + 1
    "ld of 0 rows from gb": ({}, """
        ld c0, sp[0x0], gb[0x100], fmt=dense, rows=0, cols=8
        halt""", [(0, 1, 13)], 13),
    # DRAM part at 2, global buffer 2 + 0 + 8 = 10
    "dma.ld of 0 rows": ({}, """
        dma.ld gb[0x0], dram[0x1000], rows=0, rowbytes=64
        halt""", [(0, 1, 10)], 10),
    "dma.st of 0-byte rows": ({}, """
        dma.st dram[0x1000], gb[0x0], rows=3, rowbytes=0
        halt""", [(0, 1, 10)], 10),
    # NoC c0 -> P0 at 2: 2 + 2 + 1 = 5; the DRAM part requested at 5 ends at 5, and its
    # token lets the sync start at 5
    "st of 0 rows to dram ends with its NoC part": ({}, """
        st c0, dram[0x1000], sp[0x0], fmt=dense, rows=0, cols=8 sig(t1)
        sync c0, mac wait(t1)
        halt""", [(0, 1, 5), (1, 5, 7)], 7),
    # the barrier the store releases at 5 resumes dispatch at 5: the sync starts at 6
    "st of 0 rows to dram releases a barrier": ({}, """
        st c0, dram[0x1000], sp[0x0], fmt=dense, rows=0, cols=8
        barrier
        sync c1, mac
        halt""", [(0, 1, 5), (2, 6, 8)], 8),
    # the bcast of 0 bytes: DRAM part at 67, multicast from P0 at 87, one flit over the
    # P0 tree of the 2x2 grid (Hmax 3): 87 + 6 + 1 = 94
    "bcast of 0 bytes from dram": ({}, """
        noc.mcast 0, 0, 0, 1, 1 sig(t128)
        bcast c0, 0, sp[0x100], dram[0x0], 0 wait(t128)
        halt""", [(0, 1, 66), (1, 66, 94)], 94),
    # no latency at all: the dma.ld ends at its request 2, the sync on cfg starts there
    "dma.ld of 0 rows, global buffer without latency": ({"gbuf.latency_cycles": 0}, """
        dma.ld gb[0x0], dram[0x1000], rows=0, rowbytes=64 sig(t1)
        sync cfg wait(t1)
        halt""", [(0, 1, 2), (1, 2, 4)], 4),
    "st of 0 rows to gb without latency": ({"gbuf.latency_cycles": 0}, """
        st c0, gb[0x1000], sp[0x0], fmt=dense, rows=0, cols=8 sig(t1)
        sync c0, mac wait(t1)
        halt""", [(0, 1, 5), (1, 5, 7)], 7),
    # -- section 6: a dense tile's DRAM runs are its rows ----------------------------------
    # 3 rows of 12 B back to back on channel 0: 3 bursts, busy 6: 2 + 6 + 20 = 28 (one run of
    # 36 B would be 1 burst: 24, and the NoC end 22 + 2 + 2 = 26 would decide)
    "ld of a dense tile: one DRAM run per row": ({}, """
        ld c0, sp[0x0], dram[0x1000], fmt=dense, rows=3, cols=3
        halt""", [(0, 1, 28)], 28),
    # NoC c0 -> P0 2 + 2 + 2 = 6, then 3 bursts: 6 + 6 + 20 = 32
    "st of a dense tile: one DRAM run per row": ({}, """
        st c0, dram[0x1000], sp[0x0], fmt=dense, rows=3, cols=3
        halt""", [(0, 1, 32)], 32),
    "dma.ld: one DRAM run per row": ({}, """
        dma.ld gb[0x0], dram[0x1000], rows=3, rowbytes=12
        halt""", [(0, 1, 28)], 28),
    # -- section 4: bank operands ----------------------------------------------------------
    # pitch 16: each row's 16 B are words 8r, 8r+1 (banks 0, 1). relu is unary: dst and a
    # only, 4 + 4 on bank 0: 1 + 8; add counts b too: 1 + 12
    "unary vop leaves b out of the banks": ({}, """
        vop c0, relu, sp[0x0], sp[0x400], sp[0x800], rows=4, cols=4, pitch=16
        vop c1, add, sp[0x0], sp[0x400], sp[0x800], rows=4, cols=4, pitch=16
        halt""", [(0, 1, 10), (1, 2, 15)], 15),
    # one bank: sgd's w, g, mom are 4 words each, 12 > 3 compute; nesterov 4 compute;
    # adam's 4 operands 16 > 1 x (6 + 3)
    "sgd and adam operands on the banks": ({"cluster.spad_banks": 1}, """
        sgd c0, sp[0x0], sp[0x100], sp[0x200], 8, fr4
        sgd c1, sp[0x0], sp[0x100], sp[0x200], 8, fr4, nesterov=1
        adam c2, sp[0x0], sp[0x100], sp[0x200], sp[0x300], 8, fr4
        halt""", [(0, 1, 14), (1, 2, 15), (2, 3, 20)], 20),
    # -- section 2: repeated tokens ----------------------------------------------------------
    # t1 counts 1 at 4 (mac) and 2 at 6 (vec): wait(t1, t1) starts at 6
    "wait(t1, t1) needs a count of 2": ({}, """
        sync c0, codec wait(t1, t1)
        sync c0, mac sig(t1, t2)
        sync c0, vec wait(t2) sig(t1)
        halt""", [(0, 6, 8), (1, 2, 4), (2, 4, 6)], 8),
    "sig(t1, t1) adds 2": ({}, """
        sync c0, mac sig(t1, t1)
        sync c0, vec wait(t1, t1)
        halt""", [(0, 1, 3), (1, 3, 5)], 5),
    # -- section 1: dispatch -------------------------------------------------------------------
    # the last setar is dispatched at 4: the program counts 5, later than the sync's end 3
    "no halt: the cycle after the last dispatch": ({}, """
        sync c0, mac
        setar ar1, 1
        setar ar1, 1
        setar ar1, 1
        setar ar1, 1""", [(0, 1, 3)], 5),
    # outer loop 0, inner loop 1, mac syncs 2, 3, vec sync 4, inner loop again 5, mac syncs
    # 6, 7, vec sync 8, halt 9
    "an inner loop is dispatched on every outer iteration": ({}, """
        loop 2, outer
        loop 2, inner
        sync c0, mac
    inner:
        sync c0, vec
    outer:
        halt""", [(2, 3, 5), (2, 5, 7), (2, 7, 9), (2, 9, 11), (3, 5, 7), (3, 9, 11)], 11),
    # -- section 3: no outputs on the flexible dataflow: I + 1 + reduce_cycles + Fo ----------
    "flexible mm with m = 0": ({"cluster.dataflow": "flexible", "cluster.reduce_cycles": 3}, """
        mm c0, acc[0x0], sp[0x0], sp[0x1000], m=0, n=4, k=4
        halt""", [(0, 1, 1 + 1 + 1 + 3 + 2)], 8),
    # -- section 7b: recv and bcast ends -------------------------------------------------------
    # I = 3: send s' = 4, one hop, 2 flits: 8; recv starts at 8 and takes I
    "recv takes I cycles": ({"cluster.issue_cycles": 3}, """
        send c0, c1, sp[0x100], sp[0x0], bytes=64
        recv c1, c0
        halt""", [(0, 1, 8), (1, 8, 11)], 11),
    # one DRAM channel of 8 B/cycle: 64 B busy 8: 67 + 8 + 20 = 95, after the multicast from
    # P0 to {c0} requested at 87: 87 + 2 + 2 = 91
    "bcast from dram ends with its later part": ({"dram.channels": 1, "dram.bytes_per_cycle": 8}, """
        noc.mcast 0, 0, 0, 0, 0 sig(t128)
        bcast c0, 0, sp[0x100], dram[0x0], 64 wait(t128)
        halt""", [(0, 1, 66), (1, 66, 95)], 95),
    # -- section 7: pins, 2-wide torus ---------------------------------------------------------
    # the pinned send c0 -> c10 -> c5 takes 6 hops: 67 + 12 + 2 = 81; the bcast to {c5} the
    # default 2: 132 + 4 + 2 = 138
    "multicast trees ignore pins": (GRID4, """
        noc.pin c0, c5, c10 sig(t130, t131)
        noc.mcast 1, 1, 1, 1, 1 sig(t132)
        send c0, c5, sp[0x100], sp[0x0], bytes=64 wait(t130)
        bcast c0, 1, sp[0x200], sp[0x0], bytes=64 wait(t131, t132)
        halt""", [(0, 1, 66), (1, 66, 131), (2, 66, 81), (3, 131, 138)], 138),
    # reduction of {c5} into c0 over the default tree (Hmax 2): 132 + 2 * 3 + 2 = 140
    "reduction trees ignore pins": (GRID4, """
        noc.pin c5, c0, c10 sig(t128)
        noc.mcast 1, 1, 1, 1, 1 sig(t129)
        reduce c0, 1, sp[0x200], sp[0x0], 16 wait(t128, t129)
        halt""", [(0, 1, 66), (1, 66, 131), (2, 131, 140)], 140),
    # memory traffic ignores pins: P1 -> c4 -> c5 (H 2) despite the c4 -> c5 pin:
    # DRAM 67 + 2 + 20 = 89, NoC 87 + 4 + 2 = 93
    "port traffic ignores pins": (GRID4, """
        noc.pin c4, c5, c8 sig(t128)
        ld c5, sp[0x0], dram[0x0], fmt=dense, rows=1, cols=16 wait(t128)
        halt""", [(0, 1, 66), (1, 66, 93)], 93),
    # the send c1 -> c0 (100 flits) holds link c1 -> c0 over [2, 102). On the 2x2 torus the
    # st's route c1 -> c0 -> P0 wraps (tie: positive direction) over that same link: t0 =
    # 102, NoC 102 + 4 + 1 = 107, DRAM 107 + 2 + 20 = 129 (a separate wrap link: 96)
    "a 2-wide torus has no separate wrap links": ({}, """
        send c1, c0, sp[0x0], sp[0x0], 3200
        recv c0, c1
        noc.topo torus sig(t128)
        st c1, dram[0x1000], sp[0x0], fmt=dense, rows=1, cols=8 wait(t128)
        halt""", [(0, 1, 104), (1, 104, 105), (2, 3, 68), (3, 68, 129)], 129),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_program_cycles(name):
    overrides, body, want, total = CRAFTED[name]
    prog = assemble(".target acf-small\n" + "\n".join(line.strip() if line.strip().endswith(":")
                                                       else line for line in body.splitlines()))
    target = load_target("acf-small", overrides=overrides or None)
    ref = simulate(prog, target, {})
    assert sorted((r.index, r.start, r.end) for r in ref.records) == sorted(want)
    assert ref.total_cycles == total
    diffs = compare(ref, fast_run()(prog, target, inputs={}))
    assert not diffs, "\n".join(diffs)


def test_issue_cycles_below_one_is_refused():
    """Every queued instruction takes at least one issue cycle (docs/timing.md symbols)."""
    with pytest.raises(ValueError, match="issue_cycles"):
        load_target("acf-small", overrides={"cluster.issue_cycles": 0})
