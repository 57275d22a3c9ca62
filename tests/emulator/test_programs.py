"""The shared assembly programs, each against its numpy reference, in both modes and via
``acfc run``."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from acf.emulator import run
from acf.isa.asm import assemble

from tests.emulator.conftest import PROGRAMS, program, random_inputs

NAMES = sorted(p.name for p in PROGRAMS.glob("*.s"))


def _erf(x):
    return np.vectorize(math.erf)(x.astype(np.float64))


def expected(name: str, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if name == "gemm_sddmm.s":
        W, X, S = x["W"], x["X"], x["S"]
        return {"Y": W @ X, "G": np.where(S != 0, X @ W.T, 0)}
    if name == "vector.s":
        A, B, R = x["A"], x["B"], x["R"]
        gelu = 0.5 * A * (1 + _erf(A / math.sqrt(2)))
        cdf = 0.5 * (1 + _erf(A / math.sqrt(2)))
        pdf = np.exp(-0.5 * A.astype(np.float64) ** 2) / math.sqrt(2 * math.pi)
        outs = [A + B, A * R, A - R[0, :8, None], np.maximum(A, 0.25), A * 0.5,
                np.where(A > 0, B, 0), gelu, np.where(B != 0, A, 0), (A > B) * 1.0,
                B * (cdf + A * pdf), A * A[0, 1]]
        red = [2 * A.sum(0), A.mean(0), (A * A).sum(0), A.min(0)]
        return {"OUT": np.stack(outs), "RED": np.stack(red)}
    if name == "vector_functions.s":
        A, B = x["A"], x["B"]
        P = np.abs(A) + np.float32(0.5)
        outs = [A / P, np.minimum(A, B), B, -A, np.abs(A), np.exp(A), np.log(P), np.sqrt(P),
                1 / np.sqrt(P), 1 / P, np.tanh(A), _erf(A), np.maximum(A, 0), (A >= B) * 1.0,
                (A >= 0) * 1.0, A * A, 1 / (1 + np.exp(-A.astype(np.float64))), A - B]
        return {"OUT": np.stack(outs)}
    if name == "optim.s":
        import torch

        P = x["P"]
        w = torch.nn.Parameter(torch.tensor(P[0]))
        opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.01)
        w.grad = torch.tensor(P[1])
        opt.step()
        w2 = torch.nn.Parameter(torch.tensor(P[0]))
        opt2 = torch.optim.Adam([w2], lr=0.001, betas=(0.9, 0.999), eps=1e-8, foreach=False)
        w2.grad = torch.tensor(P[1])
        opt2.step()
        st = opt2.state[w2]
        mom = opt.state[w]["momentum_buffer"]
        w3 = torch.nn.Parameter(torch.tensor(P[0]))  # Nesterov, from the buffer in P[3]
        opt3 = torch.optim.SGD([w3], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
        w3.grad = torch.tensor(P[1])
        opt3.state[w3]["momentum_buffer"] = torch.tensor(P[3])
        opt3.step()
        return {"OUT": np.stack([w.detach().numpy(), mom.numpy(), w2.detach().numpy(),
                                 st["exp_avg"].numpy(), st["exp_avg_sq"].numpy(),
                                 w3.detach().numpy(), opt3.state[w3]["momentum_buffer"].numpy()])}
    if name == "codec_mem.s":
        D = x["D"]
        return {"E": D, "F": D, "GTH": D[:4, 0:16:2], "H": D}
    if name == "noc.s":
        V = x["V"]
        return {"OUT": np.stack([V * k for k in (1, 2, 3, 4)]), "RED": V * 10, "SND": V * 2}
    if name == "mm_view.s":
        X, W, DY, S = x["X"].reshape(2, 6, 6), x["W"].reshape(4, 2, 3, 3), x["DY"], x["S"]
        win = {(kh, kw): X[:, kh:kh + 4, kw:kw + 4].reshape(2, 16) for kh in range(3) for kw in range(3)}
        Y = sum(W[:, :, kh, kw] @ win[kh, kw] for kh, kw in win)
        H = x["DY2"][:, :16] @ win[1, 1][0] + x["DY2"][:, 16:] @ win[1, 1][1]
        interleaved = np.stack([W[:, :, 0, 0] @ win[0, 0], W[:, :, 1, 1] @ win[1, 1]], axis=2)
        return {"Y": Y, "Z": W[:, :, 0, 0] @ win[0, 0], "G": np.where(S != 0, DY @ win[1, 1].T, 0),
                "H": H[:, None], "I": interleaved.reshape(4, 32)}
    if name == "loop.s":
        return {"Y": x["X"] * 3}
    raise KeyError(name)


def inputs_for(name: str, prog) -> dict[str, np.ndarray]:
    x = random_inputs(prog)
    if name == "optim.s":
        x["P"][2] = 0  # fresh momentum buffer: torch's first step (P[3]: a running one)
    return x


@pytest.mark.parametrize("name", NAMES)
def test_program_matches_numpy_in_both_modes(name: str, small) -> None:
    prog = program(name)
    x = inputs_for(name, prog)
    batched = run(prog, small, x)
    stepped = run(prog, small, x, mode="stepped")
    for sym, want in expected(name, x).items():
        np.testing.assert_allclose(batched.outputs[sym], want, rtol=2e-5, atol=2e-6, err_msg=sym)
    assert batched.report.to_json() == stepped.report.to_json()
    assert [(r.index, r.start, r.end) for r in batched.records] == \
           [(r.index, r.start, r.end) for r in stepped.records]
    for sym in batched.outputs:
        assert batched.outputs[sym].tobytes() == stepped.outputs[sym].tobytes()


def test_adam_state_matches_torch_to_fp32_rounding(small) -> None:
    """Adam's moments equal torch's to within a few fp32 roundings (rtol 1e-6): the
    registers hold 1 - beta, so 1 - beta2 is torch's 0.001, not 1 - fp32(0.999) =
    0.00099998713 (the second moment was 1.3e-5 off, inside the 2e-5 of the test above)."""
    prog = program("optim.s")
    x = inputs_for("optim.s", prog)
    got = run(prog, small, x).outputs["OUT"]
    want = expected("optim.s", x)["OUT"]
    np.testing.assert_allclose(got[2:5], want[2:5], rtol=1e-6, atol=1e-12)


def test_every_instruction_is_covered() -> None:
    from acf.isa.spec import OPS

    used = {i.mnemonic for n in NAMES for i in program(n).instructions}
    assert {op.mnemonic for op in OPS} - used == set()


def _acfc(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "acf.cli", *args], capture_output=True, text=True, cwd=cwd, check=False)


@pytest.mark.parametrize("name", NAMES)
def test_acfc_run(name: str, tmp_path) -> None:
    """Every hand-written program through ``acfc run``: outputs against numpy (torch for the
    optimizers), the report file equal to the in-process run's."""
    prog = program(name)
    x = inputs_for(name, prog)
    np.savez(tmp_path / "in.npz", **x)
    proc = _acfc("run", str(PROGRAMS / name), "--target", "acf-small", "--inputs", str(tmp_path / "in.npz"),
                 "--outputs", str(tmp_path / "out.npz"), "--report", str(tmp_path / "r.json"),
                 "--csv", str(tmp_path / "r.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "total cycles" in proc.stdout
    out = np.load(tmp_path / "out.npz")
    for sym, want in expected(name, x).items():
        np.testing.assert_allclose(out[sym], want, rtol=2e-5, atol=2e-6)
    ref = run(prog, "acf-small", x)
    assert (tmp_path / "r.json").read_text() == ref.report.to_json()
    assert (tmp_path / "r.csv").read_text().startswith("metric,value\n")


def test_acfc_run_trap_is_one_clean_line(tmp_path) -> None:
    src = tmp_path / "oob.s"
    src.write_text(".target acf-small\n    ld c0, sp[0xfff0], dram[0x0], dense, rows=4, cols=4\n    halt\n")
    proc = _acfc("run", str(src), "--quiet", "--stepped")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "trap at cycle 1: c0.ld #0 ld: out-of-bounds scratchpad access 0xfff0+0x40 > 0x10000" in proc.stderr
    assert f"{src}:2: trap at cycle 1" in proc.stderr  # the line of the trapping instruction


def test_a_trap_names_the_source_a_compiled_instruction_came_from() -> None:
    from acf.cli.run_cmd import trap_text
    from acf.emulator import EmulatorTrap
    from acf.isa.program import SourceLoc

    prog = assemble(".target acf-small\n    ld c0, sp[0xfff0], dram[0x0], dense, rows=4, cols=4\n    halt\n")
    prog.debug[0] = SourceLoc("model.py", 12, "fc1", 3)
    with pytest.raises(EmulatorTrap) as info:
        run(prog, "acf-small")
    text = trap_text("p.acfbin", prog, info.value)
    assert text.startswith("p.acfbin:2: trap at cycle 1: c0.ld #0 ld: out-of-bounds")
    assert text.endswith("(compiled from model.py:12 (fc1))")


def test_acfc_run_user_errors(tmp_path) -> None:
    proc = _acfc("run", str(tmp_path / "missing.s"))
    assert proc.returncode == 1 and "cannot read" in proc.stderr and "Traceback" not in proc.stderr
    src = tmp_path / "p.s"
    src.write_text("    halt\n")
    proc = _acfc("run", str(src), "--target", "nope")
    assert proc.returncode == 1 and "unknown target" in proc.stderr
    np.savez(tmp_path / "in.npz", Q=np.zeros(3))
    proc = _acfc("run", str(src), "--target", "acf-small", "--inputs", str(tmp_path / "in.npz"))
    assert proc.returncode == 1 and "not a .tensor symbol" in proc.stderr


EXAMPLES = sorted((PROGRAMS.parents[2] / "examples").glob("*.s"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_run(path) -> None:
    from acf.isa.asm import assemble

    prog = assemble(path.read_text(), str(path))
    x = random_inputs(prog)
    res = run(prog, prog.target or "acf-small", x)
    assert res.report.total_cycles > 0 and not res.unreadable
    if "W" in x and "X" in x and "Y" in res.outputs:
        np.testing.assert_allclose(res.outputs["Y"], x["W"] @ x["X"], rtol=1e-4, atol=1e-4)
    if "H" in res.outputs:
        np.testing.assert_array_equal(res.outputs["H"], np.maximum(x["X"], 0))
