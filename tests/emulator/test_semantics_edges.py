"""Instruction semantics at their edges: cached block-CSR tiles of the wrong shape, bf16
rounding in every data multiply, interleaved destination views, empty reductions, silent
IEEE arithmetic and the messages of never-written tiles and negative addresses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from acf.emulator import EmulatorTrap, run
from acf.isa.asm import assemble
from acf.isa.semantics import bf16_round, view_is_injective
from acf.isa.target import load_target


def _run(text: str, inputs: dict | None = None, overrides: dict | None = None):
    return run(assemble(".target acf-small\n" + text), load_target("acf-small", overrides), inputs or {})


def _trap(text: str, inputs: dict | None = None) -> EmulatorTrap:
    with pytest.raises(EmulatorTrap) as info:
        _run(text, inputs)
    return info.value


def test_a_cached_block_csr_tile_loaded_with_the_wrong_shape_traps() -> None:
    """A bound sparse input is in the decode cache: its hit skipped the shape check, and
    block-CSR's header holds the blocks' shape, so a 4x4 tile read as 3x3 was written
    whole over 3x3's bytes (52 bytes where 36 were declared)."""
    t = _trap(".tensor W dram 0x0 f32[4,4] bcsr2x2\n"
              "    ld c0, sp[0x0], dram[W], bcsr2x2, rows=3, cols=3\n    halt\n",
              {"W": np.arange(1, 17, dtype=np.float32).reshape(4, 4)})
    assert t.kind == "bad format header" and "tile is 4x4, instruction says 3x3" in str(t)


def test_bf16_mode_rounds_the_operands_of_a_sum_of_squares() -> None:
    a = np.array([[1.00390625 + 2 ** -9, 3.14159]], np.float32)  # neither is a bf16 value
    r = _run(".tensor A sp 0x0 f32[1,2] c0\n.tensor SS sp 0x200 f32[1,1] c0\n"
             ".tensor MM sp 0x300 f32[1,1] c0\n"
             "    vred c0, sumsq, sp[0x200], sp[0x0], rows=1, cols=2, axis=1\n"
             "    mm c0, sp[0x300], sp[0x0], sp[0x0], m=1, n=1, k=2, tb=1\n    halt\n",
             {"A": a}, {"numeric.mode": "bf16"})
    b = bf16_round(a)
    want = np.float32((b * b).sum())
    assert r.outputs["SS"][0, 0] == want == r.outputs["MM"][0, 0]
    assert want != np.float32((a * a).sum())  # so the check tells the modes apart


def test_an_interleaved_destination_view_writes_each_element_once() -> None:
    """Row stride 3, column stride 2: elements at 0, 2, 4 and 3, 5, 7, all distinct, though
    no stride clears the span of the other (the nested-stride test refused it)."""
    a, b = np.array([[1], [10]], np.float32), np.array([[1, 2, 3]], np.float32)
    r = _run(".tensor A sp 0x0 f32[2,1] c0\n.tensor B sp 0x100 f32[1,3] c0\n"
             ".tensor C acc 0x0 f32[8] c0\n"
             "    mview c0, 3, 1, 3, 2, 1\n"
             "    mm c0, acc[0x0], sp[0x0], sp[0x100], m=2, n=3, k=1, vd=3\n    halt\n",
             {"A": a, "B": b, "C": np.full(8, -1, np.float32)})
    np.testing.assert_array_equal(r.outputs["C"], [1, -1, 2, 10, 3, 20, -1, 30])


@pytest.mark.parametrize("view, injective", [
    ((0, 2, 1, 1, 3, 3, 0, 0, 2), True),    # rows 3 apart, columns 2 apart: interleaved
    ((0, 2, 1, 1, 3, 2, 0, 0, 1), False),   # row 1 starts at element 2 of row 0
    ((0, 4, 1, 1, 4, 4, 0, 0, 1), True),    # plain row-major
    ((0, 2, 1, 1, 2, 0, 0, 0, 1), False),   # a zero stride repeats every row
    ((0, 3, 1, 2, 2, 1, 0, 6, 3), True),    # three interleaved strides
])
def test_view_injectivity_is_exact(view: tuple[int, ...], injective: bool) -> None:
    _, d0, nb, d1, d2, s0, s3, s1, s2 = view
    addr = [r * s0 + b * s3 + u * s1 + c * s2 for r in range(d0) for b in range(nb)
            for u in range(d1) for c in range(d2)]
    assert (len(set(addr)) == len(addr)) == injective  # the fixture itself
    assert view_is_injective(view) == injective


@pytest.mark.parametrize("fn", ["max", "min", "sum", "mean"])
def test_an_empty_accumulating_reduction_keeps_the_destination(fn: str) -> None:
    """An empty max reduced to 0 and then combined: max(-3, 0) overwrote -3."""
    d = np.array([[-3.0, 5.0, -0.5, 2.0]], np.float32)
    r = _run(".tensor A sp 0x0 f32[4] c0\n.tensor D sp 0x100 f32[1,4] c0\n"
             f"    vred c0, {fn}, sp[0x100], sp[0x0], rows=0, cols=4, axis=0, accum=1\n    halt\n",
             {"A": np.ones(4, np.float32), "D": d})
    np.testing.assert_array_equal(r.outputs["D"], d)


def test_overflow_and_nan_in_products_and_reductions_are_silent_ieee() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = _run(".tensor A sp 0x0 f32[1,2] c0\n.tensor C acc 0x0 f32[1,1] c0\n"
                 ".tensor S sp 0x100 f32[1,1] c0\n"
                 "    mm c0, acc[0x0], sp[0x0], sp[0x0], m=1, n=1, k=2, tb=1, accum=1\n"
                 "    vred c0, sumsq, sp[0x100], sp[0x0], rows=1, cols=2, axis=1\n    halt\n",
                 {"A": np.array([[3e38, 1.0]], np.float32), "C": np.array([[-np.inf]], np.float32)})
    assert np.isnan(r.outputs["C"][0, 0]) and r.outputs["S"][0, 0] == np.inf  # -inf + inf, 9e76


def test_a_load_of_a_tile_never_stored_says_so() -> None:
    t = _trap("    ld c0, sp[0x0], dram[0x2000], csr, rows=4, cols=4\n    halt\n")
    assert t.kind == "bad format header"
    assert str(t).endswith("bad format header at dram[0x2000]: no csr tile was stored there "
                           "(its header bytes are all zero)")


def test_a_negative_address_is_named_as_one() -> None:
    t = _trap("    setar ar1, 0x0\n    addar ar1, -64\n"
              "    vop c0, add, sp[0x10+ar1], sp[0x0], sp[0x0], rows=1, cols=4\n    halt\n")
    assert t.kind == "out-of-bounds"
    assert "out-of-bounds scratchpad access at -0x30: a negative address" in str(t)
