"""Declarative op definitions and the dialect registry (xDSL style).

An op is a small class::

    @register_op
    class Matmul(OpDef):
        '''``graph.matmul %a, %b {transpose_b = true}``: a·b, optional transposes.'''

        name = "graph.matmul"
        operands = ("a", "b")            # default: ("x",)
        results = ("out",)               # the default
        attributes = attrs(transpose_a=attr("bool", False), transpose_b=attr("bool", False))
        infer = staticmethod(shape_rules.matmul)
        verify = staticmethod(extra_checks)   # optional hook, raises VerifyError

Operand names ending in ``?`` are optional (only at the end), one ending in ``*`` is
variadic. ``verify_op`` checks counts, attribute kinds, and that the declared result types
agree with ``infer`` (shape and element type; a result may add a sparse encoding).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

from .ir import Attribute, DenseElements, Operation, TensorType, Type
from .shape_rules import ShapeError

ATTR_KINDS = ("bool", "int", "float", "str", "ints", "dense")
_REQUIRED = object()


@dataclass(frozen=True)
class AttrSpec:
    """The kind of an attribute and its default (``None`` default = required)."""

    kind: str
    default: object = _REQUIRED

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    def accepts(self, value: Attribute) -> bool:
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "float":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "ints":
            return isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
        return isinstance(value, DenseElements)


def attrs(**specs: AttrSpec) -> Mapping[str, AttrSpec]:
    """An op's attribute table (read-only): ``attrs(axis=attr("int", -1))``."""
    return MappingProxyType(specs)


def attr(kind: str, default: object = _REQUIRED) -> AttrSpec:
    """Declare an attribute: ``attr("ints", [1, 1])``; no default means required."""
    assert kind in ATTR_KINDS, kind
    return AttrSpec(kind, default)


class VerifyError(Exception):
    """An op that breaks its definition; the verifier adds the location."""


class OpDef:
    """Base of op definitions: a name, operand/result names, attributes and a shape rule."""

    name: ClassVar[str]
    operands: ClassVar[tuple[str, ...]] = ("x",)
    results: ClassVar[tuple[str, ...]] = ("out",)
    attributes: ClassVar[Mapping[str, AttrSpec]] = MappingProxyType({})
    custom_form: ClassVar[bool] = True

    @staticmethod
    def infer(ts: Sequence[TensorType], attrs: Mapping[str, Attribute]) -> list[TensorType]:
        """Result types from operand types and attributes (a rule from ``shape_rules``)."""
        raise NotImplementedError

    @staticmethod
    def verify(op: Operation) -> None:
        """Extra checks beyond counts, attributes and shapes (override when needed)."""


_REGISTRY: dict[str, type[OpDef]] = {}


def register_op(cls: type[OpDef]) -> type[OpDef]:
    """Class decorator adding an op definition to the registry."""
    assert cls.name not in _REGISTRY, f"op {cls.name} registered twice"
    _REGISTRY[cls.name] = cls
    return cls


def lookup_op(name: str) -> type[OpDef] | None:
    return _REGISTRY.get(name)


def registered_ops() -> Iterator[type[OpDef]]:
    yield from _REGISTRY.values()


class AttrView(Mapping[str, Attribute]):
    """An op's attributes with its definition's defaults filled in."""

    def __init__(self, op: Operation, spec: type[OpDef]) -> None:
        self._values = op.attributes
        self._spec = spec

    def __getitem__(self, key: str) -> Attribute:
        if key in self._values:
            return self._values[key]
        default = self._spec.attributes[key].default
        if default is _REQUIRED:
            raise KeyError(key)
        return default  # type: ignore[return-value]

    def __iter__(self) -> Iterator[str]:
        return iter(self._spec.attributes)

    def __len__(self) -> int:
        return len(self._spec.attributes)


def attrs_of(op: Operation) -> AttrView:
    """``attrs_of(op)["stride"]`` reads an attribute or its default."""
    spec = lookup_op(op.name)
    if spec is None:
        raise KeyError(f"unregistered op {op.name}")
    return AttrView(op, spec)


