"""Operand multicast (codegen.multicast): clusters of a fabric row or column that share an
operand tile get it from one ``ld`` and a ``bcast``. The results equal the interpreter's and
the kernel without multicast, bit for bit; the emulator's race detector checks the
cross-cluster tokens; DRAM bytes drop."""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.compiler.codegen import schedule
from acf.compiler.codegen.schedule import ClusterStream, Slot, merge
from acf.isa.program import SourceLoc
from acf.isa.spec import SHARED_TOKENS
from acf.isa.target import load_target

from .helpers import CSR, check_close, check_tokens, compile_text, expected
from .test_training_kernels import func, rnd

ATTRS = "stride = [1, 1], padding = [1, 1], dilation = [1, 1]"


def _run(text: str, args: list[np.ndarray], **options):
    c = compile_text(text, **options)
    check_tokens(c.program)
    result = emulator.run(c.program, load_target(c.program.target), c.bind(args))
    return c, [result.outputs[name] for name in c.outputs], result.report


def _gemm_shapes(prog) -> list[tuple]:
    """The plan's GEMMs, wherever they run (a layout moves tiles between clusters)."""
    return sorted((i.mnemonic, i["m"], i["n"], i["k"]) for i in prog.instructions
                  if i.mnemonic in ("mm", "sddmm"))


def _both(text: str, args: list[np.ndarray], **options):
    """(program, outputs, report) with multicast and without. Both equal the interpreter;
    where the plan is the same (a plan may count on multicast's saved port bytes and tile
    differently without it), bit for bit."""
    on = _run(text, args, **options)
    off = _run(text, args, multicast=False, **options)
    for outs in (on[1], off[1]):
        for got, want in zip(outs, expected(text, args)):
            check_close(got, want)
    if _gemm_shapes(on[0].program) == _gemm_shapes(off[0].program):
        for a, b in zip(on[1], off[1]):
            np.testing.assert_array_equal(a, b)  # same sums in the same order
    return on, off


def _count(prog, mnemonic: str) -> int:
    return sum(i.mnemonic == mnemonic for i in prog.instructions)


def test_conv_weight_slabs_are_multicast_along_rows() -> None:
    n, c, h, o = 8, 32, 4, 64
    text = func({"x": (n, c, h, h), "wt": (o, c, 3, 3), "g": (n, o, h, h)}, [
        ("y", "conv2d", ["x", "wt"], ATTRS, [(n, o, h, h)]),
        ("gx", "conv2d_backward_input", ["g", "wt"], f"input_shape = [{n}, {c}, {h}, {h}], " + ATTRS,
         [(n, c, h, h)]),
    ], ["y", "gx"])
    rng = np.random.default_rng(3)
    wt = (rnd(rng, o, c, 3, 3) * (rng.random((o, c, 3, 3)) < 0.3)).astype(np.float32)
    # the per-tap kernel (the wide one shares input slabs down columns too: test_conv_wide)
    (c_on, _, rep_on), (c_off, _, rep_off) = _both(text, [rnd(rng, n, c, h, h), wt, rnd(rng, n, o, h, h)],
                                                   wide_taps="off")
    assert _count(c_on.program, "bcast") > 0 and _count(c_off.program, "bcast") == 0
    # acf-small has two rows: each row's groups are configured once, before the first kernel
    mcast = [i for i in c_on.program.instructions if i.mnemonic == "noc.mcast"]
    assert sorted((i["x0"], i["y0"], i["x1"], i["y1"]) for i in mcast) == [(0, 0, 1, 0), (0, 1, 1, 1)]
    assert rep_on.memory_bytes["dram_bytes"] < rep_off.memory_bytes["dram_bytes"]


