"""The versioned binary container of an ACF program (``.acfbin``). Never pickled.

Layout (little-endian)::

    header   32 bytes: magic "ACFB", u16 version, u16 flags (0), u32 section count,
             u32 reserved (0), u64 total size, u32 CRC-32 of everything after the header,
             u32 reserved (0)
    table    24 bytes per section: u32 kind, u32 reserved (0), u64 offset, u64 size
    sections CODE (1): 32-byte instruction words
             SYMBOLS (2), LABELS (3), DEBUG (4), TARGET (5): UTF-8 JSON documents
             DATA (6, only when a symbol has initial contents): per symbol a u16 name
             length, the UTF-8 name, a u64 element count and that many f32 values

DEBUG maps instruction addresses to the IR op id and source location (file, line, layer),
so reports, traces and the debugger speak in layers and lines. Every offset and size is
bounds-checked on load and every JSON document is checked against its expected shape;
anything else raises :class:`ContainerError`. So is anything the assembler could not have
written (an empty tensor name, a label no assembly text can spell, a format spelt another
way, overlapping tensors, bytes laid out otherwise than :func:`write` lays them out): the
disassembly of every container :func:`read` accepts reassembles to the same bytes (a
target name the tools cannot load excepted: ``acfc asm`` refuses it, at its line).
"""

from __future__ import annotations

import json
import struct
import unicodedata
import zlib
from typing import Any

import numpy as np
from acf.isa.encoding import DecodeError, decode_all, encode_all
from acf.isa.fields import CANONICAL_NAN_BITS
from acf.isa.program import Program, SourceLoc, Symbol

MAGIC = b"ACFB"
VERSION = 1
_HEADER = struct.Struct("<4sHHIIQII")
_ENTRY = struct.Struct("<IIQQ")
CODE, SYMBOLS, LABELS, DEBUG, TARGET, DATA = 1, 2, 3, 4, 5, 6
_KINDS = {CODE: "code", SYMBOLS: "symbols", LABELS: "labels", DEBUG: "debug", TARGET: "target",
          DATA: "data"}
_DATA_HEAD = struct.Struct("<H")
_DATA_COUNT = struct.Struct("<Q")
MAX_SIZE = 1 << 34


class ContainerError(ValueError):
    """A file that is not a valid ACF container; the message says what is wrong."""


def write(prog: Program) -> bytes:
    """Serialize a program (code, symbols, labels, debug info, target) to container bytes."""
    return _pack(_sections(prog, encode_all(prog.instructions)))


def _sections(prog: Program, code: bytes) -> list[tuple[int, bytes]]:
    sections = [
        (CODE, code),
        (SYMBOLS, _json([
            {"name": s.name, "space": s.space, "addr": s.addr, "shape": list(s.shape),
             "dtype": s.dtype, "fmt": s.fmt, "cluster": s.cluster, "tile": list(s.tile)}
            for s in prog.symbols.values()
        ])),
        (LABELS, _json(prog.labels)),
        (DEBUG, _json([
            [addr, loc.op_id, loc.file, loc.line, loc.layer] for addr, loc in sorted(prog.debug.items())
        ])),
        (TARGET, _json({"name": prog.target})),
    ]
    if prog.data:
        sections.append((DATA, _data_bytes(prog.data)))
    return sections


def _pack(sections: list[tuple[int, bytes]]) -> bytes:
    offset = _HEADER.size + _ENTRY.size * len(sections)
    table, body = b"", b""
    for kind, data in sections:
        table += _ENTRY.pack(kind, 0, offset + len(body), len(data))
        body += data
    rest = table + body
    total = _HEADER.size + len(rest)
    header = _HEADER.pack(MAGIC, VERSION, 0, len(sections), 0, total, zlib.crc32(rest), 0)
    return header + rest


