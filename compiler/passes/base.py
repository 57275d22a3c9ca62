"""What every pass is made of: the :class:`ModulePass` base, typed options and a small
greedy pattern-rewrite driver.

A pass is one class with a registry name and typed options::

    class Tile(ModulePass):
        '''tile{m=32,n=32,k=64}'''
        name = "tile"
        options = {"m": PassOption(int, 32, "rows per tile")}

        def run(self, module: Module) -> None: ...

A rewrite pattern is a function ``(op) -> list[Value] | None``: it returns the values that
replace ``op``'s results (creating any new ops before ``op``), or ``None`` when it does not
apply. :func:`apply_patterns` runs patterns to a fixed point and drops dead ops.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from ..dialect import AttrView, lookup_op
from ..ir import Attribute, FuncOp, Module, Operation, Type, Value

Pattern = Callable[[Operation], "list[Value] | None"]


class OptionValueError(ValueError):
    """A bad option value, in a message to show as it is (a checking option type raises it)."""


def target_option(text: str) -> str:
    """An option naming a shipped target (or a target file)."""
    from pathlib import Path

    from acf.isa.target import available_targets

    names = available_targets()
    if text not in names and not Path(text).is_file():
        raise OptionValueError(f"unknown target '{text}'; choose one of {', '.join(names)}")
    return text


target_option.__name__ = "target name"


@dataclass(frozen=True)
class PassOption:
    """One ``name=value`` pass option: its Python type, default and help text."""

    type: type
    default: Any
    help: str = ""

    def parse(self, text: str) -> Any:
        """Convert option text; raises ``ValueError`` with a readable message."""
        if self.type is bool:
            if text not in ("true", "false", "1", "0"):
                raise ValueError(f"expected true or false, got '{text}'")
            return text in ("true", "1")
        try:
            return self.type(text)
        except OptionValueError:
            raise
        except ValueError:
            raise ValueError(f"expected {self.type.__name__}, got '{text}'") from None


class ModulePass:
    """Base of passes: subclasses set ``name``, ``options`` and implement :meth:`run`."""

    name: ClassVar[str]
    options: ClassVar[dict[str, PassOption]] = {}

    def __init__(self, **values: Any) -> None:
        for key, option in self.options.items():
            setattr(self, key, values.pop(key, option.default))
        assert not values, f"unknown options {sorted(values)}"

    def run(self, module: Module) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        """The pass as pipeline text, options included: ``tile{m=32,n=32}``."""
        if not self.options:
            return self.name
        opts = ",".join(f"{k}={_option_text(getattr(self, k))}" for k in self.options)
        return f"{self.name}{{{opts}}}"


def _option_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def new_op_before(
    anchor: Operation,
    name: str,
    operands: Sequence[Value],
    result_types: Sequence[Type],
    attributes: dict[str, Attribute] | None = None,
) -> Operation:
    """Create ``name`` just before ``anchor``, inheriting its source location (and its
    position in the IR text, so an error at the new op points at the op it came from)."""
    assert anchor.parent_block is not None
    op = Operation(name, list(operands), list(result_types), attributes, loc=anchor.loc,
                   pos=anchor.pos)
    return anchor.parent_block.insert_before(anchor, op)


def use_counts(func: FuncOp) -> dict[Value, int]:
    counts: dict[Value, int] = {}
    for op in func.walk():
        for value in op.operands:
            counts[value] = counts.get(value, 0) + 1
    return counts


def is_pure(op: Operation) -> bool:
    """Ops that can be removed when unused: every graph op but the terminator."""
    return (
        op.name.startswith("graph.")
        and op.name not in ("graph.return", "graph.func")
        and not op.regions
    )


def erase_dead_ops(func: FuncOp) -> bool:
    """Remove pure ops whose results are unused (last to first); True if any was removed."""
    counts = use_counts(func)
    changed = False
    for op in reversed(list(func.body.ops)):
        if is_pure(op) and all(counts.get(r, 0) == 0 for r in op.results):
            for value in op.operands:
                counts[value] -= 1
            op.erase()
            changed = True
    return changed


def apply_patterns(func: FuncOp, patterns: Sequence[Pattern], max_rounds: int = 10) -> bool:
    """Greedily apply ``patterns`` until nothing changes; returns whether anything did.

    Each round is one forward sweep: replaced results are recorded and substituted into
    later operands as the sweep reaches them (uses always follow definitions), so a round
    costs time linear in the number of ops.
    """
    changed_any = False
    for _ in range(max_rounds):
        changed = False
        replaced: dict[Value, Value] = {}
        for op in list(func.body.ops):
            for user in op.walk():
                user.operands = [_resolve(replaced, v) for v in user.operands]
            for pattern in patterns:
                replacement = pattern(op)
                if replacement is not None:
                    replaced.update(zip(op.results, replacement))
                    changed = True
                    break
        changed = erase_dead_ops(func) or changed
        changed_any = changed_any or changed
        if not changed:
            break
    return changed_any


def _resolve(replaced: dict[Value, Value], value: Value) -> Value:
    while value in replaced:
        value = replaced[value]
    return value


class OpEmitter:
    """New ops just before ``anchor``, result types inferred, its location inherited (and
    its position in the IR text: an error at a new op points at the op it replaces)."""

    def __init__(self, anchor: Operation) -> None:
        self.anchor = anchor

    def __call__(self, name: str, *operands: Value, **attrs: object) -> Value:
        spec = lookup_op(name)
        assert spec is not None
        probe = Operation(name, list(operands), [], dict(attrs))
        types = spec.infer([v.type for v in operands], AttrView(probe, spec))
        op = Operation(name, list(operands), types, dict(attrs), loc=self.anchor.loc,
                       pos=self.anchor.pos)
        assert self.anchor.parent_block is not None
        return self.anchor.parent_block.insert_before(self.anchor, op).results[0]

    def slice(self, v: Value, offsets: list[int], sizes: list[int],
              strides: list[int] | None = None) -> Value:
        return self("graph.slice", v, offsets=offsets, sizes=sizes,
                    strides=strides or [1] * len(sizes))
