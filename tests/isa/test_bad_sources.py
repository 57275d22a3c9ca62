"""Assembly text, target files and binaries the tools must refuse (or read back exactly):
each mistake is one located error, never a Python exception, and whatever the reader
accepts disassembles to text that reassembles to the same bytes."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from acf.isa.asm import AsmError, assemble
from acf.isa.container import ContainerError, read, write
from acf.isa.disasm import disassemble
from acf.isa.outfiles import install_file, temp_beside, write_file
from acf.isa.program import Program, SourceLoc, Symbol
from acf.isa.target import TargetError, load_target

# ---- line breaks and blanks the grammar does not know -------------------------------------


@pytest.mark.parametrize(("source", "line", "col", "msg", "shown"), [
    ("halt\x0c\n", 1, 5, "unexpected text '\\x0c'", "halt "),
    ("halt\x0chalt\n", 1, 5, "unexpected text '\\x0chalt'", "halt halt"),
    ("# note\u2028 more\nhalt\nhalt @\n", 3, 6, "unexpected text '@'", "halt @"),
    ("# note\x0c page two\nhalt\nbogus r1\n", 3, 1, "unknown instruction 'bogus'", "bogus r1"),
    ("# a\x85b\nfoo!\n", 2, 1, "unknown instruction 'foo'", "foo!"),
    ("\xa0halt\n", 1, 1, "unexpected text '\\xa0halt'", "\xa0halt"),
    ("halt\r\nbogus\r\n", 2, 1, "unknown instruction 'bogus'", "bogus"),
])
def test_syntax_errors_count_lines_as_the_parser_does(source, line, col, msg, shown) -> None:
    """Only "\\n" ends a line for the parser; the error's line, column, message and the
    quoted line all follow it (form feed, U+2028 and NEL stay inside their line)."""
    with pytest.raises(AsmError) as info:
        assemble(source, "p.s")
    err = info.value
    assert (err.line, err.col, err.msg) == (line, col, msg)
    assert str(err).splitlines()[1:] == [shown, " " * (col - 1) + "^"]


# ---- .loc strings -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["modèle.py", "câble", "日本.py", 'a"b\\c', "line\nbreak", "cr\rx",
                                  "back\\nslash"])
def test_loc_strings_round_trip_through_binary_and_text(name: str) -> None:
    prog = assemble("halt\n")
    prog.debug[0] = SourceLoc(name, 7, name, 1)
    blob = write(prog)
    back = read(blob)
    assert back.debug[0] == SourceLoc(name, 7, name, 1)
    assert write(assemble(disassemble(back))) == blob


def test_loc_reads_non_ascii_text_as_written() -> None:
    prog = assemble('.loc "modèle.py" 7 "câble" 1\nhalt\n')
    assert prog.debug[0] == SourceLoc("modèle.py", 7, "câble", 1)


# ---- .tensor shapes, .data values ---------------------------------------------------------


@pytest.mark.parametrize(("decl", "why"), [
    ("f32[2,2] nm2:4", "cols=2 is not a multiple of M=4"),
    ("f32[4] nm2:4", "cols=1 is not a multiple of M=4"),
    ("f32[4,8] nm2:4 tile[4,3]", "cols=3 is not a multiple of M=4"),
    ("f32[1099511627776,1] csr", "rows=1099511627776 does not fit u32"),
    ("f32[70000,70000] csr tile[65536,65536]", "does not fit u32"),
])
def test_a_shape_the_format_cannot_hold_is_located(decl: str, why: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(f"halt\n.tensor Z dram 0x100 {decl}\n", "p.s")
    text = str(info.value)
    assert text.startswith("p.s:2:9: error: tensor 'Z': ") and "cannot be stored as" in text
    assert why in text


def test_scalar_tensors_assemble_and_round_trip() -> None:
    """A compiled loss is a rank-0 tensor: ``f32[]`` reads back."""
    prog = assemble(".tensor L dram 0x40 f32[]\n.data L 2.5\nhalt\n")
    assert prog.symbols["L"].shape == () and np.frombuffer(prog.data["L"], "<f4")[0] == 2.5
    blob = write(prog)
    assert write(assemble(disassemble(read(blob)))) == blob


@pytest.mark.parametrize("value", ["1e39", "-1e39", "3.5e38", "1e999"])
def test_data_refuses_finite_values_past_fp32(value: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(f".tensor X dram 0 f32[2]\n.data X 1 {value}\nhalt\n", "p.s")
    assert str(info.value).startswith(f"p.s:2:11: error: {value} is beyond the fp32 range")


@pytest.mark.parametrize("nan", ["nan", "-nan"])
def test_a_nan_in_data_is_written_as_the_binary_reader_takes_it(nan: str) -> None:
    """Every NaN is stored as the one NaN encoding the reader accepts (-nan was written as
    0xffc00000, which acfc asm wrote and the reader then refused)."""
    prog = assemble(f".tensor X dram 0 f32[2]\n.data X {nan} 1\nhalt\n")
    assert np.frombuffer(prog.data["X"], "<u4")[0] == 0x7FC00000
    blob = write(prog)
    assert write(assemble(disassemble(read(blob)))) == blob


def test_data_keeps_infinities_and_the_largest_fp32() -> None:
    prog = assemble(".tensor X dram 0 f32[3]\n.data X inf -inf 3.4028234663852886e+38\nhalt\n")
    vals = np.frombuffer(prog.data["X"], "<f4")
    assert np.isinf(vals[:2]).all() and vals[2] == np.finfo(np.float32).max


@pytest.mark.parametrize(("decl", "col", "why"), [
    ('.tensor "" dram 0 f32[1]', 9, "a tensor name cannot be empty"),
    (".tensor nm2:4 dram 0 f32[1]", 9, "expected a tensor name"),
    (".tensor X dram -16 f32[1]", 16, "negative address"),
    (".tensor X sp 0 f32[1] c256", 23, "cluster c256 does not exist"),
])
def test_tensor_declarations_no_binary_could_hold_are_refused(decl: str, col: int, why: str) -> None:
    with pytest.raises(AsmError) as info:
        assemble(decl + "\nhalt\n", "p.s")
    assert str(info.value).startswith(f"p.s:1:{col}: error: ") and why in str(info.value)


# ---- .target --------------------------------------------------------------------------------


def test_an_unknown_target_is_located_when_checked() -> None:
    assemble(".target acf-smal\nhalt\n")  # a library caller may run it on another target
    with pytest.raises(AsmError) as info:
        assemble(".target acf-smal\nhalt\n", "p.s", check="target")
    assert str(info.value).startswith("p.s:1:9: error: unknown target 'acf-smal' (known: ")


@pytest.mark.parametrize(("decl", "why"), [
    (".tensor X dram 0xffffffffff f32[4]",
     "does not fit acf-small: out-of-bounds DRAM access 0xffffffffff+0x10 > 0x1000000"),
    (".tensor X sp 0x0 f32[4] c7", "does not fit acf-small: cluster c7 does not exist (4 clusters)"),
])
def test_a_tensor_the_named_target_cannot_hold_is_located(decl: str, why: str) -> None:
    src = f".target acf-small\n{decl}\nhalt\n"
    assemble(src, "p.s", check="target")  # what fits is the run target's to decide
    with pytest.raises(AsmError) as info:
        assemble(src, "p.s", check="fit")
    assert str(info.value).startswith("p.s:2:9: error: .tensor 'X' at ") and why in str(info.value)


# ---- target files and names -----------------------------------------------------------------


def test_a_target_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[clock]\n")
    with pytest.raises(TargetError,
                       match=r"bad\.toml:1:1: error: not valid TOML: the file is not UTF-8"):
        load_target(bad)


@pytest.mark.parametrize("name", ["a" * 300, "b" * 5000, "acf\x00small"])
def test_a_name_no_file_system_can_look_up_is_an_unknown_target(name: str) -> None:
    with pytest.raises(TargetError, match="unknown target '") as info:
        load_target(name)
    assert len(str(info.value).splitlines()[0]) < 400  # the name is shortened, not dumped


def test_a_long_path_that_is_no_file_is_named_shortened() -> None:
    # a name with a path separator is a file path, never a shipped name
    with pytest.raises(TargetError, match="error: no such target file") as info:
        load_target("x/" * 200 + "y")
    assert len(str(info.value).splitlines()[0]) < 400  # the name is shortened, not dumped


@pytest.mark.parametrize(("key", "value", "why"), [
    ("clock.freq_ghz", "nan", "must be a finite number (GHz), got nan"),
    ("clock.freq_ghz", "inf", "must be a finite number (GHz), got inf"),
    ("cluster.spad_bytes", "99999999999999999999", "must be <= 281474976710656"),
    ("cluster.acc_bytes", "99999999999999999999", "must be <= 281474976710656"),
    ("gbuf.bytes", "99999999999999999999", "must be <= 281474976710656"),
    ("dram.size_bytes", "99999999999999999999", "must be <= 281474976710656"),
    ("energy.mac_fp32", '{value=nan, unit="pJ", source="x"}', "must be a number >= 0"),
    ("clock.freq_ghz", "1" + "0" * 400, "must be a finite number (GHz)"),
    ("energy.mac_fp32", '{value=1' + "0" * 400 + ', unit="pJ", source="x"}', "must be a number >= 0"),
])
def test_overrides_out_of_range_are_refused(key: str, value: str, why: str) -> None:
    with pytest.raises(TargetError) as info:
        load_target("acf-small", {key: value})
    assert f"key '{key}" in str(info.value) and why in str(info.value)


# ---- binaries no assembler could have written -----------------------------------------------

SEED = ".target acf-small\n.tensor X dram 0x1000 f32[4,4] csr\nloop 2, end\nhalt\nend:\nhalt\n"


def _with_symbol(**change) -> bytes:
    prog = assemble(SEED)
    sym = prog.symbols.pop("X")
    fields = {**sym.__dict__, **change}
    prog.symbols[fields["name"]] = Symbol(**fields)
    return write(prog)


@pytest.mark.parametrize(("change", "why"), [
    ({"fmt": "CSR"}, "unknown format 'CSR'"),
    ({"fmt": "nm"}, "unknown format 'nm'"),
    ({"fmt": "bcsr0x4"}, "unknown format 'bcsr0x4'"),
    ({"fmt": "dense", "tile": (4, 4)}, "a tile on a dense tensor"),
    ({"fmt": "nm2:4", "shape": (2, 2)}, "cannot be stored as nm2:4"),
    ({"name": ""}, "not a name assembly text can give a tensor"),
    ({"name": "halt"}, None),  # a word of the grammar, but a fine tensor name
    ({"name": "info"}, None),  # begins with the number 'inf', yet one word
    ({"name": "0"}, None),  # a compiled program's IR argument %0
    ({"name": "0.weight"}, None),  # a PyTorch parameter: written quoted
    ({"name": "a b"}, None),
    ({"name": 'q"\\r\n'}, None),
])
def test_symbols_the_assembler_cannot_write_are_refused(change: dict, why: str | None) -> None:
    blob = _with_symbol(**change)
    if why is None:
        assert write(assemble(disassemble(read(blob)))) == blob
        return
    with pytest.raises(ContainerError, match=why.replace("(", r"\(")):
        read(blob)


def test_quoted_tensor_names_are_the_text_inside_the_quotes() -> None:
    prog = assemble('.tensor "0.weight" dram 0 f32[2]\n.data "0.weight" 1 2\nhalt\n')
    assert list(prog.symbols) == ["0.weight"] and list(prog.data) == ["0.weight"]
    assert '.tensor "0.weight" dram 0x0 f32[2]' in disassemble(prog)


def test_overlapping_symbols_are_refused() -> None:
    prog = assemble(SEED)
    prog.symbols["Y"] = Symbol("Y", "dram", 0x1010, (4,))
    with pytest.raises(ContainerError, match="'Y' overlaps 'X' in dram"):
        read(write(prog))


@pytest.mark.parametrize("label", ["a:b", "a b", "halt", "1abc", "", "é"])
def test_labels_the_assembler_cannot_write_are_refused(label: str) -> None:
    prog = assemble(SEED)
    prog.labels[label] = 1
    with pytest.raises(ContainerError, match="is not a name assembly text can give a label"):
        read(write(prog))


@pytest.mark.parametrize("labels", [{}, {"nan2": 2}, {"mm$x": 2, "info": 1}])
def test_loops_disassemble_to_text_with_the_labels_the_program_has(labels: dict) -> None:
    """A loop end with no label keeps its offset (a label made up for it would be one the
    program did not have); names that begin like a number or a mnemonic are labels too."""
    prog = assemble(SEED)
    prog.labels = labels
    blob = write(prog)
    text = disassemble(read(blob))
    assert write(assemble(text)) == blob
    assert ("loop 2, 1" in text) == (not labels)


@pytest.mark.parametrize("loc", [SourceLoc(), SourceLoc("f.py", 1, "", -7), SourceLoc("\ud800", 1)])
def test_debug_entries_no_loc_line_can_give_are_refused(loc: SourceLoc) -> None:
    prog = assemble(SEED)
    prog.debug[0] = loc
    blob = write(prog) if loc.file != "\ud800" else _debug_blob(prog, loc)
    with pytest.raises(ContainerError, match="debug section"):
        read(blob)


def _debug_blob(prog: Program, loc: SourceLoc) -> bytes:
    """``write`` with a debug entry JSON can hold but UTF-8 cannot (a lone surrogate)."""
    prog.debug = {}
    blob = bytearray(write(prog))
    entry = json.dumps([[0, loc.op_id, loc.file, loc.line, loc.layer]], separators=(",", ":")).encode()
    return _replace_section(blob, 4, entry)


def _replace_section(blob: bytearray, kind: int, body: bytes) -> bytes:
    """The container with one section's bytes replaced (offsets and checksum fixed)."""
    count = struct.unpack_from("<I", blob, 8)[0]
    entries = [struct.unpack_from("<IIQQ", blob, 32 + 24 * i) for i in range(count)]
    sections = [(k, body if k == kind else bytes(blob[o:o + s])) for k, _, o, s in entries]
    offset, table, data = 32 + 24 * count, b"", b""
    for k, payload in sections:
        table += struct.pack("<IIQQ", k, 0, offset + len(data), len(payload))
        data += payload
    rest = table + data
    head = struct.pack("<4sHHIIQII", b"ACFB", 1, 0, count, 0, 32 + len(rest), zlib.crc32(rest), 0)
    return head + rest


