"""Convert core-ATen FX graphs to the ``graph`` dialect, one small converter per ATen op.

The converters live in :mod:`aten_ops_core` (views, elementwise, matmul, reductions,
constants), :mod:`aten_ops_nn` (convolution, normalization, pooling, gathers, softmax,
losses), :mod:`aten_ops_activations` and :mod:`aten_ops_logic` (comparisons, where, clamp);
each is registered for its ATen overloads::

    @converter(aten.mm.default)
    def _(ctx: ConvertContext, node: fx.Node) -> Value:
        a, b = ctx.values(node.args[:2])
        return ctx.emit("graph.matmul", [a, b])

A converter returns a Value, a tuple of Values / None (multi-result ATen ops, read by
``getitem`` nodes), or an opaque marker the matching backward op understands (pooling
indices). An op from :data:`FOLDABLE` whose tensor operands are all constants (the index
arithmetic of an upsampling: ``arange``, scaled, cast to int64) is evaluated on the host
into one constant instead; host values are read outside Dynamo's fake-tensor mode, under
which a backend compiles. Every op it emits carries the node's location: the last user
frame of the node's ``stack_trace`` (``file:line:col``) and its layer (``nn_module_stack``). An op with no
converter raises :class:`UnsupportedOpError` naming the ATen op and that source line.
"""

from __future__ import annotations

import linecache
import operator
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx
from torch._subclasses.fake_tensor import unset_fake_temporarily

from ..compiler.dialect import VerifyError
from ..compiler.ir import Location, TensorType, Value
from ..compiler.shape_rules import ShapeError
from .ir_builder import FuncBuilder
from .torch_capture import layer_of

Converter = Callable[["ConvertContext", fx.Node], Any]
CONVERTERS: dict[Any, Converter] = {}
# int32 indices (token ids) are the fabric's integers as int64 are: every value fits, and
# the graph dialect's integer ops (comparisons, selects, one-hot) do not depend on the width
TORCH_ELEMENT = {torch.float32: "f32", torch.int64: "i64", torch.int32: "i64", torch.bool: "i1"}


class UnsupportedOpError(Exception):
    """An ATen op (or a form of one) with no graph-dialect lowering, at a user source line."""

    def __init__(self, op: str, loc: Location | None, reason: str = "",
                 code: str | None = None, kind: str = "ATen op") -> None:
        where = f"{loc.file}:{loc.line}:{loc.col}" if loc else "<unknown>"
        detail = f": {reason}" if reason else ""
        text = f"{where}: error: unsupported {kind} '{op}'{detail}"
        if code:
            text += f"\n{code}"
        super().__init__(text)
        self.op = op
        self.loc = loc
        self.reason = reason


aten = torch.ops.aten
#: ops evaluated on the host when every tensor operand is a constant (index arithmetic)
FOLDABLE = frozenset({
    aten._to_copy.default, aten.add.Tensor, aten.add.Scalar, aten.sub.Tensor, aten.sub.Scalar,
    aten.mul.Tensor, aten.mul.Scalar, aten.div.Tensor, aten.div.Scalar, aten.rsub.Scalar,
    aten.clamp.default, aten.clamp_min.default, aten.clamp_max.default, aten.floor.default,
    aten.ceil.default, aten.minimum.default, aten.maximum.default, aten.unsqueeze.default,
    aten.view.default, aten.reshape.default, aten.squeeze.dims, aten.expand.default,
    # a mask built from literals (``zeros(bool)``, then ``mask[:, -1] = True``)
    aten.fill.Scalar, aten.fill.Tensor, aten.slice.Tensor, aten.select.int,
    aten.slice_scatter.default, aten.select_scatter.default, aten.copy.default,
    aten.gt.Scalar, aten.lt.Scalar, aten.ge.Scalar, aten.le.Scalar, aten.eq.Scalar,
    aten.ne.Scalar, aten.logical_not.default, aten.logical_and.default,
    aten.logical_or.default, aten.where.self, aten.masked_fill.Scalar,
    # causal masks: ``ones(T, T, bool).triu(1)`` (and SDPA's ``is_causal``)
    aten.triu.default, aten.tril.default, aten.bitwise_not.default,
    # the count of a constant mask (cross entropy's under label smoothing divides by it)
    aten.sum.default, aten.sum.dim_IntList,
    aten.index.Tensor,  # a constant indexed with constants (an integer one has no GEMM)
})
#: results larger than this stay ops (an expanded constant is better left a broadcast)
FOLD_MAX = 1 << 16
TORCH_DTYPE = {"f32": torch.float32, "i64": torch.int64, "i1": torch.bool}


