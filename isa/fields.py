"""Field kinds of instruction operands: bit width, range check, assembly text, binary value.

Every operand an instruction row declares in :mod:`acf.isa.spec` is one of these kinds; the
encoder, decoder, assembler, disassembler and docs all go through them, so an operand kind
is described exactly once.

Assembly spellings::

    u/s      42, -3, 0x1f            integers
    f32      1.5, -0.0, 1e-3, inf    float immediates (bit-exact through the binary)
    enum     xy, ab, relu            a name from the kind's list
    cl       c3                      cluster id
    tok      t5                      dependency token (0 = none)
    reg      ar2 / fr1               address / float register
    mem      sp[0x100], dram[W1+64+ar2], acc[ar1]   space[offset (+ symbol) (+ address register)]
    fmt      dense, csr, csc, coo, bitmap, nm2:4, bcsr4x4
    rel      a label after the instruction (loop end)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

SPACES = ("dram", "gb", "sp", "acc")
CANONICAL_NAN_BITS = 0x7FC00000
CANONICAL_NAN = struct.unpack("<f", struct.pack("<I", CANONICAL_NAN_BITS))[0]
FORMATS = ("dense", "csr", "csc", "coo", "bitmap", "nm", "bcsr")


class FieldError(ValueError):
    """An operand value does not fit its field; the message names the field."""


@dataclass(frozen=True)
class MemRef:
    """A memory operand: ``space[offset + AR[areg]]`` (areg 0 is the constant-zero register)."""

    space: str
    offset: int
    areg: int = 0

    def __str__(self) -> str:
        parts = [hex(self.offset)] if self.offset or not self.areg else []
        if self.areg:
            parts.append(f"ar{self.areg}")
        return f"{self.space}[{'+'.join(parts)}]"


@dataclass(frozen=True)
class FmtSpec:
    """A tile format operand: name plus (N, M) for ``nm`` or (block rows, cols) for ``bcsr``."""

    name: str
    p0: int = 0
    p1: int = 0

    def __str__(self) -> str:
        if self.name == "nm":
            return f"nm{self.p0}:{self.p1}"
        if self.name == "bcsr":
            return f"bcsr{self.p0}x{self.p1}"
        return self.name

    @staticmethod
    def parse(text: str) -> "FmtSpec":
        import re

        if text in FORMATS and text not in ("nm", "bcsr"):
            return FmtSpec(text)
        m = re.fullmatch(r"nm(\d+):(\d+)", text)
        if m:
            n, mm = int(m.group(1)), int(m.group(2))
            if not (1 <= n <= mm <= 255):
                raise FieldError(f"bad N:M format {text!r}: need 1 <= N <= M <= 255")
            return FmtSpec("nm", n, mm)
        m = re.fullmatch(r"bcsr(\d+)x(\d+)", text)
        if m:
            br, bc = int(m.group(1)), int(m.group(2))
            if not (1 <= br <= 255 and 1 <= bc <= 255):
                raise FieldError(f"bad block format {text!r}: block sides must be 1..255")
            return FmtSpec("bcsr", br, bc)
        raise FieldError(
            f"unknown format {text!r} (dense, csr, csc, coo, bitmap, nmN:M, bcsrRxC)"
        )


INT_KINDS = frozenset(("u", "s", "cl", "tok", "reg", "rel"))
_RANGES: dict[tuple[int, bool], tuple[int, int]] = {}  # (bits, signed) -> (lo, hi)


@dataclass(frozen=True)
class Kind:
    """One operand kind. ``bits`` is the encoded width; ``choices`` names enum values."""

    name: str
    bits: int
    choices: tuple[str, ...] = ()
    spaces: tuple[str, ...] = ()
    signed: bool = False

    # -- checking ----------------------------------------------------------------------
    def check(self, fname: str, value: Any) -> Any:
        """Validate a Python-level operand value; raise FieldError naming the field."""
        k = self.name
        if k in INT_KINDS:
            if value.__class__ is not int and (not isinstance(value, int) or isinstance(value, bool)):
                raise FieldError(f"field '{fname}': expected an integer, got {value!r}")
            rng = _RANGES.get((self.bits, self.signed))
            if rng is None:
                rng = _RANGES[(self.bits, self.signed)] = self.int_range()
            lo, hi = rng
            if not lo <= value <= hi:
                raise FieldError(f"field '{fname}': {value} out of range [{lo}, {hi}] ({self.bits} bits)")
            return value
        if k == "enum":
            if value not in self.choices:
                raise FieldError(f"field '{fname}': {value!r} is not one of {', '.join(self.choices)}")
            return value
        if k == "f32":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise FieldError(f"field '{fname}': expected a float, got {value!r}")
            if value != value:
                return CANONICAL_NAN  # one NaN encoding, so text and binary round-trip exactly
            try:
                return struct.unpack("<f", struct.pack("<f", float(value)))[0]
            except OverflowError:
                raise FieldError(f"field '{fname}': {value!r} overflows fp32") from None
        if k == "mem":
            if not isinstance(value, MemRef):
                raise FieldError(f"field '{fname}': expected a memory operand, got {value!r}")
            if value.space not in self.spaces:
                raise FieldError(f"field '{fname}': space '{value.space}' not allowed here (use {', '.join(self.spaces)})")
            if not 0 <= value.areg <= 15:
                raise FieldError(f"field '{fname}': address register ar{value.areg} does not exist (ar0..ar15)")
            obits = self.bits - 6
            if not 0 <= value.offset < (1 << obits):
                raise FieldError(f"field '{fname}': offset {value.offset:#x} does not fit {obits} bits")
            return value
        if k == "fmt":
            if not isinstance(value, FmtSpec) or value.name not in FORMATS:
                raise FieldError(f"field '{fname}': expected a format, got {value!r}")
            return value
        raise AssertionError(f"internal error: unknown field kind {k}")

    def int_range(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    # -- binary ------------------------------------------------------------------------
    def to_bits(self, value: Any) -> int:
        k = self.name
        if k in ("u", "cl", "tok", "reg", "rel"):
            return int(value)
        if k == "s":
            return int(value) & ((1 << self.bits) - 1)
        if k == "enum":
            return self.choices.index(value)
        if k == "f32":
            return struct.unpack("<I", struct.pack("<f", value))[0]
        if k == "mem":
            return SPACES.index(value.space) | (value.areg << 2) | (value.offset << 6)
        if k == "fmt":
            return FORMATS.index(value.name) | (value.p0 << 3) | (value.p1 << 11)
        raise AssertionError(k)

    def from_bits(self, fname: str, raw: int) -> Any:
        """Decode raw bits; raise FieldError for encodings no assembler could produce."""
        k = self.name
        if k in ("u", "cl", "tok", "reg", "rel"):
            return raw
        if k == "s":
            return raw - (1 << self.bits) if raw >> (self.bits - 1) else raw
        if k == "enum":
            if raw >= len(self.choices):
                raise FieldError(f"field '{fname}': enum code {raw} undefined")
            return self.choices[raw]
        if k == "f32":
            value = struct.unpack("<f", struct.pack("<I", raw))[0]
            if value != value and raw != CANONICAL_NAN_BITS:
                raise FieldError(f"field '{fname}': non-canonical NaN encoding {raw:#010x}")
            return value
        if k == "mem":
            space = SPACES[raw & 3]
            if space not in self.spaces:
                raise FieldError(f"field '{fname}': space '{space}' not allowed here")
            return MemRef(space, raw >> 6, (raw >> 2) & 15)
        if k == "fmt":
            code = raw & 7
            if code >= len(FORMATS):
                raise FieldError(f"field '{fname}': format code {code} undefined")
            name = FORMATS[code]
            p0, p1 = (raw >> 3) & 255, (raw >> 11) & 255
            if name not in ("nm", "bcsr") and (p0 or p1):
                raise FieldError(f"field '{fname}': format {name} takes no parameters")
            spec = FmtSpec(name, p0, p1)
            if name in ("nm", "bcsr"):
                FmtSpec.parse(str(spec))  # validates ranges
            return spec
        raise AssertionError(k)

    def describe(self) -> str:
        if self.name == "enum":
            return "one of " + " ".join(self.choices)
        if self.name == "mem":
            return "memory " + "|".join(self.spaces) + "[offset+arN]"
        return {
            "u": f"unsigned {self.bits}-bit", "s": f"signed {self.bits}-bit", "f32": "fp32 immediate",
            "cl": "cluster id cN", "tok": "token tN (t0 = none)", "reg": "register",
            "fmt": "tile format", "rel": "label (loop end)",
        }[self.name]


def u(bits: int) -> Kind:
    return Kind("u", bits)


def s(bits: int) -> Kind:
    return Kind("s", bits, signed=True)


def enum(*choices: str) -> Kind:
    return Kind("enum", max(1, (len(choices) - 1).bit_length()), choices=choices)


def mem(*spaces: str) -> Kind:
    # 2 bits space, 4 bits address register, then the byte offset: 40 bits when DRAM is
    # reachable (1 TiB), 26 bits for on-chip buffers (64 MiB).
    return Kind("mem", 46 if "dram" in spaces else 32, spaces=spaces)


F32 = Kind("f32", 32)
CL = Kind("cl", 8)
TOK = Kind("tok", 8)
AREG = Kind("reg", 4)
FREG = Kind("reg", 4)
FMT = Kind("fmt", 19)
REL = Kind("rel", 16)


@dataclass(frozen=True)
class Field:
    """A named operand of an instruction row."""

    name: str
    kind: Kind
    doc: str = ""
    default: Any = None
    prefix: str = field(default="")  # assembly spelling for register-like kinds: "ar", "fr"

    @property
    def keyword(self) -> bool:
        """Operands with a default are written ``name=value`` in assembly."""
        return self.default is not None