def test_a_nan_data_value_text_cannot_spell_is_refused() -> None:
    prog = assemble(".tensor X dram 0 f32[2]\n.data X nan 1\nhalt\n")
    blob = write(prog)
    assert write(assemble(disassemble(read(blob)))) == blob  # the one NaN the text spells
    prog.data["X"] = struct.pack("<II", 0xFFC00000, 0x3F800000)  # -nan
    with pytest.raises(ContainerError, match="NaN"):
        read(write(prog))


def test_the_same_program_laid_out_otherwise_is_refused() -> None:
    """Bytes after the last section, or JSON spelt with spaces, decode to a program whose
    text would reassemble to other bytes."""
    blob = bytearray(write(assemble(SEED)))
    padded = blob + b"\0" * 8
    struct.pack_into("<Q", padded, 16, len(padded))
    struct.pack_into("<I", padded, 24, zlib.crc32(bytes(padded[32:])))
    with pytest.raises(ContainerError, match="not laid out as this tool writes"):
        read(bytes(padded))
    spaced = _replace_section(blob, 5, b'{"name": "acf-small"}')
    with pytest.raises(ContainerError, match="not laid out as this tool writes"):
        read(spaced)


def test_a_target_name_with_a_line_break_is_refused() -> None:
    prog = assemble(SEED)
    prog.target = "acf-small\nhalt"
    with pytest.raises(ContainerError, match="target section"):
        read(write(prog))


