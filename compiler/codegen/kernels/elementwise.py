"""Elementwise kernels over ``vop``: unary functions, binary functions with numpy
broadcasting (row and column operands via ``bmode=row``/``col``, a per-channel vector of an
NCHW tensor as a column per image, one-element operands via a float register and
``bmode=freg``), ``relu_backward`` (``relu_bwd``), ``mask_apply``
(``mask``), and copies (``graph.reshape`` of a sparse value, a returned argument).
A broadcast operand stored in packed sparse tiles is first decoded into dense DRAM
scratch (its vector or element is not a packed tile of the result's grid); full-shape
operands beside a packed one are read in its 2-D view (dim 0 x the other dims).

Each output tile (at most T*T elements of the 2-D view ``leading dims x last dim``) is
loaded, transformed in place, and stored; slots are double-buffered::

    ld   sp[A] <- a tile         ld sp[B] <- b tile / row / column
    vop  add, sp[A], sp[A], sp[B], rows=.., cols=.., bmode=row
    st   sp[A] -> out tile
"""

from __future__ import annotations

import math

from ...ir import Operation, TensorType
from ...shape_rules import broadcast_role
from ..context import SCALAR_FREG, KernelContext, tiles_2d
from ..memory import Buffer
from ..tiling import vector_tile
from . import kernel, scratch

UNARY = {"graph.neg": "neg", "graph.exp": "exp", "graph.log": "log", "graph.abs": "abs",
         "graph.sqrt": "sqrt", "graph.rsqrt": "rsqrt", "graph.relu": "relu", "graph.gelu": "gelu",
         "graph.sigmoid": "sigmoid", "graph.tanh": "tanh"}
BINARY = {"graph.add": "add", "graph.sub": "sub", "graph.mul": "mul", "graph.div": "div",
          "graph.maximum": "max", "graph.minimum": "min",
          "graph.relu_backward": "relu_bwd", "graph.gelu_backward": "gelu_bwd",
          "graph.mask_apply": "mask"}
COMMUTATIVE = ("add", "mul", "max", "min")