def _data_bytes(data: dict[str, bytes]) -> bytes:
    out = b""
    for name, raw in data.items():
        key = name.encode()
        out += _DATA_HEAD.pack(len(key)) + key + _DATA_COUNT.pack(len(raw) // 4) + raw
    return out


def _data(blob: bytes, symbols: dict[str, Symbol]) -> dict[str, bytes]:
    from acf.isa.symbols import symbol_elements

    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(blob):
        if pos + _DATA_HEAD.size > len(blob):
            raise ContainerError("data section: truncated entry")
        (n,) = _DATA_HEAD.unpack_from(blob, pos)
        pos += _DATA_HEAD.size
        if pos + n + _DATA_COUNT.size > len(blob):
            raise ContainerError("data section: truncated entry")
        try:
            name = blob[pos:pos + n].decode()
        except UnicodeDecodeError:
            raise ContainerError("data section: a name is not UTF-8") from None
        pos += n
        (count,) = _DATA_COUNT.unpack_from(blob, pos)
        pos += _DATA_COUNT.size
        if pos + 4 * count > len(blob):
            raise ContainerError(f"data section: {name!r} runs past the section")
        sym = symbols.get(name)
        if sym is None:
            raise ContainerError(f"data section: {name!r} is not a symbol")
        if name in out:
            raise ContainerError(f"data section: {name!r} twice")
        if count != symbol_elements(sym):
            raise ContainerError(f"data section: {name!r} has {count} values for "
                                 f"{symbol_elements(sym)} elements")
        raw = bytes(blob[pos:pos + 4 * count])
        bits = np.frombuffer(raw, "<u4")
        nan = (bits & 0x7F800000 == 0x7F800000) & (bits & 0x007FFFFF != 0)
        if (nan & (bits != CANONICAL_NAN_BITS)).any():  # the text spells every NaN "nan"
            raise ContainerError(f"data section: {name!r} holds a NaN with another sign or "
                                 "payload than the one NaN assembly text can give")
        out[name] = raw
        pos += 4 * count
    return out


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def read(data: bytes) -> Program:
    """Parse container bytes into a Program, validating every byte it relies on."""
    if len(data) < _HEADER.size:
        raise ContainerError(f"file too short for a container header ({len(data)} bytes)")
    magic, version, flags, count, res, total, crc, res2 = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ContainerError("not an ACF binary (bad magic)")
    if version != VERSION:
        raise ContainerError(f"unsupported container version {version} (this tool reads {VERSION})")
    if flags or res or res2:
        raise ContainerError("reserved header fields are not zero")
    if total != len(data):
        raise ContainerError(f"size mismatch: header says {total} bytes, file has {len(data)}")
    if zlib.crc32(data[_HEADER.size :]) != crc:
        raise ContainerError("checksum mismatch: the file is corrupted")
    if count > 16 or _HEADER.size + count * _ENTRY.size > len(data):
        raise ContainerError(f"bad section count {count}")
    sections: dict[int, bytes] = {}
    spans = []
    for i in range(count):
        kind, rsv, off, size = _ENTRY.unpack_from(data, _HEADER.size + i * _ENTRY.size)
        if kind not in _KINDS or rsv:
            raise ContainerError(f"section {i}: unknown kind {kind}")
        if kind in sections:
            raise ContainerError(f"section {i}: duplicate {_KINDS[kind]} section")
        start = _HEADER.size + count * _ENTRY.size
        if off < start or off + size > len(data):
            raise ContainerError(f"section {_KINDS[kind]}: bytes {off}..{off + size} out of bounds")
        spans.append((off, off + size))
        sections[kind] = data[off : off + size]
    spans.sort()
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ContainerError("sections overlap")
    if CODE not in sections:
        raise ContainerError("no code section")
    try:
        instructions = decode_all(sections[CODE])
    except DecodeError as exc:
        raise ContainerError(f"code: {exc}") from None
    prog = Program(instructions=instructions)
    prog.symbols = _symbols(_load(sections.get(SYMBOLS, b"[]"), "symbols"))
    prog.labels = _labels(_load(sections.get(LABELS, b"{}"), "labels"), len(instructions))
    prog.debug = _debug(_load(sections.get(DEBUG, b"[]"), "debug"), len(instructions))
    tgt = _load(sections.get(TARGET, b'{"name": ""}'), "target")
    if not isinstance(tgt, dict) or not isinstance(tgt.get("name"), str):
        raise ContainerError("target section: expected {\"name\": str}")
    prog.target = tgt["name"]
    if not _printable(prog.target):
        raise ContainerError(f"target section: the name {prog.target[:80]!r} holds a control "
                             "character or is not valid text")
    prog.data = _data(sections.get(DATA, b""), prog.symbols)
    if _pack(_sections(prog, sections[CODE])) != data:
        # the same program, laid out otherwise (another JSON spelling or key order, bytes
        # outside every section): its disassembly would not reassemble to these bytes
        raise ContainerError("not laid out as this tool writes containers (JSON spelt "
                             "differently, or bytes outside the sections)")
    return prog


def _printable(text: str) -> bool:
    """Text without control characters that encodes as UTF-8 (no lone surrogate)."""
    return _encodes(text) and not any(unicodedata.category(c) == "Cc" for c in text)


def _load(blob: bytes, what: str) -> Any:
    try:
        return json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ContainerError(f"{what} section: not valid JSON ({exc.__class__.__name__})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _symbols(doc: Any) -> dict[str, Symbol]:
    if not isinstance(doc, list):
        raise ContainerError("symbols section: expected a list")
    out: dict[str, Symbol] = {}
    for entry in doc:
        ok = (
            isinstance(entry, dict)
            and set(entry) == {"name", "space", "addr", "shape", "dtype", "fmt", "cluster", "tile"}
            and isinstance(entry["name"], str)
            and entry["space"] in ("dram", "gb", "sp", "acc")
            and _is_int(entry["addr"]) and entry["addr"] >= 0
            and isinstance(entry["shape"], list) and all(_is_int(d) and d >= 0 for d in entry["shape"])
            and entry["dtype"] == "f32" and isinstance(entry["fmt"], str)
            and _is_int(entry["cluster"]) and 0 <= entry["cluster"] < 256
            and isinstance(entry["tile"], list) and len(entry["tile"]) in (0, 2)
            and all(_is_int(d) and d >= 1 for d in entry["tile"])
        )
        if not ok:
            raise ContainerError(f"symbols section: malformed entry {str(entry)[:80]}")
        sym = Symbol(entry["name"], entry["space"], entry["addr"], tuple(entry["shape"]),
                     entry["dtype"], entry["fmt"], entry["cluster"], tuple(entry["tile"]))
        if sym.name in out:
            raise ContainerError(f"symbols section: {sym.name!r} twice")
        _check_symbol(sym)
        out[sym.name] = sym
    _check_overlaps(list(out.values()))
    return out


def _check_symbol(sym: Symbol) -> None:
    """What the ``.tensor`` directive enforces: a name (any text; the disassembler quotes
    it when it is not a plain word), a format in its one spelling, a tile only on a sparse
    tensor, a shape the format can hold."""
    from acf.isa.fields import FieldError, FmtSpec
    from acf.isa.formats import FormatError
    from acf.isa.symbols import symbol_nbytes

    what = f"symbols section: {sym.name[:80]!r}"
    if not sym.name or not _encodes(sym.name):
        raise ContainerError(f"{what} is not a name assembly text can give a tensor")
    try:
        canonical = str(FmtSpec.parse(sym.fmt))
    except FieldError:
        canonical = ""
    if canonical != sym.fmt:
        raise ContainerError(f"{what}: unknown format {sym.fmt[:40]!r} (dense, csr, csc, coo, "
                             "bitmap, nmN:M, bcsrRxC)")
    if sym.tile and sym.fmt == "dense":
        raise ContainerError(f"{what}: a tile on a dense tensor (tiles are for sparse formats)")
    try:
        symbol_nbytes(sym)
    except FormatError as exc:
        raise ContainerError(f"{what}: f32{list(sym.shape)} cannot be stored as {sym.fmt}: "
                             f"{exc}") from None


def _check_overlaps(symbols: list[Symbol]) -> None:
    """No two tensors share a byte of one memory (the assembler refuses that too)."""
    from acf.isa.symbols import symbol_nbytes

    spans: dict[tuple[str, int], list[tuple[int, int, str]]] = {}
    for s in symbols:
        n = symbol_nbytes(s)
        if n:
            key = (s.space, s.cluster if s.space in ("sp", "acc") else 0)
            spans.setdefault(key, []).append((s.addr, s.addr + n, s.name))
    for (space, _), items in spans.items():
        items.sort()
        end, owner = -1, ""
        for lo, hi, name in items:
            if lo < end:
                raise ContainerError(f"symbols section: {name[:80]!r} overlaps {owner[:80]!r} "
                                     f"in {space}")
            if hi > end:
                end, owner = hi, name


def _labels(doc: Any, n: int) -> dict[str, int]:
    from acf.isa.asm import reads_back

    if not isinstance(doc, dict) or not all(_is_int(v) and 0 <= v <= n for v in doc.values()):
        raise ContainerError("labels section: expected {name: address within the code}")
    for name in doc:
        if not reads_back("label", name):
            raise ContainerError(f"labels section: {name[:80]!r} is not a name assembly text "
                                 "can give a label")
    return dict(doc)


def _debug(doc: Any, n: int) -> dict[int, SourceLoc]:
    if not isinstance(doc, list):
        raise ContainerError("debug section: expected a list")
    out = {}
    for e in doc:
        if not (isinstance(e, list) and len(e) == 5 and _is_int(e[0]) and 0 <= e[0] < n and _is_int(e[1])
                and isinstance(e[2], str) and _is_int(e[3]) and isinstance(e[4], str)):
            raise ContainerError(f"debug section: malformed entry {str(e)[:80]}")
        loc = SourceLoc(e[2], e[3], e[4], e[1])
        # what a .loc line can say: an op id of -1 (none) or more, text (no lone
        # surrogate), something at all (an empty location is no entry)
        if loc.op_id < -1 or loc == SourceLoc() or not all(_encodes(t) for t in (loc.file, loc.layer)):
            raise ContainerError(f"debug section: entry {str(e)[:80]} is no location .loc can give")
        out[e[0]] = loc
    return out


def _encodes(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
