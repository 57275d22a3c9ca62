"""Shared helpers of the codegen tests: compile IR text, run it, compare with the interpreter."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from acf.compiler.codegen import CompiledProgram, compile_module
from acf.compiler.interp import run_func
from acf.compiler.parser import parse_module
from acf.isa.program import Program
from acf.isa.spec import token_name
from acf.isa.target import load_target

from . import reference

CSR = "#csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>\n"


def compile_text(text: str, target: str = "acf-small", **options) -> CompiledProgram:
    from acf.compiler.codegen import CompileOptions

    module = parse_module(text, "test.acfir")
    return compile_module(module, load_target(target), CompileOptions(**options))


def expected(text: str, args: list[np.ndarray]) -> list[np.ndarray]:
    return run_func(parse_module(text).funcs[0], args)


def check_close(got: np.ndarray, want: np.ndarray) -> None:
    want = np.asarray(want, np.float32)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-6 * max(scale, 1e-30))


def run_reference(c: CompiledProgram, args: list[np.ndarray]) -> list[np.ndarray]:
    outs = reference.run(c.program, load_target(c.program.target), c.bind(args))
    return [outs[name] for name in c.outputs]


def check_tokens(prog: Program) -> None:
    """Per barrier interval: every token counter's signals equal its waits, and each wait is
    preceded (in program order) by at least as many signals (counters: a local id is one per
    cluster, isa.spec.token_counter)."""
    signals: dict[int, int] = defaultdict(int)
    waits: dict[int, int] = defaultdict(int)
    for ins in prog.instructions + [None]:
        if ins is None or ins.mnemonic in ("barrier", "halt"):
            assert dict(signals) == dict(waits), "unbalanced tokens before a barrier"
            signals.clear()
            waits.clear()
            continue
        for t in ins.wait_counters:
            waits[t] += 1
            assert waits[t] <= signals[t], f"wait on {token_name(t)} before its signal: {ins}"
        for t in ins.signal_counters:
            signals[t] += 1


def sparse_weight(rng: np.random.Generator, shape: tuple[int, int], density: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    mask = (rng.random(shape) < density).astype(np.float32)
    w = rng.standard_normal(shape).astype(np.float32) * mask
    return w, mask


def fused(text: str) -> str:
    """The IR text after ``fuse-activations``."""
    from acf.compiler.passes import FuseActivations
    from acf.compiler.printer import print_module

    module = parse_module(text)
    FuseActivations().run(module)
    return print_module(module)


def run_checked(text: str, args: list[np.ndarray], want: list[np.ndarray], target: str = "acf-small"):
    """(outputs, emulator result) of ``text`` compiled and run, each output checked
    against ``want``."""
    from acf import emulator

    c = compile_text(text, target)
    check_tokens(c.program)
    result = emulator.run(c.program, load_target(target), c.bind(args))
    outs = [result.outputs[name] for name in c.outputs]
    for got, w in zip(outs, want):
        check_close(got, w)
    return outs, result
