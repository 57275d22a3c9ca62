"""The report's per-unit and per-memory accounting against what the instructions did."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from acf import emulator
from acf.emulator import energy
from acf.isa.asm import assemble
from acf.isa.spec import OPS
from acf.isa.target import load_target

from tests.emulator.conftest import PROGRAMS, program, random_inputs

GEMM = """.target acf-small
.tensor W dram 0x0000 f32[16,16] csr
.tensor X dram 0x1000 f32[16,16]
.tensor Y dram 0x2000 f32[16,16]
    ld  c0, sp[0x0000], dram[W], csr, rows=16, cols=16 sig(t1)
    ld  c0, sp[0x0400], dram[X], dense, rows=16, cols=16 sig(t2)
    mm  c0, acc[0x0], sp[0x0000], sp[0x0400], m=16, n=16, k=16 wait(t1, t2) sig(t3)
    st  c0, dram[Y], acc[0x0], dense, rows=16, cols=16 wait(t3)
    halt
"""


def test_a_store_from_the_accumulator_reads_the_accumulator() -> None:
    """The mm writes C to acc (1 KiB), the st reads it back (1 KiB): 2 KiB of accumulator
    traffic; the scratchpad is read only by the mm's operands (it was charged the st's read),
    A once per column fold and B once per row fold of acf-small's 4x4 array."""
    prog = assemble(GEMM)
    rng = np.random.default_rng(1)
    w = rng.standard_normal((16, 16)).astype(np.float32)
    w[rng.random(w.shape) < 0.7] = 0
    rep = emulator.run(prog, load_target("acf-small"),
                       {"W": w, "X": rng.standard_normal((16, 16)).astype(np.float32)}).report
    assert rep.memory_bytes["acc_access_bytes"] == 2 * 4 * 16 * 16
    assert rep.memory_bytes["spad_read_bytes"] == 4 * 16 * (16 * 4 + 16 * 4)
    assert rep.memory_bytes["spad_write_bytes"] == 4 * 16 * 16 * 2  # the two loads, decoded


def test_every_counted_event_is_one_its_isa_row_declares(monkeypatch, small) -> None:
    """Over every shared test program: the events an instruction is charged are among those
    its row of the ISA table lists (the table is what docs/isa.md and the energy model
    publish)."""
    seen: Counter = Counter()
    counts = energy._counts

    def recording(engine, ex):
        c = counts(engine, ex)
        row = ex.p.ins.op
        declared = set(energy.events_of_row(row, engine.t)) | {"mac_fp32", "mac_bf16"}
        undeclared = {k for k, n in c.items() if n and k not in declared}
        assert not undeclared, (row.mnemonic, undeclared)
        seen[row.mnemonic] += 1
        return c

    monkeypatch.setattr(energy, "_counts", recording)
    for path in sorted(PROGRAMS.glob("*.s")):
        prog = program(path.name)
        emulator.run(prog, small, random_inputs(prog))
    assert len(seen) >= len(OPS) // 2  # the programs exercise most of the table


def test_resource_stalls_never_exceed_busy_time() -> None:
    """A load's source and NoC parts wait side by side; its stall is the longest wait, so no
    instruction (and no unit) stalls for longer than it was busy. Sixteen clusters loading
    one DRAM channel contend, so the check is not vacuous."""
    from acf.compiler.codegen import compile_module
    from acf.compiler.parser import parse_module

    text = """graph.func @f(%x: tensor<64x256xf32>, %w: tensor<256x256xf32>) -> (tensor<64x256xf32>) {
  %y = graph.linear %x, %w : tensor<64x256xf32>, tensor<256x256xf32> -> tensor<64x256xf32>
  graph.return %y : tensor<64x256xf32>
}
"""
    t = load_target("acf-base")
    c = compile_module(parse_module(text), t)
    rng = np.random.default_rng(3)
    args = [rng.standard_normal((64, 256)).astype(np.float32),
            rng.standard_normal((256, 256)).astype(np.float32)]
    res = emulator.run(c.program, t, c.bind(args))
    stalls = [r.resource_stall_cycles for r in res.records]
    assert sum(stalls) > 0
    assert all(0 <= r.resource_stall_cycles <= r.end - r.start for r in res.records)
    rep = res.report
    for unit, busy in rep.busy_cycles.items():
        assert rep.stall_cycles[unit]["resource_cycles"] <= busy, unit