@pytest.mark.parametrize("shape", [(2, 64, 8, 64), (4, 32, 8, 32)])
def test_sampled_weight_gradient_multicasts_rows_and_columns(shape) -> None:
    n, c, h, o = shape
    text = func({"g": (n, o, h, h), "x": (n, c, h, h), "m": (o, c, 3, 3)}, [
        ("gw", "conv2d_backward_weight", ["g", "x", "m"], f"weight_shape = [{o}, {c}, 3, 3], " + ATTRS,
         [(o, c, 3, 3)])], ["gw"])
    rng = np.random.default_rng(4)
    args = [rnd(rng, n, o, h, h), np.maximum(rnd(rng, n, c, h, h), 0),
            (rng.random((o, c, 3, 3)) < 0.1).astype(np.float32)]
    (c_on, _, rep_on), (_, _, rep_off) = _both(text, args)
    bcasts = [i for i in c_on.program.instructions if i.mnemonic == "bcast"]
    groups = {i["grp"] for i in bcasts}
    assert len(groups) == 4  # both rows (output gradient) and both columns (input slabs)
    # on 2 x 2 clusters each shared tile crosses a port once instead of twice (the mask
    # tiles and the stores stay per cluster)
    assert rep_on.memory_bytes["dram_bytes"] < 0.8 * rep_off.memory_bytes["dram_bytes"]
    # the receivers wait on fabric-wide tokens the bcasts signal
    waits = {t for i in c_on.program.instructions if i.mnemonic == "sddmm" for t in i.waits}
    assert any(t >= SHARED_TOKENS for t in waits)


def test_merge_places_a_remote_writer_before_its_readers() -> None:
    """A receiver's mm that needs the sender's bcast is emitted after it even when the
    receiver's stream comes first, and the two share a fabric-wide token both ways."""
    slot = Slot("sp", 0, 256)
    acc = Slot("acc", 0, 256)
    loc = SourceLoc()
    recv, send = ClusterStream(0), ClusterStream(1)
    for k in range(3):
        ld = send.emit("ld", loc, (), (slot,), {"dst": slot.ref(), "src": _dram(64 * k), "rows": 1,
                                                  "cols": 16, "fmt": _dense()})
        bc = send.emit("bcast", loc, (slot,), (slot,), {"grp": 0, "dst": slot.ref(), "src": slot.ref(),
                                                         "bytes": 64})
        assert bc == ld + 1
        recv.remote_write((slot,), (1, bc), loc)
        recv.emit("mm", loc, (slot,), (acc,), {"dst": acc.ref(), "a": slot.ref(), "b": slot.ref(),
                                               "m": 4, "n": 4, "k": 4})
    out = [ins for ins, _ in merge([recv, send])]
    order = [(ins.mnemonic, ins.cluster) for ins in out]
    for k in range(3):  # the k-th mm comes after the k-th bcast
        mm = [i for i, x in enumerate(order) if x == ("mm", 0)][k]
        bc = [i for i, x in enumerate(order) if x == ("bcast", 1)][k]
        assert bc < mm
    raw = {t for ins in out if ins.mnemonic == "mm" for t in ins.waits}
    war = {t for ins in out if ins.mnemonic in ("bcast", "sync") and ins.cluster == 1 for t in ins.waits}
    assert raw and all(t >= SHARED_TOKENS for t in raw)
    # the 2nd and 3rd bcasts wait for the receiver's mm before them (the local token is
    # the sender's own ld)
    assert {t for t in war if t >= SHARED_TOKENS} and {t for t in war if t >= SHARED_TOKENS}.isdisjoint(raw)


def test_kernel_recompiles_without_multicast_when_shared_tokens_run_out(monkeypatch) -> None:
    n, c, h, o = 2, 64, 8, 64
    text = func({"g": (n, o, h, h), "x": (n, c, h, h), "m": (o, c, 3, 3)}, [
        ("gw", "conv2d_backward_weight", ["g", "x", "m"], f"weight_shape = [{o}, {c}, 3, 3], " + ATTRS,
         [(o, c, 3, 3)])], ["gw"])
    assert _count(compile_text(text).program, "bcast") > 0
    monkeypatch.setattr(schedule, "MAX_TOKEN", schedule.MAX_LOCAL_TOKEN + 1)  # one shared token
    monkeypatch.setattr(schedule, "shared_tokens_free", lambda: 64)  # the layouts still try
    tried = []
    real = schedule.TokenPool.shared
    monkeypatch.setattr(schedule.TokenPool, "shared", lambda *a: tried.append(a) or real(*a))
    rng = np.random.default_rng(5)
    args = [rnd(rng, n, o, h, h), rnd(rng, n, c, h, h), (rng.random((o, c, 3, 3)) < 0.2).astype(np.float32)]
    c, outs, _ = _run(text, args)
    assert len(tried) == 2 and _count(c.program, "bcast") == 0  # ran out at the second
    check_close(outs[0], expected(text, args)[0])


