"""Mistakes the tools used to take silently (or crash on): each is now refused with a
located error. Assembly clauses and operands, register classes, float immediates past the
double range, sparse tiles of the wrong shape, target-file keys and target names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf.cli import main as acfc
from acf.isa import formats
from acf.isa.asm import AsmError, assemble
from acf.isa.program import Symbol
from acf.isa.symbols import pack_symbol, symbol_nbytes, tile_address, unpack_symbol
from acf.isa.target import TargetError, load_target

MM = "mm c0, acc[0], sp[0], sp[0], m=1, n=1, k=1"


def _error(source: str) -> str:
    with pytest.raises(AsmError) as info:
        assemble(source + "\n", "p.s")
    return str(info.value)


# ---- wait(...) / sig(...) given twice ------------------------------------------------------


@pytest.mark.parametrize(("clauses", "col", "kind"), [
    ("wait(t1) wait(t2)", 53, "wait"),
    ("sig(t1, t2) sig(t3)", 56, "sig"),
    ("wait(t1) sig(t2) wait(t3)", 61, "wait"),
])
def test_a_second_token_clause_is_refused(clauses: str, col: int, kind: str) -> None:
    # the second clause used to replace the first's tokens
    assert _error(f"{MM} {clauses}").startswith(f"p.s:1:{col}: error: {kind}(...) given twice")


def test_one_clause_of_each_kind_is_fine() -> None:
    ins = assemble(f"{MM} wait(t1, t2) sig(t3)\n").instructions[0]
    assert (ins["wait0"], ins["wait1"], ins["sig0"]) == (1, 2, 3)


# ---- cl= given twice -----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "col"), [
    (f"{MM}, cl=c5", 45),  # the leading c0 and cl=
    ("dma.ld gb[0], dram[0], 1, 1, cl=c1, cl=c2", 37),
])
def test_a_second_cluster_is_refused(source: str, col: int) -> None:
    # the last one used to win: the instruction silently moved to another cluster
    assert _error(source).startswith(f"p.s:1:{col}: error: operand 'cl' given twice")


def test_cl_given_once_still_names_the_cluster() -> None:
    assert assemble("dma.ld gb[0], dram[0], 1, 1, cl=c3\n").instructions[0]["cl"] == 3


# ---- register classes ----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "col", "msg"), [
    ("setar fr3, 7", 7, "setar: field 'ar': expects an address register arN, got a float register 'fr3'"),
    ("addar fr1, 7", 7, "addar: field 'ar': expects an address register arN"),
    ("fset c0, ar2, 1.5", 10, "fset: field 'fd': expects a float register frN, got an address register 'ar2'"),
    ("sgd c0, sp[0], sp[0], sp[0], 4, ar1", 33, "sgd: field 'fr': expects a float register frN"),
])
def test_a_register_of_the_other_class_is_refused(source: str, col: int, msg: str) -> None:
    # fr3 used to assemble as ar3 (and ar2 as fr2)
    assert _error(source).startswith(f"p.s:1:{col}: error: {msg}")


def test_registers_of_the_right_class_assemble() -> None:
    prog = assemble("setar ar3, 7\nfset c0, fr2, 1.5\n")
    assert prog.instructions[0]["ar"] == 3 and prog.instructions[1]["fd"] == 2


# ---- float immediates past the double range ------------------------------------------------


def test_a_huge_hex_immediate_is_a_located_error() -> None:
    # float(int(...)) raised OverflowError, a traceback out of acfc asm
    msg = _error("fset c0, fr0, 0x" + "f" * 300)
    assert msg.startswith("p.s:1:15: error: fset: field 'imm': 0xfff")
    assert "overflows fp32" in msg.splitlines()[0] and len(msg.splitlines()[0]) < 200


def test_a_huge_hex_immediate_through_the_cli(tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.s"
    src.write_text(".target acf-small\nfset c0, fr0, 0x" + "f" * 300 + "\nhalt\n")
    assert acfc(["asm", str(src), "-o", str(tmp_path / "p.acfbin")]) == 1
    err = capsys.readouterr().err
    assert f"{src}:2:15: error: fset: field 'imm':" in err and "Traceback" not in err


@pytest.mark.parametrize("text", ["1e999", "-1e999", "1e400"])
def test_a_decimal_past_the_double_range_is_refused(text: str) -> None:
    # these became inf silently, while 1e39 (past fp32 only) was refused
    assert _error(f"fset c0, fr0, {text}").startswith(
        f"p.s:1:15: error: fset: field 'imm': {text} overflows fp32")


@pytest.mark.parametrize(("text", "value"), [("inf", np.inf), ("-inf", -np.inf), ("+inf", np.inf),
                                             ("-0x10", -16.0), ("3.4028235e38", 3.4028234663852886e38)])
def test_spelled_infinities_and_large_finite_immediates_still_assemble(text: str, value: float) -> None:
    assert assemble(f"fset c0, fr0, {text}\n").instructions[0]["imm"] == value


# ---- out-of-range values are located at the value ------------------------------------------


@pytest.mark.parametrize(("source", "col", "msg"), [
    ("setar ar1, 140737488355328", 12, "setar: field 'value': 140737488355328 out of range"),
    ("setar ar16, 0", 7, "setar: field 'ar': 16 out of range"),
    ("loop 16777216, e\nhalt\ne:", 6, "loop: field 'count': 16777216 out of range"),
    ("mm c300, acc[0], sp[0], sp[0], m=1, n=1, k=1", 4, "mm: field 'cl': 300 out of range"),
    ("mm c0, acc[0], sp[0], sp[0x4000000], m=1, n=1, k=1", 23, "mm: field 'b': offset 0x4000000"),
    ("fset c0, fr0, 1e39", 15, "fset: field 'imm': 1e+39 overflows fp32"),
])
def test_out_of_range_values_point_at_the_value(source: str, col: int, msg: str) -> None:
    assert _error(source).startswith(f"p.s:1:{col}: error: {msg}")


# ---- sparse tiles of the wrong shape --------------------------------------------------------


def _with_tile(sym: Symbol, tile: np.ndarray, at: int = 0) -> bytes:
    buf = bytearray(pack_symbol(sym, np.zeros(sym.shape, np.float32)))
    blob = formats.pack(tile, sym.fmt)
    buf[at:at + len(blob)] = blob
    return bytes(buf)


@pytest.mark.parametrize("shape", [(1, 1), (2, 2), (4, 3)])
def test_a_tile_of_another_shape_in_a_slot_is_refused(shape: tuple[int, int]) -> None:
    # a 1x1 tile was broadcast over the 4x4 block; a 2x2 one raised numpy's ValueError
    sym = Symbol("W", "dram", 0, (4, 4), fmt="csr")
    with pytest.raises(formats.FormatError,
                       match=rf"tensor 'W' tile \(0,0\): the slot holds a {shape[0]}x{shape[1]} "
                             r"tile; tile \(0,0\) is 4x4"):
        unpack_symbol(sym, _with_tile(sym, np.ones(shape, np.float32)))


def test_edge_tiles_are_checked_against_their_own_shape() -> None:
    sym = Symbol("W", "dram", 0, (5, 6), fmt="csr", tile=(4, 4))
    x = np.arange(30, dtype=np.float32).reshape(5, 6)
    assert np.array_equal(unpack_symbol(sym, pack_symbol(sym, x)), x)  # 4x4, 4x2, 1x4, 1x2
    # a full-size tile in the 1x2 corner slot
    bad = _with_tile(sym, np.ones((4, 4), np.float32), tile_address(sym, 1, 1) - sym.addr)
    with pytest.raises(formats.FormatError, match=r"tile \(1,1\): the slot holds a 4x4 tile; "
                                                  r"tile \(1,1\) is 1x2"):
        unpack_symbol(sym, bad)
    assert symbol_nbytes(sym) == len(bad)


def test_a_run_storing_a_small_tile_into_a_big_tensor_warns(tmp_path: Path, capsys) -> None:
    src = tmp_path / "p.s"
    src.write_text(".target acf-small\n.tensor X dram 0x0 f32[1,1]\n.data X 5.0\n"
                   ".tensor Y dram 0x1000 f32[4,4] csr\n"
                   "ld c0, sp[0], dram[X], fmt=dense, rows=1, cols=1 sig(t1)\n"
                   "st c0, dram[Y], sp[0], fmt=csr, rows=1, cols=1, cap=0 wait(t1)\nhalt\n")
    out = tmp_path / "o.npz"
    # Y used to come back as a 4x4 block of 5.0
    assert acfc(["run", str(src), "--quiet", "--outputs", str(out)]) == 0
    err = capsys.readouterr().err
    assert "output 'Y' left out of the outputs" in err
    assert "tensor 'Y' tile (0,0): the slot holds a 1x1 tile" in err
    with np.load(out) as npz:
        assert sorted(npz.files) == ["X"]


# ---- [energy] and [area] keys ---------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "unit"), [("energy", "mac_fp23", "pJ"), ("area", "mac_pee", "mm2")])
def test_an_unknown_cost_key_is_refused(tmp_path: Path, section: str, key: str, unit: str) -> None:
    path = tmp_path / "typo.toml"
    path.write_text(f'inherit = "acf-small"\n[target]\nname = "typo"\n[{section}]\n'
                    f'{key} = {{ value = 0.1, unit = "{unit}", source = "a typo" }}\n')
    with pytest.raises(TargetError) as info:
        load_target(path)
    # worded as --set words it
    assert str(info.value) == f"{path}: error: key '{section}.{key}': unknown field"
    with pytest.raises(TargetError, match=f"key '{section}.{key}': unknown field"):
        load_target("acf-small", {f"{section}.{key}": 0.1})


# ---- target names and inherit ----------------------------------------------------------------


@pytest.mark.parametrize("parent", ["mybase", "mybase.toml", "./mybase.toml"])
def test_inherit_finds_a_file_beside_the_child(tmp_path: Path, monkeypatch, parent: str) -> None:
    folder = tmp_path / "tdir"
    folder.mkdir()
    (folder / "mybase.toml").write_text('inherit = "acf-small"\n[target]\nname = "mybase"\n'
                                        "[cluster]\npe_rows = 2\n")
    (folder / "child.toml").write_text(f'inherit = "{parent}"\n[target]\nname = "child"\n')
    monkeypatch.chdir(tmp_path)  # not the child's folder: inherit is relative to the file
    target = load_target("tdir/child.toml")
    assert target.name == "child" and target.cluster.pe_rows == 2


def test_inherit_falls_back_to_a_shipped_target(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('inherit = "acf-small"\n[target]\nname = "c"\n')
    assert load_target(path).num_clusters == load_target("acf-small").num_clusters


@pytest.mark.parametrize(("parent", "why"), [
    ("nosuch", "unknown target 'nosuch' (no nosuch.toml beside this file; known: "),
    ("nosuch.toml", "no such target file "),
])
def test_a_missing_parent_names_the_file_and_the_key(tmp_path: Path, parent: str, why: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'inherit = "{parent}"\n[target]\nname = "c"\n')
    with pytest.raises(TargetError) as info:
        load_target(path)
    assert str(info.value).startswith(f"{path}: error: key 'inherit': {why}")


def test_an_inherit_cycle_through_another_spelling_is_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('inherit = "../sub/c.toml"\n[target]\nname = "c"\n')
    with pytest.raises(TargetError, match="inherit cycle"):
        load_target(path)


def test_a_folder_named_like_a_shipped_target_does_not_hide_it(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "acf-small").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_target("acf-small").source.endswith("acf-small.toml")
    assemble(".target acf-small\nhalt\n", "p.s", check="target")
    with pytest.raises(TargetError, match="cannot read a target file there"):
        load_target("./acf-small")  # named as a path, it is the folder