def test_leakage_scales_with_what_leaks() -> None:
    """The leakage constants are acf-base's components' (16 clusters x 12 mW, an 8 MiB
    buffer's 40 mW, 16 routers' 8 mW); another target leaks by its own sizes (every target
    used to leak acf-base's global buffer and NoC, and 12 mW per cluster of any size)."""
    base = energy.leakage_mw(load_target("acf-base"))
    assert base == {"leakage_clusters": 16 * 12.0, "leakage_global_buffer": 40.0, "leakage_noc": 8.0}
    iso = energy.leakage_mw(load_target("acf-h200-iso"))  # 256 clusters of 36x36, 64 MiB
    assert iso["leakage_global_buffer"] == 8 * 40.0 and iso["leakage_noc"] == 16 * 8.0
    assert iso["leakage_clusters"] > 256 * 12.0 * 2  # each cluster over twice acf-base's area
    tpu, dense = (energy.leakage_mw(load_target(n))["leakage_clusters"] for n in ("tpu-like", "acf-dense"))
    assert abs(tpu / dense - 1) < 0.1  # 4 x 32x32 PEs and the same SRAM: as 16 x 16x16
    small = load_target("acf-small")
    rep = emulator.run(program("vector.s"), small, random_inputs(program("vector.s"))).report
    for comp, mw in energy.leakage_mw(small).items():
        assert rep.energy_pj[comp] == pytest.approx(mw * 1e9 * rep.time_s)


def _mm_report(target: str, m: int, n: int, k: int):
    src = f""".target {target}
    mm c0, acc[0x0], sp[0x0], sp[0x10000], m={m}, n={n}, k={k}, skip=none
    halt
"""
    return emulator.run(assemble(src), load_target(target)).report


@pytest.mark.parametrize(("target", "m", "n", "k", "expected"), [
    # os 16x16: 16 folds, each streaming its A block (16 x 64) and B block (64 x 16)
    ("acf-base", 64, 64, 64, 4 * 64 * (64 * 4 + 64 * 4)),
    ("acf-base", 16, 16, 64, 4 * 64 * (16 + 16)),  # one fold: each operand once
    ("acf-base", 20, 40, 8, 4 * 8 * (20 * 3 + 40 * 2)),  # partial folds stream what they hold
    ("tpu-like", 64, 64, 64, 4 * 64 * (64 * 2 + 64 * 2)),  # systolic 32x32: 4 folds
    ("sigma-like", 64, 64, 64, 4 * 64 * (64 + 64)),  # flexible: no folds, each element once
])
def test_mm_reads_its_operands_once_per_fold(target: str, m: int, n: int, k: int, expected: int) -> None:
    """The timing model streams every fold's A rows and B columns past the array (docs/timing.md
    section 3): a 64x64x64 mm on acf-base reads 128 KiB of operands, not the 32 KiB of reading
    A and B once each. The fold count sets the cycles as before."""
    rep = _mm_report(target, m, n, k)
    assert rep.memory_bytes["spad_read_bytes"] == expected
    assert rep.energy_events_count["spad_read_byte"] == expected


def test_sddmm_reads_what_each_chunk_of_sampled_outputs_uses() -> None:
    """An os sddmm computes its sampled outputs in row-major chunks of R*C: with every output
    of a 16x16 tile sampled on acf-small (4x4), each chunk is one row of C: its one A row and
    16 B columns, plus the sampling tile read once."""
    src = """.target acf-small
.tensor S dram 0x0 f32[16,16]
    ld c0, sp[0x2000], dram[S], dense, rows=16, cols=16 sig(t1)
    sddmm c0, acc[0x0], sp[0x0], sp[0x1000], sp[0x2000], m=16, n=16, k=8, skip=none wait(t1)
    halt
"""
    rep = emulator.run(assemble(src), load_target("acf-small"), {"S": np.ones((16, 16), np.float32)}).report
    assert rep.memory_bytes["spad_read_bytes"] == 4 * 8 * 16 * (1 + 16) + 4 * 16 * 16


def test_a_pinned_route_through_a_router_twice_is_charged_twice() -> None:
    """c0 -> c1 pinned via c3 on acf-base's 4x4 mesh goes c0, c1, c2, c3, c2, c1: six router
    traversals of each of the 2 flits (it was charged the 4 distinct routers, 8 flit-hops);
    a multicast tree still counts each of its routers once."""
    src = """.target acf-base
    noc.pin c0, c1, c3 sig(t128)
    send c0, c1, sp[0x0], sp[0x0], 64 wait(t128)
    recv c1, c0
    halt
"""
    rep = emulator.run(assemble(src), load_target("acf-base")).report
    assert rep.noc_flit_hops == {"router_flit_hops": 2 * 6, "link_flit_hops": 2 * 5}
    assert rep.energy_events_count["noc_router_flit"] == 12
    from acf.emulator.interconnect import Interconnect

    ic = Interconnect(load_target("acf-base"))
    ic.set_group(1, 1, 0, 2, 1)
    ic.multicast(0, ("c", 0), ic.group(1), 32, 0)  # c0, c1, c2, c5, c6: one flit each
    assert ic.flit_hops == {"router": 5, "link": 4}