def _dram(addr: int):
    from acf.isa.fields import MemRef

    return MemRef("dram", 0x1000 + addr)


def _dense():
    from acf.isa.fields import FmtSpec

    return FmtSpec("dense")


def _matmul(m: int, n: int, k: int, b_enc: str = "") -> str:
    b_ty = f"tensor<{k}x{n}xf32{b_enc}>"
    return (CSR if b_enc else "") + (
        f"graph.func @f(%a: tensor<{m}x{k}xf32>, %b: {b_ty}) -> (tensor<{m}x{n}xf32>) {{\n"
        f"  %c = graph.matmul %a, %b : tensor<{m}x{k}xf32>, {b_ty} -> tensor<{m}x{n}xf32>\n"
        f"  graph.return %c : tensor<{m}x{n}xf32>\n}}\n")


@pytest.mark.parametrize("sparse_b", [False, True], ids=["dense", "csr-weight"])
def test_gemm_shares_dense_operand_tiles(sparse_b: bool) -> None:
    """acf-base, 256 x 256 x 288. Both operands dense: 16 output tiles of 64 x 64, one per
    cluster; A row-blocks go along the rows and B column-blocks along the columns. With a
    packed sparse B (its 144-wide tiles fix two column blocks: 8 x 2 tiles of 32 x 144) only
    A is shared, by the two clusters of each half row (each loads its own compressed B)."""
    m, n, k = 256, 256, 288
    text = _matmul(m, n, k, ", #csr" if sparse_b else "")
    rng = np.random.default_rng(6)
    b = rnd(rng, k, n) * (rng.random((k, n)) < (0.1 if sparse_b else 1.0))
    args = [np.maximum(rnd(rng, m, k), 0), b.astype(np.float32)]
    on = _run(text, args, target="acf-base")
    off = _run(text, args, target="acf-base", multicast=False)
    check_close(on[1][0], expected(text, args)[0])
    np.testing.assert_array_equal(on[1][0], off[1][0])
    groups = {i["grp"] for i in on[0].program.instructions if i.mnemonic == "bcast"}
    assert len(groups) == 8  # half rows, or the rows and the columns
    rects = {(i["x0"], i["x1"]) for i in on[0].program.instructions if i.mnemonic == "noc.mcast"}
    assert rects == ({(0, 1), (2, 3)} if sparse_b else {(0, 3), (0, 0), (1, 1), (2, 2), (3, 3)})
    print(f"cycles {off[2].total_cycles} -> {on[2].total_cycles}, DRAM bytes "
          f"{off[2].memory_bytes['dram_bytes']} -> {on[2].memory_bytes['dram_bytes']}")
    # dense: A and B cross a port once per row / column instead of once per cluster;
    # sparse B: A once per half row, B unchanged
    ratio = 0.8 if sparse_b else 0.6
    assert on[2].memory_bytes["dram_bytes"] < ratio * off[2].memory_bytes["dram_bytes"]
    assert on[2].total_cycles < off[2].total_cycles


def test_gemm_tiles_shrink_to_divide_over_the_fabric() -> None:
    """acf-base, 2048 x 512 x 512 both dense: the tiler's 144-row tiles make 15 row blocks,
    which do not divide over 4 fabric rows; the kernel takes 128-row tiles (16 blocks) so
    both operands are shared, and the layer takes fewer cycles than with multicast off."""
    m, n, k = 2048, 512, 512
    text = _matmul(m, n, k, "")
    rng = np.random.default_rng(7)
    args = [np.maximum(rnd(rng, m, k), 0), rnd(rng, k, n)]
    on = _run(text, args, target="acf-base")
    off = _run(text, args, target="acf-base", multicast=False)
    check_close(on[1][0], expected(text, args)[0])
    check_close(off[1][0], expected(text, args)[0])
    tiles_on = {i["m"] for i in on[0].program.instructions if i.mnemonic == "mm"}
    tiles_off = {i["m"] for i in off[0].program.instructions if i.mnemonic == "mm"}
    assert tiles_on == {128} and tiles_off == {144, 32}  # 14 x 144 + 32: 15 row blocks
    assert _count(on[0].program, "bcast") > 0
    print(f"cycles {off[2].total_cycles} -> {on[2].total_cycles}")
    assert on[2].total_cycles < 0.8 * off[2].total_cycles


