"""Optimizer kernels: ``graph.sgd_update`` (``sgd``) and ``graph.adam_update`` (``adam``).

Hyperparameters are never immediates: each optimizer op owns 8 floats of the ``hyper``
DRAM tensor, which the runtime fills (so changing lr, or Adam's step, never recompiles; the
bias corrections come from the value of the op's step operand, computed in double precision
on the host as torch does);
each cluster loads them into fr0.. with ``fld``. Layouts (see ``CompiledProgram.hyper``):
sgd ``lr, momentum, dampening(0), weight_decay``; adam ``lr, 1 - beta1, 1 - beta2, eps,
weight_decay, 1 - beta1**step, 1 - beta2**step`` (the betas' complements: see the ``adam``
instruction).

A trailing mask operand masks the new parameter before it is stored. Without one, a
parameter with a sparse encoding keeps its pattern: after the update, the new parameter
and buffers are selected back to their old values where the old parameter is zero
(``vop mask`` against a copy of the old parameter). With one, the mask decides, encoded
parameter or not: a weight the mask holds but whose value is zero (a connection just grown,
at zero) is updated too. Sparse operands are updated tile by tile of their packed tiles.
"""

from __future__ import annotations

from acf.isa.symbols import as_2d_shape

from ...graph_nn_ops import keeps_pattern, update_mask
from ..context import SLOT_ALIGN, KernelContext, tiles_2d
from ..memory import Buffer
from ..schedule import Slot
from ..tiling import vector_tile
from . import kernel

SGD = ("lr", "momentum", "dampening", "weight_decay")
#: Adam's registers hold 1 - beta (isa.semantics adam: the betas' complements, rounded once)
ADAM = ("lr", "one_minus_beta1", "one_minus_beta2", "eps", "weight_decay", "bias_correction1",
        "bias_correction2")


def _load_hyper(ctx: KernelContext, cl: int, hyper: Buffer, offset: int, n: int,
                slot: Slot) -> None:
    ctx.load(cl, hyper, 0, offset, 1, n, slot)
    for i in range(n):
        ctx.emit(cl, "fld", reads=(slot,), fd=i, src=slot.ref(4 * i))


def _keep_pattern(ctx: KernelContext, cl: int, p0: Slot, news: list[Slot], olds: list[Slot],
                  tmp: Slot, h: int, w: int) -> None:
    """new <- where(p0 != 0, new, old) for each (new, old) pair."""
    for new, old in zip(news, olds):
        ctx.vop(cl, "mask", new, new, h, w, p0)
        if old is None:
            continue
        ctx.vop(cl, "mask", tmp, old, h, w, p0)
        ctx.vop(cl, "sub", old, old, h, w, tmp)
        ctx.vop(cl, "add", new, new, h, w, old)


def _step_input(ctx: KernelContext) -> str | float | None:
    """Adam's step operand: the name of the function argument holding it (``bind`` reads
    its value for the bias corrections the host computes), or its value when a constant;
    None for SGD. A step computed in the graph is an error: the host could not know it."""
    if ctx.op.name != "graph.adam_update":
        return None
    step = ctx.op.operands[4]
    op = step.defining_op
    if op is None:
        return step.name_hint or f"arg{step.index}"
    if op.name == "graph.constant":
        return float(op.attributes["value"].array.reshape(-1)[0])  # type: ignore[union-attr]
    raise ctx.error("the step operand must be a function argument or a constant: Adam's "
                    "bias corrections are computed on the host from its value, not on the fabric")


def slots_per_tile(states: int, keep_pattern: bool, masked: bool) -> int:
    """Scratchpad tiles one slot set of an update allocates: param, gradient and states;
    where the pattern is kept the old param, the old states and a temporary; the mask."""
    return (2 + states) * (2 if keep_pattern else 1) + int(masked)


