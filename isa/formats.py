"""Sparse tile formats: the one definition of every format's exact byte layout.

A tile is a 2-D float32 array of ``rows x cols`` in row-major logical order. An element is a
*non-zero* iff ``x != 0``: -0.0 is a zero and is never stored as an entry, NaN and inf are
non-zeros and round-trip bit-exactly. Formats and their ids:
``dense=0, csr=1, csc=2, coo=3, bitmap=4, nm=5, bcsr=6``; spec text is ``dense``, ``csr``,
``csc``, ``coo``, ``bitmap``, ``nmN:M`` (e.g. ``nm2:4``) or ``bcsrBRxBC`` (e.g. ``bcsr4x4``).

Header (16 bytes, little-endian): ``u8 format_id, u8 p0, u8 p1, u8 index_bytes, u32 rows,
u32 cols, u32 count``.

* ``p0, p1`` = ``(N, M)`` for nm (``1 <= N <= M``), ``(block_rows, block_cols)`` for bcsr
  (each ``>= 1``), ``0, 0`` otherwise.
* ``index_bytes`` (``I``) = 0 for dense and bitmap, 1 for nm, otherwise 2 if
  ``max(rows, cols) <= 65536`` else 4; for bcsr ``rows, cols`` are replaced by the block grid
  ``GR = ceil(rows / block_rows)``, ``GC = ceil(cols / block_cols)``. ``idx`` below is
  ``u16`` or ``u32`` accordingly.
* ``count`` = ``rows * cols`` for dense, ``nnz`` for csr/csc/coo/bitmap, the number of slots
  ``S = rows * (cols / M) * N`` for nm, the number of stored blocks ``B`` for bcsr.

Sections follow the header in the order listed; each is padded with zero bytes to a multiple of
4 bytes (``pad4(n) = 4 * ceil(n / 4)``), so every section starts 4-aligned:

* dense: ``values f32[rows*cols]``.
* csr: ``rowptr u32[rows+1], colidx idx[nnz], values f32[nnz]``; entries row by row, column
  indices strictly ascending within a row, ``rowptr[0] = 0``, ``rowptr[rows] = nnz``.
* csc: ``colptr u32[cols+1], rowidx idx[nnz], values f32[nnz]``; the same by columns.
* coo: ``rowidx idx[nnz], colidx idx[nnz], values f32[nnz]``; strictly row-major order.
* bitmap: ``bits u8[ceil(rows*cols/8)], values f32[nnz]``; bit ``b`` (LSB first) of byte
  ``j`` flags element ``8*j + b`` in row-major order; unused trailing bits are 0; values
  row-major.
* nm (N:M along each row; ``cols % M == 0``; each group of M consecutive columns holds at most
  N non-zeros): ``positions u8[S], values f32[S]``, N slots per group, groups row-major. Slot
  positions are strictly ascending within a group; a group with ``k < N`` non-zeros adds
  ``N - k`` padding slots of value +0.0 at the smallest positions not holding a non-zero.
* bcsr (``br x bc`` blocks on the ``GR x GC`` grid; the tile is zero-extended to
  ``GR*br x GC*bc``): ``blockrowptr u32[GR+1], blockcolidx idx[B], values f32[B*br*bc]``;
  a block is stored iff it holds a non-zero; block columns strictly ascending within a block
  row; each block's values row-major, the zero extension stored as +0.0.

Encoded size in bytes (``nnz`` = number of non-zeros, ``RC = rows * cols``):

* dense:  ``16 + 4*RC``
* csr:    ``16 + 4*(rows+1) + pad4(I*nnz) + 4*nnz``
* csc:    ``16 + 4*(cols+1) + pad4(I*nnz) + 4*nnz``
* coo:    ``16 + 2*pad4(I*nnz) + 4*nnz``
* bitmap: ``16 + pad4(ceil(RC/8)) + 4*nnz``
* nm:     ``16 + pad4(S) + 4*S`` with ``S = rows*(cols/M)*N``
* bcsr:   ``16 + 4*(GR+1) + pad4(I*B) + 4*B*br*bc``

Values are stored as their exact float32 bits: dense keeps every element (-0.0 included);
csr/csc/coo/bitmap store only non-zeros (never +-0.0); nm padding slots are +0.0; bcsr keeps
the tile's own elements inside a stored block (a -0.0 stays -0.0) and +0.0 outside the tile.

``unpack`` accepts exactly the canonical encodings ``pack`` produces (so
``pack(unpack(b), header(b).format_spec) == b``): exact length, zero padding bytes, pointers
starting at 0, monotone and ending at ``count``, indices in range and strictly ascending as
described, canonical nm slots, no empty bcsr block. Anything else raises ``FormatError``, as
does a tile of more than ``max_elements`` elements (default ``2**28``).
"""

