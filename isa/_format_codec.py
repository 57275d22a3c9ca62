"""Vectorized pack/unpack kernels behind :mod:`acf.isa.formats` (private; use that module).

Values are handled as their uint32 bit patterns throughout, so NaN payloads, infinities and
signed zeros survive bit-exactly. Every check runs before any index is used, so corrupt input
raises FormatError and never IndexError.
"""

from __future__ import annotations

import numpy as np

from acf.isa.formats import (
    HEADER_BYTES,
    U32_MAX,
    Format,
    FormatError,
    FormatSpec,
    MetadataCounts,
    TileHeader,
    encoded_size,
    index_bytes_for,
)


def as_tile(x: np.ndarray) -> np.ndarray:
    """``x`` as a C-contiguous little-endian float32 2-D array."""
    a = np.asarray(x)
    if a.ndim != 2:
        raise FormatError(f"a tile must be 2-D, got shape {a.shape}")
    for name, v in zip(("rows", "cols"), a.shape):
        if v > U32_MAX:
            raise FormatError(f"{name}={v} does not fit u32")
    try:
        return np.ascontiguousarray(a, dtype="<f4")
    except (TypeError, ValueError) as e:
        raise FormatError(f"tile does not convert to float32: {e}") from None


def as_bytes(buf: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The buffer as a 1-D uint8 array (no copy where possible)."""
    if isinstance(buf, np.ndarray):
        if buf.dtype != np.uint8:
            raise FormatError(f"tile buffer array must be uint8, got {buf.dtype}")
        return np.ascontiguousarray(buf).reshape(-1)
    try:
        return np.frombuffer(memoryview(buf).cast("B"), dtype=np.uint8)
    except (TypeError, ValueError) as e:
        raise FormatError(f"tile buffer is not a contiguous bytes-like object: {e}") from None


def read_sections(data: np.ndarray, secs: list[tuple[str, str, int]]) -> list[np.ndarray]:
    """Views of the sections of a buffer whose length is already checked; FormatError if a
    section's padding is not zero."""
    arrays, off = [], HEADER_BYTES
    for name, dt, n in secs:
        nbytes = n * np.dtype(dt).itemsize
        arrays.append(np.frombuffer(data, dtype=dt, count=n, offset=off) if n
                      else np.empty(0, dtype=dt))
        end = off + ((nbytes + 3) & ~3)
        if data[off + nbytes:end].any():
            raise FormatError(f"non-zero padding after section {name}")
        off = end
    return arrays


def nz_bits(bits: np.ndarray) -> np.ndarray:
    """Non-zero mask from float32 bit patterns (same as ``x != 0``: only +-0.0 are zeros)."""
    return (bits & np.uint32(0x7FFFFFFF)) != 0


def check_nm(mask: np.ndarray, n: int, m: int) -> np.ndarray:
    """The mask grouped as ``(rows, cols/m, m)``; FormatError unless it is N:M sparse."""
    rows, cols = mask.shape
    if cols % m:
        raise FormatError(f"nm{n}:{m}: cols={cols} is not a multiple of M={m}")
    g = mask.reshape(rows, cols // m, m)
    cnt = _group_counts(g)
    bad = cnt > n
    if bad.any():
        r, q = (int(i) for i in np.argwhere(bad)[0])
        raise FormatError(
            f"tile is not {n}:{m} sparse: {int(bad.sum())} group(s) hold more than {n} "
            f"non-zeros, first row {r} columns {q * m}..{q * m + m - 1} with {int(cnt[r, q])}; "
            "prune it first (nm_prune)")
    return g


def _group_counts(mask3: np.ndarray) -> np.ndarray:
    """Non-zeros per group. Loops over the M positions (each step vectorized over all groups),
    which beats numpy's reductions along a short last axis several times over."""
    counts = np.zeros(mask3.shape[:-1], dtype=np.int16)
    for p in range(mask3.shape[-1]):
        counts += mask3[..., p]
    return counts


def nm_slots(mask3: np.ndarray, n: int) -> np.ndarray:
    """Canonical slot mask ``(rows, groups, m)`` with exactly N slots per group: every
    non-zero, plus the smallest positions holding no non-zero as padding."""
    free = n - _group_counts(mask3)
    slots = np.empty_like(mask3)
    zeros_seen = np.zeros(free.shape, dtype=np.int16)
    for p in range(mask3.shape[-1]):
        col = mask3[..., p]
        slots[..., p] = col | (zeros_seen < free)
        zeros_seen += ~col
    return slots


def _blocks(a: np.ndarray, br: int, bc: int) -> np.ndarray:
    """``a`` zero-extended to whole blocks, viewed as ``(GR, GC, br, bc)``."""
    rows, cols = a.shape
    gr, gc = -(-rows // br), -(-cols // bc)
    if (gr * br, gc * bc) != a.shape:
        p = np.zeros((gr * br, gc * bc), dtype=a.dtype)
        p[:rows, :cols] = a
        a = p
    return a.reshape(gr, br, gc, bc).swapaxes(1, 2)


def block_mask(mask: np.ndarray, br: int, bc: int) -> np.ndarray:
    """``(GR, GC)`` mask of the blocks holding a non-zero."""
    return _blocks(mask, br, bc).any(axis=(2, 3))


def _ptr(counts: np.ndarray) -> np.ndarray:
    out = np.zeros(counts.size + 1, dtype="<u4")
    out[1:] = np.cumsum(counts)
    return out


def pack_sections(tile: np.ndarray, spec: FormatSpec) -> tuple[int, list[np.ndarray]]:
    """The header count and the section arrays (unpadded, little-endian) of ``tile``."""
    rows, cols = tile.shape
    bits = tile.view("<u4")
    mask = nz_bits(bits)
    idx = "<u2" if index_bytes_for(spec, rows, cols) == 2 else "<u4"
    f = spec.format
    if f == Format.DENSE:
        return rows * cols, [bits]
    if f in (Format.CSR, Format.COO, Format.CSC):
        # entries by flat position (a 1-D nonzero and take are several times faster than
        # the 2-D nonzero and a boolean mask): row-major, or column-major for csc
        major, minor = (rows, cols) if f != Format.CSC else (cols, rows)
        order = mask if f != Format.CSC else np.ascontiguousarray(mask.T)
        flat = np.flatnonzero(order)
        lo = _minor_of(flat, minor)
        if f == Format.CSC:
            vals = bits.reshape(-1)[lo * cols + (flat // rows if rows else flat)]
        else:
            vals = bits.reshape(-1)[flat]
        if f == Format.COO:
            return flat.size, [(flat // cols).astype(idx), lo.astype(idx), vals]
        ptr = np.searchsorted(flat, np.arange(major + 1, dtype=np.int64) * minor).astype("<u4")
        return flat.size, [ptr, lo.astype(idx), vals]
    if f == Format.BITMAP:
        flat = mask.reshape(-1)
        return int(flat.sum()), [np.packbits(flat, bitorder="little"), bits.reshape(-1)[flat]]
    if f == Format.NM:
        n, m = spec.n, spec.m
        mask3 = check_nm(mask, n, m)
        slots = nm_slots(mask3, n).reshape(-1)
        vals = (bits * mask).reshape(-1)[slots]
        pos = (np.flatnonzero(slots) % m).astype(np.uint8)
        return pos.size, [pos, vals.astype("<u4")]
    br, bc = spec.block_rows, spec.block_cols
    bm = block_mask(mask, br, bc)
    _, bcol = np.nonzero(bm)
    vals = _blocks(bits, br, bc)[bm]
    return bcol.size, [_ptr(bm.sum(axis=1)), bcol.astype(idx), vals.reshape(-1)]


def _minor_of(flat: np.ndarray, minor: int) -> np.ndarray:
    """``flat % minor`` (a mask when minor is a power of two: integer division is slow)."""
    if minor <= 0 or not flat.size:
        return flat
    if minor & (minor - 1) == 0:
        return flat & (minor - 1)
    return flat % minor


def _expand_ptr(ptr: np.ndarray, count: int, name: str) -> np.ndarray:
    """Validate a pointer array; return the row (column, block row) of every entry."""
    p = ptr.astype(np.int64)
    if p[0] != 0:
        raise FormatError(f"{name}[0] is {p[0]}, must be 0")
    d = np.diff(p)
    if (d < 0).any():
        i = int(np.argmax(d < 0))
        raise FormatError(f"{name} is not monotone: {name}[{i + 1}]={p[i + 1]} < {p[i]}")
    if p[-1] != count:
        raise FormatError(f"{name} ends at {p[-1]} but the header count is {count}")
    return np.repeat(np.arange(p.size - 1, dtype=np.int64), d)


def _check_index(idx: np.ndarray, extent: int, name: str) -> None:
    if idx.size and int(idx.max()) >= extent:
        i = int(np.argmax(idx >= extent))
        raise FormatError(f"{name}[{i}]={idx[i]} is out of range (must be < {extent})")


def _check_order(major: np.ndarray, minor: np.ndarray, extent: int, what: str) -> None:
    key = major.astype(np.uint64) * np.uint64(extent) + minor.astype(np.uint64)
    bad = key[1:] <= key[:-1]
    if bad.any():
        raise FormatError(f"{what} not strictly ascending at entry {int(np.argmax(bad)) + 1}")


def _order_key(major: np.ndarray, minor: np.ndarray, extent: int, what: str) -> np.ndarray:
    """:func:`_check_order`, returning the keys ``major * extent + minor`` as int64 (the
    flat position when extent is the row length). Both indices are already checked in
    range, so a key is below the tile's element count and fits."""
    key = major.astype(np.int64) * extent + minor
    if key.size > 1 and not (key[1:] > key[:-1]).all():
        _check_order(major, minor, extent, what)  # raises, with the entry in its message
    return key


def _check_values(vals: np.ndarray) -> None:
    zero = ~nz_bits(vals)
    if zero.any():
        raise FormatError(f"stored value {int(np.argmax(zero))} is a zero; only non-zeros "
                          "are stored")


def unpack_sections(h: TileHeader, spec: FormatSpec, arrays: list[np.ndarray]) -> np.ndarray:
    """Validate the sections of a tile whose header and length are valid; return its bits as
    a native uint32 ``rows x cols`` array."""
    rows, cols, count, f = h.rows, h.cols, h.count, spec.format
    if f == Format.DENSE:
        return arrays[-1].view("<u4").astype(np.uint32).reshape(rows, cols)
    vals = arrays[-1].view("<u4")  # read only: copied by the scatter into out
    out = np.zeros((rows, cols), dtype=np.uint32)
    if f in (Format.CSR, Format.CSC):
        ptr, idx = arrays[0], arrays[1]
        major, minor = (rows, cols) if f == Format.CSR else (cols, rows)
        names = ("rowptr", "colidx", "row") if f == Format.CSR else ("colptr", "rowidx", "col")
        owner = _expand_ptr(ptr, count, names[0])
        _check_index(idx, minor, names[1])
        key = _order_key(owner, idx, minor, f"{names[1]} within a {names[2]}")
        _check_values(vals)
        if f == Format.CSR:  # the order key is the flat position
            out.reshape(-1)[key] = vals
        else:
            out.reshape(-1)[idx.astype(np.int64) * cols + owner] = vals
        return out
    if f == Format.COO:
        r, c = arrays[0], arrays[1]
        _check_index(r, rows, "rowidx")
        _check_index(c, cols, "colidx")
        key = _order_key(r, c, cols, "coo entries are")
        _check_values(vals)
        out.reshape(-1)[key] = vals
        return out
    if f == Format.BITMAP:
        total = rows * cols
        flags = np.unpackbits(arrays[0], bitorder="little")
        if flags[total:].any():
            raise FormatError("bitmap has bits set beyond rows*cols")
        flags = flags[:total].view(bool)
        if int(np.count_nonzero(flags)) != count:
            raise FormatError(f"bitmap has {int(np.count_nonzero(flags))} bits set but the "
                              f"header count is {count}")
        _check_values(vals)
        out.reshape(-1)[flags] = vals
        return out
    if f == Format.NM:
        n, m, groups = spec.n, spec.m, cols // spec.m
        pos = arrays[0].reshape(rows * groups, n).astype(np.intp)
        if pos.size and int(pos.max()) >= m:
            raise FormatError(f"nm position {int(pos.max())} is out of range (must be < {m})")
        if (pos[:, 1:] <= pos[:, :-1]).any():
            raise FormatError("nm positions are not strictly ascending within a group")
        real = nz_bits(vals)
        if vals[~real].any():
            raise FormatError("nm padding slot holds -0.0; padding values must be +0.0")
        flat = (pos + np.arange(0, rows * cols, m, dtype=np.intp)[:, None]).reshape(-1)
        mask = np.zeros(rows * cols, dtype=bool)
        mask[flat[real]] = True
        if not nm_slots(mask.reshape(rows, groups, m), n).reshape(-1)[flat].all():
            raise FormatError("nm padding slots are not at the smallest unused positions")
        out.reshape(-1)[flat] = vals
        return out
    br, bc = spec.block_rows, spec.block_cols
    gr, gc = -(-rows // br), -(-cols // bc)
    ptr, bcol = arrays[0], arrays[1]
    brow = _expand_ptr(ptr, count, "blockrowptr")
    _check_index(bcol, gc, "blockcolidx")
    _check_order(brow, bcol, gc, "blockcolidx within a block row")
    blocks = vals.reshape(count, br, bc)
    empty = ~nz_bits(blocks).reshape(count, br * bc).any(axis=1)
    if empty.any():
        raise FormatError(f"stored block {int(np.argmax(empty))} holds no non-zero")
    full = np.zeros((gr, gc, br, bc), dtype=np.uint32)
    full[brow, bcol] = blocks
    full = full.swapaxes(1, 2).reshape(gr * br, gc * bc)
    if full[rows:].any() or full[:, cols:].any():
        raise FormatError("bcsr edge padding outside the tile is not +0.0")
    return np.ascontiguousarray(full[:rows, :cols])


def metadata(tile: np.ndarray, spec: FormatSpec) -> MetadataCounts:
    """The MetadataCounts of ``tile`` in ``spec``, from masks alone."""
    rows, cols = tile.shape
    mask = nz_bits(tile.view(np.uint32))
    nnz = int(np.count_nonzero(mask))
    f, br, bc = spec.format, spec.block_rows, spec.block_cols
    blocks = ptr = bitmap = 0
    count = stored = index = nnz
    if f == Format.DENSE:
        count, stored, index = rows * cols, rows * cols, 0
    elif f == Format.CSR:
        ptr = rows + 1
    elif f == Format.CSC:
        ptr = cols + 1
    elif f == Format.COO:
        index = 2 * nnz
    elif f == Format.BITMAP:
        index, bitmap = 0, -(-rows * cols // 8)
    elif f == Format.NM:
        check_nm(mask, spec.n, spec.m)
        count = stored = index = rows * (cols // spec.m) * spec.n
    else:
        blocks = count = index = int(np.count_nonzero(block_mask(mask, br, bc)))
        stored, ptr = blocks * br * bc, -(-rows // br) + 1
    size = encoded_size(spec, rows, cols, nnz=nnz, nblocks=blocks)
    return MetadataCounts(rows, cols, nnz, count, stored, index,
                          index_bytes_for(spec, rows, cols), ptr, bitmap,
                          int(mask.any(axis=1).sum()), int(mask.any(axis=0).sum()), blocks, size)


def nm_prune(tile: np.ndarray, spec: FormatSpec) -> np.ndarray:
    """Keep the N largest magnitudes (NaN largest, ties to the lower position) of each group."""
    rows, cols = tile.shape
    n, m = spec.n, spec.m
    if cols % m:
        raise FormatError(f"{spec}: cols={cols} is not a multiple of M={m}")
    g = tile.reshape(rows, cols // m, m)
    mag = np.abs(g)
    mag[np.isnan(mag)] = np.inf
    keep = np.zeros(g.shape, dtype=bool)
    np.put_along_axis(keep, np.argsort(-mag, axis=-1, kind="stable")[..., :n], True, axis=-1)
    return np.where(keep, g, np.float32(0)).reshape(rows, cols)
