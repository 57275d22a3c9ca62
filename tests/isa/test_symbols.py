"""Tiled sparse symbols: fixed slots, exact round trips, directive round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acf.isa import formats
from acf.isa.asm import AsmError, assemble
from acf.isa.container import read, write
from acf.isa.disasm import disassemble
from acf.isa.symbols import pack_symbol, slot_bytes, tile_address, unpack_symbol

FORMATS = ["dense", "csr", "csc", "coo", "bitmap", "bcsr2x4", "nm2:4"]


@settings(max_examples=60)
@given(fmt=st.sampled_from(FORMATS), rows=st.integers(1, 40), cols4=st.integers(1, 10),
       tr=st.integers(1, 20), tc4=st.integers(1, 5), density=st.floats(0, 1), seed=st.integers(0, 99))
def test_pack_unpack_symbol(fmt, rows, cols4, tr, tc4, density, seed) -> None:
    cols, tc = 4 * cols4, 4 * tc4  # N:M needs column counts divisible by M
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < density)).astype(np.float32)
    if fmt.startswith("nm"):
        x = formats.nm_prune(x, 2, 4)
    tile = "" if fmt == "dense" else f" tile[{tr},{tc}]"
    prog = assemble(f".tensor W dram 0x100 f32[{rows},{cols}] {fmt}{tile}\nhalt\n")
    sym = prog.symbols["W"]
    blob = pack_symbol(sym, x)
    assert len(blob) == sym.nbytes
    assert np.array_equal(unpack_symbol(sym, blob), x)
    assert read(write(prog)).symbols == prog.symbols
    assert assemble(disassemble(prog)).symbols == prog.symbols


def test_slot_is_the_dense_encoding_rounded_to_64() -> None:
    sym = assemble(".tensor W dram 0 f32[32,32] csr tile[16,16]\nhalt\n").symbols["W"]
    # csr 16x16 fully dense: 16 header + 4*17 rowptr + 2*256 colidx + 4*256 values = 1620
    assert slot_bytes(sym) == 1664
    assert tile_address(sym, 1, 1) == 3 * 1664


def test_tile_directive_errors() -> None:
    with pytest.raises(AsmError, match="sparse formats only"):
        assemble(".tensor W dram 0 f32[8,8] tile[4,4]\nhalt\n")
    with pytest.raises(AsmError, match="two positive sizes"):
        assemble(".tensor W dram 0 f32[8,8] csr tile[4]\nhalt\n")
