"""Textual pass pipelines and the pass manager (MLIR ``mlir-opt`` style).

Pipeline text: passes separated by commas, each with optional ``{key=value,...}`` options,
or the name of a default pipeline (``PIPELINES``)::

    canonicalize,cse,tile{m=32,n=32,k=64}

The manager verifies the IR after every pass, can print it before/after chosen passes
(``print_before``, ``print_after``, ``print_after_all``, ``print_after_change``), times
passes, and when a pass raises or breaks the IR writes a reproducer (the input IR with a
``// RUN:`` line holding the pipeline) and reports an internal error naming that file.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from .diagnostics import IRError, SourceText
from .ir import Module
from .passes import PASSES, PIPELINES, ModulePass
from .printer import print_module
from .verifier import verify_module

PIPELINE_FILE = "<pipeline>"
# a name or option value: also decimals (density=0.5) and target file paths
_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z0-9_\-.+/:]+)|(?P<punct>[{}=,])|(?P<bad>\S))")


def _pipeline_error(text: str, col: int, message: str) -> IRError:
    source = SourceText(PIPELINE_FILE, text)
    return IRError(message, source.pos(1, col), source)


def _tokens(text: str) -> list[tuple[str, int]]:
    out, pos = [], 0
    while pos < len(text) and text[pos:].strip():
        match = _TOKEN.match(text, pos)
        assert match is not None
        kind = match.lastgroup or "bad"
        start = match.start(kind)
        if kind == "bad":
            raise _pipeline_error(text, start + 1, f"unexpected character '{match[kind]}'")
        out.append((match[kind], start + 1))
        pos = match.end()
    return out


def parse_pipeline(
    text: str,
    registry: dict[str, type[ModulePass]] | None = None,
    pipelines: dict[str, str] | None = None,
) -> list[ModulePass]:
    """Build pass instances from pipeline text; errors are located in ``<pipeline>``."""
    registry = PASSES if registry is None else registry
    pipelines = PIPELINES if pipelines is None else pipelines
    tokens, i, result = _tokens(text), 0, []

    def expect(what: str) -> tuple[str, int]:
        nonlocal i
        if i >= len(tokens):
            raise _pipeline_error(text, len(text) + 1, f"expected {what}, got end of pipeline")
        tok = tokens[i]
        i += 1
        return tok

    while i < len(tokens):
        name, col = expect("a pass name")
        if name in "{}=,":
            raise _pipeline_error(text, col, f"expected a pass name, got '{name}'")
        if name in pipelines and name not in registry:
            if i < len(tokens) and tokens[i][0] == "{":
                raise _pipeline_error(text, tokens[i][1], f"'{name}' is a named pipeline; "
                                                          "pipelines take no options")
            result += parse_pipeline(pipelines[name], registry, pipelines)
        elif name not in registry:
            choices = ", ".join(sorted(registry) + sorted(pipelines))
            raise _pipeline_error(
                text, col, f"unknown pass '{name}'; valid passes and pipelines: {choices}"
            )
        else:
            cls = registry[name]
            values: dict[str, Any] = {}
            if i < len(tokens) and tokens[i][0] == "{":
                i += 1
                while tokens[i - 1][0] != "}":
                    key, kcol = expect("an option name")
                    if key == "}" and not values:
                        break
                    if key not in cls.options:
                        valid = ", ".join(sorted(cls.options)) or "none"
                        raise _pipeline_error(
                            text,
                            kcol,
                            f"pass '{name}' has no option '{key}'; valid options: {valid}",
                        )
                    if key in values:
                        raise _pipeline_error(text, kcol, f"option '{name}.{key}' given twice")
                    if expect("'='")[0] != "=":
                        raise _pipeline_error(text, tokens[i - 1][1], "expected '='")
                    value, vcol = expect("an option value")
                    try:
                        values[key] = cls.options[key].parse(value)
                    except ValueError as err:
                        raise _pipeline_error(
                            text, vcol, f"bad value for option '{name}.{key}': {err}"
                        ) from None
                    sep, scol = expect("',' or '}'")
                    if sep not in (",", "}"):
                        raise _pipeline_error(text, scol, "expected ',' or '}'")
            result.append(cls(**values))
        if i < len(tokens):
            sep, scol = expect("','")
            if sep != ",":
                raise _pipeline_error(text, scol, f"expected ',' between passes, got '{sep}'")
            if i == len(tokens):
                raise _pipeline_error(text, len(text) + 1, "expected a pass name after ',', "
                                                           "got end of pipeline")
    return result


class PassFailure(Exception):
    """A pass crashed or produced invalid IR (a compiler bug, not a user error)."""


@dataclass
class Instrumentation:
    """What to print or measure around passes; dumps and timings go to ``stream``."""

    print_before: set[str] = field(default_factory=set)
    print_after: set[str] = field(default_factory=set)
    print_after_all: bool = False
    print_after_change: bool = False
    time_passes: bool = False
    reproducer: str | None = None
    stream: TextIO = sys.stderr


class PassManager:
    """Runs a list of passes over a module, verifying after each."""

    def __init__(
        self,
        passes: list[ModulePass],
        instrumentation: Instrumentation | None = None,
        verify_each: bool = True,
    ) -> None:
        self.passes = passes
        self.instr = instrumentation or Instrumentation()
        self.verify_each = verify_each
        self.timings: list[tuple[str, float]] = []

    @classmethod
    def from_text(cls, text: str, **kwargs: object) -> PassManager:
        return cls(parse_pipeline(text), **kwargs)  # type: ignore[arg-type]

    @property
    def pipeline_text(self) -> str:
        return ",".join(p.describe() for p in self.passes)

    def _dump(self, when: str, pass_: ModulePass, module: Module) -> None:
        self.instr.stream.write(f"// -----// IR Dump {when} {pass_.describe()} //----- //\n")
        self.instr.stream.write(print_module(module))

    def _write_reproducer(self, input_ir: str, error: str) -> str:
        """Write the reproducer; says where it went (or why it could not be written)."""
        path = self.instr.reproducer
        try:
            if path is None:
                fd, path = tempfile.mkstemp(prefix="acf-opt-reproducer-", suffix=".acfir")
                os.close(fd)
            with open(path, "w", encoding="utf-8") as out:
                out.write(f"// acfc opt reproducer: {error.splitlines()[0]}\n")
                out.write(f"// RUN: acfc opt %s -p '{self.pipeline_text}'\n")
                out.write(input_ir)
        except OSError as exc:
            return f"no reproducer: {path}: {exc.strerror or exc}"
        return f"reproducer written to {path}"

    def run(self, module: Module) -> None:
        """Run every pass; raises :class:`PassFailure` (with a reproducer) if one breaks."""
        input_ir = print_module(module)
        before = input_ir
        for pass_ in self.passes:
            if pass_.name in self.instr.print_before:
                self._dump("Before", pass_, module)
            start = time.perf_counter()
            try:
                pass_.run(module)
            except IRError:
                raise  # located at the input (tiles that cannot fit...): the user's to fix
            except Exception as err:
                problem = f"pass '{pass_.name}' failed: {type(err).__name__}: {err}"
                raise PassFailure(self._failure(input_ir, problem)) from err
            try:
                if self.verify_each:
                    verify_module(module)
            except IRError as err:
                problem = f"pass '{pass_.name}' produced invalid IR: {err}"
                raise PassFailure(self._failure(input_ir, problem)) from None
            self.timings.append((pass_.name, time.perf_counter() - start))
            if self.instr.print_after_all or pass_.name in self.instr.print_after:
                self._dump("After", pass_, module)
            elif self.instr.print_after_change:
                after = print_module(module)
                if after != before:
                    self._dump("After", pass_, module)
                before = after
        if self.instr.time_passes:
            self.instr.stream.write(self.timing_report())

    def _failure(self, input_ir: str, problem: str) -> str:
        return f"internal error: {problem}\n{self._write_reproducer(input_ir, problem)}"

    def timing_report(self) -> str:
        total = sum(t for _, t in self.timings)
        lines = [
            "===" + "-" * 60 + "===",
            "  ... Pass execution timing report ...",
            "===" + "-" * 60 + "===",
            f"  Total Execution Time: {total:.4f} seconds",
            "",
        ]
        lines += [f"  {t:10.4f}  {name}" for name, t in self.timings]
        return "\n".join(lines + [f"  {total:10.4f}  Total", ""])
