"""Encode/decode and asm/disasm round-trips for every ISA row; range checks name the field."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acf.isa import spec
from acf.isa.asm import AsmError, assemble
from acf.isa.container import read, write
from acf.isa.disasm import disassemble, format_instruction
from acf.isa.encoding import DecodeError, decode, decode_all, encode, encode_all
from acf.isa.fields import FieldError, MemRef
from acf.isa.program import Program, make

from .strategies import any_instruction, instruction_of


@pytest.mark.parametrize("op", spec.OPS, ids=lambda op: op.mnemonic)
@settings(max_examples=40)
@given(data=st.data())
def test_every_row_round_trips(op: spec.Op, data: st.DataObject) -> None:
    ins = data.draw(instruction_of(op))
    word = encode(ins)
    assert len(word) == spec.WORD_BYTES
    assert decode(word) == ins
    # Text round trip: disassembly reassembles to the very same bytes.
    text = format_instruction(ins, 0) + "\n"
    if op.mnemonic == "loop":
        text += "\n".join(["halt"] * (ins["end"] + 1)) + "\n"  # give the label a home
        prog = Program([ins] + [make("halt")] * (ins["end"] + 1))
        text = disassemble(prog)
        assert encode_all(assemble(text).instructions) == encode_all(prog.instructions)
    else:
        assert encode(assemble(text).instructions[0]) == word


@settings(max_examples=200)
@given(st.lists(any_instruction(), max_size=20))
def test_program_container_round_trip(instrs: list) -> None:
    prog = Program([i for i in instrs if i.mnemonic != "loop"], target="acf-small")
    blob = write(prog)
    back = read(blob)
    assert back.instructions == prog.instructions
    assert write(back) == blob
    assert encode_all(assemble(disassemble(back)).instructions) == encode_all(prog.instructions)


@pytest.mark.parametrize(
    "mnemonic, args, field",
    [
        ("mm", dict(m=1 << 16), "m"),
        ("mm", dict(cl=256), "cl"),
        ("mm", dict(wait0=-1), "wait0"),
        ("mm", dict(skip="c"), "skip"),
        ("mm", dict(dst=MemRef("dram", 0)), "dst"),
        ("mm", dict(a=MemRef("sp", 1 << 26)), "a"),
        ("mm", dict(a=MemRef("sp", 0, 16)), "a"),
        ("vop", dict(imm=1e39), "imm"),
        ("setar", dict(value=1 << 47), "value"),
    ],
)
def test_range_violations_name_the_field(mnemonic: str, args: dict, field: str) -> None:
    base = {
        "mm": dict(dst=MemRef("acc", 0), a=MemRef("sp", 0), b=MemRef("sp", 0), m=1, n=1, k=1),
        "vop": dict(fn="add", dst=MemRef("sp", 0), a=MemRef("sp", 0), rows=1, cols=1),
        "setar": dict(ar=1, value=0),
    }[mnemonic]
    with pytest.raises(FieldError, match=f"'{field}'"):
        make(mnemonic, **{**base, **args})


def test_assembler_reports_field_range_with_location() -> None:
    with pytest.raises(AsmError) as exc:
        assemble("mm c0, acc[0], sp[0], sp[0], m=70000, n=1, k=1\n", "p.s")
    # at the value, not the mnemonic
    assert str(exc.value).startswith("p.s:1:32: error: mm: field 'm': 70000 out of range")


def test_assembler_rejects_a_negative_tensor_dimension() -> None:
    with pytest.raises(AsmError) as exc:
        assemble(".target acf-small\n.tensor X dram 0x0 f32[4,-1]\nhalt\n", "p.s")
    assert str(exc.value).startswith("p.s:2:26: error: negative dimension -1 in the shape of 'X'")


def test_assembler_rejects_overlapping_tensors() -> None:
    with pytest.raises(AsmError) as exc:
        assemble(".target acf-small\n.tensor A dram 0x0 f32[4,4]\n.tensor B dram 0x20 f32[2,2]\nhalt\n",
                 "p.s")
    assert str(exc.value).startswith("p.s:3:9: error: tensor 'B' overlaps 'A' in dram")
    # the same addresses in two clusters' scratchpads, or back to back, are fine
    assemble(".target acf-small\n.tensor A sp 0x0 f32[4] c0\n.tensor B sp 0x0 f32[4] c1\n"
             ".tensor C dram 0x0 f32[4]\n.tensor D dram 0x10 f32[4]\nhalt\n")


def test_decoder_rejects_garbage_words() -> None:
    with pytest.raises(DecodeError, match="unknown opcode"):
        decode(bytes(32))
    good = encode(make("halt"))
    with pytest.raises(DecodeError, match="reserved bits"):
        decode(good[:31] + b"\x01")
    with pytest.raises(DecodeError, match="multiple of 32"):
        decode_all(good + b"\x00")


DATA_PROGRAM = """.target acf-small
.tensor C dram 0x0 f32[2,3]
.data C 1.0 -0.0 0.1 inf nan -3e+38
.tensor W dram 0x100 f32[4,4] csr
.data W 1.0 0.0 0.0 0.0 0.0 2.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 0.0 -4.5
halt
"""


def test_data_directive_round_trips_bit_exactly_through_container_and_text() -> None:
    """``.data``: a symbol's initial contents (a compiled program's constants and
    hyperparameters), every f32 bit kept: -0.0, inf, nan, an f32 with no short decimal."""
    import numpy as np

    prog = assemble(DATA_PROGRAM)
    got = np.frombuffer(prog.data["C"], "<f4")
    want = np.array([1.0, -0.0, 0.1, np.inf, np.nan, -3e38], np.float32)
    assert got.tobytes()[:12] == want.tobytes()[:12] and np.isinf(got[3]) and np.isnan(got[4])
    assert got[5] == want[5]
    blob = write(prog)
    back = read(blob)
    assert back.data == prog.data and write(back) == blob
    assert write(assemble(disassemble(back))) == blob
    assert write(Program([make("halt")])) == write(read(write(Program([make("halt")]))))


@pytest.mark.parametrize(("line", "message"), [
    (".data C 1 2 3", "p.s:3:7: error: .data for 'C' has 3 values; f32[2,3] has 6"),
    (".data Q 1", "p.s:3:7: error: .data for 'Q', which no .tensor declares"),
    (".data C 1 2 3 4 5 0x6", "p.s:3:19: error: expected a number, got '0x6'"),
])
def test_data_directive_errors_are_located(line: str, message: str) -> None:
    with pytest.raises(AsmError) as exc:
        assemble(".target acf-small\n.tensor C dram 0x0 f32[2,3]\n" + line + "\nhalt\n", "p.s")
    assert str(exc.value).startswith(message)


def test_container_rejects_data_that_does_not_fit_its_symbol() -> None:
    from acf.isa.container import ContainerError

    prog = assemble(DATA_PROGRAM)
    prog.data["C"] = prog.data["C"][:8]
    with pytest.raises(ContainerError, match="'C' has 2 values for 6 elements"):
        read(write(prog))
