"""SSA IR of the ACF compiler, in the style of MLIR / xDSL.

A :class:`Module` holds sparse-encoding aliases and ``graph.func`` ops::

    #csr = #sparse<{map = (i, j) -> (i : dense, j : compressed)}>
    graph.func @train_step(%x: tensor<4x8xf32>, %w: tensor<16x8xf32, #csr>) -> (tensor<4x16xf32>) {
      %r = graph.matmul %x, %w {transpose_b = true} : tensor<4x8xf32>, tensor<16x8xf32, #csr> -> tensor<4x16xf32> loc("model.py":12:5 layer "fc1")
      graph.return %r : tensor<4x16xf32>
    }

An :class:`Operation` has a name (``graph.matmul``), operand and result :class:`Value` s, an
attribute dict, optional :class:`Region` s and a source :class:`Location`. Op semantics
(operand names, attributes, shape rules) live in the dialect registry (``dialect.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .diagnostics import SourcePos
from .sparse_encoding import SparseEncoding

ELEMENT_TYPES = ("f32", "i64", "i1", "index")


@dataclass(frozen=True)
class ScalarType:
    """``f32``, ``i64``, ``i1`` or ``index``."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class TensorType:
    """``tensor<4x8xf32>``, ``tensor<f32>`` (rank 0) or ``tensor<64x64xf32, #csr>``."""

    shape: tuple[int, ...]
    element: str = "f32"
    encoding: SparseEncoding | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    def dense(self) -> TensorType:
        """The same tensor without a sparse encoding."""
        return TensorType(self.shape, self.element)

    def same_shape_and_element(self, other: Type) -> bool:
        return (
            isinstance(other, TensorType)
            and other.shape == self.shape
            and other.element == self.element
        )

    def __str__(self) -> str:
        dims = "".join(f"{d}x" for d in self.shape)
        enc = f", {self.encoding}" if self.encoding is not None else ""
        return f"tensor<{dims}{self.element}{enc}>"


Type = ScalarType | TensorType


@dataclass(eq=False)
class DenseElements:
    """A small constant: ``dense<[[1.0, 2.0], [3.0, 4.0]]> : tensor<2x2xf32>``."""

    array: np.ndarray
    type: TensorType

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DenseElements)
            and self.type == other.type
            and np.array_equal(self.array, other.array)
        )

    def key(self) -> tuple:
        return (self.type, self.array.tobytes())


Attribute = bool | int | float | str | list | DenseElements | TensorType


def attribute_key(value: Attribute) -> object:
    """A hashable stand-in for an attribute value (used by CSE); keeps bools apart from ints."""
    if isinstance(value, list):
        return ("list", tuple(attribute_key(v) for v in value))
    if isinstance(value, DenseElements):
        return ("dense", value.key())
    return (type(value).__name__, value)


@dataclass(frozen=True)
class Location:
    """Where in the user's program an op comes from: ``loc("model.py":12:5 layer "fc1")``."""

    file: str
    line: int
    col: int
    layer: str | None = None


class Value:
    """An SSA value: a result of an :class:`Operation` or an argument of a :class:`Block`."""

    def __init__(
        self, type: Type, owner: Operation | Block, index: int, name_hint: str | None = None
    ) -> None:
        self.type = type
        self.owner = owner
        self.index = index
        self.name_hint = name_hint

    @property
    def defining_op(self) -> Operation | None:
        return self.owner if isinstance(self.owner, Operation) else None

    def uses(self) -> Iterator[tuple[Operation, int]]:
        """Every (op, operand index) reading this value, in the enclosing function."""
        top = self.owner if isinstance(self.owner, Block) else self.owner.parent_block
        while top is not None and top.parent_op is not None and top.parent_op.parent_block:
            top = top.parent_op.parent_block
        if top is None:
            return
        for op in top.walk():
            for i, operand in enumerate(op.operands):
                if operand is self:
                    yield op, i

    def has_uses(self) -> bool:
        return next(self.uses(), None) is not None

    def replace_all_uses_with(self, new: Value) -> None:
        for op, i in list(self.uses()):
            op.operands[i] = new

    def __repr__(self) -> str:
        return f"<Value %{self.name_hint or '?'}: {self.type}>"


