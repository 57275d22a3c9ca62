"""Sparse tile formats: byte layouts, exact sizes, round trips and validation of corrupt input."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acf.isa.formats import (
    FORMAT_NAMES,
    Format,
    FormatError,
    FormatSpec,
    TileHeader,
    decoded,
    encoded_size,
    encoded_size_of,
    header,
    is_nm,
    metadata_counts,
    nm_prune,
    nnz_mask,
    pack,
    unpack,
)

SPECS = ["dense", "csr", "csc", "coo", "bitmap", "nm1:1", "nm1:2", "nm2:4", "nm3:8", "nm4:4",
         "bcsr1x1", "bcsr2x3", "bcsr4x4", "bcsr8x1"]
# Bit patterns that must survive untouched: quiet/signalling NaNs with payloads, +-inf,
# denormals and the largest finite value.
SPECIAL_BITS = np.array([0x7FC00000, 0x7FC00001, 0xFFFFFFFF, 0x7F800001, 0x7F800000,
                         0xFF800000, 0x00000001, 0x80000001, 0x7F7FFFFF], dtype=np.uint32)
NEG_ZERO = np.uint32(0x80000000)


# ----------------------------------------------------------------------------- helpers

def bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)


def assert_same_tile(x: np.ndarray, y: np.ndarray) -> None:
    """Equal after mapping -0.0 to 0, with non-zeros (NaN included) bit-exact."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    assert y.dtype == np.float32 and y.shape == x.shape
    nz = x != 0
    assert np.array_equal(nz, y != 0)
    assert np.array_equal(bits(x)[nz], bits(y)[nz])


def blocks_of(x: np.ndarray, br: int, bc: int) -> int:
    """Reference count of br x bc blocks holding a non-zero (plain loops)."""
    rows, cols = x.shape
    return sum(bool((x[i:i + br, j:j + bc] != 0).any())
               for i in range(0, rows, br) for j in range(0, cols, bc))


