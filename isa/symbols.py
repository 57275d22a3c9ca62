"""How named tensors are laid out in memory, shared by the runtime, emulator and compiler.

* ``dense``: the raw fp32 values, row-major (``4 * prod(shape)`` bytes, no header).
* sparse formats: the tensor, viewed as 2-D ``(shape[0], prod(shape[1:]))``, is cut into a
  row-major grid of ``tile`` blocks (edge tiles are smaller); tile ``t`` is packed with
  :func:`acf.isa.formats.pack` into slot ``t``, at ``addr + t * slot``, where ``slot`` is the
  encoded size of a fully dense tile of the largest tile shape, rounded up to 64 bytes.
  A load reads the header, so it moves only the encoded bytes; a mask change repacks the
  slots in place and never forces a recompile.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from acf.isa import formats
from acf.isa.fields import CANONICAL_NAN_BITS

if TYPE_CHECKING:
    from acf.isa.program import Symbol

SLOT_ALIGN = 64


def as_2d_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    if not shape:
        return (1, 1)
    return (shape[0], math.prod(shape[1:]) if len(shape) > 1 else 1)


def tile_shape(sym: Symbol) -> tuple[int, int]:
    rows, cols = as_2d_shape(sym.shape)
    if sym.tile:
        return (min(sym.tile[0], rows), min(sym.tile[1], cols))
    return (rows, cols)


def tile_grid(sym: Symbol) -> tuple[int, int]:
    rows, cols = as_2d_shape(sym.shape)
    tr, tc = tile_shape(sym)
    return (math.ceil(rows / tr) if rows else 0, math.ceil(cols / tc) if cols else 0)


def slot_bytes(sym: Symbol) -> int:
    """Bytes reserved per packed tile: a fully dense tile's encoding, 64-byte aligned."""
    return packed_slot_bytes(sym.fmt, *tile_shape(sym))


