"""Commands given bad input or a bad place for their output: one line naming what is wrong
and exit 1, never a traceback, and nothing half-written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from acf.cli import main as acfc

from tests.emulator.test_instruction_limit import QUEUED

ROOT = Path(__file__).resolve().parents[2]
RELU = ROOT / "examples" / "relu_encode.s"


def _acfc(*args: str, stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acf.cli", *args], stdout=stdout,
                          stderr=subprocess.PIPE, text=True, cwd=ROOT, check=False)


# ---- outputs ------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("file",), ("allow_pickle", "X"), ("arr_0", "file", "allow_pickle")])
def test_every_tensor_name_reaches_the_outputs(tmp_path: Path, names: tuple[str, ...]) -> None:
    """``numpy.savez(f, **outputs)`` took ``file`` and ``allow_pickle`` as its own keywords."""
    decls = "".join(f".tensor {n} dram {0x100 * i:#x} f32[4]\n.data {n} {i} 1 2 3\n"
                    for i, n in enumerate(names))
    src = tmp_path / "p.s"
    src.write_text(".target acf-small\n" + decls + "halt\n")
    out = tmp_path / "o.npz"
    assert acfc(["run", str(src), "--quiet", "--outputs", str(out)]) == 0
    with np.load(out) as npz:
        assert sorted(npz.files) == sorted(names)
        for i, n in enumerate(names):
            assert npz[n].tolist() == [float(i), 1.0, 2.0, 3.0]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["asm", "disasm", "run", "targets"])
def test_a_full_stdout_is_one_error_line(tmp_path: Path, command: str) -> None:
    binary = tmp_path / "r.acfbin"
    assert acfc(["asm", str(RELU), "-o", str(binary)]) == 0
    arg = {"disasm": str(binary), "targets": "acf-base"}.get(command, str(RELU))
    with open("/dev/full", "w") as full:
        proc = _acfc(command, arg, stdout=full)
    assert proc.returncode == 1
    assert proc.stderr == "acfc: error: cannot write to stdout: No space left on device\n"


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.s"
    big.write_text(".target acf-small\n" + "    halt\n" * 50000)
    binary = tmp_path / "big.acfbin"
    assert acfc(["asm", str(big), "-o", str(binary)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "acf.cli", "disasm", str(binary)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout.readline() == b".target acf-small\n"
    proc.stdout.close()  # as `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait() == 0 and err == ""


@pytest.mark.parametrize("flag", ["-o", "--report"])
def test_an_output_path_ending_in_a_separator_is_refused(tmp_path: Path, capsys, flag: str) -> None:
    keep = tmp_path / "r.json"
    keep.write_text("KEEP")
    for path in (str(tmp_path / "newdir") + "/", str(keep) + "/"):
        argv = ["asm", str(RELU), "-o", path] if flag == "-o" else \
            ["run", str(RELU), "--quiet", "--report", path]
        assert acfc(argv) == 1
        assert capsys.readouterr().err == f"{path}: error: cannot write: it is a directory path " \
                                          "(it ends in a separator); name a file\n"
    assert keep.read_text() == "KEEP" and not (tmp_path / "newdir").exists()


# ---- located errors ---------------------------------------------------------------------


@pytest.mark.parametrize(("body", "where", "why"), [
    (".target acf-smal\nhalt\n", "1:9", "unknown target 'acf-smal' (known: "),
    (".target acf-small\n.tensor X dram 0xffffffffff f32[4]\nhalt\n", "2:9",
     ".tensor 'X' at dram[0xffffffffff] does not fit acf-small: out-of-bounds DRAM access"),
    (".target acf-small\n.tensor X sp 0x0 f32[4] c7\nhalt\n", "2:9",
     ".tensor 'X' at sp[0x0] c7 does not fit acf-small: cluster c7 does not exist (4 clusters)"),
    (".target acf-small\n.tensor Z dram 0x100 f32[2,2] nm2:4\nhalt\n", "2:9",
     "tensor 'Z': f32[2,2] cannot be stored as nm2:4"),
])
@pytest.mark.parametrize("command", ["asm", "run", "debug"])
def test_program_errors_name_the_line(tmp_path: Path, capsys, body: str, where: str, why: str,
                                      command: str) -> None:
    src = tmp_path / "p.s"
    src.write_text(body)
    argv = {"asm": ["asm", str(src), "-o", str(tmp_path / "p.acfbin")],
            "run": ["run", str(src), "--quiet"], "debug": ["debug", str(src), "--batch"]}[command]
    assert acfc(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{src}:{where}: error: {why}") and "Traceback" not in err
    assert not (tmp_path / "p.acfbin").exists()


def test_a_tensor_the_chosen_target_cannot_hold_names_its_line(tmp_path: Path, capsys) -> None:
    """What fits is the run target's to decide: on four clusters c7 does not exist."""
    src = tmp_path / "p.s"
    src.write_text(".target acf-base\n.tensor X sp 0x0 f32[4] c7\nhalt\n")
    assert acfc(["run", str(src), "--quiet"]) == 0  # acf-base has 16 clusters
    assert acfc(["run", str(src), "--quiet", "--target", "acf-small"]) == 1
    assert capsys.readouterr().err.startswith(f"{src}:2:9: error: .tensor 'X' at sp[0x0] c7 "
                                              "does not fit acf-small")