from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

HEADER_BYTES = 16
U32_MAX = 0xFFFFFFFF
#: Largest tile ``unpack`` decodes by default (elements), so a corrupt header cannot ask for
#: gigabytes of output.
DEFAULT_MAX_ELEMENTS = 1 << 28
_HEADER = struct.Struct("<BBBBIII")


class FormatError(ValueError):
    """A tile or buffer that violates its sparse format; the message says what and where."""


class Format(enum.IntEnum):
    """Format ids as stored in the header's first byte."""

    DENSE = 0
    CSR = 1
    CSC = 2
    COO = 3
    BITMAP = 4
    NM = 5
    BCSR = 6

    @classmethod
    def from_name(cls, name: str) -> Format:
        """The format called ``name`` (``"dense"``, ``"csr"``, ...); FormatError if unknown."""
        try:
            return FORMAT_BY_NAME[name.strip().lower()]
        except (KeyError, AttributeError):
            raise FormatError(f"unknown format name {name!r}; expected one of "
                              f"{', '.join(FORMAT_BY_NAME)}") from None

    @property
    def text(self) -> str:
        """The lower-case name, as in spec text."""
        return FORMAT_NAMES[self]


FORMAT_NAMES: dict[Format, str] = {f: f.name.lower() for f in Format}
FORMAT_BY_NAME: dict[str, Format] = {v: k for k, v in FORMAT_NAMES.items()}
_SPEC_RE = re.compile(r"(?P<plain>dense|csr|csc|coo|bitmap)|nm(?P<n>\d+):(?P<m>\d+)"
                      r"|bcsr(?P<br>\d+)x(?P<bc>\d+)")


@dataclass(frozen=True)
class FormatSpec:
    """A format plus its parameters: ``(n, m)`` for nm, ``(block_rows, block_cols)`` for bcsr."""

    format: Format
    n: int = 0
    m: int = 0
    block_rows: int = 0
    block_cols: int = 0

    def __post_init__(self) -> None:
        if self.format not in Format._value2member_map_:
            raise FormatError(f"unknown format id {self.format!r}")
        object.__setattr__(self, "format", Format(self.format))
        n, m, br, bc = self.n, self.m, self.block_rows, self.block_cols
        if self.format == Format.NM:
            if not (1 <= n <= m <= 255) or br or bc:
                raise FormatError(f"nm needs 1 <= N <= M <= 255, got N={n} M={m}")
        elif self.format == Format.BCSR:
            if not (1 <= br <= 255 and 1 <= bc <= 255) or n or m:
                raise FormatError(f"bcsr needs 1 <= block dims <= 255, got {br}x{bc}")
        elif n or m or br or bc:
            raise FormatError(f"{self.format.text} takes no parameters")

    @property
    def params(self) -> tuple[int, int]:
        """Header bytes ``(p0, p1)``."""
        if self.format == Format.NM:
            return self.n, self.m
        return self.block_rows, self.block_cols

    @classmethod
    def parse(cls, text: str | FormatSpec) -> FormatSpec:
        """Parse ``"csr"``, ``"nm2:4"``, ``"bcsr4x4"``...; FormatError on anything else."""
        if isinstance(text, FormatSpec):
            return text
        if isinstance(text, str):
            return _parse_spec(cls, text)  # specs are immutable: parsed once per text
        raise FormatError(f"bad format spec {text!r}; expected dense, csr, csc, coo, "
                          "bitmap, nmN:M (e.g. nm2:4) or bcsrRxC (e.g. bcsr4x4)")

    @classmethod
    def _parse(cls, text: str) -> FormatSpec:
        m = _SPEC_RE.fullmatch(text.strip().lower())
        if m is None:
            raise FormatError(f"bad format spec {text!r}; expected dense, csr, csc, coo, "
                              "bitmap, nmN:M (e.g. nm2:4) or bcsrRxC (e.g. bcsr4x4)")
        if m["plain"]:
            return cls(FORMAT_BY_NAME[m["plain"]])
        if m["n"] is not None:
            return cls(Format.NM, n=int(m["n"]), m=int(m["m"]))
        return cls(Format.BCSR, block_rows=int(m["br"]), block_cols=int(m["bc"]))

    @classmethod
    def from_params(cls, format_id: int, p0: int, p1: int) -> FormatSpec:
        """The spec for header bytes ``format_id, p0, p1``."""
        if format_id == Format.NM:
            return cls(Format.NM, n=p0, m=p1)
        if format_id == Format.BCSR:
            return cls(Format.BCSR, block_rows=p0, block_cols=p1)
        return cls(format_id) if not (p0 or p1) else cls(format_id, n=p0, m=p1)

    def __str__(self) -> str:
        if self.format == Format.NM:
            return f"nm{self.n}:{self.m}"
        if self.format == Format.BCSR:
            return f"bcsr{self.block_rows}x{self.block_cols}"
        return self.format.text