def test_packed_sparse_operand_shares_the_dense_one_in_a_ragged_layout() -> None:
    """acf-base, 128 x 1008 x 768 with a CSR B: B's packed 144-wide tiles fix 7 column
    blocks, which no tile size divides over the 4 clusters of a row, so A is shared in a
    ragged layout (32-row tiles, one A row-block per fabric row): each row's clusters take
    turns over the 7 blocks, and in the second turn one of them only takes the multicast
    (fewer mm than its neighbours). A crosses each row's port once."""
    m, n, k = 128, 1008, 768
    text = _matmul(m, n, k, ", #csr")
    rng = np.random.default_rng(8)
    b = (rnd(rng, k, n) * (rng.random((k, n)) < 0.1)).astype(np.float32)
    args = [np.maximum(rnd(rng, m, k), 0), b]
    (c_on, _, rep_on), (c_off, _, rep_off) = _both(text, args, target="acf-base")
    assert _count(c_on.program, "bcast") > 0 and _count(c_off.program, "bcast") == 0
    per_cluster = np.bincount([i.cluster for i in c_on.program.instructions if i.mnemonic == "mm"],
                              minlength=16)
    assert sorted(set(per_cluster.tolist())) == [6, 12]  # 6 k-chunks per tile: 2 turns or 1
    print(f"cycles {rep_off.total_cycles} -> {rep_on.total_cycles}, DRAM bytes "
          f"{rep_off.memory_bytes['dram_bytes']} -> {rep_on.memory_bytes['dram_bytes']}")
    # measured: 4.73 -> 3.25 MB (B's tiles are still loaded per cluster), 39.2k -> 26.2k cycles
    assert rep_on.memory_bytes["dram_bytes"] < 0.75 * rep_off.memory_bytes["dram_bytes"]
    assert rep_on.total_cycles < 0.8 * rep_off.total_cycles


class _Fabric:
    """The part of a KernelContext the layouts read: its grid and multicast groups."""

    def __init__(self, gx: int, gy: int) -> None:
        from acf.compiler.codegen.placement import row_spread

        self.target = load_target("acf-base", {"fabric.grid": [gx, gy]})
        self.multicast, self.placement, self.mcast_groups = True, row_spread, {}

    def mcast_group(self, *rect):
        return self.mcast_groups.setdefault(rect, len(self.mcast_groups))


@pytest.mark.parametrize("grid", [(4, 4), (2, 2), (4, 2)])
def test_ragged_layouts_cover_every_tile_once_and_keep_senders_busy(grid) -> None:
    """Every ragged layout ``rows_share_first`` offers, over a range of grid sizes: each
    (a, b) tile goes to exactly one cluster and step; a cluster's ``a`` items come from its
    group's sender, which has a tile in every step where a receiver does; at least three
    quarters of the cluster-steps are busy."""
    from acf.compiler.codegen.multicast import rows_share_first

    ragged_only = 0
    for n_a in range(1, 13):
        for n_b in range(1, 17):
            layout = rows_share_first(_Fabric(*grid), n_a, n_b, ragged=True)
            if layout is None:
                continue
            ragged_only += rows_share_first(_Fabric(*grid), n_a, n_b) is None
            seen = [t for v in layout.tiles.values() for t in v if t is not None]
            assert sorted(seen) == [(a, b) for a in range(n_a) for b in range(n_b)]
            assert {len(v) for v in layout.tiles.values()} == {layout.steps}
            sender = layout.sender["a"]
            for step in range(layout.steps):
                for cl, v in layout.tiles.items():
                    if v[step] is not None:
                        lead = layout.tiles[sender[cl]][step]
                        assert lead is not None and lead[0] == v[step][0]
            assert 4 * len(seen) >= 3 * layout.steps * len(layout.tiles)
    assert ragged_only >= 30  # measured 37 / 51 / 60 grids that only the ragged split lays out