def operand_count_range(spec: type[OpDef]) -> tuple[int, int | None]:
    """(minimum, maximum or None for variadic) operand counts."""
    names = spec.operands
    if any(n.endswith("*") for n in names):
        return len(names) - 1, None
    return sum(1 for n in names if not n.endswith("?")), len(names)


#: values of the tiled level's annotations (see acf.compiler.dialects.tiled)
PLACE_POLICIES = ("round-robin", "balanced")
SYNC_MODES = ("none", "barrier")
_TILED = {"acf_place": PLACE_POLICIES, "acf_sync": SYNC_MODES}


def _verify_tiled(key: str, value: object) -> None:
    if key == "acf_tile":
        if not (isinstance(value, list) and len(value) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
            raise VerifyError(f"'acf_tile' must be [m, n, k], three positive integers, got {value!r}")
    elif key in _TILED and value not in _TILED[key]:
        raise VerifyError(f"'{key}' must be one of {', '.join(_TILED[key])}, got {value!r}")


#: ops whose operands are numbers to compute with (f32); the exempt operand positions hold
#: labels, steps, masks or samples (any element type, read as 0/1 or integers)
FLOAT_OPERANDS: dict[str, frozenset[int]] = {
    **{name: frozenset() for name in (
        "graph.linear", "graph.matmul", "graph.conv2d", "graph.conv2d_backward_input",
        "graph.conv2d_backward_weight", "graph.batch_norm", "graph.batch_norm_backward",
        "graph.layer_norm", "graph.layer_norm_backward", "graph.softmax", "graph.softmax_backward",
        "graph.log_softmax", "graph.log_softmax_backward", "graph.exp", "graph.log", "graph.sqrt",
        "graph.rsqrt", "graph.sigmoid", "graph.tanh", "graph.gelu", "graph.gelu_backward",
        "graph.avg_pool2d", "graph.avg_pool2d_backward", "graph.max_pool2d",
        "graph.max_pool2d_backward", "graph.relu_backward")},
    "graph.sddmm": frozenset({2}),
    "graph.sgd_update": frozenset({3}),
    "graph.adam_update": frozenset({4, 5}),
    "graph.cross_entropy": frozenset({1}),
    "graph.cross_entropy_backward": frozenset({2}),
}


def check_encoding(t: Type, what: str) -> None:
    """A tensor type whose sparse encoding names a storage format must be able to hold it
    (N:M: groups of M along the packed columns); raises :class:`VerifyError`. Encodings
    no format names are well-formed IR (the code generator refuses them)."""
    enc = getattr(t, "encoding", None)
    if enc is None:
        return
    from acf.isa.formats import FormatSpec
    from acf.isa.symbols import as_2d_shape

    from .sparse_encoding import encoding_to_format

    try:
        fmt = encoding_to_format(enc)
    except ValueError:
        return
    shape = t.shape  # type: ignore[attr-defined]
    if fmt != "dense" and len(shape) < 1:
        raise VerifyError(f"{what}: a scalar cannot be stored {fmt}")
    spec = FormatSpec.parse(fmt)
    if spec.m:
        cols = as_2d_shape(tuple(shape))[1]  # the packed view: dim 0 x the others
        if cols % spec.m:
            raise VerifyError(f"{what}: {fmt} stores groups of {spec.m} along rows of {cols} "
                              f"elements, which {spec.m} does not divide")


def _check_nm_result(op: Operation, i: int, t: Type) -> None:
    """An N:M result must be N:M by construction: an update's parameter in the same
    encoding, or a ``mask_apply`` under an N:M mask of it (any other op's values need not
    be, and the store could not encode them)."""
    enc = getattr(t, "encoding", None)
    if enc is None or not any(lvl.kind == "structured" for _, lvl in enc.levels):
        return

    def has(v) -> bool:
        return getattr(v.type, "encoding", None) == enc

    if i == 0 and op.name == "graph.mask_apply" and has(op.operands[1]):
        return
    if i == 0 and op.name in ("graph.sgd_update", "graph.adam_update") and has(op.operands[0]):
        from .graph_nn_ops import update_mask

        mask = update_mask(op)
        if mask is None or has(mask):  # the pattern kept, or decided by an N:M mask
            return
    raise VerifyError(f"result #{i} of '{op.name}' is declared {t}, but nothing makes its "
                      "values N:M sparse (only an update of an N:M parameter, under no mask or "
                      "an N:M one, or a mask_apply under an N:M mask keeps the pattern)")


def _check_elements(op: Operation, types: list[Type]) -> None:
    exempt = FLOAT_OPERANDS.get(op.name)
    if exempt is None:
        return
    for i, t in enumerate(types):
        if i not in exempt and getattr(t, "element", "f32") != "f32":
            raise VerifyError(f"operand #{i} of '{op.name}' must have f32 elements, got {t}")


def verify_op(op: Operation) -> None:
    """Check one op against its registered definition; raises :class:`VerifyError`."""
    spec = lookup_op(op.name)
    if spec is None:
        if op.name.startswith("graph."):
            raise VerifyError(f"unknown op '{op.name}' in the graph dialect")
        if op.name.startswith("acf."):  # the ISA-level dialect: checked against the ISA table
            from .diagnostics import IRError
            from .dialects.acf import check_op

            try:
                check_op(op)
            except IRError as err:
                raise VerifyError(err.message) from None
        return  # ops of other dialects are opaque here
    lo, hi = operand_count_range(spec)
    n = len(op.operands)
    if n < lo or (hi is not None and n > hi):
        count_text = f"{lo}" if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        raise VerifyError(f"'{op.name}' expects {count_text} operands, got {n}")
    for key, value in op.attributes.items():
        if key.startswith("acf_"):  # the tiled level's lowering annotations, on every op
            _verify_tiled(key, value)
            continue
        if key == "sparsity":
            continue  # an analysis annotation, on every op
        if key not in spec.attributes:
            valid = ", ".join(spec.attributes) or "none"
            raise VerifyError(f"'{op.name}' has no attribute '{key}' (valid: {valid})")
        if not spec.attributes[key].accepts(value):
            raise VerifyError(
                f"attribute '{key}' of '{op.name}' must be {spec.attributes[key].kind}"
            )
    for key, aspec in spec.attributes.items():
        if aspec.required and key not in op.attributes:
            raise VerifyError(f"'{op.name}' requires attribute '{key}'")
    if op.regions:
        raise VerifyError(f"'{op.name}' takes no regions")
    operand_types: list[Type] = [v.type for v in op.operands]
    for i, t in enumerate(operand_types):
        if not isinstance(t, TensorType):
            raise VerifyError(f"operand #{i} of '{op.name}' must be a tensor, got {t}")
        check_encoding(t, f"operand #{i} of '{op.name}'")
    for i, r in enumerate(op.results):
        check_encoding(r.type, f"result #{i} of '{op.name}'")
        _check_nm_result(op, i, r.type)
    _check_elements(op, operand_types)
    try:
        expected = spec.infer(operand_types, AttrView(op, spec))  # type: ignore[arg-type]
    except ShapeError as err:
        raise VerifyError(f"'{op.name}': {err}") from None
    if len(expected) != len(op.results):
        raise VerifyError(f"'{op.name}' must have {len(expected)} results, got {len(op.results)}")
    for i, (want, result) in enumerate(zip(expected, op.results)):
        if not want.same_shape_and_element(result.type):
            raise VerifyError(
                f"result #{i} of '{op.name}' has type {result.type}, but its operands give {want}"
            )
    try:
        spec.verify(op)
    except VerifyError as err:
        raise VerifyError(f"'{op.name}': {err}") from None


# Importing the op modules registers the graph dialect.
from . import graph_nn_ops as _graph_nn_ops  # noqa: F401
from . import graph_ops as _graph_ops  # noqa: F401
