"""Emulator speed on a 512x512x512 GEMM: dense, and 50/90/99 % weight sparsity with and
without 50 % activation sparsity, on acf-base and tpu-like.

    python -m acf.benchmarks.gemm   (or: python benchmarks/gemm.py [--size 512] [--repeat 3])

Prints simulated cycles; wall seconds of input binding (``Emulator(...)``: packing the
inputs into simulated memory, CSR tiles for a sparse W) and of emulation (``.run()``: the
program, reading the outputs back and the report), each the best of ``--repeat`` after one
warm-up run, and their sum; simulated MAC/s (dense MACs / total wall seconds); process CPU
seconds of binding + emulation (all threads; steadier on a shared machine); and peak memory:
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
from acf.isa.target import load_target

CASES = [(0.0, 0.0), (0.5, 0.0), (0.9, 0.0), (0.99, 0.0), (0.5, 0.5), (0.9, 0.5), (0.99, 0.5)]


def _operands(n: int, w_sp: float, x_sp: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n)).astype(np.float32)
    X = rng.standard_normal((n, n)).astype(np.float32)
    W[rng.random(W.shape) < w_sp] = 0
    X[rng.random(X.shape) < x_sp] = 0
    return W, X


def bench(target_name: str, n: int, w_sp: float, x_sp: float, repeat: int) -> dict:
    t = load_target(target_name)
    prog = assemble(gemm_asm(t, n, n, n, w_fmt="csr" if w_sp else "dense"))
    W, X = _operands(n, w_sp, x_sp)
    inputs = {"W": W, "X": X}
    res = Emulator(prog, t, inputs).run()  # warm-up (and the result we check)
    err = float(np.abs(res.outputs["Y"] - W @ X).max())
    bind = emul = cpu = float("inf")
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        emu = Emulator(prog, t, inputs)
        t1 = time.perf_counter()
        emu.run()
        t2, c1 = time.perf_counter(), time.process_time()
        bind, emul, cpu = min(bind, t1 - t0), min(emul, t2 - t1), min(cpu, c1 - c0)
    tracemalloc.start()
    Emulator(prog, t, inputs).run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    wall = bind + emul
    return {"target": target_name, "w_sparsity": w_sp, "x_sparsity": x_sp,
            "cycles": res.report.total_cycles, "bind_s": bind, "emulate_s": emul, "wall_s": wall,
            "cpu_s": cpu, "mac_per_s": n ** 3 / wall, "effectual_macs": res.report.macs_effectual_count,
            "peak_mb": peak / 2 ** 20, "max_err": err}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--targets", nargs="*", default=["acf-base", "tpu-like"])
    args = ap.parse_args(argv)
    print(f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"{'target':10} {'W sp':>5} {'X sp':>5} {'sim cycles':>11} {'bind s':>8} {'emul. s':>8} "
          f"{'wall s':>8} {'cpu s':>8} {'sim MAC/s':>10} {'eff. MACs':>11} {'peak MB':>8} {'max err':>8}")
    for name in args.targets:
        for w_sp, x_sp in CASES:
            r = bench(name, args.size, w_sp, x_sp, args.repeat)
            print(f"{r['target']:10} {w_sp:5.2f} {x_sp:5.2f} {r['cycles']:11,d} {r['bind_s']:8.4f} "
                  f"{r['emulate_s']:8.4f} {r['wall_s']:8.4f} {r['cpu_s']:8.4f} "
                  f"{r['mac_per_s']:10.3g} {r['effectual_macs']:11,d} {r['peak_mb']:8.1f} {r['max_err']:8.1e}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