def elementwise(ctx: KernelContext, fn: str, a: Buffer, b: Buffer | None, out: Buffer,
                roles: tuple[str, str] = ("tile", "tile"), then: str | None = None,
                addend: Buffer | None = None) -> None:
    """out = fn(a, b) tile by tile; ``roles[1]`` says how b broadcasts (a is a full tile);
    ``then``: a unary function applied before the store (a fused activation); ``addend``:
    a dense tensor shaped like b (a full tile) added to b first."""
    flat = roles[1] in ("tile", "scalar") or b is None
    if addend is not None and (roles[1] != "tile" or addend.sparse):
        raise ctx.error("a fused addend must be a dense operand of the result's shape")
    if flat and not any(x.sparse for x in (a, out) + ((b,) if b is not None else ())):
        # same-shape dense operands are contiguous: tiles of one flat row are single DRAM
        # runs (the 2-D view of a 3x3 conv weight has 12-byte rows, one burst each)
        n = math.prod(out.shape) if out.shape else 1
        a, out = Buffer(a.addr, (1, n)), Buffer(out.addr, (1, n))
        if b is not None and roles[1] == "tile":
            b = Buffer(b.addr, (1, n))
        if addend is not None:
            addend = Buffer(addend.addr, (1, n))
    else:
        a, b, out, addend = _in_packed_view(ctx, a, b, out, addend, roles[1])
    rows, cols = out.rows_cols
    images = 1
    if roles[1] == "channel":  # (images x C) rows of H*W: tiles stay within one image
        if out.sparse or a.sparse:
            raise ctx.error("a per-channel broadcast onto a sparse tensor is not supported")
        chans, plane = out.shape[-3], out.shape[-2] * out.shape[-1]
        images = math.prod(out.shape[:-3])
        a, out = Buffer(a.addr, (images * chans, plane)), Buffer(out.addr, (images * chans, plane))
        rows, cols = chans, plane
    b_packed = b is not None and roles[1] == "tile" and b.sparse
    if out.sparse or a.sparse or b_packed:  # a packed operand's tile grid sets the tiles
        tr, tc = out.tile if out.sparse else a.tile if a.sparse else b.tile  # type: ignore[union-attr]
    else:
        tr, tc = vector_tile(rows, cols, ctx.tiling)
    size = 4 * tr * tc
    a_slots = [ctx.alloc("sp", size) for _ in range(2)]
    b_slots = [ctx.alloc("sp", size if roles[1] == "tile" else 4 * max(tr, tc))
               for _ in range(2)] if b is not None else []
    c_slots = [ctx.alloc("sp", size) for _ in range(2)] if addend is not None else []
    scalar_slot = ctx.alloc("sp", 4) if roles[1] == "scalar" else None
    count = [0] * len(ctx.streams)
    tiles = [(i * rows + r0, c0, h, w) for i in range(images) for r0, c0, h, w in tiles_2d(rows, cols, tr, tc)]
    for cl, (r0, c0, h, w) in ctx.place(tiles):
        sa = a_slots[count[cl] % 2]
        ctx.load(cl, a, r0, c0, h, w, sa)
        if b is None:
            ctx.vop(cl, fn, sa, sa, h, w)
        else:
            sb = b_slots[count[cl] % 2]
            role = roles[1]
            if role == "tile":
                ctx.load(cl, b, r0, c0, h, w, sb)
                if addend is not None:
                    sc = c_slots[count[cl] % 2]
                    ctx.load(cl, addend, r0, c0, h, w, sc)
                    ctx.vop(cl, "add", sb, sb, h, w, sc)
                ctx.vop(cl, fn, sa, sa, h, w, sb)
            elif role == "row":
                ctx.load(cl, b, 0, c0, 1, w, sb)
                ctx.vop(cl, fn, sa, sa, h, w, sb, bmode="row")
            elif role == "col":
                ctx.load(cl, Buffer(b.addr, (rows, 1)), r0, 0, h, 1, sb)
                ctx.vop(cl, fn, sa, sa, h, w, sb, bmode="col")
            elif role == "channel":  # rows r0.. of image r0 // C: channels r0 % C..
                ctx.load(cl, Buffer(b.addr, (rows, 1)), r0 % rows, 0, h, 1, sb)
                ctx.vop(cl, fn, sa, sa, h, w, sb, bmode="col")
            else:
                assert scalar_slot is not None
                ctx.scalar_to_freg(cl, Buffer(b.addr, (1, 1)), scalar_slot)
                ctx.vop(cl, fn, sa, sa, h, w, bmode="freg", imm=float(SCALAR_FREG))
        if then is not None:
            ctx.vop(cl, then, sa, sa, h, w)
        count[cl] += 1
        ctx.store(cl, out, r0, c0, h, w, sa)


def _in_packed_view(ctx: KernelContext, a: Buffer, b: Buffer | None, out: Buffer,
                    addend: Buffer | None, role: str
                    ) -> tuple[Buffer, Buffer | None, Buffer, Buffer | None]:
    """The full-shape operands and result in the 2-D view of the packed sparse ones among
    them. Packed tiles cover dim 0 x the other dims (``Buffer.rows_cols``), a dense buffer
    the leading dims x the last: of a rank > 2 tensor these differ, and a dense operand
    read in its own view beside a packed one would read other elements than the packed
    one's (e.g. a dense 2x1x3x3 + 2x1x3x3 stored csr). Row-major, a dense buffer reads the
    same in any view."""
    full = [x for x in (a, out, addend, b if role == "tile" else None) if x is not None]
    views = {x.rows_cols for x in full if x.sparse}
    if not views:
        return a, b, out, addend
    if len(views) > 1:
        raise ctx.error("operands stored sparse with different packed views "
                        f"({' and '.join(f'{r}x{c}' for r, c in sorted(views))}) are not supported")
    (view,) = views
    rows = math.prod(out.shape[:-1]) if out.shape else 1
    if role in ("row", "col") and view[0] != rows:
        # a row (column) broadcasts along the last dim (the leading dims); the packed view
        # groups the dims differently
        raise ctx.error(f"a {'row' if role == 'row' else 'column'} broadcast onto a tensor "
                        f"of rank {len(out.shape)} stored sparse is not supported (its packed "
                        "tiles are dim 0 x the other dims)")

    def in_view(x: Buffer | None) -> Buffer | None:
        return x if x is None or x.sparse else Buffer(x.addr, view)

    return in_view(a), in_view(b) if role == "tile" else b, in_view(out), in_view(addend)  # type: ignore[return-value]


