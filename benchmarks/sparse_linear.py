"""Linear layers with a 90 %-sparse weight on the fabric: cycles and DRAM bytes with operand
multicast on and off, against the same layer with a dense weight.

    python benchmarks/sparse_linear.py [--target acf-base] [--density 0.1]

Each layer is ``y = x . w^T`` (``graph.linear``), x dense (m tokens or samples), w of n x k
masked at random to ``--density`` and stored CSR (packed tiles), compiled with the default
placement. With multicast on, the dense x is shared over each fabric row; the weight's
packed tiles fix the output tile's width, so where its column blocks do not divide over a
row the sharing layout is ragged (``compiler/codegen/multicast.py``). The dense-weight row
is the same layer with w stored dense (zero-skipping on, multicast on).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from acf import emulator
from acf.benchmarks.noc_placement import layer
from acf.compiler.codegen import CompileOptions, compile_module
from acf.compiler.parser import parse_module
from acf.isa.target import TargetError, load_target

#: (name, m, n, k)
LAYERS = [
    ("MLP fc1 784->256, batch 32", 32, 256, 784),
    ("BERT-base QKV/out 768->768, 256 tokens", 256, 768, 768),
    ("BERT-base FFN up 768->3072, 256 tokens", 256, 3072, 768),
    ("BERT-base FFN down 3072->768, 256 tokens", 256, 768, 3072),
    ("2048->2048, 512 rows", 512, 2048, 2048),
]


def run(target, m: int, n: int, k: int, x: np.ndarray, w: np.ndarray, *, sparse: bool,
        multicast: bool) -> dict:
    c = compile_module(parse_module(layer(m, n, k, "csr" if sparse else "dense")), target,
                       CompileOptions(multicast=multicast))
    t0 = time.perf_counter()
    res = emulator.run(c.program, target, c.bind([x, w]))
    err = float(np.abs(res.outputs[c.outputs[0]] - x @ w.T).max())
    return {"cycles": res.report.total_cycles, "dram_mb": res.report.memory_bytes["dram_bytes"] / 1e6,
            "bcasts": sum(i.mnemonic == "bcast" for i in c.program.instructions),
            "seconds": time.perf_counter() - t0, "max_err": err}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--target", default="acf-base")
    ap.add_argument("--density", type=float, default=0.1)
    args = ap.parse_args(argv)
    if not 0.0 < args.density <= 1.0:
        ap.error(f"--density must be in (0, 1], got {args.density}")
    try:
        target = load_target(args.target)
    except TargetError as exc:
        ap.error(f"--target: {exc}")
    print(f"{args.target}, weight density {args.density:g} (CSR), x dense")
    print(f"{'layer':42} {'mcast off':>11} {'mcast on':>11} {'gain':>6} {'DRAM MB off/on':>15} "
          f"{'dense w':>11} {'vs dense':>8} {'max err':>8}")
    rng = np.random.default_rng(0)
    for name, m, n, k in LAYERS:
        x = rng.standard_normal((m, k)).astype(np.float32)
        w = (rng.standard_normal((n, k)) * (rng.random((n, k)) < args.density)).astype(np.float32)
        off = run(target, m, n, k, x, w, sparse=True, multicast=False)
        on = run(target, m, n, k, x, w, sparse=True, multicast=True)
        dense = run(target, m, n, k, x, w, sparse=False, multicast=True)
        print(f"{name:42} {off['cycles']:>11,} {on['cycles']:>11,} "
              f"{off['cycles'] / on['cycles']:>5.2f}x {off['dram_mb']:>7.2f}/{on['dram_mb']:<7.2f} "
              f"{dense['cycles']:>11,} {dense['cycles'] / on['cycles']:>7.2f}x "
              f"{max(off['max_err'], on['max_err']):>8.1e}")


if __name__ == "__main__":
    main()
