"""`acfc run --inputs`: files that are not an .npz archive get one line naming the file and
the reason (numpy would try them as a .npy array or a pickle)."""

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
