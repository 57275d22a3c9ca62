"""NoC-aware placement vs round-robin: max link load and cycles of a sparse linear layer.

    python -m acf.benchmarks.noc_placement [--target acf-base] [--shape 16 576 288]

The default layer (16 rows of activations, a 576 x 288 sparse weight) has fewer output
tiles than clusters: its rows are one PE fold and its packed sparse weight fixes the
column tiles, so where the four tiles go decides which row ports carry the traffic.
Weight non-zeros: uniform (10 %), all in a quarter of the rows, all in a quarter of the
columns (40 % inside). Placements compared: round-robin (tile i -> cluster i mod clusters,
rows filled first) and ``balanced`` (greedy on per-tile encoded bytes, row ports first).
"""

from __future__ import annotations

import argparse

import numpy as np
from acf import emulator
from acf.compiler import cost_model as cm
from acf.compiler.codegen import CompileOptions, compile_module
from acf.compiler.codegen import placement as pl
from acf.compiler.parser import parse_module
from acf.compiler.sparse_encoding import format_to_encoding
from acf.isa.target import TargetError, load_target

CASES = ("uniform", "rows", "cols")


def layer(m: int, n: int, k: int, fmt: str = "csr") -> str:
    """IR of ``y = x . w^T`` with x (m x k) dense and w (n x k) stored as ``fmt``."""
    enc = format_to_encoding(fmt)
    wt = f"tensor<{n}x{k}xf32, {enc}>" if enc else f"tensor<{n}x{k}xf32>"
    return (f"graph.func @f(%x: tensor<{m}x{k}xf32>, %w: {wt}) -> (tensor<{m}x{n}xf32>) {{\n"
            f"  %y = graph.linear %x, %w : tensor<{m}x{k}xf32>, {wt} -> tensor<{m}x{n}xf32>\n"
            f"  graph.return %y : tensor<{m}x{n}xf32>\n}}\n")


def skewed_mask(case: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros((n, k), bool)
    if case == "uniform":
        return rng.random((n, k)) < 0.1
    if case == "rows":
        mask[: n // 4] = rng.random((n // 4, k)) < 0.4
    else:
        mask[:, : k // 4] = rng.random((n, k // 4)) < 0.4
    return mask


def gemm_tile_load(mask: np.ndarray, m: int, k: int, t: int, fmt: str = "csr"):
    """Bytes the loads of one linear output tile (bi, i0, j0) move: its weight row-block in
    ``fmt`` plus its activation rows, dense."""
    n = mask.shape[0]

    def load(tile) -> float:
        _, i0, j0 = tile
        w = sum(cm.tile_counts(fmt, min(t, n - j0), min(t, k - k0), mask[j0:j0 + t, k0:k0 + t])[0]
                for k0 in range(0, k, t))
        return w + 4 * min(t, m - i0) * k

    return load


def measure(target_name: str, m: int, n: int, k: int, case: str, seed: int = 0) -> dict:
    t = load_target(target_name)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, k)).astype(np.float32)
    mask = skewed_mask(case, n, k, rng)
    w = (rng.standard_normal((n, k)).astype(np.float32) + 3) * mask
    module = parse_module(layer(m, n, k))
    tile = compile_module(module, t).tiling.t
    out = {}
    for name, place in (("round-robin", pl.round_robin),
                        ("balanced", pl.balanced(gemm_tile_load(mask, m, k, tile)))):
        c = compile_module(parse_module(layer(m, n, k)), t, CompileOptions(placement=place))
        rep = emulator.run(c.program, t, c.bind([x, w])).report
        out[name] = (rep.total_cycles, max(rep.noc_link_flits.values()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--target", default="acf-base")
    ap.add_argument("--shape", type=int, nargs=3, default=(16, 576, 288), metavar=("M", "N", "K"))
    a = ap.parse_args(argv)
    if min(a.shape) < 1:
        ap.error(f"--shape must be three positive sizes M N K, got {' '.join(map(str, a.shape))}")
    try:
        load_target(a.target)
    except TargetError as exc:
        ap.error(f"--target: {exc}")
    print(f"{'case':9} {'rr cycles':>10} {'bal cycles':>10} {'cyc -%':>7} "
          f"{'rr maxlink':>11} {'bal maxlink':>11} {'link -%':>8}")
    for case in CASES:
        r = measure(a.target, *a.shape, case)
        (c0, l0), (c1, l1) = r["round-robin"], r["balanced"]
        print(f"{case:9} {c0:10d} {c1:10d} {100 * (1 - c1 / c0):7.1f} {l0:11d} {l1:11d} "
              f"{100 * (1 - l1 / l0):8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
