"""`acfc run` file arguments: inputs that are not an .npz archive get one line naming the
file and the reason (numpy would try them as a .npy array or a pickle); output paths that
cannot be written are refused before the run starts, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from acf.cli import main as acfc

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: np.save(p, np.zeros(3)), "not an .npz archive (numpy.savez writes one)"),
    (lambda p: p.write_bytes(b"garbage"), "not an .npz archive (numpy.savez writes one)"),
    (lambda p: np.savez(p, W=np.array([{}], dtype=object)),
     "Object arrays cannot be loaded when allow_pickle=False"),
    (lambda p: p.mkdir(), "Is a directory"),
    (lambda p: None, "No such file or directory"),
])
def test_unreadable_inputs_are_one_line_errors(tmp_path: Path, capsys, make, reason: str) -> None:
    path = tmp_path / "in.npz"
    make(path)
    if not path.exists() and path.with_suffix(".npz.npy").exists():
        path.with_suffix(".npz.npy").rename(path)  # np.save appends .npy
    assert acfc(["run", str(ROOT / "examples" / "gemm_small.s"), "--inputs", str(path)]) == 1
    assert capsys.readouterr().err == f"{path}: error: cannot read inputs: {reason}\n"


@pytest.mark.parametrize("flag", ["--outputs", "--report", "--csv", "--trace"])
def test_unwritable_output_paths_are_refused_before_the_run(tmp_path: Path, capsys, flag) -> None:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", W=rng.standard_normal((16, 16)).astype(np.float32),
             X=rng.standard_normal((16, 16)).astype(np.float32))
    ok = {f: str(tmp_path / f"ok{f}") for f in ("--outputs", "--report", "--csv", "--trace")}
    missing = tmp_path / "missing" / "file"
    argv = ["run", str(ROOT / "examples" / "gemm_small.s"), "--inputs", str(tmp_path / "in.npz"),
            "--quiet"]
    for f, path in ok.items():
        argv += [f, str(missing) if f == flag else path]
    assert acfc(argv) == 1
    err = capsys.readouterr().err
    assert err == f"{missing}: error: cannot write: No such directory {missing.parent}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.npz"]  # nothing else written
    argv[argv.index(str(missing))] = str(tmp_path)  # a folder
    assert acfc(argv) == 1
    assert capsys.readouterr().err == f"{tmp_path}: error: cannot write: Is a directory\n"


def test_an_output_that_does_not_decode_is_a_warning_even_when_quiet(tmp_path: Path, capsys) -> None:
    """A sparse .tensor the program never wrote has no tile headers: it is left out of the
    outputs with a warning that says so (it used to be dropped silently under --quiet, with
    numpy's broadcast error otherwise)."""
    src = tmp_path / "u.s"
    src.write_text(".target acf-small\n.tensor H dram 0x0 f32[4,4] csr\n"
                   ".tensor Y dram 0x1000 f32[4,4]\n    halt\n")
    out = tmp_path / "out.npz"
    assert acfc(["run", str(src), "--outputs", str(out), "--quiet"]) == 0
    assert sorted(np.load(out).files) == ["Y"]
    assert capsys.readouterr().err == (f"{src}: warning: output 'H' left out of the outputs: its csr "
                                       "tiles were never written (no tile headers in its memory)\n")


@pytest.mark.parametrize("flag", ["--report", "--csv", "--trace"])
def test_a_file_written_to_stdout_is_not_mixed_with_the_summary(tmp_path: Path, capfd, flag) -> None:
    """'-' sends the report (or CSV, or trace) to stdout; the summary then goes to stderr,
    so stdout is exactly the file (the summary used to follow the JSON there, and '--trace -'
    wrote a file named '-')."""
    import json

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "in.npz", W=rng.standard_normal((16, 16)).astype(np.float32),
             X=rng.standard_normal((16, 16)).astype(np.float32))
    argv = ["run", str(ROOT / "examples" / "gemm_small.s"), "--inputs", str(tmp_path / "in.npz"),
            flag, "-"]
    assert acfc(argv) == 0
    out, err = capfd.readouterr()
    if flag == "--csv":
        assert out.splitlines()[0].split(",")[0] == "metric" and "total_cycles" in out
    else:
        data = json.loads(out)
        assert data["total_cycles"] > 0 if flag == "--report" else data["traceEvents"]
    assert "total cycles" in err
    assert not (Path.cwd() / "-").exists()
    assert acfc(argv + ["--outputs", "-"]) == 1
    assert f"--outputs and {flag} both write to stdout" in capfd.readouterr().err
