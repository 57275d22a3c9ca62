"""The cost model earns its place: it matches the emulator, and the format ``select-formats``
picks for a masked weight is within 5 % of the fastest format measured on the emulator.

Layers: ``y = x . w^T`` (``graph.linear``), x dense, w masked at 10 %, 50 %, 90 % and 99 %
density, compiled once per format (the default compile: multicast layouts where the tiles
allow; and round-robin placement, without them) and run on the emulator (acf-small with a
small layer, acf-base with a 64x256x512 one and, for the format choice, a 256x512x512 one,
where multicast changes the ranking: sharing x and w halves a dense weight's port traffic).
The masked weight gradient ``gw = sddmm(gy^T, x, w)`` (``sparsity-propagation`` makes it)
uses w as the sample S: the model replays the sddmm kernel (S's tile loaded per output
tile, only its non-zeros computed), at 10 %, 50 % and 90 % density.
"""

from __future__ import annotations

import numpy as np
import pytest
from acf import emulator
from acf.compiler import cost_model as cm
from acf.compiler.codegen import CompileOptions, compile_module
from acf.compiler.codegen.placement import round_robin
from acf.compiler.codegen.tiling import choose_tiling
from acf.compiler.parser import parse_module
from acf.compiler.passes.select_formats import SelectFormats
from acf.compiler.sparse_encoding import encoding_to_format, format_to_encoding
from acf.isa import formats
from acf.isa.target import load_target

FORMATS = ("dense", "csr", "csc", "coo", "bitmap", "bcsr4x4")
DENSITIES = (0.10, 0.50, 0.90, 0.99)
LAYERS = {"acf-small": (16, 64, 64), "acf-base": (64, 256, 512)}


def layer_text(m: int, n: int, k: int, fmt: str, density: float | None = None) -> str:
    enc = format_to_encoding(fmt)
    wt = f"tensor<{n}x{k}xf32, {enc}>" if enc else f"tensor<{n}x{k}xf32>"
    attr = f" {{density = {density}}}" if density is not None else ""
    return (f"graph.func @layer(%x: tensor<{m}x{k}xf32>, %w: {wt}{attr}) -> (tensor<{m}x{n}xf32>) {{\n"
            f"  %y = graph.linear %x, %w : tensor<{m}x{k}xf32>, {wt} -> tensor<{m}x{n}xf32>\n"
            f"  graph.return %y : tensor<{m}x{n}xf32>\n}}\n")


def sddmm_text(m: int, n: int, k: int, fmt: str) -> str:
    """The sampled weight gradient of the ``m x n x k`` layer: gw = (gy^T x) at w's
    non-zeros, w (n x k) the sample."""
    enc = format_to_encoding(fmt)
    wt = f"tensor<{n}x{k}xf32, {enc}>" if enc else f"tensor<{n}x{k}xf32>"
    return (f"graph.func @wgrad(%gy: tensor<{m}x{n}xf32>, %x: tensor<{m}x{k}xf32>, %w: {wt}) "
            f"-> (tensor<{n}x{k}xf32>) {{\n"
            f"  %gw = graph.sddmm %gy, %x, %w {{transpose_a = true}} : tensor<{m}x{n}xf32>, "
            f"tensor<{m}x{k}xf32>, {wt} -> tensor<{n}x{k}xf32>\n"
            f"  graph.return %gw : tensor<{n}x{k}xf32>\n}}\n")