@lru_cache(maxsize=256)
def _parse_spec(cls: type[FormatSpec], text: str) -> FormatSpec:
    return cls._parse(text)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def index_bytes_for(spec: FormatSpec, rows: int, cols: int) -> int:
    """The header's ``index_bytes`` for a ``rows x cols`` tile in ``spec``."""
    f = spec.format
    if f in (Format.DENSE, Format.BITMAP):
        return 0
    if f == Format.NM:
        return 1
    if f == Format.BCSR:
        rows, cols = _cdiv(rows, spec.block_rows), _cdiv(cols, spec.block_cols)
    return 2 if max(rows, cols) <= 65536 else 4


def _sections(spec: FormatSpec, ib: int, rows: int, cols: int,
              count: int) -> list[tuple[str, str, int]]:
    """``(name, dtype, length)`` of each section after the header, in order."""
    idx = "<u2" if ib == 2 else "<u4"
    f = spec.format
    if f == Format.DENSE:
        return [("values", "<f4", rows * cols)]
    if f == Format.CSR:
        return [("rowptr", "<u4", rows + 1), ("colidx", idx, count), ("values", "<f4", count)]
    if f == Format.CSC:
        return [("colptr", "<u4", cols + 1), ("rowidx", idx, count), ("values", "<f4", count)]
    if f == Format.COO:
        return [("rowidx", idx, count), ("colidx", idx, count), ("values", "<f4", count)]
    if f == Format.BITMAP:
        return [("bits", "u1", _cdiv(rows * cols, 8)), ("values", "<f4", count)]
    if f == Format.NM:
        return [("positions", "u1", count), ("values", "<f4", count)]
    br, bc = spec.block_rows, spec.block_cols
    return [("blockrowptr", "<u4", _cdiv(rows, br) + 1), ("blockcolidx", idx, count),
            ("values", "<f4", count * br * bc)]


def _sections_bytes(sections: list[tuple[str, str, int]]) -> int:
    return sum(_pad4(n * np.dtype(dt).itemsize) for _, dt, n in sections)


@dataclass(frozen=True)
class TileHeader:
    """The 16-byte tile header, validated for internal consistency."""

    format: Format
    p0: int
    p1: int
    index_bytes: int
    rows: int
    cols: int
    count: int

    # computed once per header (headers are immutable, and parsed headers are shared)
    @cached_property
    def format_spec(self) -> FormatSpec:
        """The FormatSpec the header describes."""
        return FormatSpec.from_params(self.format, self.p0, self.p1)

    @cached_property
    def sections(self) -> tuple[tuple[str, str, int], ...]:
        """``(name, dtype, length)`` of each section after the header, in order."""
        return tuple(_sections(self.format_spec, self.index_bytes, self.rows, self.cols, self.count))

    @cached_property
    def encoded_size(self) -> int:
        """Total bytes of the tile this header starts (header included)."""
        return HEADER_BYTES + _sections_bytes(list(self.sections))

    def to_bytes(self) -> bytes:
        """The 16 header bytes."""
        return _HEADER.pack(self.format, self.p0, self.p1, self.index_bytes, self.rows,
                            self.cols, self.count)


