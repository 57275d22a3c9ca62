"""Emulator speed on a 512x512x512 GEMM: dense, and 50/90/99 % weight sparsity with and
without 50 % activation sparsity, on acf-base and tpu-like.

    python -m acf.benchmarks.gemm   (or: python benchmarks/gemm.py [--size 512] [--repeat 3])

A sparse W runs stored as CSR tiles (``--w-formats``: and/or ``dense``, the same zeros in
a dense tile: the PEs skip them alike, the codec is idle). Prints simulated cycles; wall
seconds of input binding (``Emulator(...)``: packing the inputs into simulated memory,
encoding a CSR W's tiles) and of emulation (``.run()``: the program, reading the outputs
back and the report), each the best of ``--repeat`` after one warm-up run
(``--interleave``: the repeats taken round-robin over a target's cases, so each run
follows one on other data), their sum and its ratio to the dense case's; simulated MAC/s
(dense MACs / total wall seconds); process CPU seconds of binding + emulation (all
threads; steadier on a shared machine); and peak memory:
the tracemalloc peak of one run and the process's maximum resident set size.

OpenBLAS runs single-threaded here (``OPENBLAS_NUM_THREADS=1`` unless already set): the
emulator's matrix products are small (at most a few hundred per side), where a second BLAS
thread gains little and, on a loaded machine, a descheduled BLAS thread made a run up to
10x slower (0.04 s -> 0.5 s for the dense case) and the numbers unrepeatable.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse
import resource
import time
import tracemalloc

import numpy as np
from acf.emulator.emulator import Emulator
from acf.emulator.gemm import gemm_asm
from acf.isa.asm import assemble
from acf.isa.target import TargetError, load_target

CASES = [(0.0, 0.0), (0.5, 0.0), (0.9, 0.0), (0.99, 0.0), (0.5, 0.5), (0.9, 0.5), (0.99, 0.5)]


def _operands(n: int, w_sp: float, x_sp: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n)).astype(np.float32)
    X = rng.standard_normal((n, n)).astype(np.float32)
    W[rng.random(W.shape) < w_sp] = 0
    X[rng.random(X.shape) < x_sp] = 0
    return W, X


def _setup(target_name: str, n: int, w_sp: float, x_sp: float, w_fmt: str = "csr") -> dict:
    t = load_target(target_name)
    w_fmt = w_fmt if w_sp else "dense"
    prog = assemble(gemm_asm(t, n, n, n, w_fmt=w_fmt))
    W, X = _operands(n, w_sp, x_sp)
    inputs = {"W": W, "X": X}
    res = Emulator(prog, t, inputs).run()  # warm-up (and the result we check)
    return {"target": target_name, "w_sparsity": w_sp, "x_sparsity": x_sp, "w_fmt": w_fmt,
            "t": t, "prog": prog,
            "inputs": inputs, "res": res, "err": float(np.abs(res.outputs["Y"] - W @ X).max()),
            "bind_s": float("inf"), "emulate_s": float("inf"), "cpu_s": float("inf")}


def _time_once(case: dict) -> None:
    """One bind + emulate of ``case``, keeping the best times seen."""
    c0, t0 = time.process_time(), time.perf_counter()
    emu = Emulator(case["prog"], case["t"], case["inputs"])
    t1 = time.perf_counter()
    emu.run()
    t2, c1 = time.perf_counter(), time.process_time()
    case["bind_s"] = min(case["bind_s"], t1 - t0)
    case["emulate_s"] = min(case["emulate_s"], t2 - t1)
    case["cpu_s"] = min(case["cpu_s"], c1 - c0)


def _row(case: dict, n: int) -> dict:
    tracemalloc.start()
    Emulator(case["prog"], case["t"], case["inputs"]).run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    res, wall = case["res"], case["bind_s"] + case["emulate_s"]
    return {"target": case["target"], "w_sparsity": case["w_sparsity"],
            "x_sparsity": case["x_sparsity"], "w_fmt": case["w_fmt"],
            "cycles": res.report.total_cycles,
            "bind_s": case["bind_s"], "emulate_s": case["emulate_s"], "wall_s": wall,
            "cpu_s": case["cpu_s"], "mac_per_s": n ** 3 / wall,
            "effectual_macs": res.report.macs_effectual_count, "peak_mb": peak / 2 ** 20,
            "max_err": case["err"]}


def _cases(w_formats: list[str]) -> list[tuple[float, float, str]]:
    """(W sparsity, X sparsity, W format): the dense case once, each sparse one per format."""
    return [(w, x, f) for w, x in CASES for f in (w_formats if w else ["dense"])]


def bench(target_name: str, n: int, w_sp: float, x_sp: float, repeat: int,
          w_fmt: str = "csr") -> dict:
    case = _setup(target_name, n, w_sp, x_sp, w_fmt)
    for _ in range(repeat):
        _time_once(case)
    return _row(case, n)


def bench_interleaved(target_name: str, n: int, repeat: int,
                      w_formats: tuple[str, ...] = ("csr",)) -> list[dict]:
    """Every case of a target, its repeats taken round-robin: each run follows a run of
    another case on other data (as in a sweep), so no run finds its data in the caches."""
    cases = [_setup(target_name, n, w_sp, x_sp, f) for w_sp, x_sp, f in _cases(list(w_formats))]
    for _ in range(repeat):
        for case in cases:
            _time_once(case)
    return [_row(case, n) for case in cases]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--targets", nargs="*", default=["acf-base", "tpu-like"])
    ap.add_argument("--interleave", action="store_true",
                    help="take each target's repeats round-robin over its cases")
    ap.add_argument("--w-formats", default="csr",
                    help="comma-separated storage of a sparse W: csr and/or dense")
    args = ap.parse_args(argv)
    w_formats = [f.strip() for f in args.w_formats.split(",") if f.strip()]
    bad = [f for f in w_formats if f not in ("csr", "dense")]
    if bad or not w_formats:
        ap.error(f"--w-formats: csr and/or dense, got {args.w_formats!r}")
    for flag, value in (("--size", args.size), ("--repeat", args.repeat)):
        if value < 1:
            ap.error(f"{flag} must be at least 1, got {value}")
    for name in args.targets:  # bad names fail here, before any case runs
        try:
            load_target(name)
        except TargetError as exc:
            ap.error(f"--targets: {exc}")
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"{'target':10} {'W sp':>5} {'X sp':>5} {'W fmt':>5} {'sim cycles':>11} {'bind s':>8} "
          f"{'emul. s':>8} {'wall s':>8} {'vs dense':>8} {'cpu s':>8} {'sim MAC/s':>10} "
          f"{'eff. MACs':>11} {'peak MB':>8} {'max err':>8}")
    for name in args.targets:
        rows = (bench_interleaved(name, args.size, args.repeat, tuple(w_formats)) if args.interleave
                else [bench(name, args.size, w, x, args.repeat, f) for w, x, f in _cases(w_formats)])
        dense_wall = rows[0]["wall_s"]  # the first case is the dense one
        for r in rows:
            w_sp, x_sp = r["w_sparsity"], r["x_sparsity"]
            print(f"{r['target']:10} {w_sp:5.2f} {x_sp:5.2f} {r['w_fmt']:>5} {r['cycles']:11,d} "
                  f"{r['bind_s']:8.4f} {r['emulate_s']:8.4f} {r['wall_s']:8.4f} "
                  f"{r['wall_s'] / dense_wall:8.3f} {r['cpu_s']:8.4f} {r['mac_per_s']:10.3g} "
                  f"{r['effectual_macs']:11,d} {r['peak_mb']:8.1f} {r['max_err']:8.1e}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