def weights(n: int, k: int, density: float, seed: int = 0, m: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random((n, k)) < density
    w = (rng.standard_normal((n, k)) + 3.0).astype(np.float32) * mask
    x = rng.standard_normal((m or LAYERS_M.get((n, k), 16), k)).astype(np.float32)
    return w, x


LAYERS_M = {(n, k): m for m, n, k in LAYERS.values()}


PLACEMENTS = {"default": None, "round-robin": round_robin}


def emulate(target, m, n, k, fmt, w, x, noskip=False, placement=None):
    """Compile (``placement`` None: the default compile, which gemm_cost models when given
    none) and run on the emulator."""
    options = CompileOptions(placement=placement) if placement else CompileOptions()
    c = compile_module(parse_module(layer_text(m, n, k, fmt)), target, options)
    run_on = load_target(target.name, overrides={"cluster.skip": "none"}) if noskip else target
    return c, emulator.run(c.program, run_on, c.bind([x, w]))


@pytest.mark.parametrize("tname", list(LAYERS))
def test_instruction_costs_are_exact(tname: str) -> None:
    """The first ld of the layer (nothing to contend with) takes exactly what tile_cost says,
    and the mm instructions together exactly what mm_cycles says."""
    t = load_target(tname)
    m, n, k = LAYERS[tname]
    w, x = weights(n, k, 0.3)
    for fmt in ("dense", "csr", "bitmap"):
        c, res = emulate(t, m, n, k, fmt, w, x, placement=round_robin)
        T = c.tiling.t
        recs = res.records
        prog = c.program.instructions
        first = min((r for r in recs if prog[r.index].mnemonic == "ld"), key=lambda r: r.start)
        ins = prog[first.index]
        hops = ins.cluster % int(t.fabric.grid[0]) + 1
        rows, cols = ins["rows"], ins["cols"]
        op_fmt = str(ins["fmt"])
        tile = np.ones((rows, cols)) if op_fmt == "dense" else (w[:rows, :cols] != 0)
        want = cm.tile_cost(t, op_fmt, rows, cols, mask=tile, hops=hops).load_cycles
        assert first.end - first.start == want
        model = cm.gemm_cost(t, m, n, k, cm.Operand(m, k),
                             cm.Operand(n, k, fmt, mask=w != 0, transposed=True), t=T,
                             placement=round_robin)
        mac_busy = sum(v for u, v in res.report.busy_cycles.items() if u.endswith(".mac"))
        assert mac_busy == model.mac_cycles
        assert T > 0


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("tname", list(LAYERS))
def test_layer_model_tracks_the_emulator(tname: str, placement: str) -> None:
    """The model replays the kernel's program (multicasts, dispatch order and token syncs
    included) on operands the memory plan aligns to the DRAM interleave period, so whole
    layers come out at the emulator's cycle count in every format and density."""
    t = load_target(tname)
    m, n, k = LAYERS[tname]
    off = {}
    for density in DENSITIES:
        w, x = weights(n, k, density)
        for fmt in FORMATS:
            c, res = emulate(t, m, n, k, fmt, w, x, placement=PLACEMENTS[placement])
            model = cm.gemm_cost(t, m, n, k, cm.Operand(m, k),
                                 cm.Operand(n, k, fmt, mask=w != 0, transposed=True), t=c.tiling.t,
                                 placement=PLACEMENTS[placement])
            if model.cycles != res.report.total_cycles:
                off[density, fmt] = (model.cycles, res.report.total_cycles)
    assert off == {}


def emulate_sddmm(target, m, n, k, fmt, w, x, placement=None):
    """The sampled weight gradient (``sddmm_text``) compiled and run, gy drawn from x's seed."""
    gy = np.random.default_rng(1).standard_normal((m, n)).astype(np.float32)
    options = CompileOptions(placement=placement) if placement else CompileOptions()
    c = compile_module(parse_module(sddmm_text(m, n, k, fmt)), target, options)
    return c, emulator.run(c.program, target, c.bind([gy, x, w]))


def sddmm_model(target, m, n, k, fmt, w, t, placement=None) -> cm.GemmCost:
    """gemm_cost of the sampled weight gradient: C (n x k) = gy^T (n x m) . x (m x k) at w."""
    return cm.gemm_cost(target, n, k, m, cm.Operand(m, n, transposed=True), cm.Operand(m, k), t=t,
                        placement=placement, sample=cm.Operand(n, k, fmt, mask=w != 0))


@pytest.mark.parametrize("placement", list(PLACEMENTS))
@pytest.mark.parametrize("tname", list(LAYERS))
def test_sddmm_model_tracks_the_emulator(tname: str, placement: str) -> None:
    """The same for the sampled weight gradient: the replayed sddmm kernel (the sample's
    ``ld`` per output tile, ``sddmm`` timed by ``cost_model.sddmm_cycles``) comes out at the
    emulator's cycle count in every format and density."""
    t = load_target(tname)
    m, n, k = LAYERS[tname]
    off = {}
    for density in DENSITIES[:3]:
        w, x = weights(n, k, density)
        for fmt in FORMATS:
            c, res = emulate_sddmm(t, m, n, k, fmt, w, x, placement=PLACEMENTS[placement])
            model = sddmm_model(t, m, n, k, fmt, w, c.tiling.t, PLACEMENTS[placement])
            if model.cycles != res.report.total_cycles:
                off[density, fmt] = (model.cycles, res.report.total_cycles)
    assert off == {}


@pytest.mark.parametrize(("dataflow", "skip"), [("os", "ab"), ("os", "a"), ("os", "none"),
                                              ("flexible", "ab"), ("systolic", "none")])
def test_sddmm_cycles_are_the_emulators(dataflow: str, skip: str) -> None:
    """``cost_model.sddmm_cycles`` from masks is the emulator's closed form (chunks of sampled
    outputs), zeros on both operands and the sample, ragged shapes, each dataflow."""
    from acf.emulator import timing_compute as tc

    t = load_target("acf-small", overrides={"cluster.dataflow": dataflow, "cluster.skip": skip})
    cfg = tc.ClusterTiming.of(t)
    rng = np.random.default_rng(0)
    for m, n, k in ((16, 16, 16), (20, 13, 37), (8, 52, 52), (3, 5, 0)):
        a = (rng.random((m, k)) < 0.6).astype(np.float32)
        b = (rng.random((k, n)) < 0.4).astype(np.float32)
        for s in (rng.random((m, n)) < 0.3, np.zeros((m, n), bool)):
            want = tc.sddmm_cycles(a, b, s, "ab", cfg)[0]
            assert cm.sddmm_cycles(t, m, n, k, s_mask=s, a_mask=a, b_mask=b) == want, (m, n, k)


def _choose(t, m, n, k, w, density, kind: str = "linear") -> str:
    text = layer_text(m, n, k, "csr", density) if kind == "linear" else sddmm_text(m, n, k, "csr")
    module = parse_module(text)
    SelectFormats(masks={"w": w != 0}, target=t.name).run(module)
    w_arg = next(a for a in module.funcs[0].arguments if a.name_hint == "w")
    return encoding_to_format(w_arg.type.encoding)


def _port_flits(report) -> dict[int, int]:
    """Flits through each fabric row's memory port, both directions (links ``P_y`` <->
    cluster ``(0, y)``, named ``p{y}->c{id}`` and ``c{id}->p{y}`` in the report)."""
    out: dict[int, int] = {}
    for link, flits in report.noc_link_flits.items():
        for end in str(link).split("->"):
            if end.startswith("p"):
                out[int(end[1:])] = out.get(int(end[1:]), 0) + flits
    return out


@pytest.mark.parametrize(("shape", "fmt", "ragged"), [((256, 512, 512), "dense", False),
                                                      ((128, 2048, 288), "bitmap", True)])
def test_model_replays_the_multicast_layouts(monkeypatch, shape, fmt, ragged) -> None:
    """Under the default compile the model times the kernel's own multicast layout (both
    dense operands shared along rows and columns; a packed weight's 15 column blocks shared
    ragged over four clusters a row): every byte it sends through the memory ports is one
    the emulator sends, row by row, and the cycles are the emulator's."""
    from acf.compiler.codegen.kernels import matmul

    layouts = []
    real = matmul._multicast_layout

    def spy(*args, **kwargs):
        found = real(*args, **kwargs)
        layouts.append((bool(args[4] if len(args) > 4 else kwargs.get("ragged")), found is not None))
        return found

    monkeypatch.setattr(matmul, "_multicast_layout", spy)
    t = load_target("acf-base")
    m, n, k = shape
    w, x = weights(n, k, 0.1, m=m)
    c, res = emulate(t, m, n, k, fmt, w, x)
    model = cm.gemm_cost(t, m, n, k, cm.Operand(m, k),
                         cm.Operand(n, k, fmt, mask=w != 0, transposed=True), t=c.tiling.t)
    assert layouts == [(ragged, True)] * 2  # the compile's, then the model's
    assert model.port_flits == _port_flits(res.report)
    assert model.cycles == res.report.total_cycles


CHOICE_LAYERS = [("linear", "acf-small", LAYERS["acf-small"]),
                 ("linear", "acf-base", LAYERS["acf-base"]),
                 ("linear", "acf-base", (256, 512, 512)),
                 # the sample of a masked weight gradient; the acf-base shape is one where
                 # costing the sample as a load of B's tiles chose bitmap at 90 % (+43 %)
                 ("sddmm", "acf-small", LAYERS["acf-small"]),
                 ("sddmm", "acf-base", (32, 300, 200))]


@pytest.mark.parametrize(("kind", "tname", "shape"), CHOICE_LAYERS)
def test_chosen_format_is_within_5_percent_of_the_fastest(kind: str, tname: str, shape) -> None:
    t = load_target(tname)
    m, n, k = shape
    run = emulate if kind == "linear" else emulate_sddmm
    for density in DENSITIES if kind == "linear" else DENSITIES[:3]:
        w, x = weights(n, k, density, m=m)
        measured = {f: run(t, m, n, k, f, w, x)[1].report.total_cycles for f in FORMATS}
        chosen = _choose(t, m, n, k, w, density, kind)
        best = min(measured, key=measured.get)
        got = measured.get(chosen) or run(t, m, n, k, chosen, w, x)[1].report.total_cycles
        print(f"{kind} {tname} density {density:.2f}: chose {chosen} {got} cycles, fastest "
              f"{best} {measured[best]} ({100 * (got / measured[best] - 1):+.1f} %)")
        assert got <= 1.05 * measured[best], (density, chosen, measured)


def realized_fraction(tname: str) -> tuple[float, float, float]:
    """(realized speedup, ideal speedup, fraction) at 90 % weight sparsity, against the same
    layer compiled dense and run with zero-skipping off (every dense MAC issued)."""
    t = load_target(tname)
    m, n, k = LAYERS[tname]
    w, x = weights(n, k, 0.10)
    chosen = _choose(t, m, n, k, w, 0.10)
    _, sparse = emulate(t, m, n, k, chosen, w, x)
    _, dense = emulate(t, m, n, k, "dense", w, x, noskip=True)
    ideal = sparse.report.macs_issued_count / sparse.report.macs_effectual_count
    realized = dense.report.total_cycles / sparse.report.total_cycles
    return realized, ideal, realized / ideal


@pytest.mark.parametrize("tname", list(LAYERS))
def test_sparse_layer_is_faster_than_dense(tname: str) -> None:
    realized, ideal, frac = realized_fraction(tname)
    print(f"{tname}: 90 % sparse realizes {realized:.2f}x of an ideal {ideal:.2f}x "
          f"({100 * frac:.0f} %)")
    assert realized > 1.5


def attainable_speedup(tname: str) -> float:
    """The speedup at 90 % weight sparsity that the fabric permits this layer: dense over
    sparse lower bound, each the larger of its MACs over every PE of the fabric and its
    bytes (x, the weight in its format, y: each moved once) over the memory-port links
    (one per row, docs/timing.md section 7). Skipping cuts the MACs by the ideal factor but
    not x and y, so a layer this small is port-bound on both sides."""
    t = load_target(tname)
    m, n, k = LAYERS[tname]
    w, _ = weights(n, k, 0.10)
    fmt = _choose(t, m, n, k, w, 0.10)
    tile = choose_tiling(t).t
    w_bytes = 4 * n * k if fmt == "dense" else sum(
        formats.encoded_size_of(w[r:r + tile, c:c + tile], fmt)
        for r in range(0, n, tile) for c in range(0, k, tile))
    pe = t.num_clusters * int(t.cluster.pe_rows) * int(t.cluster.pe_cols)
    ports = t.port_bytes_per_cycle
    xy = 4 * m * k + 4 * m * n

    def bound(macs: float, wb: int) -> float:
        return max(macs / pe, (xy + wb) / ports)

    return bound(m * n * k, 4 * n * k) / bound(m * int((w != 0).sum()), w_bytes)


@pytest.mark.parametrize("tname", list(LAYERS))
def test_sparse_layer_realizes_half_of_what_the_ports_permit(tname: str) -> None:
    """Against the port/MAC bound (not the MAC-only ideal): the compiled 90 % layer gets at
    least half of the speedup the fabric's memory ports leave room for."""
    realized, ideal, _ = realized_fraction(tname)
    bound = attainable_speedup(tname)
    print(f"{tname}: realized {realized:.2f}x, attainable under the port bound {bound:.2f}x "
          f"({100 * realized / bound:.0f} %), MAC-only ideal {ideal:.2f}x")
    assert bound < 0.5 * ideal  # why the plain half-of-ideal check below cannot hold here
    assert realized >= 0.5 * bound


@pytest.mark.xfail(strict=True, reason=(
    "the layer is port-bound, not MAC-bound, dense and sparse: x and y cross the memory-port "
    "links (one 32 B/cycle link per row on acf-base) whatever the weight's sparsity, so even "
    "moving every byte once leaves room for under half of the MAC-only ideal "
    "(test_sparse_layer_realizes_half_of_what_the_ports_permit computes that bound); "
    "benchmarks/speedup_limits.py relaxes the limits one at a time: with 4x wider ports "
    "(acf-wide) the PE folds bind large layers instead (a 16x16 fold waits for its slowest "
    "output, per 144-deep k-chunk, plus its drain) and latency this one: 28-32 % of the "
    "ideal, emulated"))
@pytest.mark.parametrize("tname", list(LAYERS))
def test_half_of_the_ideal_speedup_at_90_percent_sparsity(tname: str) -> None:
    _realized, _ideal, frac = realized_fraction(tname)
    assert frac >= 0.5


def test_model_falls_back_as_the_compile_does_when_tokens_run_out(monkeypatch) -> None:
    """Where a multicast layout needs more fabric-wide tokens than a barrier interval has,
    codegen emits the kernel again without multicast; the model records it the same way
    (forced here) and times the program the compile then makes."""
    from acf.compiler import gemm_replay
    from acf.compiler.codegen.schedule import TokensExhausted

    real = gemm_replay._program

    def exhausted(ctx):
        if ctx.multicast:
            raise TokensExhausted("forced")
        return real(ctx)

    monkeypatch.setattr(gemm_replay, "_program", exhausted)
    gemm_replay._RECORDED.clear()
    t = load_target("acf-base")
    m, n, k = 256, 512, 512
    w, x = weights(n, k, 0.1, m=m)
    c = compile_module(parse_module(layer_text(m, n, k, "dense")), t, CompileOptions(multicast=False))
    res = emulator.run(c.program, t, c.bind([x, w]))
    model = cm.gemm_cost(t, m, n, k, cm.Operand(m, k),
                         cm.Operand(n, k, "dense", mask=w != 0, transposed=True), t=c.tiling.t)
    monkeypatch.undo()
    gemm_replay._RECORDED.clear()
    shared = cm.gemm_cost(t, m, n, k, cm.Operand(m, k),
                          cm.Operand(n, k, "dense", mask=w != 0, transposed=True), t=c.tiling.t)
    assert not any(i.mnemonic == "bcast" for i in c.program.instructions)
    assert model.cycles == res.report.total_cycles
    assert shared.cycles != model.cycles  # the multicast layout (not forced: it fits) differs