class Operation:
    """One op: ``%r = "graph.relu"(%x) {...} : (tensor<4xf32>) -> tensor<4xf32>``."""

    def __init__(
        self,
        name: str,
        operands: list[Value],
        result_types: list[Type],
        attributes: dict[str, Attribute] | None = None,
        regions: list[Region] | None = None,
        loc: Location | None = None,
        pos: SourcePos | None = None,
    ) -> None:
        self.name = name
        self.operands = list(operands)
        self.results = [Value(t, self, i) for i, t in enumerate(result_types)]
        self.attributes: dict[str, Attribute] = dict(attributes or {})
        self.regions: list[Region] = []
        for region in regions or []:
            self.add_region(region)
        self.loc = loc
        self.pos = pos
        self.parent_block: Block | None = None

    @property
    def result(self) -> Value:
        """The single result (for one-result ops)."""
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]

    def add_region(self, region: Region) -> None:
        region.parent_op = self
        self.regions.append(region)

    def walk(self) -> Iterator[Operation]:
        """This op and every op nested in its regions, in order."""
        yield self
        for region in self.regions:
            for block in region.blocks:
                yield from block.walk()

    def erase(self) -> None:
        """Remove this op from its block (its results must be unused)."""
        assert self.parent_block is not None
        self.parent_block.ops.remove(self)
        self.parent_block = None

    def __repr__(self) -> str:
        return f"<Operation {self.name}>"


class Block:
    """A list of ops with typed arguments (a function body has the function's arguments)."""

    def __init__(self, arg_types: list[Type] | None = None) -> None:
        self.args = [Value(t, self, i) for i, t in enumerate(arg_types or [])]
        self.arg_attributes: list[dict[str, Attribute]] = [{} for _ in self.args]
        self.ops: list[Operation] = []
        self.parent_region: Region | None = None

    @property
    def parent_op(self) -> Operation | None:
        return self.parent_region.parent_op if self.parent_region else None

    def append(self, op: Operation) -> Operation:
        op.parent_block = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Operation, op: Operation) -> Operation:
        op.parent_block = self
        self.ops.insert(self.ops.index(anchor), op)
        return op

    def walk(self) -> Iterator[Operation]:
        for op in list(self.ops):
            yield from op.walk()


class Region:
    """A list of blocks owned by an op."""

    def __init__(self, blocks: list[Block] | None = None) -> None:
        self.blocks: list[Block] = []
        self.parent_op: Operation | None = None
        for block in blocks or []:
            self.add_block(block)

    def add_block(self, block: Block) -> None:
        block.parent_region = self
        self.blocks.append(block)


class FuncOp(Operation):
    """``graph.func @name(%a: T, ...) -> (R, ...) { ... graph.return ... }``."""

    def __init__(
        self,
        sym_name: str,
        arg_types: list[Type],
        result_types: list[Type],
        arg_names: list[str] | None = None,
        loc: Location | None = None,
        pos: SourcePos | None = None,
    ) -> None:
        super().__init__("graph.func", [], [], {"sym_name": sym_name}, loc=loc, pos=pos)
        body = Block(arg_types)
        for value, name in zip(body.args, arg_names or []):
            value.name_hint = name
        region = Region([body])
        self.add_region(region)
        self.function_result_types = list(result_types)

    @property
    def sym_name(self) -> str:
        return str(self.attributes["sym_name"])

    @property
    def body(self) -> Block:
        return self.regions[0].blocks[0]

    @property
    def arguments(self) -> list[Value]:
        return self.body.args

    def argument(self, name: str) -> Value:
        for arg in self.arguments:
            if arg.name_hint == name:
                return arg
        raise KeyError(name)

    @property
    def return_op(self) -> Operation | None:
        ops = self.body.ops
        return ops[-1] if ops and ops[-1].name == "graph.return" else None


class Module:
    """The top level: encoding aliases (``#csr = #sparse<...>``) and functions."""

    def __init__(
        self, funcs: list[FuncOp] | None = None, aliases: dict[str, SparseEncoding] | None = None
    ) -> None:
        self.funcs: list[FuncOp] = list(funcs or [])
        self.aliases: dict[str, SparseEncoding] = dict(aliases or {})

    def func(self, name: str) -> FuncOp:
        for f in self.funcs:
            if f.sym_name == name:
                return f
        raise KeyError(name)

    def walk(self) -> Iterator[Operation]:
        for f in self.funcs:
            yield from f.walk()
