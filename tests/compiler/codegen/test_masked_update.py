"""Optimizer updates of a sparse-encoded parameter: without a mask the parameter keeps its
pattern; with a mask operand the mask decides, so a held weight at zero (a connection just
grown at zero, as RigL grows them) is trained like any other."""

from __future__ import annotations

import numpy as np
import pytest

from .helpers import expected, run_checked

ENC = {"csr": "#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>\n",
       "bitmap": "#bitmap = #sparse<{map = (i, j) -> (i : dense, j : bitmap)}>\n"}
T = "tensor<40x64xf32"


def _sgd(fmt: str, mask_fmt: str | None) -> str:
    """sgd_update of a ``fmt``-encoded weight, masked by ``%mask`` (encoded ``mask_fmt`` or
    dense) or, with ``mask_fmt`` None, by none."""
    tw = f"{T}, #{fmt}>"
    tm = f"{T}, #{mask_fmt}>" if mask_fmt not in (None, "dense") else f"{T}>"
    mask_arg = f", %mask: {tm}" if mask_fmt else ""
    mask_op, mask_ty = (", %mask", f", {tm}") if mask_fmt else ("", "")
    encodings = "".join(ENC[f] for f in {fmt, mask_fmt} if f in ENC)
    return encodings + f"""graph.func @f(%w: {tw}, %g: {T}>, %buf: {T}>{mask_arg}) -> ({tw}, {T}>) {{
  %nw, %nb = graph.sgd_update %w, %g, %buf{mask_op} {{lr = 0.1, momentum = 0.9, weight_decay = 0.01}} : {tw}, {T}>, {T}>{mask_ty} -> {tw}, {T}>
  graph.return %nw, %nb : {tw}, {T}>
}}
"""


def _operands(seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """(w, g, buf, mask) with row 0's first 8 weights held by the mask at zero, and the
    boolean index of those grown weights."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((40, 64)) < 0.3).astype(np.float32)
    mask[0, :8] = 1
    w = rng.standard_normal((40, 64)).astype(np.float32) * mask
    w[0, :8] = 0
    g = rng.standard_normal((40, 64)).astype(np.float32) * mask
    buf = rng.standard_normal((40, 64)).astype(np.float32)
    grown = np.zeros((40, 64), bool)
    grown[0, :8] = True
    return [w, g, buf, mask], grown


@pytest.mark.parametrize("fmt, mask_fmt", [("csr", "dense"), ("bitmap", "dense"), ("csr", "csr")])
def test_masked_update_of_an_encoded_weight_follows_the_mask(fmt: str, mask_fmt: str) -> None:
    text = _sgd(fmt, mask_fmt)
    args, grown = _operands()
    want = expected(text, args)
    (new_w, new_buf), _ = run_checked(text, args, want, target="acf-small")
    new_w = new_w.reshape(40, 64)
    assert np.all(new_w[grown] != 0)          # the grown weights are trained
    assert np.all(new_w[args[3] == 0] == 0)    # nothing off the mask
    # the momentum takes the whole update: off the mask it decays (no pattern selection)
    off = args[3] == 0
    np.testing.assert_allclose(new_buf.reshape(40, 64)[off], 0.9 * args[2][off], rtol=1e-6)


def test_update_without_a_mask_keeps_the_encoded_pattern() -> None:
    text = _sgd("csr", None)
    args, grown = _operands()
    want = expected(text, args[:3])
    (new_w, new_buf), _ = run_checked(text, args[:3], want, target="acf-small")
    new_w, new_buf = new_w.reshape(40, 64), new_buf.reshape(40, 64)
    assert np.all(new_w[grown] == 0)  # a zero is outside the pattern: it stays
    assert np.array_equal(new_w != 0, args[0] != 0)
    np.testing.assert_array_equal(new_buf[args[0] == 0], args[2][args[0] == 0])  # selected back


def test_masked_adam_update_of_an_encoded_weight() -> None:
    tw, t = f"{T}, #csr>", f"{T}>"
    text = ENC["csr"] + f"""graph.func @f(%w: {tw}, %g: {t}, %m: {t}, %v: {t}, %step: tensor<f32>, %mask: {t}) -> ({tw}, {t}, {t}) {{
  %nw, %nm, %nv = graph.adam_update %w, %g, %m, %v, %step, %mask {{lr = 0.01}} : {tw}, {t}, {t}, {t}, tensor<f32>, {t} -> {tw}, {t}, {t}
  graph.return %nw, %nm, %nv : {tw}, {t}, {t}
}}
"""
    (w, g, _, mask), grown = _operands(1)
    rng = np.random.default_rng(2)
    m = rng.standard_normal((40, 64)).astype(np.float32) * 0.1
    v = np.abs(rng.standard_normal((40, 64))).astype(np.float32) * 0.1
    args = [w, g, m, v, np.array(1.0, np.float32), mask]  # step 1: CompiledProgram.bind's default
    (new_w, _, _), _ = run_checked(text, args, expected(text, args), target="acf-small")
    new_w = new_w.reshape(40, 64)
    assert np.all(new_w[grown] != 0) and np.all(new_w[mask == 0] == 0)


def test_conv_kernel_update_with_a_compressed_momentum() -> None:
    """A 4-D (OIHW) momentum stored bitmap, as its matrix view O x IHW, beside a dense-stored
    conv kernel and mask: the same values, and on acf-base, whose codecs outpace its memory
    ports, fewer bytes and cycles than with the momentum dense."""
    shape = (128, 64, 3, 3)
    t = "tensor<128x64x3x3xf32"
    rng = np.random.default_rng(3)
    mask = (rng.random(shape) < 0.1).astype(np.float32)
    args = [(rng.standard_normal(shape) * mask).astype(np.float32) for _ in range(3)] + [mask]
    runs = []
    for tb in (f"{t}, #bitmap>", f"{t}>"):
        text = ENC["bitmap"] + f"""graph.func @f(%w: {t}>, %g: {t}>, %buf: {tb}, %mask: {t}>) -> ({t}>, {tb}) {{
  %nw, %nb = graph.sgd_update %w, %g, %buf, %mask {{lr = 0.1, momentum = 0.9}} : {t}>, {t}>, {tb}, {t}> -> {t}>, {tb}
  graph.return %nw, %nb : {t}>, {tb}
}}
"""
        _, res = run_checked(text, args, expected(text, args), target="acf-base")
        runs.append(res.report)
    packed, dense = runs
    assert packed.memory_bytes["dram_bytes"] < 0.8 * dense.memory_bytes["dram_bytes"]
    assert packed.total_cycles < dense.total_cycles
