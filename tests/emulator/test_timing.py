"""Closed-form cycle counts on crafted zero-skipping patterns (computed here, independently,
from docs/timing.md), dataflows of the baseline targets, bytes moved, every target."""

from __future__ import annotations

import numpy as np
import pytest
from acf.emulator import run
from acf.emulator.gemm import gemm_asm
from acf.isa import formats
from acf.isa.asm import assemble
from acf.isa.target import available_targets, load_target
from hypothesis import given, settings
from hypothesis import strategies as st


def mm_program(m: int, n: int, k: int, skip: str = "ab") -> str:
    return (".target acf-small\n"
            f".tensor A sp 0x0 f32[{m},{k}] c0\n"
            f".tensor B sp 0x4000 f32[{k},{n}] c0\n"
            f".tensor C acc 0x0 f32[{m},{n}] c0\n"
            f"    mm c0, acc[0x0], sp[0x0], sp[0x4000], m={m}, n={n}, k={k}, skip={skip}\n"
            "    halt\n")


def os_cycles(A, B, t, skip="ab") -> int:
    """docs/timing.md section 3, output stationary, written out loop by loop."""
    c = t.cluster
    R, C, d, I, Fo = c.pe_rows, c.pe_cols, c.lookahead, c.issue_cycles, c.fold_cycles
    m, k = A.shape
    n = B.shape[1]
    use_a = "a" in skip and c.skip in ("a", "ab")
    use_b = "b" in skip and c.skip == "ab"
    cyc = np.zeros((m, n), int)
    for i in range(m):
        for j in range(n):
            eff = [(A[i, q] != 0 or not use_a) and (B[q, j] != 0 or not use_b) for q in range(k)]
            cyc[i, j] = sum(max(1, sum(eff[w:w + d])) for w in range(0, k, d))
    total = I
    for i0 in range(0, m, R):
        for j0 in range(0, n, C):
            total += cyc[i0:i0 + R, j0:j0 + C].max() + Fo
    return total