@kernel(*UNARY)
def unary(ctx: KernelContext) -> None:
    if ctx.op.name == "graph.gelu" and ctx.attrs["approximate"] == "tanh":
        gelu_tanh(ctx, ctx.ins[0], None, ctx.outs[0])
        return
    elementwise(ctx, UNARY[ctx.op.name], ctx.ins[0], None, ctx.outs[0])


def _packed_broadcast_operands(op: Operation) -> list[int]:
    """Indices of the (first two) operands stored in packed sparse tiles that broadcast
    against the result (row, column, channel or one element). The broadcast loads read a
    vector or one element at offsets of the result's tile grid, which are not packed tiles
    of the operand: such an operand is decoded to dense DRAM scratch first."""
    out = op.results[0].type
    found = []
    for i, v in enumerate(op.operands[:2]):
        t = v.type
        if isinstance(t, TensorType) and isinstance(out, TensorType) and t.encoding is not None \
                and broadcast_role(t.shape, out.shape) != "tile":
            found.append(i)
    return found


@scratch(*BINARY)
def _binary_scratch(op: Operation) -> list[tuple[int, ...]]:
    return [op.operands[i].type.shape for i in _packed_broadcast_operands(op)]  # type: ignore[union-attr]


def decode_broadcast_operands(ctx: KernelContext) -> list[Buffer]:
    """The op's operand buffers, with each packed broadcast operand decoded into its dense
    scratch (then a barrier: the kernel reads what the decode stored)."""
    ins = ctx.ins
    packed = _packed_broadcast_operands(ctx.op)
    for i, dense in zip(packed, ctx.scratch):
        src = ins[i]
        # the packed tiles cover the operand's own 2-D view (dim 0 x the others): decode
        # into the same view of the row-major scratch, then read it with the operand's shape
        copy(ctx, src, Buffer(dense.addr, src.rows_cols))
        ins[i] = Buffer(dense.addr, src.shape)
    if packed:
        ctx.barrier()
    return ins


@kernel(*BINARY)
def binary(ctx: KernelContext) -> None:
    fn = BINARY[ctx.op.name]
    ins = decode_broadcast_operands(ctx)
    if ctx.op.name == "graph.gelu_backward" and ctx.attrs["approximate"] == "tanh":
        gelu_tanh(ctx, ins[1], ins[0], ctx.outs[0])
        return
    a, b = ins[:2]
    addend = ins[2] if len(ins) > 2 else None  # relu_backward's fused sum
    out = ctx.outs[0]
    if ctx.op.name == "graph.gelu_backward":  # vop gelu_bwd(a = x, b = grad)
        a, b = b, a
    if ctx.op.name == "graph.relu_backward":  # relu_bwd: b where a > 0, a = x
        a, b = b, a
        if addend is not None:
            elementwise(ctx, fn, a, b, out, addend=addend)
            return
    # a fused activation (fuse-activations; graph.add only) runs before each tile's store
    then = "relu" if "activation" in ctx.attrs and ctx.attrs["activation"] == "relu" else None
    ra, rb = broadcast_role(a.shape, out.shape), broadcast_role(b.shape, out.shape)
    if ra == "tile":
        if rb == "other":
            raise ctx.error(f"broadcast of {list(b.shape)} to {list(out.shape)} is not supported")
        elementwise(ctx, fn, a, b, out, ("tile", rb), then)
        return
    if rb != "tile" or ra == "other":
        raise ctx.error(f"broadcast of {list(a.shape)} and {list(b.shape)} to "
                        f"{list(out.shape)} is not supported")
    if fn in COMMUTATIVE:
        elementwise(ctx, fn, b, a, out, ("tile", ra), then)
    elif fn == "sub":  # a - b = -(b - a)
        elementwise(ctx, "sub", b, a, out, ("tile", ra))
        elementwise_inplace(ctx, "neg", out)
    elif fn == "div":  # a / b = a * (1 / b)
        elementwise(ctx, "recip", b, None, out)
        elementwise_inplace(ctx, "mul", out, a, ra)
    else:
        raise ctx.error(f"'{fn}' with a broadcast first operand is not supported")


