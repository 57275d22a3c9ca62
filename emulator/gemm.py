"""A tiled GEMM program generator: ``Y[M,N] = W[M,K] @ X[K,N]`` across clusters.

Each cluster owns one ``bm x bn`` block of Y in its accumulator and walks K in chunks of
``kc``, loading the W chunk (dense, or a packed sparse tile from its slot) and the X chunk
into one of two scratchpad buffers while the MAC array works on the other. Tokens per
cluster: ``L0/L1`` (buffer loaded), ``F0/F1`` (buffer free), ``D`` (all MACs done). The
K walk is a hardware loop over pairs of chunks with address registers, so the instruction
stream stays a few dozen words whatever the size. Tiles are as large as the scratchpad
allows, which keeps per-instruction overhead small.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from acf.isa import symbols
from acf.isa.program import Symbol
from acf.isa.target import Target


@dataclass(frozen=True)
class GemmPlan:
    gm: int
    gn: int
    bm: int
    bn: int
    kc: int

    @property
    def clusters(self) -> int:
        return self.gm * self.gn


def plan(target: Target, M: int, N: int, K: int, clusters: int | None = None) -> GemmPlan:
    """Cluster grid and tile sizes: as many clusters as divide the output, the largest K
    chunk (a divisor of K) whose two W and X buffers fit the scratchpad."""
    limit = min(clusters or target.num_clusters, target.num_clusters)
    best = None
    for gm in range(1, limit + 1):
        for gn in range(1, limit // gm + 1):
            if M % gm or N % gn:
                continue
            bm, bn = M // gm, N // gn
            if 4 * bm * bn > target.cluster.acc_bytes:
                continue
            key = (gm * gn, -abs(bm - bn))
            if best is None or key > best[0]:
                best = (key, gm, gn)
    if best is None:
        raise ValueError(f"a {M}x{N} output block does not fit the accumulators of {target.name}")
    _, gm, gn = best
    bm, bn = M // gm, N // gn
    kc = 0
    for c in range(K, 0, -1):
        if K % c == 0 and 2 * 4 * c * (bm + bn) <= target.cluster.spad_bytes:
            kc = c
            break
    if kc == 0:
        raise ValueError(f"no K chunk of a {bm}x{bn} block fits the scratchpad of {target.name}")
    return GemmPlan(gm, gn, bm, bn, kc)


def gemm_asm(target: Target, M: int, N: int, K: int, w_fmt: str = "dense", skip: str = "ab",
             clusters: int | None = None) -> str:
    """Assembly text of the tiled GEMM (symbols W, X, Y in DRAM)."""
    p = plan(target, M, N, K, clusters)
    bm, bn, kc = p.bm, p.bn, p.kc
    nk = K // kc
    w_tile = f" {w_fmt} tile[{bm},{kc}]" if w_fmt != "dense" else ""
    wsym = Symbol("W", "dram", 0, (M, K), "f32", w_fmt, 0, (bm, kc) if w_fmt != "dense" else ())
    w_bytes = symbols.symbol_nbytes(wsym)
    x_addr = _align(w_bytes)
    y_addr = _align(x_addr + 4 * K * N)
    lines = [(f"# Y[{M},{N}] = W[{M},{K}] @ X[{K},{N}] on {p.gm}x{p.gn} clusters, "
              f"blocks {bm}x{bn}, K chunk {kc}"),
             f".target {target.name.split('+')[0]}",
             f".tensor W dram 0x0 f32[{M},{K}]{w_tile}",
             f".tensor X dram {x_addr:#x} f32[{K},{N}]",
             f".tensor Y dram {y_addr:#x} f32[{M},{N}]"]
    a_buf = (0, 4 * bm * kc)
    b_buf = (2 * 4 * bm * kc, 2 * 4 * bm * kc + 4 * kc * bn)
    d_a = symbols.slot_bytes(wsym) if w_fmt != "dense" else 4 * kc
    d_b = 4 * kc * N

    def tok(c: int, name: str) -> int:  # local tokens: every cluster has its own t1..t5
        return 1 + ["L0", "L1", "F0", "F1", "D"].index(name)

    def a_addr(ci: int) -> int:
        return symbols.tile_address(wsym, ci, 0) if w_fmt != "dense" else 4 * ci * bm * K

    def step(k: int, b: int, areg: str, rel: int) -> list[str]:
        out = []
        for c in range(p.clusters):
            ci, cj = divmod(c, p.gn)
            off = f"+{areg}" if areg else ""
            wa = a_addr(ci) + rel * d_a
            xa = x_addr + rel * d_b + 4 * cj * bn
            load, free = tok(c, f"L{b}"), tok(c, f"F{b}")
            out += [
                (f"    ld c{c}, sp[{a_buf[b]:#x}], dram[{wa:#x}{off}], {w_fmt}, rows={bm}, cols={kc}, "
                 f"stride={K} wait(t{free}) sig(t{load})"),
                (f"    ld c{c}, sp[{b_buf[b]:#x}], dram[{xa:#x}{off.replace('ar1', 'ar2')}], dense, "
                 f"rows={kc}, cols={bn}, stride={N} sig(t{load})"),
                (f"    mm c{c}, acc[0x0], sp[{a_buf[b]:#x}], sp[{b_buf[b]:#x}], m={bm}, n={bn}, k={kc}, "
                 f"accum={1 if k else 0}, skip={skip} wait(t{load}, t{load}) sig(t{free})"),
            ]
        return out

    for c in range(p.clusters):
        lines.append(f"    sync c{c}, ld sig(t{tok(c, 'F0')}, t{tok(c, 'F1')})")
    lines += step(0, 0, "", 0)
    pairs = (nk - 1) // 2
    if pairs:
        lines += ["    setar ar1, 0", "    setar ar2, 0", f"    loop {pairs}, kloop"]
        lines += step(1, 1, "ar1", 1) + step(2, 0, "ar1", 2)
        lines += [f"    addar ar1, {2 * d_a}", f"    addar ar2, {2 * d_b}", "kloop:"]
    if (nk - 1) % 2:
        lines += step(nk - 1, 1, "", nk - 1)
    for c in range(p.clusters):
        ci, cj = divmod(c, p.gn)
        ya = y_addr + 4 * (ci * bm * N + cj * bn)
        lines += [f"    sync c{c}, mac sig(t{tok(c, 'D')})",
                  (f"    st c{c}, dram[{ya:#x}], acc[0x0], dense, rows={bm}, cols={bn}, stride={N} "
                   f"wait(t{tok(c, 'D')})")]
    lines.append("    halt")
    return "\n".join(lines) + "\n"


def _align(n: int, a: int = 4096) -> int:
    return int(math.ceil(n / a) * a)
