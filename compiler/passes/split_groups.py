"""``split-groups``: rewrite grouped convolutions (``groups > 1``) and their two backward
forms into ops the code generator has kernels for.

* **Depthwise** (one input and one output channel per group, as in MobileNet): a sum over
  the kernel's taps of a strided window of the (zero-padded) input times that tap's
  per-channel weight, all vector-unit work (a depthwise layer has no reduction over
  channels for the MAC array to do). The input gradient scatters each tap's product back
  (``slice_backward``), the weight gradient reduces each tap's product over the batch and
  the pixels.
* **Other groups** (ResNeXt-style): one convolution per group on channel slices, the
  results concatenated along the channels (or, for the weight gradient, the output
  channels).

Before (a depthwise 3x3)::

    %y = graph.conv2d %x, %w {stride = [1, 1], padding = [1, 1], dilation = [1, 1], groups = 4}
        : tensor<2x4x5x5xf32>, tensor<4x1x3x3xf32> -> tensor<2x4x5x5xf32>

After: ``%xp = graph.slice_backward %x`` (the padded input), then per tap ``(i, j)``
``graph.slice %xp`` (the 5x5 window at ``(i, j)``) times ``graph.reshape`` of
``graph.slice %w`` (the tap, shaped 1x4x1x1), summed with ``graph.add``.

Runs first in the default pipelines (so the IR after them shows it), and ``compile_module``
applies the same rewrite to whatever grouped convolution is left, since the conv kernels
are for ungrouped ones; the interpreter gives the same results before and after (up to
the order of the tap sum's additions).
"""

from __future__ import annotations

from ..dialect import attrs_of
from ..ir import Module, Operation, Value
from .base import ModulePass, OpEmitter, apply_patterns

CONVS = ("graph.conv2d", "graph.conv2d_backward_input", "graph.conv2d_backward_weight")


class SplitGroups(ModulePass):
    """Rewrite grouped ``graph.conv2d`` ops (and their backward forms) as taps (depthwise)
    or one ungrouped convolution per group."""

    name = "split-groups"

    def run(self, module: Module) -> None:
        for func in module.funcs:
            apply_patterns(func, [split_grouped_conv])


def split_grouped_conv(op: Operation) -> list[Value] | None:
    if op.name not in CONVS or int(attrs_of(op)["groups"]) == 1:  # type: ignore[arg-type]
        return None
    e = OpEmitter(op)
    kind = op.name.removeprefix("graph.")
    if kind == "conv2d":
        x, w = op.operands[0], op.operands[1]
        bias = op.operands[2] if len(op.operands) > 2 else None
    elif kind == "conv2d_backward_input":
        g, w = op.operands
        x = None
    else:  # a mask operand samples the weight gradient (a dense one per group, a sparse one after)
        g, x = op.operands[0], op.operands[1]
        w = None
    mask = op.operands[2] if kind == "conv2d_backward_weight" and len(op.operands) > 2 else None
    groups = int(attrs_of(op)["groups"])  # type: ignore[arg-type]
    xs = tuple(x.type.shape) if x is not None else tuple(op.attributes["input_shape"])  # type: ignore[union-attr, arg-type]
    ws = tuple(w.type.shape) if w is not None else tuple(op.attributes["weight_shape"])  # type: ignore[union-attr, arg-type]
    depthwise = ws[1] == 1 and ws[0] == xs[1] == groups
    if depthwise:
        geo = _Geometry(op, xs, ws)
        if kind == "conv2d":
            return [_dw_forward(e, geo, x, w, bias)]
        if kind == "conv2d_backward_input":
            return [_dw_backward_input(e, geo, g, w)]
        out = _dw_backward_weight(e, geo, g, x)
    elif mask is not None and _stored_dense(mask):
        # each group's gradient is sampled by its slice of the mask (the kernel then skips
        # what the mask drops, as an ungrouped one does)
        return [_split(e, op, kind, groups, xs, ws, mask)]
    else:  # a packed mask is not sliced (codegen slices dense tensors only): applied after
        out = _split(e, op, kind, groups, xs, ws)
    return [e("graph.mask_apply", out, mask) if mask is not None else out]


def sparse_operand_to_slice(op: Operation) -> Value | None:
    """The first operand of a grouped convolution that the rewrite slices (per group, per
    tap, or padded) although it is stored sparse; codegen slices dense tensors only, so such
    a convolution cannot compile. A weight gradient's packed mask is not sliced: it is
    applied to the whole gradient."""
    if op.name not in CONVS or int(attrs_of(op)["groups"]) == 1:  # type: ignore[arg-type]
        return None
    operands = op.operands[:2] if op.name == "graph.conv2d_backward_weight" else op.operands
    return next((v for v in operands if not _stored_dense(v)), None)


def _stored_dense(v: Value) -> bool:
    return getattr(v.type, "encoding", None) is None