@pytest.mark.parametrize("name", ["b" * 300, "acf-smal"])
def test_an_unknown_target_name_is_one_line(tmp_path: Path, capsys, name: str) -> None:
    binary = tmp_path / "p.acfbin"
    assert acfc(["asm", str(ROOT / "examples" / "gemm_small.s"), "-o", str(binary)]) == 0
    assert acfc(["run", str(binary), "--target", name]) == 1
    err = capsys.readouterr().err
    assert err.startswith("acfc: error: --target: unknown target '") and err.count("\n") == 1


def test_a_binary_naming_an_unknown_target_says_so(tmp_path: Path, capsys) -> None:
    from acf.isa.asm import assemble
    from acf.isa.container import write

    prog = assemble("halt\n")
    prog.target = "a" * 300  # longer than a file name may be
    binary = tmp_path / "p.acfbin"
    binary.write_bytes(write(prog))
    for command in ("run", "debug"):
        assert acfc([command, str(binary)]) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"{binary}: error: unknown target 'aaaa") and "Traceback" not in err


@pytest.mark.parametrize("setting", ["cluster.spad_bytes=99999999999999999999", "clock.freq_ghz=nan",
                                     "dram.size_bytes=99999999999999999999"])
def test_an_impossible_setting_is_refused_before_the_run(capsys, setting: str) -> None:
    assert acfc(["run", str(RELU), "--quiet", "--set", setting]) == 1
    err = capsys.readouterr().err
    assert f"error: key '{setting.split('=')[0]}': must be" in err and err.count("\n") == 1


# ---- the instruction limit ---------------------------------------------------------------

RUNAWAY = QUEUED  # two nested loops of 2^24 - 1 iterations around one vop


@pytest.mark.parametrize("command", ["run", "debug"])
def test_a_runaway_loop_stops_at_the_instruction_limit(tmp_path: Path, capsys, command: str) -> None:
    src = tmp_path / "loop.s"
    src.write_text(RUNAWAY)
    argv = [command, str(src), "--max-instructions", "2000"]
    if command == "debug":
        cmds = tmp_path / "cmds"
        cmds.write_text("continue\n")
        argv += ["-x", str(cmds), "--batch"]
    rc = acfc(argv)
    out, err = capsys.readouterr()
    text = err if command == "run" else out
    assert "instruction limit of 2000 reached" in text
    assert rc == (1 if command == "run" else 0)
    if command == "run":
        assert err.startswith(f"{src}:4: trap at cycle ") and " c0.vec #2 vop: " in err