def elementwise_inplace(ctx: KernelContext, fn: str, out: Buffer, b: Buffer | None = None,
                        role: str = "tile") -> None:
    """A second pass over ``out``, after a barrier (it reads what the first pass stored)."""
    ctx.barrier()
    elementwise(ctx, fn, out, b, out, ("tile", role))


@kernel("graph.reshape", "graph.one_hot")
def reshape(ctx: KernelContext) -> None:
    """A reshape, or a one-hot of indices stored one-hot: no code where the memory plan
    aliased the result to the operand, else a copy (e.g. into a function result)."""
    a, out = ctx.ins[0], ctx.outs[0]
    if a.addr == out.addr:
        return  # aliased by the memory plan: no code
    if a.sparse or out.sparse:
        raise ctx.error("reshape of a sparse tensor is not supported")
    copy(ctx, Buffer(a.addr, out.shape), out)


def copy(ctx: KernelContext, src: Buffer, dst: Buffer) -> None:
    """dst = src through the scratchpad (``vop copy`` is not needed: ld then st); the tiles
    follow a packed side's grid (``ld`` decodes, ``st`` encodes whole packed tiles)."""
    rows, cols = dst.rows_cols
    tr, tc = dst.tile if dst.sparse else src.tile if src.sparse else vector_tile(rows, cols, ctx.tiling)
    slots = [ctx.alloc("sp", 4 * tr * tc) for _ in range(2)]
    count = [0] * len(ctx.streams)
    for cl, (r0, c0, h, w) in ctx.place(tiles_2d(rows, cols, tr, tc)):
        s = slots[count[cl] % 2]
        count[cl] += 1
        ctx.load(cl, src, r0, c0, h, w, s)
        ctx.store(cl, dst, r0, c0, h, w, s)


GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = 0.044715


def gelu_tanh(ctx: KernelContext, x: Buffer, g: Buffer | None, out: Buffer) -> None:
    """tanh-approximate GELU (``g`` None) or its backward ``g * d gelu/dx``, in fp32 vops:
    t = tanh(c (x + a x^3)); gelu = x (1 + t) / 2;
    d/dx = (1 + t) / 2 + x (1 - t^2) c (1 + 3 a x^2) / 2."""
    if any(b is not None and b.sparse for b in (x, g, out)):
        raise ctx.error("GELU of sparse tensors is not supported")
    rows, cols = out.rows_cols
    tr, tc = vector_tile(rows, cols, ctx.tiling)
    names = ("x", "u", "t") + (("v", "g") if g is not None else ())
    s = {k: ctx.alloc("sp", 4 * tr * tc) for k in names}
    X, U, T = s["x"], s["u"], s["t"]
    for cl, (r0, c0, h, w) in ctx.place(tiles_2d(rows, cols, tr, tc)):
        ctx.load(cl, x, r0, c0, h, w, X)
        v = lambda fn, d, a, b=None, **kw: ctx.vop(cl, fn, d, a, h, w, b, **kw)
        v("square", U, X)
        v("mul", T, U, bmode="imm", imm=GELU_A)
        v("add", T, T, bmode="imm", imm=1.0)
        v("mul", T, T, X)
        v("mul", T, T, bmode="imm", imm=GELU_C)
        v("tanh", T, T)
        if g is None:
            v("add", T, T, bmode="imm", imm=1.0)
            v("mul", T, T, X)
            v("mul", T, T, bmode="imm", imm=0.5)
            ctx.store(cl, out, r0, c0, h, w, T)
            continue
        V, G = s["v"], s["g"]
        ctx.load(cl, g, r0, c0, h, w, G)
        v("mul", U, U, bmode="imm", imm=3 * GELU_A)
        v("add", U, U, bmode="imm", imm=1.0)
        v("mul", U, U, bmode="imm", imm=GELU_C)
        v("mul", U, U, X)
        v("square", V, T)
        v("neg", V, V)
        v("add", V, V, bmode="imm", imm=1.0)
        v("mul", U, U, V)
        v("add", T, T, bmode="imm", imm=1.0)
        v("add", U, U, T)
        v("mul", U, U, bmode="imm", imm=0.5)
        v("mul", U, U, G)
        ctx.store(cl, out, r0, c0, h, w, U)
