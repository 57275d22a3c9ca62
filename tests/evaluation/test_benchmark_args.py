"""Bad arguments to the benchmark scripts: one ``prog: error: ...`` line and a nonzero exit,
never a traceback, and nothing run (every case here fails before any compile or emulation)."""

from __future__ import annotations

import importlib

import pytest

BAD_TARGET = "no-such-target"

CASES = [
    ("gemm", ["--size", "-4"], "--size must be at least 1, got -4"),
    ("gemm", ["--size", "0"], "--size must be at least 1, got 0"),
    ("gemm", ["--repeat", "0"], "--repeat must be at least 1, got 0"),
    ("gemm", ["--targets", "acf-base", BAD_TARGET], f"unknown target '{BAD_TARGET}'"),
    ("gemm", ["--w-formats", "bitmap"], "--w-formats: csr and/or dense, got 'bitmap'"),
    ("sparse_linear", ["--target", BAD_TARGET], f"unknown target '{BAD_TARGET}'"),
    ("noc_placement", ["--shape", "16", "-5", "288"], "got 16 -5 288"),
    ("noc_placement", ["--shape", "0", "576", "288"], "got 0 576 288"),
    ("noc_placement", ["--target", BAD_TARGET], f"unknown target '{BAD_TARGET}'"),
    ("compile_resnet18", ["--batch", "-1"], "--batch must be at least 1, got -1"),
    ("compile_resnet18", ["--width", "0"], "--width must be at least 1, got 0"),
    ("compile_resnet18", ["--target", BAD_TARGET], f"unknown target '{BAD_TARGET}'"),
    ("compile_resnet18", ["--pipeline", "bogus-pass"], "unknown pass 'bogus-pass'"),
    ("emulate_program", ["--batch", "0"], "--batch must be at least 1, got 0"),
    ("emulate_program", ["--width", "-2"], "--width must be at least 1, got -2"),
    ("emulate_program", ["--target", BAD_TARGET], f"unknown target '{BAD_TARGET}'"),
]


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error:" in line]


@pytest.mark.parametrize("name,argv,message", CASES,
                         ids=[f"{n}:{' '.join(a)}" for n, a, _ in CASES])
def test_bad_argument_is_one_argparse_error(capsys, name, argv, message) -> None:
    mod = importlib.import_module(f"acf.benchmarks.{name}")
    with pytest.raises(SystemExit) as exc:
        mod.main(argv)
    assert exc.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # failed before printing any header or result
    assert "Traceback" not in err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert ": error: " in lines[0] and err.splitlines()[-1] == lines[0]  # prog: error: ...
    assert message in lines[0], err
    assert len(lines[0]) < 400  # no IR dump in the message


def test_sweep_accuracy_report_only_without_rows(tmp_path, capsys) -> None:
    from acf.benchmarks import sweep_accuracy

    out = tmp_path / "empty"
    assert sweep_accuracy.main(["--report-only", "--out", str(out)]) == 1
    _, err = capsys.readouterr()
    assert "Traceback" not in err
    assert err.startswith("sweep_accuracy: error: ") and err.count("\n") == 1, err
    assert "no rows to report" in err and str(out) in err
    assert not out.exists()  # nothing made for a report that was not written


def test_sweep_accuracy_report_only_empty_rows_file(tmp_path, capsys) -> None:
    from acf.benchmarks import sweep_accuracy

    (tmp_path / "rows.jsonl").write_text("")
    assert sweep_accuracy.main(["--report-only", "--out", str(tmp_path)]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("sweep_accuracy: error: ") and "no rows to report" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no report files


def test_write_report_refuses_no_rows(tmp_path) -> None:
    from acf.evaluation.accuracy import AccuracyError, write_report

    with pytest.raises(AccuracyError, match="no rows to report"):
        write_report([], tmp_path / "r")
    assert not (tmp_path / "r").exists()