# ---- output paths -----------------------------------------------------------------------------


def test_a_path_ending_in_a_separator_is_not_written_as_a_file(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("KEEP")
    for path in (tmp_path / "newdir", tmp_path / "r.json"):
        with pytest.raises(IsADirectoryError, match="directory path"):
            write_file(str(path) + "/", b"data")
        with pytest.raises(IsADirectoryError, match="directory path"):
            temp_beside(str(path) + "/")
    tmp = temp_beside(str(tmp_path / "ok"))
    with pytest.raises(IsADirectoryError):
        install_file(tmp, str(tmp_path / "r.json") + "/")
    assert not (tmp_path / "newdir").exists() and (tmp_path / "r.json").read_text() == "KEEP"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left


# ---- the word an error names, and definitions given twice ---------------------------------


@pytest.mark.parametrize(("source", "line", "col", "msg"), [
    # the word was cut where a backtracking pattern could end it ('hal', 'h', 'ha')
    (".target acf-small\nhalt:\n", 2, 1,
     "'halt' is an instruction; a label cannot be named after one"),
    (".target acf-small\n    h\u00e4lt c0\n", 2, 5, "unknown instruction 'h\u00e4lt'"),
    (".target acf-small\n    ha\0lt\n", 2, 5, "unknown instruction 'ha\\x00lt'"),
    (".target acf-small\nx: frob\n", 2, 4, "unknown instruction 'frob'"),
    # a second definition took the place of the first without a word
    (".target acf-small\n.target acf-base\n    halt\n", 2, 2,
     ".target given twice (first at line 1, column 9: 'acf-small')"),
    (".target acf-small\n.equ N 4\n  .equ N 5\n    halt\n", 3, 8,
     ".equ 'N' defined twice (first at line 2, column 6)"),
    (".target acf-small\nx:\nx:  halt\n", 3, 1,
     "label 'x' defined twice (first at line 2, column 1)"),
])
def test_errors_name_the_whole_word_and_the_first_definition(source, line, col, msg) -> None:
    with pytest.raises(AsmError) as info:
        assemble(source, "p.s")
    assert (info.value.line, info.value.col, info.value.msg) == (line, col, msg)


@pytest.mark.parametrize(("text", "where", "msg"), [
    (b"[cluster]\nx = = 3\n", "2:5", "Invalid value"),
    (b"[cluster]\nx = 1\n[cluster]\n", "3:9", "Cannot declare ('cluster',) twice"),
    (b"[cluster]\n# \xff\n", "2:3", "the file is not UTF-8 text (byte 0xff)"),
])
def test_a_target_file_error_has_its_line_and_column(tmp_path: Path, text: bytes, where: str,
                                                      msg: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_bytes(text)
    with pytest.raises(TargetError) as info:
        load_target(bad)
    assert str(info.value) == f"{bad}:{where}: error: not valid TOML: {msg}"
