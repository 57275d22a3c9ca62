"""Fuzz the container reader and disassembler at scale (the test suite runs 10^4 cases).

    python benchmarks/fuzz_disasm.py [--cases 200000] [--seed 1]

Prints a table of cases per mutation kind, how many were rejected cleanly, how many
happened to still be valid, and throughput. Any other exception is a bug and aborts.
"""

from __future__ import annotations

import argparse
import random
import struct
import time
import zlib
from pathlib import Path

from acf.isa.asm import assemble
from acf.isa.container import ContainerError, read, write
from acf.isa.disasm import disassemble

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gemm_small.s"


def mutate(rng: random.Random, good: bytes, kind: str) -> bytes:
    if kind == "random":
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 400)))
    if kind == "truncate":
        return good[: rng.randrange(0, len(good))]
    b = bytearray(good)
    for _ in range(rng.randrange(1, 6)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    if kind == "flip+crc":
        struct.pack_into("<I", b, 24, zlib.crc32(bytes(b[32:])))
    return bytes(b)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    good = write(assemble(EXAMPLE.read_text()))
    kinds = ["random", "truncate", "flip", "flip+crc"]
    stats = {k: [0, 0, 0] for k in kinds}
    t0 = time.perf_counter()
    for i in range(args.cases):
        kind = kinds[i % len(kinds)]
        blob = mutate(rng, good, kind)
        stats[kind][0] += 1
        try:
            disassemble(read(blob))
            stats[kind][2] += 1
        except ContainerError:
            stats[kind][1] += 1
    dt = time.perf_counter() - t0
    print(f"{'mutation':10} {'cases':>8} {'rejected':>9} {'valid':>6}")
    for k, (n, rej, ok) in stats.items():
        print(f"{k:10} {n:8d} {rej:9d} {ok:6d}")
    print(f"{args.cases} cases in {dt:.1f} s ({args.cases / dt:,.0f}/s), no unexpected exception")


if __name__ == "__main__":
    main()