def _expected_count(spec: FormatSpec, rows: int, cols: int, nnz: int | None,
                    nblocks: int | None) -> int:
    """The header ``count`` for a tile; FormatError when it is impossible."""
    f = spec.format
    for name, v in (("rows", rows), ("cols", cols)):
        if not 0 <= v <= U32_MAX:
            raise FormatError(f"{name}={v} does not fit u32")
    if f == Format.DENSE:
        count = rows * cols
    elif f == Format.NM:
        if cols % spec.m:
            raise FormatError(f"{spec}: cols={cols} is not a multiple of M={spec.m}")
        count = rows * (cols // spec.m) * spec.n
    elif f == Format.BCSR:
        limit = _cdiv(rows, spec.block_rows) * _cdiv(cols, spec.block_cols)
        if nblocks is None or not 0 <= nblocks <= limit:
            raise FormatError(f"{spec}: nblocks={nblocks} must be in 0..{limit}")
        count = nblocks
    else:
        if nnz is None or not 0 <= nnz <= rows * cols:
            raise FormatError(f"{spec}: nnz={nnz} must be in 0..{rows * cols}")
        count = nnz
    if count > U32_MAX:
        raise FormatError(f"{spec}: count {count} does not fit u32")
    return count


def encoded_size(spec: FormatSpec | str, rows: int, cols: int, nnz: int | None = None,
                 nblocks: int | None = None) -> int:
    """Exact packed size in bytes (see the module docstring for the formula).

    ``nnz`` is required for csr/csc/coo/bitmap, ``nblocks`` (stored blocks) for bcsr.
    """
    spec = FormatSpec.parse(spec)
    count = _expected_count(spec, rows, cols, nnz, nblocks)
    secs = _sections(spec, index_bytes_for(spec, rows, cols), rows, cols, count)
    return HEADER_BYTES + _sections_bytes(secs)


def _check_header(data: np.ndarray) -> TileHeader:
    if data.size < HEADER_BYTES:
        raise FormatError(f"truncated header: {data.size} bytes, need {HEADER_BYTES}")
    return _parse_header(data[:HEADER_BYTES].tobytes())


@lru_cache(maxsize=4096)
def _parse_header(raw: bytes) -> TileHeader:
    """The validated header of these 16 bytes (a pure function of them, so cached: a
    program decodes the same few tile shapes many times)."""
    fid, p0, p1, ib, rows, cols, count = _HEADER.unpack(raw)
    if fid not in Format._value2member_map_:
        raise FormatError(f"unknown format id {fid}")
    fmt = Format(fid)
    try:
        spec = FormatSpec.from_params(fmt, p0, p1)
    except FormatError as e:
        raise FormatError(f"bad header parameters p0={p0} p1={p1}: {e}") from None
    want = index_bytes_for(spec, rows, cols)
    if ib != want:
        raise FormatError(f"{spec} {rows}x{cols}: index_bytes is {ib}, must be {want}")
    if fmt in (Format.DENSE, Format.NM):
        expected = _expected_count(spec, rows, cols, None, None)
        if count != expected:
            raise FormatError(f"{spec} {rows}x{cols}: count is {count}, must be {expected}")
    else:
        _expected_count(spec, rows, cols, count, count)
    return TileHeader(fmt, p0, p1, ib, rows, cols, count)


def header(buf: bytes | bytearray | memoryview | np.ndarray) -> TileHeader:
    """Parse and validate only the 16-byte header at the start of ``buf``."""
    return _check_header(_codec.as_bytes(buf))


def nnz_mask(x: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-zeros, ``x != 0`` (-0.0 is zero; NaN and inf are non-zero)."""
    return np.asarray(x) != 0


def pack(x: np.ndarray, spec: FormatSpec | str) -> bytes:
    """Encode a 2-D tile (converted to float32) in ``spec``; FormatError if it does not fit."""
    spec = FormatSpec.parse(spec)
    tile = _codec.as_tile(x)
    rows, cols = tile.shape
    count, arrays = _codec.pack_sections(tile, spec)
    count = _expected_count(spec, rows, cols, count, count)
    head = _HEADER.pack(spec.format, *spec.params, index_bytes_for(spec, rows, cols), rows,
                        cols, count)
    parts = [head]
    for a in arrays:
        raw = a.tobytes()
        parts += [raw, bytes(_pad4(len(raw)) - len(raw))]
    return b"".join(parts)


def decoded(x: np.ndarray, spec: FormatSpec | str) -> np.ndarray:
    """The float32 tile ``unpack(pack(x, spec))`` returns, without the encoding (x must
    pack): dense keeps every bit; the sparse formats keep the non-zeros' bits and give +0.0
    elsewhere (a -0.0 is not stored), except that bcsr keeps every element of a stored
    block, -0.0 included. Lets a caller that has just packed a tile remember its decoding."""
    spec = FormatSpec.parse(spec)
    tile = np.array(_codec.as_tile(x), order="C")  # a copy: the caller may keep the tile
    if spec.format == Format.DENSE:
        return tile
    bits = tile.view(np.uint32)
    if spec.format == Format.BCSR:
        br, bc = spec.block_rows, spec.block_cols
        rows, cols = tile.shape
        pad = np.zeros((_cdiv(rows, br) * br, _cdiv(cols, bc) * bc), bool)
        pad[:rows, :cols] = _codec.nz_bits(bits)
        gr, gc = pad.shape[0] // br, pad.shape[1] // bc
        stored = pad.reshape(gr, br, gc, bc).any(axis=(1, 3))
        tile[~np.repeat(np.repeat(stored, br, axis=0), bc, axis=1)[:rows, :cols]] = 0
        return tile
    neg_zero = bits == np.uint32(0x80000000)  # the only bits that change: -0.0 is not stored
    if neg_zero.any():
        tile[neg_zero] = 0
    return tile


def unpack(buf: bytes | bytearray | memoryview | np.ndarray, *,
           max_elements: int | None = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
    """Decode a packed tile to a float32 ``rows x cols`` array, validating every byte.

    Raises FormatError for any buffer that is not a canonical encoding, or whose tile has more
    than ``max_elements`` elements (``None``: no limit).
    """
    data = _codec.as_bytes(buf)
    h = _check_header(data)
    spec = h.format_spec
    secs = list(h.sections)
    total = h.encoded_size
    if data.size != total:
        what = "truncated" if data.size < total else "trailing bytes after"
        raise FormatError(f"{what} {spec} {h.rows}x{h.cols} tile: {data.size} bytes, "
                          f"encoded size is {total}")
    extent = h.rows * h.cols
    if spec.format == Format.BCSR:
        extent = (_cdiv(h.rows, spec.block_rows) * spec.block_rows
                  * _cdiv(h.cols, spec.block_cols) * spec.block_cols)
    if max_elements is not None and extent > max_elements:
        raise FormatError(f"{h.rows}x{h.cols} tile exceeds max_elements={max_elements}")
    arrays = _codec.read_sections(data, secs)
    return _codec.unpack_sections(h, spec, arrays).view(np.float32)


def encoded_size_of(x: np.ndarray, spec: FormatSpec | str) -> int:
    """``len(pack(x, spec))``, computed without packing."""
    return metadata_counts(x, spec).encoded_size


@dataclass(frozen=True)
class MetadataCounts:
    """What a timing model needs to know about a tile in a format, without packing it."""

    rows: int
    cols: int
    nnz: int              # non-zeros in the tile
    count: int            # the header's count field
    stored_values: int    # f32 values in the values section
    index_entries: int    # entries of the idx / position sections (coo: both)
    index_bytes: int      # bytes per index entry (the header field)
    pointer_entries: int  # rowptr / colptr / blockrowptr entries
    bitmap_bytes: int     # bytes of the bitmap section
    nonempty_rows: int    # rows holding a non-zero
    nonempty_cols: int    # cols holding a non-zero
    blocks: int           # stored bcsr blocks (0 for other formats)
    encoded_size: int     # len(pack(x, spec))


def metadata_counts(x: np.ndarray, spec: FormatSpec | str) -> MetadataCounts:
    """Counts of ``x`` in ``spec`` (vectorized; no packing). FormatError as ``pack`` would."""
    return _codec.metadata(_codec.as_tile(x), FormatSpec.parse(spec))


def is_nm(x: np.ndarray, n: int, m: int) -> bool:
    """True iff ``cols % m == 0`` and every group of ``m`` columns holds at most ``n`` non-zeros."""
    mask = nnz_mask(x)
    if mask.ndim != 2 or m < 1 or mask.shape[1] % m:
        return False
    groups = mask.reshape(mask.shape[0], mask.shape[1] // m, m)
    return bool((groups.sum(axis=-1) <= n).all())


def nm_prune(x: np.ndarray, n: int, m: int) -> np.ndarray:
    """Keep the ``n`` largest-magnitude elements of each group of ``m`` columns (NaN counts as
    largest; ties go to the lower position); zero the rest. Returns a new float32 array."""
    return _codec.nm_prune(_codec.as_tile(x), FormatSpec(Format.NM, n=n, m=m))


# The kernels import the names above, so they come last.
from acf.isa import _format_codec as _codec  # noqa: E402
