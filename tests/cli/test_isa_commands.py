"""The asm/disasm/targets commands: composition through pipes, errors, and fast start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ACFC = [sys.executable, "-m", "acf.cli"]


def acfc(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*ACFC, *args], input=stdin, capture_output=True, cwd=ROOT)


def test_asm_disasm_pipe_is_byte_exact(tmp_path) -> None:
    src = (ROOT / "examples" / "gemm_small.s").read_bytes()
    first = acfc("asm", "-", stdin=src)
    assert first.returncode == 0, first.stderr
    text = acfc("disasm", "-", stdin=first.stdout)
    assert text.returncode == 0
    second = acfc("asm", "-", stdin=text.stdout)
    assert second.stdout == first.stdout
    out = tmp_path / "p.acfbin"
    assert acfc("asm", str(ROOT / "examples" / "gemm_small.s"), "-o", str(out)).returncode == 0
    assert out.read_bytes() == first.stdout


def test_malformed_assembly_is_located_without_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.s"
    bad.write_text("halt\n  mm c0, acc[0], sp[0], sp[0], m=1, n=1, k=1, skip=abc\n")
    proc = acfc("asm", str(bad))
    err = proc.stderr.decode()
    assert proc.returncode == 1
    assert err.startswith(f"{bad}:2:52: error: mm: field 'skip': 'abc' is not one of")
    assert "skip=abc" in err and "Traceback" not in err
    assert proc.stdout == b""


def test_failed_assembly_leaves_no_output_file(tmp_path) -> None:
    out = tmp_path / "o.acfbin"
    out.write_bytes(b"previous")
    (tmp_path / "bad.s").write_text("frobnicate\n")
    proc = acfc("asm", str(tmp_path / "bad.s"), "-o", str(out))
    assert proc.returncode == 1 and b"unknown instruction 'frobnicate'" in proc.stderr
    assert out.read_bytes() == b"previous"


def test_targets_command() -> None:
    listing = acfc("targets")
    assert listing.returncode == 0 and b"tpu-like" in listing.stdout
    one = acfc("targets", "acf-base")
    assert b"peak_tmac_per_s" in one.stdout and b"4.096" in one.stdout
    bad = acfc("targets", "acf-base", "--set", "cluster.pe_rows=0")
    assert bad.returncode == 1 and b"key 'cluster.pe_rows': must be >= 1" in bad.stderr


def test_isa_commands_do_not_import_torch_or_tvm() -> None:
    code = (
        "import sys, io, contextlib\n"
        "from acf.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['asm', 'examples/gemm_small.s', '-o', '/dev/null'])\n"
        "    main(['targets'])\n"
        "bad = [m for m in ('torch', 'tvm') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_outputs_write_through_links_keep_devices_and_honour_the_umask(tmp_path) -> None:
    """An output path that is a symbolic link has its target replaced (the link stays), a
    device such as /dev/null is written, not replaced by a file (as root it used to be),
    and a new file gets the umask's mode rather than 0600."""
    import os
    import stat

    from acf.cli import write_output

    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real.name)
    write_output(str(link), "new")
    assert link.is_symlink() and real.read_text() == "new"
    write_output("/dev/null", b"discarded")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    old = os.umask(0o022)
    try:
        write_output(str(tmp_path / "fresh.txt"), "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "fresh.txt").st_mode) == 0o644
    real.chmod(0o600)
    write_output(str(real), "kept mode")
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".acfc-")]