def converter(*targets: Any) -> Callable[[Converter], Converter]:
    """Register a converter for one or more ATen overloads."""
    def wrap(fn: Converter) -> Converter:
        for target in targets:
            CONVERTERS[target] = fn
        return fn
    return wrap


@dataclass(frozen=True)
class PoolIndices:
    """Stands for ``max_pool2d_with_indices``'s indices: its backward reads the pool input.

    Where a graph returns them (a ``torch.compile`` forward saves them for its backward),
    the backend returns the pool input ``x`` from the fabric and computes the indices from
    it on the host with the window attributes kept here."""

    x: Value
    kernel_size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+)')
_LIBRARY_DIRS = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(__file__) + os.sep)


def source_location(stack_trace: str | None, layer: str | None,
                    default: Location | None = None) -> Location | None:
    """The last user frame of an FX ``stack_trace`` (outside torch and this package), with
    its column (from the ``^^^`` marker when present, else the line's first non-blank);
    ``default`` (with ``layer``) when there is none, e.g. for ``nn.Sequential`` models."""
    fallback = Location(default.file, default.line, default.col, layer) if default else None
    if not stack_trace:
        return fallback
    lines = stack_trace.splitlines()
    frames = []
    for i, line in enumerate(lines):
        m = _FRAME.match(line)
        if m:
            caret = next((ln for ln in lines[i + 2:i + 3] if set(ln.strip()) <= set("^~")
                          and ln.strip()), None)
            frames.append((m.group(1), int(m.group(2)), caret))
    user = [f for f in frames if not f[0].startswith(_LIBRARY_DIRS)]
    if not user:
        return fallback
    file, line, caret = user[-1]
    text = linecache.getline(file, line)
    indent = len(text) - len(text.lstrip())
    col = indent + 1
    if caret is not None:
        col = indent + len(caret) - len(caret.lstrip()) - 4 + 1  # tracebacks indent code by 4
    return Location(file, line, max(col, 1), layer)


def calling_user_frame() -> Location | None:
    """The innermost frame of the running Python stack outside torch and this package: the
    user's call that set off a compile (``model(x)`` under ``torch.compile``), for nodes
    whose own stack trace holds no user frame (an ``nn.Sequential`` model's)."""
    import inspect

    for info in inspect.stack(context=0)[1:]:
        if not info.filename.startswith(_LIBRARY_DIRS) and not info.filename.startswith("<"):
            return Location(info.filename, info.lineno, 1)
    return None


class ConvertContext:
    """State of one graph conversion: the builder, FX node -> IR value, the current node."""

    def __init__(self, builder: FuncBuilder) -> None:
        self.b = builder
        self.env: dict[fx.Node, Any] = {}
        self.node: fx.Node | None = None

    # --- reading FX arguments -----------------------------------------------------
    def value(self, arg: Any, element: str | None = None) -> Value:
        """The IR value of an FX argument; Python numbers become rank-0 constants."""
        if isinstance(arg, fx.Node):
            v = self.env[arg]
            if not isinstance(v, Value):
                raise self.unsupported(f"argument '{arg.name}' is not a tensor")
            return v
        if isinstance(arg, (bool, int, float)):
            return self.b.constant(arg, element or self.element())
        raise self.unsupported(f"argument {arg!r} is not a tensor or a number")

    def values(self, args: Sequence[Any]) -> list[Value]:
        return [self.value(a) for a in args]

    def meta(self, node: fx.Node | None = None) -> torch.Tensor:
        val = (node or self.node).meta.get("val")  # type: ignore[union-attr]
        if not isinstance(val, torch.Tensor):
            raise self.unsupported("a result is not a single tensor")
        return val

    def shape(self, node: fx.Node | None = None) -> tuple[int, ...]:
        return tuple(int(d) for d in self.meta(node).shape)

    def element(self, node: fx.Node | None = None) -> str:
        dtype = self.meta(node).dtype
        if dtype not in TORCH_ELEMENT:
            raise self.unsupported(f"element type {dtype} (the fabric model has f32, i64, i1)")
        return TORCH_ELEMENT[dtype]

    def type_of(self, node: fx.Node) -> TensorType:
        return TensorType(self.shape(node), self.element(node))

    # --- emitting -----------------------------------------------------------------------
    def emit(self, name: str, operands: Sequence[Value], **attrs: Any) -> Value:
        return self.b.op(name, operands, **attrs)[0]

    def emit_all(self, name: str, operands: Sequence[Value], **attrs: Any) -> list[Value]:
        return self.b.op(name, operands, **attrs)

    def const(self, value: Any, element: str = "f32") -> Value:
        return self.b.constant(np.asarray(value), element)

    # --- folding constants ------------------------------------------------------------
    def _constant_op(self, arg: fx.Node) -> Any:
        """The ``graph.constant`` op an FX node converted to, else None."""
        v = self.env.get(arg)
        op = v.defining_op if isinstance(v, Value) else None
        return op if op is not None and op.name == "graph.constant" else None

    def try_fold(self, node: fx.Node) -> Value | None:
        """Evaluate ``node`` on the host when it is foldable and all its tensor operands
        are constants; None otherwise."""
        val = node.meta.get("val")
        if node.target not in FOLDABLE or not isinstance(val, torch.Tensor) or val.numel() > FOLD_MAX:
            return None
        ops = {arg: self._constant_op(arg) for arg in node.all_input_nodes}
        if any(op is None for op in ops.values()):
            return None
        with unset_fake_temporarily():
            host = {arg: torch.from_numpy(np.array(op.attributes["value"].array))
                    .to(TORCH_DTYPE[op.attributes["value"].type.element]) for arg, op in ops.items()}
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: host[n])  # type: ignore[arg-type]
            result = node.target(*args, **kwargs)  # type: ignore[operator]
            if not isinstance(result, torch.Tensor) or result.dtype not in TORCH_ELEMENT:
                return None
            array = result.numpy()
        return self.const(array, TORCH_ELEMENT[result.dtype])

    def integer_arithmetic(self, what: str) -> UnsupportedOpError:
        """The refusal of ``what`` on an integer tensor that is not a constant (token ids
        a step takes): the fabric computes in fp32 and reads such inputs only one-hot."""
        return self.unsupported(
            f"{what} of an integer tensor (e.g. token ids) on the fabric: it computes in fp32 "
            "and takes integer step inputs only as they are (embedding indices, labels); "
            f"{what} them on the host before the step")

    def unsupported(self, reason: str = "") -> UnsupportedOpError:
        node = self.node
        op = str(node.target) if node is not None else "?"
        loc = self.b.loc
        code = linecache.getline(loc.file, loc.line).rstrip() if loc else None
        return UnsupportedOpError(op, loc, reason, code or None)