def test_a_token_deadlock_names_the_lines_of_the_blocked_heads(tmp_path: Path, capsys) -> None:
    """A deadlock has no one culprit: the trap's line is the blocked head dispatched first,
    and the other heads follow with their lines."""
    src = tmp_path / "dl.s"
    src.write_text(".target acf-small\n"
                   "    sync c0, ld\n"
                   "    ld c0, sp[0x0], dram[0x0], dense, rows=4, cols=4 wait(t128) sig(t129)\n"
                   "    mm c1, acc[0x0], sp[0x0], sp[0x0], m=4, n=4, k=4 wait(t129) sig(t128)\n"
                   "    halt\n")
    assert acfc(["run", str(src)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{src}:3: trap at cycle ") and " c0.ld #1 ld: token deadlock" in err
    assert err.rstrip().endswith("the other blocked heads: c1.mac #2 mm at line 4")


def test_the_instruction_limit_leaves_normal_runs_alone(tmp_path: Path) -> None:
    """A program that ends within the limit gives the report it gave without one."""
    reports = []
    for extra in ([], ["--max-instructions", "6"]):
        path = tmp_path / f"r{len(reports)}.json"
        assert acfc(["run", str(RELU), "--quiet", "--report", str(path), *extra]) == 0
        reports.append(path.read_text())
    assert reports[0] == reports[1]
    assert acfc(["run", str(RELU), "--quiet", "--max-instructions", "4"]) == 1


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_the_instruction_limit_must_be_positive(capsys, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        acfc(["run", str(RELU), "--max-instructions", value])
    assert info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


def test_disassembly_of_any_loc_text_reassembles_through_files(tmp_path: Path) -> None:
    """A carriage return or a newline inside a ``.loc`` string is escaped: read back from
    a file (where a bare carriage return ends a line) it gives the same bytes."""
    from acf.isa.asm import assemble
    from acf.isa.container import write
    from acf.isa.program import SourceLoc

    prog = assemble(".target acf-small\nhalt\n")
    prog.debug[0] = SourceLoc("cr\rx\nmodèle.py", 3, "a\\b\"c", 2)
    binary, text, again = tmp_path / "p.acfbin", tmp_path / "p.s", tmp_path / "q.acfbin"
    binary.write_bytes(write(prog))
    assert acfc(["disasm", str(binary), "-o", str(text)]) == 0
    assert acfc(["asm", str(text), "-o", str(again)]) == 0
    assert again.read_bytes() == binary.read_bytes()


# ---- outputs that name one file -------------------------------------------------------------

A_S = """.target acf-small
.tensor A dram 0 f32[1,4]
.data A 1 2 3 4
    setar ar1, 0
    loop 3, e
        vop c0, mul, sp[0x200], sp[0x0], rows=1, cols=32, bmode=imm, imm=3.0
        addar ar1, 4
e:
    halt
"""


@pytest.mark.parametrize(("flags", "why"), [
    (["--outputs", "same.out", "--report", "same.out"],
     "--outputs and --report name the same file"),
    (["--trace", "X", "--report", "X"], "--report and --trace name the same file"),
    (["--csv", "c.csv", "--report", "./c.csv"], "--report and --csv name the same file"),
    (["--csv", "c.csv", "--outputs", "sub/../c.csv"], "--outputs and --csv name the same file"),
    (["--report", "a.s"], ("--report names the program (a.s): writing it would replace what "
                           "is read")),
    (["--inputs", "in.npz", "--outputs", "in.npz"], "--outputs names the --inputs file"),
    (["--outputs", "link.npz", "--inputs", "in.npz"], "--outputs names the --inputs file"),
])
def test_outputs_that_name_one_file_are_refused_before_anything_is_written(
        tmp_path: Path, capsys, monkeypatch, flags: list[str], why: str) -> None:
    """Only the last write survived (exit 0), or the program itself was replaced."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.s").write_text(A_S)
    (tmp_path / "sub").mkdir()
    np.savez(tmp_path / "in.npz", A=np.ones((1, 4), np.float32))
    (tmp_path / "link.npz").symlink_to(tmp_path / "in.npz")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert acfc(["run", "a.s", "--quiet", *flags]) == 1
    assert capsys.readouterr().err.startswith(f"acfc: error: {why}")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_devices_may_take_every_output(tmp_path: Path) -> None:
    (tmp_path / "a.s").write_text(A_S)
    assert acfc(["run", str(tmp_path / "a.s"), "--quiet", "--report", os.devnull, "--csv",
                 os.devnull, "--outputs", os.devnull]) == 0


@pytest.mark.parametrize("command", ["asm", "disasm", "compile", "opt"])
def test_an_output_that_names_the_input_is_refused(tmp_path: Path, capfd, command: str) -> None:
    src = {"asm": tmp_path / "g.s", "disasm": tmp_path / "g.acfbin",
           "compile": tmp_path / "m.acfir", "opt": tmp_path / "m.acfir"}[command]
    if command == "asm":
        src.write_text(A_S)
    elif command == "disasm":
        (tmp_path / "g.s").write_text(A_S)
        assert acfc(["asm", str(tmp_path / "g.s"), "-o", str(src)]) == 0
    else:
        src.write_text((ROOT / "examples" / "mlp_sparse.acfir").read_text())
    before = src.read_bytes()
    link = tmp_path / "link"
    link.symlink_to(src)
    for out in (str(src), str(link)):
        extra = ["-p", "canonicalize"] if command == "opt" else []
        assert acfc([command, str(src), *extra, "-o", out]) == 1
        assert capfd.readouterr().err == (f"acfc: error: -o names the input ({src}): writing it "
                                          "would replace what is read; choose another output "
                                          "file\n")
    assert src.read_bytes() == before


def test_opt_refuses_a_reproducer_over_its_output(tmp_path: Path, capfd) -> None:
    src = tmp_path / "m.acfir"
    src.write_text((ROOT / "examples" / "mlp_sparse.acfir").read_text())
    out = tmp_path / "o.acfir"
    assert acfc(["opt", str(src), "-p", "canonicalize", "-o", str(out), "--reproducer",
                 str(out)]) == 1
    assert "-o and --reproducer name the same file" in capfd.readouterr().err
    assert not out.exists()


def test_compile_train_refuses_to_write_over_the_model(tmp_path: Path) -> None:
    model = tmp_path / "m.py"
    model.write_text("import torch\ndef f(): return torch.nn.Linear(4,2)\n")
    proc = _acfc("compile", f"{model}:f", "--train", "--input-shape", "2,4", "-o", str(model))
    assert proc.returncode == 1
    assert proc.stderr == (f"acfc: error: -o names the input ({model}): writing it would "
                           "replace what is read; choose another output file\n")
    assert model.read_text().startswith("import torch")


def test_compile_train_reports_the_models_own_error_once(tmp_path: Path) -> None:
    """torch logged a traceback of the fake-tensor failure, and the error named only its
    wrapper ("RuntimeError when making fake tensor call")."""
    model = tmp_path / "m.py"
    model.write_text("import torch\ndef f(): return torch.nn.Linear(4,2)\n")
    proc = _acfc("compile", f"{model}:f", "--train", "--input-shape", "2,5")
    assert proc.returncode == 1
    assert proc.stderr == (f"{model}: error: running {model}:f on input [2, 5] with 10 classes "
                           "failed: RuntimeError: a and b must have same reduction dim, but got "
                           "[2, 5] X [4, 2].\n")


# ---- inputs -----------------------------------------------------------------------------------


def test_an_npz_declaring_a_huge_shape_is_one_error(tmp_path: Path, capsys) -> None:
    """Its header claims 10^13 elements in 64 bytes: numpy ran out of memory allocating it."""
    import io
    import zipfile

    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                                "shape": (10**13,)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("X.npy", head.getvalue() + b"\0" * 64)
    (tmp_path / "a.s").write_text(A_S)
    assert acfc(["run", str(tmp_path / "a.s"), "--inputs", str(path)]) == 1
    assert capsys.readouterr().err == (
        f"{path}: error: cannot read inputs: input 'X' declares shape (10000000000000,) of "
        "float32 (40,000,000,000,000 bytes), but its member holds 64 bytes\n")


def test_an_input_that_is_not_n_m_sparse_is_named(tmp_path: Path, capsys) -> None:
    src = tmp_path / "nm.s"
    src.write_text(".target acf-small\n.tensor X dram 0 f32[16,16] nm2:4\n    halt\n")
    np.savez(tmp_path / "in.npz", X=np.ones((16, 16), np.float32))
    assert acfc(["run", str(src), "--inputs", str(tmp_path / "in.npz")]) == 1
    assert capsys.readouterr().err.startswith(f"{src}: error: input 'X': tile is not 2:4 sparse")
    np.savez(tmp_path / "in.npz", X=np.ones((2, 2), np.float32))
    assert acfc(["run", str(src), "--inputs", str(tmp_path / "in.npz")]) == 1
    assert capsys.readouterr().err == (f"{src}: error: input 'X': expected shape [16, 16], "
                                       "got [2, 2]\n")


def test_assembly_with_a_byte_order_mark_assembles(tmp_path: Path) -> None:
    src = tmp_path / "bom.s"
    src.write_bytes(b"\xef\xbb\xbf" + A_S.encode())
    assert acfc(["asm", str(src), "-o", str(tmp_path / "bom.acfbin")]) == 0
    assert acfc(["run", str(src), "--quiet"]) == 0


def test_assembly_under_another_extension_gets_a_hint(tmp_path: Path, capsys) -> None:
    src = tmp_path / "prog.asm"
    src.write_text(A_S)
    assert acfc(["run", str(src)]) == 1
    assert capsys.readouterr().err == (f"{src}: error: not an ACF binary (bad magic); it is "
                                       "text: assembly is read from a file named .s, or from "
                                       "stdin ('-')\n")
    assert acfc(["disasm", str(src)]) == 1
    assert capsys.readouterr().err.endswith("it is text: acfc asm makes a binary container of "
                                            "assembly\n")


@pytest.mark.parametrize("argv", [["targets", "nope"], ["targets", "nope", "--json"]])
def test_an_unknown_target_has_the_acfc_prefix(capsys, argv: list[str]) -> None:
    assert acfc(argv) == 1
    assert capsys.readouterr().err.startswith("acfc: error: unknown target 'nope' (known: ")


def test_a_bad_target_file_is_located(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[cluster]\nx = = 3\n")
    assert acfc(["targets", str(bad)]) == 1
    assert capsys.readouterr().err == f"{bad}:2:5: error: not valid TOML: Invalid value\n"
    bad.write_text("x = [1,\n")
    assert acfc(["targets", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2:1: error: not valid TOML: ")
