"""Print a :class:`~acf.compiler.ir.Module` as ACF IR text.

Registered ``graph`` ops print in the custom form, others (and everything with
``generic=True``) in the generic form::

    %r = graph.matmul %a, %b {transpose_b = true} : tensor<4x8xf32>, tensor<16x8xf32> -> tensor<4x16xf32>
    %r = "graph.matmul"(%a, %b) {transpose_b = true} : (tensor<4x8xf32>, tensor<16x8xf32>) -> tensor<4x16xf32>

Value names come from the parsed names when unique, otherwise numbers; print -> parse ->
print is a fixed point. Floats print with ``repr`` (exact); f32 dense elements print the
shortest text that reads back to the same float32 (numpy's ``str``).
"""

from __future__ import annotations

import math
import re

import numpy as np

from .dialect import lookup_op
from .ir import (
    Attribute,
    Block,
    DenseElements,
    FuncOp,
    Location,
    Module,
    Operation,
    TensorType,
    Type,
    Value,
)
from .sparse_encoding import SparseEncoding

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_$.]+")


def format_float(value: float) -> str:
    """Exact text for a float: ``1.0``, ``1e-05``, ``inf``, ``-inf``, ``nan``."""
    if math.isnan(value):
        return "nan"
    return repr(float(value))


def format_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Printer:
    """Stateful printer: keeps the value namer and the encoding alias table."""

    def __init__(
        self,
        aliases: dict[str, SparseEncoding] | None = None,
        generic: bool = False,
        with_locations: bool = True,
    ) -> None:
        self.alias_of = {enc: name for name, enc in (aliases or {}).items()}
        self.generic = generic
        self.with_locations = with_locations
        self.names: dict[Value, str] = {}
        self.taken: set[str] = set()
        self.counter = 0

    # --- names ----------------------------------------------------------------------
    def name(self, value: Value) -> str:
        if value not in self.names:
            hint = value.name_hint
            if hint and _PLAIN_NAME.fullmatch(hint) and hint not in self.taken:
                chosen = hint
            else:
                while str(self.counter) in self.taken:
                    self.counter += 1
                chosen = str(self.counter)
            self.taken.add(chosen)
            self.names[value] = chosen
        return "%" + self.names[value]

    def reserve(self, ops: list[Operation]) -> None:
        """Pre-claim unique hints of one function so numbered names never steal them."""
        for op in ops:
            for value in op.results:
                if value.name_hint and not value.name_hint.isdigit():
                    self.name(value)

    # --- types and attributes ------------------------------------------------------
    def type(self, t: Type) -> str:
        if isinstance(t, TensorType) and t.encoding is not None:
            enc = self.alias_of.get(t.encoding, str(t.encoding))
            dims = "".join(f"{d}x" for d in t.shape)
            return f"tensor<{dims}{t.element}, {enc}>"
        return str(t)

    def attr(self, value: Attribute) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return format_float(value)
        if isinstance(value, str):
            return format_string(value)
        if isinstance(value, list):
            return "[" + ", ".join(self.attr(v) for v in value) + "]"
        if isinstance(value, DenseElements):
            array = value.array
            if array.size > 1 and np.all(array == array.reshape(-1)[0]):
                array = array.reshape(-1)[0]  # splat: dense<0.5>
            return f"dense<{self.dense(np.asarray(array))}> : {self.type(value.type)}"
        raise TypeError(f"internal error: cannot print attribute {value!r}")

    def dense(self, array: np.ndarray) -> str:
        if array.ndim == 0:
            if array.dtype == np.bool_:
                return "true" if array else "false"
            if array.dtype == np.float32:
                return str(array.item() if np.isnan(array) else np.float32(array))
            return str(array.item())
        return "[" + ", ".join(self.dense(a) for a in array) + "]"

    def attr_dict(self, attrs: dict[str, Attribute]) -> str:
        if not attrs:
            return ""
        return " {" + ", ".join(f"{k} = {self.attr(v)}" for k, v in attrs.items()) + "}"

    def location(self, loc: Location | None) -> str:
        if loc is None or not self.with_locations:
            return ""
        layer = f" layer {format_string(loc.layer)}" if loc.layer is not None else ""
        return f" loc({format_string(loc.file)}:{loc.line}:{loc.col}{layer})"

    # --- ops --------------------------------------------------------------------------
    def operation(self, op: Operation, indent: str) -> list[str]:
        results = ", ".join(self.name(r) for r in op.results)
        prefix = f"{indent}{results} = " if op.results else indent
        operands = ", ".join(self.name(v) for v in op.operands)
        in_types = ", ".join(self.type(v.type) for v in op.operands)
        out_types = ", ".join(self.type(r.type) for r in op.results)
        spec = lookup_op(op.name)
        if spec is not None and spec.custom_form and not self.generic and not op.regions:
            text = f"{prefix}{op.name}{' ' + operands if operands else ''}"
            text += self.attr_dict(op.attributes)
            if op.operands or op.results:
                text += f" : {in_types or '()'}"
            if op.results:
                text += f" -> {out_types}"
            return [text + self.location(op.loc)]
        lines = [f"{prefix}{format_string(op.name)}({operands})"]
        if op.regions:
            lines[-1] += " ("
            for i, region in enumerate(op.regions):
                lines[-1] += "{" if i == 0 else ", {"
                for block in region.blocks:
                    lines += self.block(block, indent + "  ")
                lines.append(indent + "}")
            lines[-1] += ")"
        out = f"({out_types})" if len(op.results) != 1 else out_types
        lines[-1] += f"{self.attr_dict(op.attributes)} : ({in_types}) -> {out}"
        lines[-1] += self.location(op.loc)
        return lines

    def block(self, block: Block, indent: str) -> list[str]:
        self.reserve(block.ops)
        lines: list[str] = []
        for op in block.ops:
            lines += self.operation(op, indent)
        return lines

    def func(self, func: FuncOp) -> list[str]:
        self.names, self.taken, self.counter = {}, set(), 0
        for arg in func.arguments:
            self.name(arg)
        args = []
        for arg, attrs in zip(func.arguments, func.body.arg_attributes):
            args.append(f"{self.name(arg)}: {self.type(arg.type)}{self.attr_dict(attrs)}")
        results = ", ".join(self.type(t) for t in func.function_result_types)
        head = f"graph.func @{func.sym_name}({', '.join(args)}) -> ({results}) {{"
        return [head] + self.block(func.body, "  ") + ["}" + self.location(func.loc)]

    def module(self, module: Module) -> str:
        lines = [f"{name} = {enc}" for name, enc in module.aliases.items()]
        for func in module.funcs:
            if lines:
                lines.append("")
            lines += self.func(func)
        return "\n".join(lines) + "\n"


def print_module(module: Module, generic: bool = False, with_locations: bool = True) -> str:
    """The text of a module (custom op forms unless ``generic``)."""
    return Printer(module.aliases, generic, with_locations).module(module)


def print_op(op: Operation, generic: bool = False) -> str:
    """One op on one line (names are local to this call), for messages and debugging."""
    return "\n".join(Printer(generic=generic).operation(op, ""))