def _convert(ctx: ConvertContext, node: fx.Node) -> Any:
    """Run ``node``'s converter; an op it emits that the graph dialect rejects (operands
    of the wrong element type or shape) is a form of the ATen op with no lowering: an
    :class:`UnsupportedOpError` at the user's line, not an internal traceback."""
    try:
        return CONVERTERS[node.target](ctx, node)
    except (ShapeError, VerifyError) as err:
        raise ctx.unsupported(f"no graph-dialect lowering of this form ({err})") from None


def convert_graph(builder: FuncBuilder, gm: fx.GraphModule, inputs: Sequence[Value | None],
                  strip_prefix: str = "", default_loc: Location | None = None) -> list[Any]:
    """Emit ``gm``'s ops into ``builder``; ``inputs`` bind its placeholders in order.

    ``strip_prefix`` is the attribute of a capture wrapper that holds the user's model (left
    out of layer names); ``default_loc`` stands in for nodes with no user frame.

    Returns the IR values of the graph's outputs (None where the graph returns None).
    """
    ctx = ConvertContext(builder)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(inputs):
        raise RuntimeError(f"internal error: {len(placeholders)} placeholders, "
                           f"{len(inputs)} inputs")
    ctx.env.update(zip(placeholders, inputs))
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        builder.loc = source_location(node.meta.get("stack_trace"),
                                      layer_of(node, strip_prefix), default_loc)
        ctx.node = node
        if node.op == "output":
            return [ctx.env[a] if isinstance(a, fx.Node) else None for a in node.args[0]]
        if node.op == "get_attr":
            tensor = getattr(gm, str(node.target))
            with unset_fake_temporarily():
                array = tensor.detach().numpy()
            ctx.env[node] = ctx.const(array, TORCH_ELEMENT[tensor.dtype])
        elif node.op == "call_function" and node.target is operator.getitem:
            ctx.env[node] = ctx.env[node.args[0]][node.args[1]]
        elif node.op == "call_function" and (folded := ctx.try_fold(node)) is not None:
            ctx.env[node] = folded
        elif node.op == "call_function" and node.target in CONVERTERS:
            ctx.env[node] = _convert(ctx, node)
        else:
            raise ctx.unsupported("no graph-dialect lowering")
        out = ctx.env[node]
        if isinstance(out, Value) and out.name_hint is None and out.defining_op is not None:
            out.name_hint = node.name
    raise RuntimeError("internal error: FX graph without an output node")


from . import aten_ops_activations as _activations  # noqa: F401
from . import aten_ops_core as _core  # noqa: F401  (registers converters)
from . import aten_ops_logic as _logic  # noqa: F401
from . import aten_ops_nn as _nn  # noqa: F401
