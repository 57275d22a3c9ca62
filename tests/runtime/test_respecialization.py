"""Re-specialization across density bands: a conv kernel stays dense-stored, a linear weight
changes format, a format that does not compile falls back to the previous program, a
compressed weight is still trained wherever its mask holds it (also at zero), what only its
update touches is stored compressed with it, and a 2:4-stored weight loads and trains."""

from __future__ import annotations

import numpy as np
from acf.compiler.codegen.errors import CodegenError
from acf.runtime import Session, SessionOptions
from acf.runtime import session as session_module
from acf.runtime.variants import value_format

from .programs import CONV_LINEAR, LAYER, MLP, conv_linear_args, layer_args, mlp_args, random_mask
from .test_session import close, interp

INPUTS = ("w", "v", "x", "gy", "a", "ga", "bv", "bw")


def _conv_masks(density: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return ((rng.random((8, 4, 3, 3)) < density).astype(np.float32),
            random_mask((16, 32), density, seed + 100))


def _interp_args(args: dict[str, np.ndarray], mw: np.ndarray, mv: np.ndarray) -> list[np.ndarray]:
    """CONV_LINEAR's arguments in order, the weights masked as the session binds them."""
    return [args["w"] * mw, args["v"] * mv, *(args[k] for k in INPUTS[2:]), mw, mv]


def _run_bands(sess: Session, densities: list[float]) -> list:
    reports = []
    for i, density in enumerate(densities):
        mw, mv = _conv_masks(density, i)
        args = conv_linear_args()
        args["bw"] *= mw  # a momentum the masked gradients built up
        args["bv"] *= mv
        sess.bind_mask("w", mw)
        sess.bind_mask("v", mv)
        res = sess.run_step({k: args[k] for k in INPUTS})
        want = interp(CONV_LINEAR, _interp_args(args, mw, mv))
        for got, w in zip(res.values, want):
            close(got, w)
        reports.append(res.report)
    return reports


def test_conv_weight_stays_dense_while_the_linear_weight_changes_format() -> None:
    sess = Session("acf-small", SessionOptions(verify=False))
    sess.load(CONV_LINEAR)
    reports = _run_bands(sess, [0.9, 0.3, 0.1])
    assert [r.formats for r in reports] == [{"w": "dense", "v": "dense"},
                                            {"w": "dense", "v": "bitmap"},
                                            {"w": "dense", "v": "csr"}]
    respec = [(e["param"], e["from"], e["to"]) for r in reports for e in r.respecialized]
    assert respec == [("v", "dense", "bitmap"), ("v", "bitmap", "csr")]
    assert reports[2].densities["w"] < 0.2  # the conv weight crossed both bands too


def test_a_format_that_does_not_compile_falls_back(monkeypatch) -> None:
    real = session_module.compile_module

    def no_bitmap(module, target, options):
        args = {a.name_hint: a for a in module.funcs[0].arguments}
        if "v" in args and value_format(args["v"]) == "bitmap":
            raise CodegenError("'graph.linear': bitmap not supported here")
        return real(module, target, options)

    monkeypatch.setattr(session_module, "compile_module", no_bitmap)
    sess = Session("acf-small", SessionOptions(verify=False))
    sess.load(CONV_LINEAR)
    reports = _run_bands(sess, [0.9, 0.3])
    entry, = reports[1].respecialized
    assert (entry["param"], entry["to"], entry["kept"]) == ("v", "bitmap", False)
    assert "bitmap not supported here" in entry["error"]
    assert reports[1].formats == {"w": "dense", "v": "dense"}


def test_compressed_weight_trains_its_grown_connections() -> None:
    """A weight stored CSR after a band crossing: entries its mask holds at zero (grown at
    zero) are updated as the eager masked step updates them (the IR's ``mask_apply`` after
    the update), not frozen by the stored pattern."""
    sess = Session("acf-small", SessionOptions(verify=False))
    sess.load(MLP)
    args = mlp_args(3)
    for i, density in enumerate([0.9, 0.1]):
        mask = random_mask((48, 32), density, 20 + i)
        mask[0, :8] = 1
        w1 = args["w1"] * mask
        w1[0, :8] = 0  # grown at zero
        sess.bind_mask("w1", mask)
        res = sess.run_step({**args, "w1": w1})
        want = interp(MLP, [w1, args["w2"], args["x"], args["labels"], mask])
        for got, w in zip(res.values, want):
            close(got, w)
    assert res.report.formats == {"w1": "csr"}
    new_w1 = res.values[3].reshape(48, 32)
    assert np.all(new_w1[0, :8] != 0)


def test_a_compressed_weight_moves_its_update_state_compressed(monkeypatch) -> None:
    """The sampled gradient, momentum and mask of a CSR weight are stored CSR too: the same
    values, with fewer bytes through the memory ports and a shorter update."""
    args = layer_args(0.1, seed=7)
    mask = args.pop("mask")
    want = interp(LAYER, [args[k] if k != "mask" else mask for k in ("x", "w", "mask", "gy", "buf")])

    def run() -> object:
        sess = Session("acf-small", SessionOptions(respecialize="off"))
        sess.load(LAYER)
        sess.bind_mask("w", mask)
        res = sess.run_step(args)
        for got, w in zip(res.values, want):
            close(got, w)
        return res.report

    packed = run()
    monkeypatch.setattr(session_module, "compress_with_weights", lambda *args: 0)
    plain = run()
    dram = [r.emulator.memory_bytes["dram_bytes"] for r in (packed, plain)]
    assert dram[0] < 0.8 * dram[1]
    assert packed.by_kind["optimizer"]["span_cycles"] < plain.by_kind["optimizer"]["span_cycles"]


def test_dense_gradient_step_of_a_compressed_masked_weight() -> None:
    """RigL's dense-gradient step on a CSR weight whose update carries the mask: the full
    gradient is returned, and the momentum still takes only the masked one (as eager
    masked SGD zeroes the inactive gradient entries before the step)."""
    sess = Session("acf-small", SessionOptions(verify=False, grad_variants=("sddmm", "dense")))
    sess.load(CONV_LINEAR)
    _run_bands(sess, [0.9, 0.1])
    args = conv_linear_args()
    mw, mv = _conv_masks(0.1, 1)
    res = sess.run_step({k: args[k] for k in INPUTS}, dense_grad=True)
    assert res.report.formats["v"] == "csr" and "wgrad_dense" in res.report.by_kind
    want = interp(CONV_LINEAR, _interp_args(args, mw, mv))
    for i in (0, 1, 2, 3, 4, 6):  # outputs, new weights and momenta: as masked
        close(res.values[i], want[i])
    close(res.values[5], args["ga"].T @ args["a"])  # the full gradient
    assert np.count_nonzero(res.values[5].reshape(16, 32) * (1 - mv)) > 0


def test_conv_kernel_momentum_is_stored_in_its_band_format(monkeypatch) -> None:
    """With formats="auto" a conv kernel stays dense-stored but its momentum takes its
    density band's format (lossless: the same values, fewer bytes) where the target's
    codecs keep up with its memory ports (acf-base, not acf-small); a band crossing changes
    it, reported as a state change."""

    def run(target: str, densities: list[float]) -> list:
        sess = Session(target, SessionOptions(formats="auto", verify=False))
        sess.load(CONV_LINEAR)
        return _run_bands(sess, densities)

    packed = run("acf-base", [0.1, 0.9])
    assert packed[0].variant.endswith(";states=w=csr") and packed[0].formats == {"w": "dense", "v": "csr"}
    assert ";states=" not in run("acf-small", [0.1])[0].variant
    states = [e for e in packed[1].respecialized if e.get("state")]
    assert [(e["param"], e["from"], e["to"]) for e in states] == [("w", "csr", "dense")]
    assert ";states=" not in packed[1].variant
    monkeypatch.setattr(session_module, "codec_keeps_up", lambda target: False)
    plain = run("acf-base", [0.1])
    assert ";states=" not in plain[0].variant
    dram = [r[0].emulator.memory_bytes["dram_bytes"] for r in (packed, plain)]
    assert dram[0] < dram[1]


def test_compressed_weight_feeds_the_relu_gated_input_gradient_encoded() -> None:
    """The masked weight of a hidden layer also feeds the previous layer's ReLU-gated input
    gradient (an sddmm after sparsity-propagation): stored CSR, it reaches it encoded, with
    no dense masked copy made first."""
    t = "tensor<16x32xf32>"
    text = f"""graph.func @step(%w: {t}, %x: tensor<8x16xf32>, %h: tensor<8x32xf32>, %gz: tensor<8x16xf32>, %mask.w: {t}) -> (tensor<8x16xf32>, tensor<8x32xf32>) {{
  %a = graph.relu %h : tensor<8x32xf32> -> tensor<8x32xf32>
  %mw = graph.mask_apply %w, %mask.w : {t}, {t} -> {t}
  %z = graph.linear %a, %mw : tensor<8x32xf32>, {t} -> tensor<8x16xf32>
  %ga = graph.matmul %gz, %mw : tensor<8x16xf32>, {t} -> tensor<8x32xf32>
  %gh = graph.relu_backward %ga, %a : tensor<8x32xf32>, tensor<8x32xf32> -> tensor<8x32xf32>
  graph.return %z, %gh : tensor<8x16xf32>, tensor<8x32xf32>
}}
"""
    rng = np.random.default_rng(9)
    args = {k: rng.standard_normal(s).astype(np.float32) for k, s in
            (("w", (16, 32)), ("x", (8, 16)), ("h", (8, 32)), ("gz", (8, 16)))}
    mask = random_mask((16, 32), 0.1, 4)
    sess = Session("acf-small", SessionOptions(formats="auto"))
    sess.load(text)
    sess.bind_mask("w", mask)
    res = sess.run_step(args)
    want = interp(text, [args["w"] * mask, args["x"], args["h"], args["gz"], mask])
    for got, w in zip(res.values, want):
        close(got, w)
    assert res.report.formats == {"w": "csr"}
    compiled = sess._cache[next(k for k in sess._cache if "w=csr" in k[-1])]
    names = [op.name for op in compiled.func.body.ops]
    assert "graph.mask_apply" not in names and "graph.sddmm" in names


NM24 = "#sparse<{map = (i, j) -> (i : dense, j floordiv 4 : dense, j mod 4 : structured[2, 4])}>"
#: LAYER with its weight and mask stored 2:4
LAYER_NM = LAYER.replace("#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>",
                         "#nm = " + NM24).replace("#csr", "#nm")


def _mask_2_4(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((40, 64), np.float32)
    for row in mask:
        for g in range(16):
            row[4 * g + rng.choice(4, 2, replace=False)] = 1
    return mask


def test_a_2_4_weight_trains_like_the_interpreter() -> None:
    """A weight stored 2:4 loads and trains as a CSR one does: its mask stays 2:4, its
    sampled gradient and momentum (which no op makes 2:4) are stored bitmap; both gradient
    variants equal the interpreter, a new 2:4 mask restarts its grown connections at zero
    and is costed as cost_mask_update foresaw."""
    assert "#csr" not in LAYER_NM and LAYER_NM.count("#nm") > 3
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal((8, 64)), 0).astype(np.float32)
    gy = rng.standard_normal((8, 40)).astype(np.float32)
    m1, m2 = _mask_2_4(1), _mask_2_4(2)
    w = rng.standard_normal((40, 64)).astype(np.float32) * m1
    buf = rng.standard_normal((40, 64)).astype(np.float32) * m1
    sess = Session("acf-small", SessionOptions(grad_variants=("sddmm", "dense")))
    sess.load(LAYER_NM, carry={"result3": "w", "result4": "buf"})
    compiled = sess._cache[next(iter(sess._cache))]
    formats = {a.name_hint: value_format(a) for a in compiled.func.arguments}
    assert formats == {"x": "dense", "w": "nm2:4", "mask": "nm2:4", "gy": "dense", "buf": "bitmap"}
    sddmm = next(op for op in compiled.func.body.ops if op.name == "graph.sddmm")
    assert value_format(sddmm.result) == "bitmap"
    sess.set_params({"w": w, "buf": buf})
    sess.bind_mask("w", m1)
    res = sess.run_step({"x": x, "gy": gy})
    want = interp(LAYER_NM, [x, w, m1, gy, buf])
    for got, ref in zip(res.values, want):
        close(got, ref)
    dense = Session("acf-small", SessionOptions(grad_variants=("dense",)))
    dense.load(LAYER_NM)
    dense.bind_mask("w", m1)
    full = dense.run_step({"x": x, "w": w, "gy": gy, "buf": buf}, dense_grad=True)
    gh = np.where(want[0] > 0, gy, 0).astype(np.float32)
    close(full.values[2], gh.T @ x)
    for i in (0, 1, 3, 4):
        close(full.values[i], want[i])

    asked = sess.cost_mask_update({"w": m2})
    sess.bind_mask("w", m2)
    grown = (m2 != 0) & (m1 == 0)
    res2 = sess.run_step({"x": x, "gy": gy})
    w1, buf1 = (np.where(grown, 0, v.reshape(40, 64)) for v in want[3:5])
    for got, ref in zip(res2.values, interp(LAYER_NM, [x, w1 * m2, m2, gy, buf1])):
        close(got, ref)
    assert res2.report.formats == {"w": "nm2:4"} and not res2.report.compiled
    assert res2.report.mask_update == asked and asked["cycles"] > 0