def patterns(m: int, n: int, k: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    A = rng.standard_normal((m, k)).astype(np.float32) + 3
    B = rng.standard_normal((k, n)).astype(np.float32) + 3
    out = {"dense": (A, B)}
    Z = A.copy()
    Z[::2] = 0
    out["zero_rows"] = (Z, B)
    L = np.zeros_like(A)
    L[:, 0] = A[:, 0]
    out["one_dense_lane"] = (L, B)
    chk = (np.add.outer(np.arange(m), np.arange(k)) % 2).astype(bool)
    chkb = (np.add.outer(np.arange(k), np.arange(n)) % 2 == 0)
    out["checkerboard"] = (np.where(chk, A, 0), np.where(chkb, B, 0))
    S = np.zeros_like(A)
    S[1, 5] = 2.0
    out["single_nonzero"] = (S, B)
    out["all_zero"] = (np.zeros_like(A), np.zeros_like(B))
    return out


@pytest.mark.parametrize("pattern", ["dense", "zero_rows", "one_dense_lane", "checkerboard",
                                     "single_nonzero", "all_zero"])
@pytest.mark.parametrize("skip", ["ab", "a", "none"])
def test_zero_skipping_cycles_are_the_closed_form(pattern: str, skip: str, small) -> None:
    m, n, k = 8, 12, 16
    A, B = patterns(m, n, k)[pattern]
    prog = assemble(mm_program(m, n, k, skip))
    res = run(prog, small, {"A": A, "B": B})
    rec = res.records[0]
    assert (rec.start, rec.end - rec.start) == (1, os_cycles(A, B, small, skip))
    np.testing.assert_allclose(res.outputs["C"], A @ B, rtol=1e-5, atol=1e-5)
    assert rec.issued_macs == m * n * k


def test_dense_target_takes_dense_cycles() -> None:
    t = load_target("acf-dense")
    A, B = patterns(16, 16, 32)["checkerboard"]
    res = run(assemble(mm_program(16, 16, 32)), t, {"A": A, "B": B})
    c = t.cluster
    assert res.records[0].end - res.records[0].start == c.issue_cycles + 32 + c.fold_cycles
    assert res.records[0].effectual_macs == 16 * 16 * 32


@pytest.mark.parametrize("name,form", [
    ("tpu-like", lambda c, m, n, k, e: c.issue_cycles + 1 * (k + c.pe_rows + c.pe_cols - 2 + c.fold_cycles)),
    ("sigma-like", lambda c, m, n, k, e: c.issue_cycles + max(1, -(-e // (c.pe_rows * c.pe_cols)))
     + c.reduce_cycles + c.fold_cycles),
])
def test_baseline_dataflows(name, form) -> None:
    t = load_target(name)
    A, B = patterns(16, 16, 32)["zero_rows"]
    rec = run(assemble(mm_program(16, 16, 32)), t, {"A": A, "B": B}).records[0]
    eff = int(((A != 0).astype(int) @ np.ones((32, 16), int)).sum()) if t.cluster.skip != "none" else 16 * 16 * 32
    assert rec.effectual_macs == eff
    assert rec.end - rec.start == form(t.cluster, 16, 16, 32, eff)


@pytest.mark.parametrize("fmt", ["csr", "coo", "bitmap", "nm2:4", "bcsr4x4"])
def test_sparse_load_moves_the_encoded_size(fmt: str, small) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((16, 16)).astype(np.float32)
    x = formats.nm_prune(x, 2, 4) if fmt.startswith("nm") else np.where(rng.random((16, 16)) < 0.7, 0, x)
    x = x.astype(np.float32)
    src = (".target acf-small\n"
           f".tensor X dram 0x0 f32[16,16] {fmt}\n.tensor Y sp 0x1000 f32[16,16] c0\n"
           f"    ld c0, sp[0x1000], dram[X], {fmt}, rows=16, cols=16\n    halt\n")
    res = run(assemble(src), small, {"X": x})
    want = formats.encoded_size_of(x, fmt)
    assert res.records[0].bytes == want == res.report.memory_bytes["dram_bytes"]
    np.testing.assert_array_equal(res.outputs["Y"], x)


@pytest.mark.parametrize("name", available_targets())
def test_every_target_runs_a_small_gemm(name: str) -> None:
    t = load_target(name)
    rng = np.random.default_rng(7)
    W = rng.standard_normal((64, 64)).astype(np.float32)
    W[rng.random(W.shape) < 0.8] = 0
    X = rng.standard_normal((64, 64)).astype(np.float32)
    res = run(assemble(gemm_asm(t, 64, 64, 64, w_fmt="csr")), t, {"W": W, "X": X})
    np.testing.assert_allclose(res.outputs["Y"], W @ X, rtol=2e-2 if t.numeric.mode == "bf16" else 1e-5,
                               atol=5e-2 if t.numeric.mode == "bf16" else 1e-4)
    assert res.report.total_cycles > 0 and res.report.energy_total_pj > 0
    assert res.report.macs_issued_count == 64 ** 3


def test_gemm_with_hardware_loop_and_determinism(small) -> None:
    prog = assemble(gemm_asm(small, 32, 32, 1024, w_fmt="csr"))
    assert any(i.mnemonic == "loop" for i in prog.instructions)
    rng = np.random.default_rng(1)
    W = np.where(rng.random((32, 1024)) < 0.7, 0, rng.standard_normal((32, 1024))).astype(np.float32)
    X = np.where(rng.random((1024, 32)) < 0.5, 0, rng.standard_normal((1024, 32))).astype(np.float32)
    a = run(prog, small, {"W": W, "X": X})
    b = run(prog, small, {"W": W, "X": X})
    assert a.report.to_json() == b.report.to_json()
    assert a.outputs["Y"].tobytes() == b.outputs["Y"].tobytes()
    np.testing.assert_allclose(a.outputs["Y"], W @ X, rtol=1e-4, atol=1e-4)
    assert a.report.macs_effectual_count < a.report.macs_issued_count


def test_bf16_rounds_multiply_operands() -> None:
    from acf.isa.semantics import bf16_round

    x = np.array([1.0, 1.00390625, 1.01171875, -3.3, np.nan], np.float32)
    r = bf16_round(x)
    assert r[0] == 1.0 and r[1] == 1.0 and r[2] == np.float32(1.015625)
    assert (r[:4].view(np.uint32) & 0xFFFF == 0).all() and np.isnan(r[4])
    t = load_target("acf-small", {"numeric.mode": "bf16"})
    A = np.full((4, 4), 1.00390625, np.float32)
    res = run(assemble(mm_program(4, 4, 4)), t, {"A": A, "B": np.eye(4, dtype=np.float32)})
    np.testing.assert_array_equal(res.outputs["C"], np.ones((4, 4), np.float32))
    assert res.report.energy_events_count.get("mac_bf16") == 16  # B = I: 48 pairs skipped


@pytest.mark.parametrize("bank_bytes", [1, 2, 3, 4, 6, 16])
def test_gather_bank_cycles_count_every_word_of_an_element(bank_bytes) -> None:
    """On-chip gather banks: every word any byte of an element lies in is one access (the
    vector rule), also when words are narrower than an element."""
    from collections import Counter
    from types import SimpleNamespace

    from acf.emulator import timing_compute as tc

    cfg = SimpleNamespace(bank_bytes=bank_bytes, banks=4)
    rng = np.random.default_rng(bank_bytes)
    addrs = 4 * rng.integers(0, 60, 40)
    want: Counter = Counter()
    for ops in (addrs.tolist(), [1000 + 4 * i for i in range(9)]):
        for w in {w for a in ops for w in range(a // bank_bytes, (a + 3) // bank_bytes + 1)}:
            want[w % 4] += 1
    assert tc.gather_bank_cycles(addrs, 1000, 9, cfg) == max(want.values())


def test_bank_cycles_count_a_range_that_wraps_past_the_last_bank() -> None:
    """Hand-worked: 4 banks of 4-byte words. Operand A, 3 elements at byte 12, covers words
    3, 4, 5 = banks 3, 0, 1 (it wraps past bank 3); operand B, 1 element at byte 4, is word 1
    = bank 1. Bank 1 serves two words (A's word 5 and B's word 1), every other bank at most
    one: 2 cycles. An operand on another buffer (acc) has banks of its own."""
    from types import SimpleNamespace

    from acf.emulator import timing_compute as tc

    cfg = SimpleNamespace(bank_bytes=4, banks=4)
    a, b = ("sp", 12, 1, 3, 0), ("sp", 4, 1, 1, 0)
    assert tc.bank_cycles([a], cfg) == 1
    assert tc.bank_cycles([a, b], cfg) == 2
    assert tc.bank_cycles([a, ("acc", 4, 1, 1, 0)], cfg) == 1
    # 2 rows of 3 at byte 12 (pitch 3 = contiguous): words 3..8 = banks 3,0,1,2,3,0; with B's
    # bank 1 that is 2 on banks 3, 0 and 1
    assert tc.bank_cycles([("sp", 12, 2, 3, 3), b], cfg) == 2
    # 9 words from word 2: banks 2,3,0,1,2,3,0,1,2 -> bank 2 three times, B adds to bank 1 (2+1)
    assert tc.bank_cycles([("sp", 8, 1, 9, 0), b], cfg) == 3


def test_bank_cycles_equal_a_word_by_word_count() -> None:
    """Against the rule written out (docs/timing.md 4): every distinct word an operand
    touches is one access to bank ``word % banks`` of its buffer; the cost is the busiest
    bank. Contiguous and strided operands, ranges that wrap, several banks and word sizes."""
    from collections import Counter
    from types import SimpleNamespace

    from acf.emulator import timing_compute as tc

    rng = np.random.default_rng(11)
    for _ in range(400):
        bb, nb = int(rng.choice([2, 4, 8])), int(rng.integers(2, 7))
        cfg = SimpleNamespace(bank_bytes=bb, banks=nb)
        ops = []
        for _ in range(int(rng.integers(1, 4))):
            rows, cols = int(rng.integers(1, 4)), int(rng.integers(1, 12))
            pitch = int(rng.choice([0, cols, cols + int(rng.integers(1, 4))]))
            ops.append((str(rng.choice(["sp", "acc"])), 4 * int(rng.integers(0, 20)), rows, cols,
                        pitch))
        want: Counter = Counter()
        for buf, addr, rows, cols, pitch in ops:
            words = {w for r in range(rows) for c in range(cols)
                     for w in range((addr + 4 * (r * (pitch or cols) + c)) // bb,
                                    (addr + 4 * (r * (pitch or cols) + c) + 3) // bb + 1)}
            for w in words:
                want[buf, w % nb] += 1
        assert tc.bank_cycles(ops, cfg) == max(want.values()), (bb, nb, ops)


def _window_closed_form(A, B, use_a: bool, use_b: bool, d: int) -> tuple[np.ndarray, int]:
    """(c(i, j), effectual pairs of each output), window by window."""
    za = (A != 0) if use_a else np.ones(A.shape, bool)
    zb = (B != 0) if use_b else np.ones(B.shape, bool)
    c = np.zeros((A.shape[0], B.shape[1]), int)
    for w in range(0, A.shape[1], d):
        c += np.maximum(za[:, w:w + d].astype(int) @ zb[w:w + d].astype(int), 1)
    return c, za.astype(int) @ zb.astype(int)


@pytest.mark.parametrize("path", ["compiled", "numpy"])
@settings(max_examples=150, derandomize=True, deadline=None, database=None)
@given(m=st.integers(1, 24), n=st.integers(1, 24), k=st.integers(1, 200), d=st.integers(1, 80),
       R=st.integers(1, 6), C=st.integers(1, 6), skip=st.sampled_from(["ab", "a", "b", "none"]),
       da=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]), db=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]),
       seed=st.integers(0, 2 ** 16))
def test_mm_and_sddmm_cycles_equal_the_closed_form_window_by_window(path, m, n, k, d, R, C, skip,
                                                                     da, db, seed) -> None:
    """The compiled window counts (lanes of 1 to 64 bits, windows straddling no word, the
    padding lanes of the last word), the numpy counts that small ``mm``s take instead
    (``COMPILED_MIN_MACS``) and every other path of ``mm_cycles`` and ``sddmm_cycles``
    equal the closed form evaluated window by window, on both operands' densities from
    empty to full."""
    from acf.emulator import timing_compute as tc

    saved = tc.COMPILED_MIN_MACS
    tc.COMPILED_MIN_MACS = 0 if path == "compiled" else 1 << 62
    try:
        _check_mm_and_sddmm_cycles(tc, m, n, k, d, R, C, skip, da, db, seed)
    finally:
        tc.COMPILED_MIN_MACS = saved


def _check_mm_and_sddmm_cycles(tc, m, n, k, d, R, C, skip, da, db, seed) -> None:
    rng = np.random.default_rng(seed)
    A = np.where(rng.random((m, k)) < da, rng.standard_normal((m, k)), 0).astype(np.float32)
    B = np.where(rng.random((k, n)) < db, rng.standard_normal((k, n)), 0).astype(np.float32)
    cfg = tc.ClusterTiming(R, C, d, I=3, Fo=2, L=4, dataflow="os", skip_hw="ab",
                           reduce_cycles=0, special=1, bank_bytes=4, banks=4, codec_v=1, codec_x=1)
    c, E = _window_closed_form(A, B, "a" in skip, "b" in skip, d)
    busy = sum(int(c[i:i + R, j:j + C].max()) for i in range(0, m, R) for j in range(0, n, C))
    folds = -(-m // R) * -(-n // C)
    assert tc.mm_cycles(A, B, skip, cfg) == (3 + busy + 2 * folds, m * n * k, int(E.sum()))

    S = rng.random((m, n)) < 0.4
    sampled = c[S]  # row-major, in chunks of R * C outputs
    chunks = [sampled[i:i + R * C].max() for i in range(0, sampled.size, R * C)]
    want = (3 + int(sum(chunks)) + 2 * len(chunks), int(S.sum()) * k, int(E[S].sum())) if S.any() else (3, 0, 0)
    assert tc.sddmm_cycles(A, B, S, skip, cfg) == want


def test_bound_sparse_tiles_are_not_decoded_again(small, monkeypatch) -> None:
    """Binding a sparse input remembers each tile's decoding (formats.decoded) beside its
    bytes, so loading it decodes nothing; the run equals one that decodes every load."""
    from acf.isa import formats
    from acf.isa.semantics import DecodeCache

    rng = np.random.default_rng(4)
    W = np.where(rng.random((32, 64)) < 0.7, 0, rng.standard_normal((32, 64))).astype(np.float32)
    W[rng.random(W.shape) < 0.1] = -0.0  # stored nowhere, decoded as +0.0
    X = rng.standard_normal((64, 32)).astype(np.float32)
    prog = assemble(gemm_asm(small, 32, 32, 64, w_fmt="csr"))
    real_unpack, decodes = formats.unpack, []
    monkeypatch.setattr(formats, "unpack", lambda *a, **k: decodes.append(1) or real_unpack(*a, **k))
    seeded = run(prog, small, {"W": W, "X": X})
    assert decodes == []
    monkeypatch.setattr(DecodeCache, "put_decoded", lambda *a: None)
    decoded = run(prog, small, {"W": W, "X": X})
    assert len(decodes) > 0
    np.testing.assert_array_equal(seeded.outputs["Y"].view(np.uint32), decoded.outputs["Y"].view(np.uint32))
    assert seeded.report == decoded.report