def ref_pack(x: np.ndarray, text: str) -> bytes:
    """Element-by-element encoder written straight from the layout description."""
    spec = FormatSpec.parse(text)
    x = np.ascontiguousarray(x, dtype=np.float32)
    b = bits(x)
    rows, cols = x.shape

    def pad(raw: bytes) -> bytes:
        return raw + bytes(-len(raw) % 4)

    def u32(v: list[int]) -> bytes:
        return struct.pack(f"<{len(v)}I", *v)

    def idx(v: list[int], ib: int) -> bytes:
        return struct.pack(f"<{len(v)}{'H' if ib == 2 else 'I'}", *v)

    nz = [(r, c) for r in range(rows) for c in range(cols) if x[r, c] != 0]
    ib = 2 if max(rows, cols) <= 65536 else 4
    f, p0, p1 = spec.format, 0, 0
    if f == Format.DENSE:
        ib, count, secs = 0, rows * cols, [u32([int(v) for v in b.reshape(-1)])]
    elif f == Format.CSR:
        ptr = [sum(1 for r, _ in nz if r < i) for i in range(rows + 1)]
        count, secs = len(nz), [u32(ptr), idx([c for _, c in nz], ib),
                                u32([int(b[r, c]) for r, c in nz])]
    elif f == Format.CSC:
        byc = sorted(nz, key=lambda e: (e[1], e[0]))
        ptr = [sum(1 for _, c in nz if c < j) for j in range(cols + 1)]
        count, secs = len(nz), [u32(ptr), idx([r for r, _ in byc], ib),
                                u32([int(b[r, c]) for r, c in byc])]
    elif f == Format.COO:
        count, secs = len(nz), [idx([r for r, _ in nz], ib), idx([c for _, c in nz], ib),
                                u32([int(b[r, c]) for r, c in nz])]
    elif f == Format.BITMAP:
        flags = bytearray((rows * cols + 7) // 8)
        for r, c in nz:
            e = r * cols + c
            flags[e // 8] |= 1 << (e % 8)
        ib, count, secs = 0, len(nz), [bytes(flags), u32([int(b[r, c]) for r, c in nz])]
    elif f == Format.NM:
        n, m = p0, p1 = spec.n, spec.m
        pos, vals = [], []
        for r in range(rows):
            for g in range(0, cols, m):
                real = [p for p in range(m) if x[r, g + p] != 0]
                assert len(real) <= n
                pads = [p for p in range(m) if p not in real][:n - len(real)]
                for p in sorted(real + pads):
                    pos.append(p)
                    vals.append(int(b[r, g + p]) if p in real else 0)
        ib, count, secs = 1, len(pos), [bytes(pos), u32(vals)]
    else:
        br, bc = p0, p1 = spec.block_rows, spec.block_cols
        gr, gc = -(-rows // br), -(-cols // bc)
        ib = 2 if max(gr, gc) <= 65536 else 4
        ptr, bcols, vals = [0], [], []
        for i in range(gr):
            for j in range(gc):
                cells = [(i * br + a, j * bc + c) for a in range(br) for c in range(bc)]
                inside = [(r, c) for r, c in cells if r < rows and c < cols]
                if any(x[r, c] != 0 for r, c in inside):
                    bcols.append(j)
                    vals += [int(b[r, c]) if r < rows and c < cols else 0 for r, c in cells]
            ptr.append(len(bcols))
        count, secs = len(bcols), [u32(ptr), idx(bcols, ib), u32(vals)]
    head = struct.pack("<BBBBIII", f, p0, p1, ib, rows, cols, count)
    return head + b"".join(pad(s) for s in secs)


def make_tile(rng: np.random.Generator, rows: int, cols: int, density: float,
              specials: bool) -> np.ndarray:
    x = rng.standard_normal((rows, cols)).astype(np.float32)
    x[rng.random((rows, cols)) >= density] = 0.0
    if specials and x.size:
        b = x.view(np.uint32)
        flat = b.reshape(-1)
        k = rng.integers(0, x.size, size=max(1, x.size // 5))
        flat[k] = rng.choice(SPECIAL_BITS, size=k.size)
        z = rng.integers(0, x.size, size=max(1, x.size // 5))
        flat[z] = NEG_ZERO
    return x


def fit_to(x: np.ndarray, text: str) -> np.ndarray:
    """Make ``x`` valid for ``text`` (N:M-prune for nm specs)."""
    spec = FormatSpec.parse(text)
    return nm_prune(x, spec.n, spec.m) if spec.format == Format.NM else x


def check_roundtrip(x: np.ndarray, text: str, *, ref: bool = True) -> bytes:
    spec = FormatSpec.parse(text)
    buf = pack(x, spec)
    assert_same_tile(x, unpack(buf))
    np.testing.assert_array_equal(bits(decoded(x, spec)), bits(unpack(buf)))  # bit for bit
    rows, cols = x.shape
    nnz = int(np.count_nonzero(x != 0))
    nblocks = blocks_of(x, spec.block_rows, spec.block_cols) if spec.block_rows else None
    assert len(buf) == encoded_size(spec, rows, cols, nnz=nnz, nblocks=nblocks)
    assert len(buf) == encoded_size_of(x, text)
    h = header(buf)
    assert (h.rows, h.cols, h.format_spec, h.encoded_size) == (rows, cols, spec, len(buf))
    mc = metadata_counts(x, spec)
    assert (mc.count, mc.index_bytes, mc.encoded_size, mc.nnz) == (h.count, h.index_bytes,
                                                                   len(buf), nnz)
    assert mc.nonempty_rows == int((x != 0).any(axis=1).sum())
    if ref:
        assert buf == ref_pack(x, text)
    assert pack(unpack(buf), spec) == buf  # canonical: re-encoding gives the same bytes
    return buf


# ----------------------------------------------------------------------------- round trips

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.sampled_from(SPECS), rows=st.integers(1, 11), groups=st.integers(1, 11),
       density=st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]), specials=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_roundtrip_random(text, rows, groups, density, specials, seed):
    spec = FormatSpec.parse(text)
    cols = groups * spec.m if spec.format == Format.NM else groups
    x = fit_to(make_tile(np.random.default_rng(seed), rows, cols, density, specials), text)
    check_roundtrip(x, text)


def named_tiles(text: str) -> dict[str, np.ndarray]:
    spec = FormatSpec.parse(text)
    m = spec.m or 1
    rng = np.random.default_rng(7)
    w = 13 * m if spec.m else 13
    single = np.zeros((5, w), np.float32)
    single[4, w - 1] = 2.5
    empty_lines = make_tile(rng, 9, w, 0.6, False)
    empty_lines[[0, 3, 8], :] = 0
    empty_lines[:, [0, w // 2, w - 1]] = 0
    special = make_tile(rng, 6, w, 0.5, True)
    special[0, 0] = np.nan
    special[1, :m] = [np.inf] + [0] * (m - 1)
    return {
        "zeros": np.zeros((4, w), np.float32),
        "full": rng.standard_normal((7, w)).astype(np.float32) + 10,
        "single": single,
        "one_by_one_zero": np.zeros((1, m), np.float32),
        "one_by_one": np.full((1, m), 3.0, np.float32),
        "neg_zero_only": np.full((3, w), -0.0, np.float32),
        "empty_rows_cols": empty_lines,
        "odd_shape": make_tile(rng, 17, 3 * m if spec.m else 31, 0.3, False),
        "specials": special,
        "tall": make_tile(rng, 67, m, 0.5, False),
        "wide": make_tile(rng, 1, 64 * m, 0.5, False),
    }


@pytest.mark.parametrize("text", SPECS)
def test_roundtrip_named_cases(text):
    for name, x in named_tiles(text).items():
        try:
            check_roundtrip(fit_to(x, text), text)
        except AssertionError as e:
            raise AssertionError(f"{text} / {name}: {e}") from e


@pytest.mark.parametrize("text", SPECS)
@pytest.mark.parametrize("shape", [(0, 0), (0, 8), (3, 0)])
def test_empty_tiles(text, shape):
    check_roundtrip(np.zeros(shape, np.float32), text)


def test_nan_payloads_and_neg_zero():
    b = np.array([[0x7FC01234, 0x80000000], [0xFF800000, 0x00000001]], dtype=np.uint32)
    x = b.view(np.float32)
    y = unpack(pack(x, "dense"))
    assert np.array_equal(y.view(np.uint32), b)  # dense keeps every bit, -0.0 included
    for text in ("csr", "csc", "coo", "bitmap"):  # NaN, -inf, denormal stored; -0.0 is not
        assert header(check_roundtrip(x, text)).count == 3
    assert header(pack(x, "bcsr1x1")).count == 3
    assert header(pack(np.full((2, 2), -0.0, np.float32), "csr")).count == 0


def test_wide_index_bytes():
    """max(rows, cols) > 65536 switches idx to u32; 65536 itself still fits u16."""
    for cols, ib in ((65536, 2), (65537, 4)):
        x = np.zeros((1, cols), np.float32)
        x[0, [0, 7, cols - 1]] = [1, 2, 3]
        for text in ("csr", "csc", "coo"):
            buf = check_roundtrip(x, text, ref=False)
            assert header(buf).index_bytes == ib
    # csr 1 x 65537, nnz 3, u32 idx: 16 + rowptr 4*2=8 + idx 4*3=12 + values 4*3=12 = 48
    assert encoded_size("csr", 1, 65537, nnz=3) == 48
    # bcsr decides on the block grid: 4 x 262144 with 4x4 blocks is a 1 x 65536 grid -> u16
    assert header(pack(np.ones((4, 262144), np.float32), "bcsr4x4")).index_bytes == 2
    assert header(pack(np.ones((4, 262148), np.float32), "bcsr4x4")).index_bytes == 4


# ----------------------------------------------------------------------------- exact sizes

def test_hand_computed_sizes():
    # dense 3x5: 16 + 4*15 = 76
    assert encoded_size("dense", 3, 5) == 76
    # csr 3x4 nnz 5: 16 + rowptr 4*4=16 + idx pad4(2*5=10)=12 + values 4*5=20 = 64
    assert encoded_size("csr", 3, 4, nnz=5) == 64
    # csc 3x4 nnz 5: 16 + colptr 4*5=20 + 12 + 20 = 68
    assert encoded_size("csc", 3, 4, nnz=5) == 68
    # coo 3x4 nnz 5: 16 + 2 * pad4(10)=24 + 20 = 60
    assert encoded_size("coo", 3, 4, nnz=5) == 60
    # bitmap 3x5 nnz 4: 16 + pad4(ceil(15/8)=2)=4 + 4*4=16 = 36
    assert encoded_size("bitmap", 3, 5, nnz=4) == 36
    # nm2:4 3x8: S = 3*(8/4)*2 = 12; 16 + pad4(12)=12 + 4*12=48 = 76
    assert encoded_size("nm2:4", 3, 8) == 76
    # bcsr2x2 3x5: grid 2x3; 2 blocks: 16 + 4*3=12 + pad4(2*2)=4 + 4*2*4=32 = 64
    assert encoded_size("bcsr2x2", 3, 5, nblocks=2) == 64

    x = np.zeros((3, 5), np.float32)
    x[0, 0], x[1, 3], x[2, 4] = 1, 2, 3  # 2x2 blocks (0,0), (0,1), (1,2)
    assert blocks_of(x, 2, 2) == 3
    # 3 blocks: 16 + 12 + pad4(2*3=6)=8 + 4*3*4=48 = 84
    assert len(pack(x, "bcsr2x2")) == encoded_size("bcsr2x2", 3, 5, nblocks=3) == 84
    # bitmap nnz 3: 16 + 4 + 4*3=12 = 32
    assert len(pack(x, "bitmap")) == 32
    assert len(pack(x, "dense")) == 76


def test_exact_bytes_csr_and_nm():
    x = np.array([[0, 1.5], [2, 0]], np.float32)
    want = (struct.pack("<BBBBIII", 1, 0, 0, 2, 2, 2, 2) + struct.pack("<3I", 0, 1, 2)
            + struct.pack("<2H", 1, 0) + struct.pack("<2f", 1.5, 2.0))
    assert pack(x, "csr") == want and len(want) == 40
    # one non-zero at position 1 in a 2:4 group: padding slot takes position 0 (smallest unused)
    x = np.array([[0, 3, 0, 0]], np.float32)
    want = (struct.pack("<BBBBIII", 5, 2, 4, 1, 1, 4, 2) + bytes([0, 1, 0, 0])
            + struct.pack("<2f", 0.0, 3.0))
    assert pack(x, "nm2:4") == want
    # bitmap: element e -> bit e%8 of byte e//8, LSB first
    x = np.zeros((3, 3), np.float32)
    x[0, 1], x[2, 2] = 5, 6  # elements 1 and 8
    want = (struct.pack("<BBBBIII", 4, 0, 0, 0, 3, 3, 2) + bytes([0b10, 0b1, 0, 0])
            + struct.pack("<2f", 5, 6))
    assert pack(x, "bitmap") == want


def test_metadata_counts_example():
    x = np.zeros((6, 8), np.float32)
    x[0, 1], x[0, 6], x[3, 3], x[5, 7] = 1, 2, 3, 4
    mc = metadata_counts(x, "csr")
    assert (mc.nnz, mc.stored_values, mc.index_entries, mc.pointer_entries) == (4, 4, 4, 7)
    assert (mc.nonempty_rows, mc.nonempty_cols, mc.blocks) == (3, 4, 0)
    assert metadata_counts(x, "coo").index_entries == 8
    assert metadata_counts(x, "bitmap").bitmap_bytes == 6
    mc = metadata_counts(x, "bcsr4x4")  # blocks (0,0), (0,1), (1,1)
    assert (mc.blocks, mc.count, mc.stored_values, mc.pointer_entries) == (3, 3, 48, 3)
    mc = metadata_counts(x, "nm1:4")
    assert (mc.count, mc.stored_values, mc.index_entries, mc.index_bytes) == (12, 12, 12, 1)
    assert metadata_counts(x, "dense").stored_values == 48


def test_size_errors():
    with pytest.raises(FormatError, match="nnz"):
        encoded_size("csr", 3, 4)
    with pytest.raises(FormatError, match="nnz"):
        encoded_size("coo", 3, 4, nnz=13)
    with pytest.raises(FormatError, match="nblocks"):
        encoded_size("bcsr2x2", 3, 4)
    with pytest.raises(FormatError, match="multiple"):
        encoded_size("nm2:4", 3, 6)
    with pytest.raises(FormatError, match="u32"):
        encoded_size("dense", 65536, 65536)  # count 2**32 does not fit
    with pytest.raises(FormatError, match="u32"):
        encoded_size("coo", 2**32, 1, nnz=0)


# ----------------------------------------------------------------------------- pack errors

def test_nm_rejects_non_nm_input():
    x = np.zeros((3, 8), np.float32)
    x[2, 4:7] = 1  # three non-zeros in the second group of row 2
    with pytest.raises(FormatError, match=r"not 2:4 sparse.*row 2 columns 4\.\.7 with 3"):
        pack(x, "nm2:4")
    assert not is_nm(x, 2, 4) and is_nm(x, 3, 4)
    with pytest.raises(FormatError, match="not 2:4 sparse"):
        metadata_counts(x, "nm2:4")
    with pytest.raises(FormatError, match="multiple of M=4"):
        pack(np.zeros((2, 6), np.float32), "nm2:4")


def test_pack_rejects_bad_tiles():
    with pytest.raises(FormatError, match="2-D"):
        pack(np.zeros(4, np.float32), "csr")
    with pytest.raises(FormatError, match="2-D"):
        pack(np.zeros((2, 2, 2), np.float32), "dense")
    with pytest.raises(FormatError, match="u32"):
        pack(np.zeros((2**32, 0), np.float32), "coo")


def test_nm_prune():
    x = np.array([[1, -5, 3, 3, 0, 0, 0, -0.0],
                  [2, 2, 2, 2, np.nan, 1, 9, 0]], np.float32)
    y = nm_prune(x, 2, 4)
    want = np.array([[0, -5, 3, 0, 0, 0, 0, 0],     # tie 3/3 -> lower position kept
                     [2, 2, 0, 0, np.nan, 0, 9, 0]], np.float32)  # NaN counts as largest
    assert np.array_equal(y, want, equal_nan=True) and y.dtype == np.float32
    assert is_nm(y, 2, 4) and not is_nm(x, 2, 4) and not is_nm(x, 2, 3)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((16, 32))
    for n, m in ((1, 4), (2, 4), (2, 8), (4, 4)):
        assert is_nm(nm_prune(z, n, m), n, m)
    with pytest.raises(FormatError):
        nm_prune(z, 5, 4)
    assert np.array_equal(nnz_mask(x), x != 0)


# ----------------------------------------------------------------------------- spec / header

def test_format_spec_parse_and_str():
    for text in SPECS + ["nm2:8", "bcsr16x2", "bcsr255x255", "nm255:255"]:
        spec = FormatSpec.parse(text)
        assert str(spec) == text and FormatSpec.parse(str(spec)) == spec
    assert FormatSpec.parse(" NM2:4 ") == FormatSpec(Format.NM, n=2, m=4)
    assert FormatSpec.parse("bcsr4x2").params == (4, 2)
    assert {FORMAT_NAMES[f] for f in Format} == {"dense", "csr", "csc", "coo", "bitmap", "nm",
                                                 "bcsr"}
    assert [int(Format.from_name(n)) for n in ("dense", "csr", "csc", "coo", "bitmap", "nm",
                                               "bcsr")] == list(range(7))
    for bad in ("", "nm", "nm2", "nm0:4", "nm5:4", "nm2:256", "bcsr", "bcsr4", "bcsr0x4",
                "bcsr4x256", "csr2", "sparse", "nm2:4:1", "bcsr-1x2", "dense "+"x"):
        with pytest.raises(FormatError, match="spec|nm needs|bcsr needs"):
            FormatSpec.parse(bad)
    with pytest.raises(FormatError):
        Format.from_name("ell")
    with pytest.raises(FormatError):
        FormatSpec(Format.CSR, n=2)
    with pytest.raises(FormatError):
        FormatSpec(9)


def test_header_only_validation():
    buf = pack(np.eye(5, dtype=np.float32), "bcsr2x2")
    h = header(buf[:16] + b"not checked")
    assert h == TileHeader(Format.BCSR, 2, 2, 2, 5, 5, 3)
    assert h.format_spec == FormatSpec.parse("bcsr2x2") and h.to_bytes() == buf[:16]
    assert h.encoded_size == len(buf)
    for data in (buf, bytearray(buf), memoryview(buf), np.frombuffer(buf, np.uint8)):
        assert header(data) == h
        assert np.array_equal(unpack(data), np.eye(5))
    with pytest.raises(FormatError, match="truncated header"):
        header(buf[:15])
    with pytest.raises(FormatError, match="uint8"):
        unpack(np.frombuffer(buf, np.int32))


# ----------------------------------------------------------------------------- unpack errors

def patch(buf: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(buf)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def test_unpack_reports_corruption():
    x = np.zeros((4, 8), np.float32)
    x[0, 1], x[0, 5], x[2, 2], x[3, 7] = 1, 2, 3, 4
    csr, coo, bm = pack(x, "csr"), pack(x, "coo"), pack(x, "bitmap")
    bm3 = pack(np.diag(np.float32([1, 0, 2])), "bitmap")  # elements 0, 8: bytes 01 01, pad 2
    nm, bcsr = pack(x, "nm2:4"), pack(x, "bcsr2x2")
    cases = [
        (patch(csr, 0, "<B", 7), "unknown format id 7"),
        (csr[:-1], "truncated"),
        (csr + b"\0\0\0\0", "trailing"),
        (patch(csr, 3, "<B", 4), "index_bytes"),
        (patch(csr, 1, "<B", 1), "parameters"),
        (patch(csr, 16 + 4 * 4, "<I", 3), "rowptr ends at 3 but the header count is 4"),
        (patch(csr, 16 + 4 * 2, "<I", 0), "not monotone"),
        (patch(csr, 16, "<I", 1), r"rowptr\[0\]"),
        (patch(csr, 16 + 20, "<H", 8), r"colidx\[0\]=8 is out of range"),
        (patch(csr, 16 + 20, "<H", 5), "not strictly ascending"),
        (patch(csr, 16 + 20 + 8, "<f", -0.0), "is a zero"),
        (patch(coo, 16 + 8, "<H", 6), "not strictly ascending"),
        (patch(coo, 16, "<H", 4), "out of range"),
        (patch(bm, 16, "<B", 0x07), "5 bits set but the header count is 4"),
        (patch(bm3, 17, "<B", 0x03), "beyond rows\\*cols"),
        (patch(bm3, 18, "<B", 0x01), "non-zero padding after section bits"),
        (patch(nm, 16, "<BB", 1, 0), "not strictly ascending"),
        (patch(nm, 16, "<B", 4), "out of range"),
        (patch(nm, 16 + 2, "<BB", 1, 3), "smallest unused"),
        (patch(nm, 16 + 16 + 4 * 2, "<f", -0.0), "-0.0"),
        (patch(nm, 12, "<I", 15), "count is 15"),
        (patch(bcsr, 16 + 4 * 2, "<I", 9), "blockrowptr ends at 9"),
        (patch(bcsr, 16 + 12, "<H", 4), r"blockcolidx\[0\]=4 is out of range"),
        (patch(bcsr, 16 + 12 + 8 + 4, "<f", 0.0), "block 0 holds no non-zero"),
        (patch(pack(np.ones((3, 3), np.float32), "bcsr2x2"), 16 + 12 + 8 + 16 * 3 + 12, "<f",
               1.0), "edge padding"),
        (patch(pack(np.ones((1, 3), np.float32), "csr"), 16 + 8 + 6, "<B", 1), "padding"),
    ]
    for buf, msg in cases:
        with pytest.raises(FormatError, match=msg):
            unpack(buf)


def test_unpack_limits_output_size():
    huge = struct.pack("<BBBBIII", Format.COO, 0, 0, 2, 65536, 65536, 0)
    assert header(huge).rows == 65536
    with pytest.raises(FormatError, match="max_elements"):
        unpack(huge)
    small = struct.pack("<BBBBIII", Format.COO, 0, 0, 2, 40, 30, 0)
    assert unpack(small, max_elements=None).shape == (40, 30)
    # the limit is inclusive: 40 * 30 = 1200 elements decode with max_elements=1200 ...
    assert unpack(small, max_elements=1200).shape == (40, 30)
    # ... and are refused with one element less
    with pytest.raises(FormatError, match="max_elements=1199"):
        unpack(small, max_elements=1199)


def test_unpack_limit_counts_bcsr_padding():
    # a 5 x 7 tile in 2 x 4 blocks: GR = ceil(5/2) = 3, GC = ceil(7/4) = 2, so the decoder
    # materializes the zero-extended (3*2) x (2*4) = 6 x 8 = 48 elements, not 5 * 7 = 35
    x = np.zeros((5, 7), np.float32)
    x[4, 6] = 1.5  # lies in the last (edge) block
    buf = pack(x, "bcsr2x4")
    assert header(buf).count == 1
    np.testing.assert_array_equal(unpack(buf, max_elements=48), x)
    for limit in (47, 40, 35):  # 35 would do if only rows * cols counted
        with pytest.raises(FormatError, match=f"max_elements={limit}"):
            unpack(buf, max_elements=limit)


def _mutations(rng: np.random.Generator, corpus: list[bytes], n: int):
    """Random, truncated, extended, bit-flipped and field-patched buffers."""
    for i in range(n):
        kind = i % 8
        base = bytearray(corpus[rng.integers(len(corpus))])
        if kind == 0:
            yield rng.bytes(int(rng.integers(0, 80)))
        elif kind == 1:  # plausible header, random body
            yield bytes(base[:16]) + rng.bytes(max(0, len(base) - 16 + int(rng.integers(-4, 5))))
        elif kind == 2:
            yield bytes(base[:rng.integers(0, len(base))])
        elif kind == 3:
            yield bytes(base) + rng.bytes(int(rng.integers(1, 9)))
        elif kind in (4, 5):
            for _ in range(int(rng.integers(1, 4))):
                bit = int(rng.integers(len(base) * 8))
                base[bit // 8] ^= 1 << (bit % 8)
            yield bytes(base)
        elif kind == 6:  # overwrite one aligned word (header field, pointer, ...)
            off = 4 * int(rng.integers(len(base) // 4))
            old = int.from_bytes(base[off:off + 4], "little")
            new = int(rng.choice([old + 1, old - 1, 0, 0xFFFFFFFF, int(rng.integers(2**32))]))
            base[off:off + 4] = (new % 2**32).to_bytes(4, "little")
            yield bytes(base)
        else:
            base[int(rng.integers(len(base)))] = int(rng.integers(256))
            yield bytes(base)


def test_fuzz_only_format_error():
    rng = np.random.default_rng(1234)
    corpus = []
    for text in SPECS:
        spec = FormatSpec.parse(text)
        for rows, groups, density in ((1, 1, 1.0), (3, 2, 0.5), (5, 3, 0.3), (2, 5, 0.0)):
            cols = groups * spec.m if spec.m else groups + 2
            x = fit_to(make_tile(rng, rows, cols, density, density > 0.4), text)
            corpus.append(pack(x, spec))
    accepted, n = 0, 12_000
    for buf in _mutations(rng, corpus, n):
        try:
            y = unpack(buf)
        except FormatError:
            continue
        except Exception as e:  # pragma: no cover - the failure report
            raise AssertionError(f"{type(e).__name__}: {e} for buffer {buf.hex()}") from e
        accepted += 1
        assert pack(y, header(buf).format_spec) == buf  # only canonical encodings decode
    assert 0 < accepted < n


def _consistent_header(fid: int, p0: int, p1: int, rows: int, cols: int, frac: float) -> bytes:
    """A header that passes header validation: parameters, index_bytes and count chosen as
    the module docstring requires (count: rows*cols for dense, the slot count for nm, any
    value up to the element / block count otherwise, here ``frac`` of that maximum)."""
    if fid == Format.NM:
        n, m = 1 + p0 % 4, 4
        spec, cols = FormatSpec(Format.NM, n=min(n, m), m=m), cols * 4
    elif fid == Format.BCSR:
        spec = FormatSpec(Format.BCSR, block_rows=1 + p0 % 3, block_cols=1 + p1 % 3)
    else:
        spec = FormatSpec(Format(fid))
    ib = 0 if fid in (Format.DENSE, Format.BITMAP) else 1 if fid == Format.NM else 2
    if fid == Format.DENSE:
        count = rows * cols
    elif fid == Format.NM:
        count = rows * (cols // spec.m) * spec.n
    elif fid == Format.BCSR:
        count = int(frac * -(-rows // spec.block_rows) * -(-cols // spec.block_cols))
    else:
        count = int(frac * rows * cols)
    return struct.pack("<BBBBIII", fid, *spec.params, ib, rows, cols, count)


_EDITS = ["none", "flip", "byte", "word", "truncate", "extend", "header"]


def test_fuzz_hypothesis_headers():
    """Start from valid encodings of every format (or from a header consistent with the
    format rules), edit them, and check that every buffer either decodes to a tile that
    re-encodes to the same bytes or raises FormatError -- and that both outcomes occur, so
    the round-trip assertion and the decoder's body checks are really reached."""
    seen = {e: [0, 0] for e in _EDITS}  # edit -> [accepted, rejected]

    @settings(max_examples=700, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(text=st.sampled_from(SPECS), rows=st.integers(0, 6), groups=st.integers(1, 4),
           density=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 2**32 - 1),
           edit=st.sampled_from(_EDITS), where=st.integers(0, 2**20), value=st.integers(0, 255),
           fid=st.sampled_from(list(Format)))
    def one(text, rows, groups, density, seed, edit, where, value, fid):
        rng = np.random.default_rng(seed)
        spec = FormatSpec.parse(text)
        cols = groups * spec.m if spec.format == Format.NM else groups
        good = pack(fit_to(make_tile(rng, rows, cols, density, True), text), spec)
        if edit == "none":
            buf = good
        elif edit == "flip":
            b = bytearray(good)
            bit = where % (8 * len(b))
            b[bit // 8] ^= 1 << (bit % 8)
            buf = bytes(b)
        elif edit == "byte":
            b = bytearray(good)
            b[where % len(b)] = value
            buf = bytes(b)
        elif edit == "word":  # an aligned word (a header field, pointer, index or value)
            b = bytearray(good)
            off = 4 * (where % (len(b) // 4))
            w = int.from_bytes(b[off:off + 4], "little")
            w = [0, 0x80000000, w + 1, w - 1, w + 0x10000, 0xFFFFFFFF][value % 6] % 2**32
            b[off:off + 4] = w.to_bytes(4, "little")
            buf = bytes(b)
        elif edit == "truncate":
            buf = good[:where % len(good)]
        elif edit == "extend":
            buf = good + bytes([value]) * (1 + where % 8)
        else:
            head = _consistent_header(int(fid), value, where % 256, rows, groups, density)
            h = header(head)  # the constructed header itself is valid
            # a dense body is any float32 bits; other bodies: a valid-length slab of
            # random bytes, or zeros
            body = rng.bytes(h.encoded_size - 16) if where % 2 else bytes(h.encoded_size - 16)
            buf = head + body
        try:
            y = unpack(buf)
        except FormatError:
            seen[edit][1] += 1
            if edit == "none":
                raise
            return
        except Exception as e:  # pragma: no cover - the failure report
            raise AssertionError(f"{type(e).__name__}: {e} for buffer {buf.hex()}") from e
        seen[edit][0] += 1
        assert y.shape == (header(buf).rows, header(buf).cols)
        assert pack(y, header(buf).format_spec) == buf
        if edit == "none":
            assert pack(y, spec) == good

    one()
    # every unedited encoding decodes; a strict prefix or trailing bytes never do
    assert seen["none"][0] > 0 and seen["none"][1] == 0
    assert seen["truncate"][0] == 0 and seen["truncate"][1] > 0
    assert seen["extend"][0] == 0 and seen["extend"][1] > 0
    # edited bodies and constructed headers: some decode (so the round trip is checked on a
    # changed buffer), some are refused by checks past the header
    for edit in ("flip", "byte", "word", "header"):
        assert seen[edit][0] > 0 and seen[edit][1] > 0, (edit, seen)


# ------------------------------------------------------------------- large tiles
# (speed is measured by benchmarks/formats.py; tests never assert wall-clock time)

def test_512_tiles_round_trip():
    rng = np.random.default_rng(5)
    x = make_tile(rng, 512, 512, 0.1, False)
    for text in SPECS:
        t = fit_to(x, text)
        buf = pack(t, text)
        assert_same_tile(t, unpack(buf))
        assert metadata_counts(t, text).encoded_size == len(buf)
