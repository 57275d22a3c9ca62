"""``acfc demo``: the main job, end to end with whatever layers this checkout has.

Assembles the example sparse GEMM, proves the binary round-trips through the
disassembler, and, with the emulator present, runs it on ``acf-small`` against the same
fabric with skipping switched off, printing the result check, cycles and energy.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

from acf.cli import UserError
from acf.isa.asm import assemble
from acf.isa.container import read, write
from acf.isa.disasm import disassemble
from acf.isa.target import available_targets, load_target

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "gemm_small.s"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--density", type=float, default=0.1, help="weight density of the example (0..1]")
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.density <= 1:
        raise UserError(f"acfc demo: error: --density must be in (0, 1], got {args.density}")
    print("targets:", ", ".join(available_targets()))
    prog = assemble(EXAMPLE.read_text(), str(EXAMPLE))
    blob = write(prog)
    again = write(assemble(disassemble(read(blob))))
    print(f"assembled {EXAMPLE.name}: {len(prog)} instructions, {len(blob)} bytes; "
          f"disassembly reassembles byte-exact: {again == blob}")
    if importlib.util.find_spec("acf.emulator.machine") is None:
        print("(emulator not in this checkout: stopping after the ISA round trip)")
        return 0 if again == blob else 1
    from acf.emulator import run as emulate

    rng = np.random.default_rng(args.seed)
    w = (rng.standard_normal((16, 16)) * (rng.random((16, 16)) < args.density)).astype(np.float32)
    x = np.maximum(rng.standard_normal((16, 16)), 0).astype(np.float32)  # ReLU-like inputs
    reference = w @ x
    rows = []
    for name in ("acf-small", "acf-small-dense"):
        target = (load_target("acf-small") if name == "acf-small"
                  else load_target("acf-small", {"cluster.skip": "none"}))
        result = emulate(prog, target, {"W": w, "X": x})
        err = float(np.max(np.abs(result.outputs["Y"] - reference)))
        rows.append((name, result.report.total_cycles, result.report.energy_total_pj, err))
    print(f"{'target':16} {'cycles':>8} {'energy_pJ':>12} {'max|err|':>10}")
    for name, cyc, pj, err in rows:
        print(f"{name:16} {cyc:8d} {pj:12.1f} {err:10.2e}")
    print(f"speedup vs dense: {rows[1][1] / rows[0][1]:.2f}x, energy: {rows[1][2] / rows[0][2]:.2f}x less")
    return 0 if again == blob and max(r[3] for r in rows) < 1e-4 else 1