def packed_update_fits(op, t: int, spad_bytes: int) -> bool:
    """Whether an update over packed ``t x t`` tiles (whole tiles: a packed tile loads at
    once) fits the scratchpad; dense updates pick tiles that fit."""
    if op.name not in ("graph.sgd_update", "graph.adam_update"):
        return True
    packed = any(getattr(v.type, "encoding", None) is not None for v in (*op.operands, *op.results))
    if not packed:
        return True
    masked = update_mask(op) is not None
    keep = keeps_pattern(op)
    states = 1 if op.name == "graph.sgd_update" else 2
    names = SGD if op.name == "graph.sgd_update" else ADAM

    def aligned(n: int) -> int:  # as the kernel's allocator rounds its slots
        return -(-max(n, 4) // SLOT_ALIGN) * SLOT_ALIGN

    return (slots_per_tile(states, keep, masked) * aligned(4 * t * t)
            + aligned(4 * len(names)) <= spad_bytes)


HYPER_SLOT_BYTES = 4096  # the hyperparameter slot and alignment the kernel keeps aside


def _matrix_view(b: Buffer) -> Buffer:
    """``b`` as the 2-D matrix its packed tiles (if sparse) cover."""
    return b if len(b.shape) == 2 else Buffer(b.addr, as_2d_shape(b.shape), b.fmt, b.tile, b.name)


def _update(ctx: KernelContext, mnemonic: str, names: tuple[str, ...],
            defaults: tuple[float, ...], hyper: Buffer) -> None:
    param = ctx.ins[0]
    states = ctx.ins[2:2 + (1 if mnemonic == "sgd" else 2)]
    grad = ctx.ins[1]
    mask = ctx.ins[-1] if update_mask(ctx.op) is not None else None
    packed = {b.tile for b in (param, grad, *states, *ctx.outs, mask) if b is not None and b.sparse}
    if len(packed) > 1:
        raise ctx.error(f"the sparse operands of an update must share one packed tile, got "
                        f"{sorted(packed)}")
    if not packed:
        # dense tensors are contiguous: tiles of one flat row move as single DRAM runs
        # (a conv weight's 2-D view has 3-element rows: 12-byte runs, one burst each)
        n = param.rows_cols[0] * param.rows_cols[1]
        param, grad, *states = (Buffer(b.addr, (1, n)) for b in (param, grad, *states))
        outs = [Buffer(b.addr, (1, n)) for b in ctx.outs]
        mask = Buffer(mask.addr, (1, n)) if mask is not None else None
    else:  # every operand in the sparse ones' matrix view (dim 0 x the others), whose
        # packed tiles the loop follows: a dense one of higher rank is reshaped to it
        param, grad, *states = (_matrix_view(b) for b in (param, grad, *states))
        outs = [_matrix_view(b) for b in ctx.outs]
        mask = _matrix_view(mask) if mask is not None else None
    offset = ctx.hyper.add(ctx.op_id, ctx.op.name, names, defaults, _step_input(ctx))
    rows, cols = param.rows_cols
    sparse = param.sparse and mask is None  # the parameter's pattern is kept (no mask decides)
    # the slot sets are sized with one tile of margin where the pattern is kept
    per_set = slots_per_tile(len(states), sparse, mask is not None) + int(sparse)
    if packed:
        tr, tc = next(iter(packed))
    else:  # two slot sets fit: loads of the next tile overlap the stores of this one
        tr, tc = vector_tile(rows, cols, ctx.tiling)
        most = (ctx.tiling.spad_bytes - HYPER_SLOT_BYTES) // (2 * 4 * per_set)
        tc = max(1, min(tc, most))
        tr = max(1, min(tr, most // tc))
    size = 4 * tr * tc
    hslot = ctx.alloc("sp", 4 * len(names))
    nsets = 2 if 2 * per_set * size + HYPER_SLOT_BYTES <= ctx.tiling.spad_bytes else 1
    sets = []
    for _ in range(nsets):
        sp, sg, ss = ctx.alloc("sp", size), ctx.alloc("sp", size), [ctx.alloc("sp", size) for _ in states]
        extra = (ctx.alloc("sp", size), [ctx.alloc("sp", size) for _ in states], ctx.alloc("sp", size)) \
            if sparse else (None, [], None)
        sets.append((sp, sg, ss, *extra, ctx.alloc("sp", size) if mask is not None else None))
    loaded: set[int] = set()
    count = [0] * len(ctx.streams)
    for cl, (r0, c0, h, w) in ctx.place(tiles_2d(rows, cols, tr, tc)):
        sp, sg, ss, p0, olds, tmp, sm = sets[count[cl] % nsets]
        count[cl] += 1
        if cl not in loaded:
            loaded.add(cl)
            _load_hyper(ctx, cl, hyper, offset, len(names), hslot)
        ctx.load(cl, param, r0, c0, h, w, sp)
        ctx.load(cl, grad, r0, c0, h, w, sg)
        for buf, slot in zip(states, ss):
            ctx.load(cl, buf, r0, c0, h, w, slot)
        if sparse:
            ctx.vop(cl, "copy", p0, sp, h, w)
            for slot, old in zip(ss, olds):
                ctx.vop(cl, "copy", old, slot, h, w)
        ref = {"w": sp.ref(), "g": sg.ref(), "n": h * w, "fr": 0}
        if mnemonic == "sgd":
            ref["mom"] = ss[0].ref()
            ref["nesterov"] = int(bool(ctx.attrs["nesterov"]))
        else:
            ref["m1"], ref["m2"] = ss[0].ref(), ss[1].ref()
        ctx.emit(cl, mnemonic, reads=(sp, sg, *ss), writes=(sp, *ss), **ref)
        if sparse:
            _keep_pattern(ctx, cl, p0, [sp, *ss], [None, *olds], tmp, h, w)  # type: ignore[list-item]
        if mask is not None:  # the new param is written masked
            ctx.load(cl, mask, r0, c0, h, w, sm)
            ctx.vop(cl, "mask", sp, sp, h, w, sm)
        for buf, slot in zip(outs, [sp, *ss]):
            ctx.store(cl, buf, r0, c0, h, w, slot)


@kernel("graph.sgd_update")
def sgd_update(ctx: KernelContext, hyper: Buffer | None = None) -> None:
    a = ctx.attrs
    defaults = (float(a["lr"]), float(a["momentum"]), 0.0, float(a["weight_decay"]))  # type: ignore[arg-type]
    _update(ctx, "sgd", SGD, defaults, ctx.hyper_buffer)  # type: ignore[attr-defined]


@kernel("graph.adam_update")
def adam_update(ctx: KernelContext) -> None:
    a = ctx.attrs
    lr, b1, b2, eps, wd = (float(a[k]) for k in ("lr", "beta1", "beta2", "eps", "weight_decay"))  # type: ignore[arg-type]
    _update(ctx, "adam", ADAM, (lr, 1.0 - b1, 1.0 - b2, eps, wd, 0.0, 0.0), ctx.hyper_buffer)  # type: ignore[attr-defined]
