"""Binary encoding of instructions: one 256-bit little-endian word each, from the table."""

from __future__ import annotations

from acf.isa.fields import FieldError
from acf.isa.program import Instruction, make_op
from acf.isa.spec import BY_OPCODE, HEADER_FIELDS, HEADER_KINDS, WORD_BYTES


class DecodeError(ValueError):
    """Bytes that are not a valid instruction word; the message says which word and why."""


def encode(ins: Instruction) -> bytes:
    """Encode one instruction to its 32-byte word."""
    op = ins.op
    word = op.opcode
    pos = 8
    if op.queued:
        for h in HEADER_FIELDS:
            word |= HEADER_KINDS[h].to_bits(ins.args[h]) << pos
            pos += 8
    for f, off in op.layout():
        word |= f.kind.to_bits(ins.args[f.name]) << off
    return word.to_bytes(WORD_BYTES, "little")


def decode(buf: bytes, index: int = 0) -> Instruction:
    """Decode one 32-byte word. Raises DecodeError for unknown opcodes, undefined field
    encodings or set bits beyond the row's last field."""
    if len(buf) != WORD_BYTES:
        raise DecodeError(f"word {index}: expected {WORD_BYTES} bytes, got {len(buf)}")
    word = int.from_bytes(buf, "little")
    opcode = word & 0xFF
    op = BY_OPCODE.get(opcode)
    if op is None:
        raise DecodeError(f"word {index}: unknown opcode {opcode:#04x}")
    if word >> op.bits_used:
        raise DecodeError(f"word {index}: {op.mnemonic}: reserved bits set")
    args = {}
    pos = 8
    try:
        if op.queued:
            for h in HEADER_FIELDS:
                args[h] = HEADER_KINDS[h].from_bits(h, (word >> pos) & 0xFF)
                pos += 8
        for f, off in op.layout():
            raw = (word >> off) & ((1 << f.kind.bits) - 1)
            args[f.name] = f.kind.from_bits(f.name, raw)
        return make_op(op, args)
    except FieldError as exc:
        raise DecodeError(f"word {index}: {op.mnemonic}: {exc}") from None


def encode_all(instructions: list[Instruction]) -> bytes:
    return b"".join(encode(i) for i in instructions)


def decode_all(code: bytes) -> list[Instruction]:
    if len(code) % WORD_BYTES:
        raise DecodeError(f"code section of {len(code)} bytes is not a multiple of {WORD_BYTES}")
    return [decode(code[i : i + WORD_BYTES], i // WORD_BYTES) for i in range(0, len(code), WORD_BYTES)]