class _Geometry:
    def __init__(self, op: Operation, xs: tuple, ws: tuple) -> None:
        a = attrs_of(op)
        self.n, self.c, self.h, self.w = xs
        self.kh, self.kw = ws[2], ws[3]
        self.sh, self.sw = (int(v) for v in a["stride"])  # type: ignore[union-attr]
        self.ph, self.pw = (int(v) for v in a["padding"])  # type: ignore[union-attr]
        self.dh, self.dw = (int(v) for v in a["dilation"])  # type: ignore[union-attr]
        self.hp, self.wp = self.h + 2 * self.ph, self.w + 2 * self.pw
        self.oh = (self.hp - self.dh * (self.kh - 1) - 1) // self.sh + 1
        self.ow = (self.wp - self.dw * (self.kw - 1) - 1) // self.sw + 1

    @property
    def taps(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.kh) for j in range(self.kw)]

    def window(self, e: OpEmitter, xp: Value, i: int, j: int) -> Value:
        """The input pixels tap (i, j) meets, shaped like the output."""
        return e.slice(xp, [0, 0, i * self.dh, j * self.dw], [self.n, self.c, self.oh, self.ow],
                       [1, 1, self.sh, self.sw])

    def tap_weight(self, e: OpEmitter, w: Value, i: int, j: int) -> Value:
        """Tap (i, j) of every channel's kernel, shaped to broadcast over N, H and W."""
        return e("graph.reshape", e.slice(w, [0, 0, i, j], [self.c, 1, 1, 1]),
                 shape=[1, self.c, 1, 1])

    def padded(self, e: OpEmitter, x: Value) -> Value:
        if not (self.ph or self.pw):
            return x
        return e("graph.slice_backward", x, shape=[self.n, self.c, self.hp, self.wp],
                 offsets=[0, 0, self.ph, self.pw], strides=[1, 1, 1, 1])


def _dw_forward(e: OpEmitter, geo: _Geometry, x: Value, w: Value, bias: Value | None) -> Value:
    xp = geo.padded(e, x)
    acc = None
    for i, j in geo.taps:
        term = e("graph.mul", geo.window(e, xp, i, j), geo.tap_weight(e, w, i, j))
        acc = term if acc is None else e("graph.add", acc, term)
    assert acc is not None
    if bias is not None:
        acc = e("graph.add", acc, e("graph.reshape", bias, shape=[1, geo.c, 1, 1]))
    return acc


def _dw_backward_input(e: OpEmitter, geo: _Geometry, g: Value, w: Value) -> Value:
    acc = None
    for i, j in geo.taps:
        term = e("graph.slice_backward", e("graph.mul", g, geo.tap_weight(e, w, i, j)),
                 shape=[geo.n, geo.c, geo.hp, geo.wp], offsets=[0, 0, i * geo.dh, j * geo.dw],
                 strides=[1, 1, geo.sh, geo.sw])
        acc = term if acc is None else e("graph.add", acc, term)
    assert acc is not None
    if geo.ph or geo.pw:
        acc = e.slice(acc, [0, 0, geo.ph, geo.pw], [geo.n, geo.c, geo.h, geo.w])
    return acc


def _dw_backward_weight(e: OpEmitter, geo: _Geometry, g: Value, x: Value) -> Value:
    xp = geo.padded(e, x)
    taps = [e("graph.reshape",
              e("graph.reduce_sum", e("graph.mul", g, geo.window(e, xp, i, j)), axes=[0, 2, 3],
                keepdim=False),
              shape=[geo.c, 1])
            for i, j in geo.taps]
    per_channel = taps[0] if len(taps) == 1 else e("graph.concat", *taps, axis=1)
    return e("graph.reshape", per_channel, shape=[geo.c, 1, geo.kh, geo.kw])


def _split(e: OpEmitter, op: Operation, kind: str, groups: int, xs: tuple, ws: tuple,
           mask: Value | None = None) -> Value:
    """One ungrouped convolution per group on channel slices, concatenated; ``mask``: the
    weight gradient's mask, sliced per group like the gradient (its output channels)."""
    attrs = {k: attrs_of(op)[k] for k in ("stride", "padding", "dilation")}
    attrs["groups"] = 1
    n, _, h, w_ = xs
    o, cg = ws[0], ws[1]
    og = o // groups

    def chans(v: Value, first: int, count: int, axis: int = 1) -> Value:
        shape = list(v.type.shape)  # type: ignore[union-attr]
        offsets = [0] * len(shape)
        offsets[axis], shape[axis] = first, count
        return e.slice(v, offsets, shape)

    parts = []
    for k in range(groups):
        if kind == "conv2d":
            x, w = op.operands[0], op.operands[1]
            operands = [chans(x, k * cg, cg), chans(w, k * og, og, axis=0)]
            if len(op.operands) > 2:
                operands.append(chans(op.operands[2], k * og, og, axis=0))
            parts.append(e("graph.conv2d", *operands, **attrs))
        elif kind == "conv2d_backward_input":
            g, w = op.operands
            parts.append(e("graph.conv2d_backward_input", chans(g, k * og, og),
                           chans(w, k * og, og, axis=0), input_shape=[n, cg, h, w_], **attrs))
        else:
            g, x = op.operands[:2]
            operands = [chans(g, k * og, og), chans(x, k * cg, cg)]
            if mask is not None:
                operands.append(chans(mask, k * og, og, axis=0))
            parts.append(e("graph.conv2d_backward_weight", *operands,
                           weight_shape=[og, cg, ws[2], ws[3]], **attrs))
    return e("graph.concat", *parts, axis=0 if kind == "conv2d_backward_weight" else 1)