def packed_slot_bytes(fmt: str, tr: int, tc: int) -> int:
    """Bytes reserved per packed ``tr x tc`` tile in ``fmt`` (see :func:`slot_bytes`)."""
    spec = formats.FormatSpec.parse(fmt)
    worst = formats.encoded_size(spec, tr, tc, nnz=tr * tc, nblocks=_max_blocks(spec, tr, tc))
    return -(-worst // SLOT_ALIGN) * SLOT_ALIGN


def _max_blocks(spec: formats.FormatSpec, tr: int, tc: int) -> int | None:
    if spec.format != formats.Format.BCSR:
        return None
    return math.ceil(tr / spec.block_rows) * math.ceil(tc / spec.block_cols)


def tile_address(sym: Symbol, ti: int, tj: int) -> int:
    """Byte address of tile (ti, tj) of a sparse symbol."""
    _, gc = tile_grid(sym)
    return sym.addr + (ti * gc + tj) * slot_bytes(sym)


def symbol_elements(sym: Symbol) -> int:
    """Elements of the symbol's logical shape (what its ``.data`` holds)."""
    return math.prod(sym.shape)


def data_array(sym: Symbol, raw: bytes) -> np.ndarray:
    """A symbol's ``.data`` bytes (little-endian f32) as an array of its shape."""
    return np.frombuffer(raw, "<f4").astype(np.float32).reshape(sym.shape)


#: what reports and errors call each memory space
SPACE_NAMES = {"dram": "DRAM", "gb": "global buffer", "sp": "scratchpad", "acc": "accumulator"}


def data_bytes(values) -> bytes:
    """Numbers (a list or an array) as ``.data`` bytes: little-endian f32, row-major; a
    value past the f32 range becomes inf, as the cast gives it, and every NaN the one NaN
    encoding the binary reader takes (``fields.CANONICAL_NAN_BITS``)."""
    with np.errstate(over="ignore"):
        arr = np.array(values, "<f4").reshape(-1)
    bits = arr.view("<u4")
    bits[np.isnan(arr)] = CANONICAL_NAN_BITS
    return arr.tobytes()


def data_values(raw: bytes) -> list[float]:
    """``.data`` bytes as Python floats (each the exact double of its f32)."""
    return np.frombuffer(raw, "<f4").astype(np.float64).tolist()


def symbol_nbytes(sym: Symbol) -> int:
    if sym.fmt == "dense":
        return 4 * math.prod(sym.shape)
    gr, gc = tile_grid(sym)
    return gr * gc * slot_bytes(sym)


def as_symbol_array(sym: Symbol, array: np.ndarray) -> np.ndarray:
    """``array`` as float32; ValueError unless its shape is the symbol's."""
    x = np.asarray(array, dtype=np.float32)  # keeps rank 0 (ascontiguousarray would not)
    if tuple(x.shape) != tuple(sym.shape):
        raise ValueError(f"tensor {sym.name!r}: expected shape {list(sym.shape)}, got {list(x.shape)}")
    return x


def pack_symbol(sym: Symbol, array: np.ndarray) -> bytes:
    """The bytes to place at ``sym.addr`` for ``array`` (shape must match)."""
    x = as_symbol_array(sym, array)
    if sym.fmt == "dense":
        return np.ascontiguousarray(x).tobytes()
    out = bytearray(symbol_nbytes(sym))
    for off, blob in packed_tiles(sym, x):
        out[off:off + len(blob)] = blob
    return bytes(out)


def _symbol_tiles(sym: Symbol, array: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(byte offset of its slot, tile)`` of each tile of a sparse symbol."""
    x2 = as_symbol_array(sym, array).reshape(as_2d_shape(sym.shape))
    tr, tc = tile_shape(sym)
    gr, gc = tile_grid(sym)
    slot = slot_bytes(sym)
    for i in range(gr):
        for j in range(gc):
            yield (i * gc + j) * slot, x2[i * tr:(i + 1) * tr, j * tc:(j + 1) * tc]


def packed_tiles(sym: Symbol, array: np.ndarray) -> list[tuple[int, bytes]]:
    """``(byte offset, encoding)`` of each packed tile of a sparse symbol: the bytes of
    :func:`pack_symbol` that are not slot padding (zeros)."""
    spec = formats.FormatSpec.parse(sym.fmt)
    return [(off, formats.pack(tile, spec)) for off, tile in _symbol_tiles(sym, array)]


def packed_tiles_decoded(sym: Symbol, array: np.ndarray) -> list[tuple[int, bytes, np.ndarray]]:
    """:func:`packed_tiles`, each with the tile its encoding decodes to
    (:func:`acf.isa.formats.decoded`)."""
    spec = formats.FormatSpec.parse(sym.fmt)
    return [(off, formats.pack(tile, spec), formats.decoded(tile, spec))
            for off, tile in _symbol_tiles(sym, array)]


def unpack_symbol(sym: Symbol, data: bytes | np.ndarray,
                  decode: Callable[[int, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Inverse of :func:`pack_symbol` (raises formats.FormatError on a corrupt tile).

    ``decode(byte_offset, raw_tile_bytes)`` replaces :func:`acf.isa.formats.unpack` for each
    packed tile, so a caller holding already-decoded tiles (the emulator) can reuse them."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if sym.fmt == "dense":
        return buf[: symbol_nbytes(sym)].view(np.float32).reshape(sym.shape).copy()
    rows, cols = as_2d_shape(sym.shape)
    tr, tc = tile_shape(sym)
    gr, gc = tile_grid(sym)
    slot = slot_bytes(sym)
    out = np.zeros((rows, cols), dtype=np.float32)
    for i in range(gr):
        for j in range(gc):
            off = (i * gc + j) * slot
            head = formats.header(buf[off:off + slot])
            size = head.encoded_size
            if size > slot:
                raise formats.FormatError(f"tensor {sym.name!r} tile ({i},{j}): {size} bytes overflow its {slot}-byte slot")
            # a valid tile of another shape would be broadcast into (or not fit) the block
            # (edge tiles are smaller)
            want = (min(tr, rows - i * tr), min(tc, cols - j * tc))
            if (head.rows, head.cols) != want:
                raise formats.FormatError(f"tensor {sym.name!r} tile ({i},{j}): the slot holds a "
                                          f"{head.rows}x{head.cols} tile; tile ({i},{j}) is "
                                          f"{want[0]}x{want[1]}")
            raw = buf[off:off + size]
            out[i * tr:(i + 1) * tr, j * tc:(j + 1) * tc] = decode(off, raw) if decode else formats.unpack(raw)
    return out.reshape(sym.shape)
