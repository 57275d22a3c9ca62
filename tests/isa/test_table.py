"""The table drives everything: docs are current, and a new row needs nothing else."""

from __future__ import annotations

from pathlib import Path

from acf.isa import spec
from acf.isa.asm import assemble
from acf.isa.disasm import disassemble
from acf.isa.docs import isa_markdown
from acf.isa.encoding import decode, encode
from acf.isa.fields import MemRef, enum, mem, u
from acf.isa.program import make

ROOT = Path(__file__).resolve().parents[2]


def test_docs_isa_md_is_current() -> None:
    """docs/isa.md is generated; regenerate with `acfc isa-doc -o docs/isa.md`."""
    assert (ROOT / "docs" / "isa.md").read_text() == isa_markdown()


def test_every_row_is_complete() -> None:
    spec.check_table()
    for op in spec.OPS:
        assert op.doc.strip() and op.timing, op.mnemonic
        assert op.mnemonic in isa_markdown()
        for f in op.fields:
            assert f.kind.describe(), (op.mnemonic, f.name)


def test_made_up_instruction_needs_only_a_table_row() -> None:
    row = spec.Op(
        "vclamp", 0xEE, "vector", "vec",
        (spec.F("dst", mem("sp")), spec.F("src", mem("sp")), spec.F("n", u(16)),
         spec.F("mode", enum("lo", "hi"), "clamp side", "lo")),
        "vector", ("vec_op",), "Clamp n values (made up for this test).",
    )
    with spec.extended(row):
        prog = assemble("vclamp c1, sp[0x40], sp[0x80], n=12, mode=hi wait(t3)\nhalt\n")
        ins = prog.instructions[0]
        assert ins.mnemonic == "vclamp" and ins["n"] == 12 and ins["mode"] == "hi" and ins["cl"] == 1
        assert decode(encode(ins)) == ins
        text = disassemble(prog)
        assert "vclamp c1, sp[0x40], sp[0x80], n=12, mode=hi wait(t3)" in text
        assert "## `vclamp`" in isa_markdown() and "Clamp n values" in isa_markdown()
    assert "vclamp" not in spec.BY_MNEMONIC


def test_instruction_equality_is_bit_exact_for_floats() -> None:
    base = dict(fn="add", dst=MemRef("sp", 0), a=MemRef("sp", 0), rows=1, cols=1, bmode="imm")
    assert make("vop", **base, imm=float("nan")) == make("vop", **base, imm=float("nan"))
    assert make("vop", **base, imm=0.0) != make("vop", **base, imm=-0.0)
