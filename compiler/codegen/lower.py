"""Lowering of a verified ``graph.func`` to an ACF :class:`Program`, in named steps::

    low = begin(func, target, options)      # tiling T, memory plan, .tensor symbols
    for op in func: lower_op(low, id, op)   # per-cluster streams with tokens, barriers
    compiled = finish(low)                  # returned-argument copies, halt

The steps are public so the ``lower-to-acf`` pass can drive them from IR annotations.

Between two ops there is a ``barrier`` (the next op reads what this one stored); inside an
op, clusters work on disjoint output tiles, synchronized by tokens only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from acf.isa.program import Program, SourceLoc, gc_paused, make
from acf.isa.symbols import data_bytes
from acf.isa.target import Target

from ..interp import one_hot
from ..ir import FuncOp, Module, Operation, TensorType, Value
from .context import HyperTable, KernelContext, OpStats
from .errors import error_at
from .kernels import load_all, scratch_shapes
from .kernels.conv import CONV_OPS, read_guard_bytes
from .kernels.optim import packed_update_fits
from .memory import Buffer, MemoryPlan, dram_align, plan_memory
from .placement import row_spread
from .schedule import TokensExhausted, merge
from .tiling import Tiling, check_nm_tile, choose_tiling, tiler_choice

NO_CODE = ("graph.constant", "graph.return")
OPTIMIZERS = ("graph.sgd_update", "graph.adam_update")


@dataclass
class CompileOptions:
    """``tile``: force the tile side, or the GEMM tile sizes ``(m, n, k)`` (0 = the tiler's
    choice; ``codegen.tiling``); ``func``: which function;
    ``placement``: the output-tile placement function; by default consecutive tiles go to
    different rows, so their memory traffic enters through different row ports
    (docs/timing.md section 7) instead of all through row 0's. ``multicast``: kernels may
    load an operand tile that several clusters share once and ``bcast`` it (off: every
    cluster loads its own, for comparisons). ``wide_taps``: whether slab convs reduce
    over every tap in one ``mm`` (``kernels.conv_wide``): ``auto`` where their cost model
    prefers it, ``on`` wherever it applies, ``off`` never (one ``mm`` per tap)."""

    tile: int | tuple[int, int, int] = 0
    func: str | None = None
    placement: Callable = row_spread
    multicast: bool = True  # kernels may multicast shared operand tiles (codegen.multicast)
    wide_taps: str = "auto"  # slab convs and the wide-K kernel (kernels.conv_wide)

    def __post_init__(self) -> None:
        if self.wide_taps not in ("auto", "on", "off"):
            raise ValueError(f"wide_taps must be 'auto', 'on' or 'off', not {self.wide_taps!r}")


@dataclass
class CompiledProgram:
    """A program plus what the runtime needs to bind it.

    ``inputs``: argument symbol names in order; ``outputs``: ``result0..``; ``onehot``:
    integer inputs (labels, one_hot indices) the runtime passes as one-hot f32 ``[..., C]``; ``constants``: symbol ->
    array to place before running; ``hyper``: the layout of the ``hyper`` tensor;
    ``summary``: per-op instructions, MACs and DRAM bytes (dense-equivalent).
    """

    program: Program
    inputs: list[str]
    outputs: list[str]
    onehot: dict[str, int] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    hyper: HyperTable = field(default_factory=HyperTable)
    summary: list[OpStats] = field(default_factory=list)
    tiling: Tiling | None = None
    plan: MemoryPlan | None = None

    @property
    def symbols(self):
        return self.program.symbols

    def hyper_values(self, step: float | None = None, inputs: dict[str, np.ndarray] | None = None
                     ) -> np.ndarray:
        """The ``hyper`` tensor from the ops' attributes, with Adam's bias corrections at
        ``step``; without one, at the value of each Adam op's step operand in ``inputs``
        (1 when it is not there)."""
        out = np.zeros(max(self.hyper.size, 1), np.float32)
        for slot in self.hyper.slots:
            values = dict(zip(slot.names, slot.defaults))
            if "bias_correction1" in values:
                t = step
                if t is None and isinstance(slot.step_input, float):  # a constant step
                    t = slot.step_input
                elif t is None:
                    given = (inputs or {}).get(slot.step_input or "")
                    t = float(np.asarray(given).reshape(-1)[0]) if given is not None and np.size(given) else 1.0
                # the betas from their complements (exact in double for betas in [0.5, 1])
                values["bias_correction1"] = 1.0 - (1.0 - values["one_minus_beta1"]) ** t
                values["bias_correction2"] = 1.0 - (1.0 - values["one_minus_beta2"]) ** t
            out[slot.offset:slot.offset + len(slot.names)] = [values[n] for n in slot.names]
        return out

    def bind(self, args: list[np.ndarray], step: float | None = None) -> dict[str, np.ndarray]:
        """Runtime inputs by symbol name for positional ``args`` (labels become one-hot);
        ``step``: Adam's step for the bias corrections (default: the step operands' values).
        Every input is bound as f32, the fabric's one number type: an integer input is
        exact up to 2^24 in magnitude, as is integer arithmetic on it (see
        ``_integer_arithmetic_refusal``)."""
        inputs: dict[str, np.ndarray] = {}
        for name, value in zip(self.inputs, args):
            if name in self.onehot:
                try:
                    value = one_hot(value, self.onehot[name])
                except ValueError as exc:
                    raise ValueError(f"input {name!r}: {exc}") from None
            inputs[name] = np.asarray(value, np.float32)
        inputs.update(self.constants)
        if self.hyper.slots:
            inputs["hyper"] = self.hyper_values(step, inputs)
        return inputs


#: ops whose integer results the fabric's fp32 arithmetic gets wrong at any size: true
#: division (a mean divides its integer sum)
INTEGER_DIVISION = {"graph.div": "division", "graph.reduce_mean": "mean"}


def _integer_arithmetic_refusal(op: Operation) -> str | None:
    """Why ``op`` cannot run on integers, or None.

    The fabric holds every value in fp32: the runtime binds integer inputs as f32 and the
    kernels compute in fp32, so integers are exact up to 2^24 in magnitude (2^25 + 1
    doubled gives 67108864). Integer sums and products are accepted under that limit:
    training steps need them (the PyTorch frontend emits batch norm's
    ``num_batches_tracked + 1`` as an i64 graph.add), and their counters, ids and
    labels stay far below it. Division is refused: in fp32 it is true division, wrong
    for integers of any size (7 / 2 is 3.5 there, not 3)."""
    if not op.results or getattr(op.results[0].type, "element", "f32") == "f32":
        return None
    if op.name in INTEGER_DIVISION:
        return (f"integer {INTEGER_DIVISION[op.name]} ({op.results[0].type}): the fabric "
                "computes in fp32, where it is true division; no ACF kernel divides integers")
    return None


def _check_storage(where: Operation | FuncOp, v: Value) -> None:
    """A sparse encoding must name a storage format the memory plan can lay out."""
    from ..sparse_encoding import encoding_to_format

    enc = getattr(v.type, "encoding", None)
    if enc is None:
        return
    try:
        encoding_to_format(enc)
    except ValueError:
        name = f"'%{v.name_hint}'" if v.name_hint else "a value"
        raise error_at(where, f"{name} is stored as {enc}, which no ACF storage format "
                              "describes (dense, csr, csc, coo, bitmap, block-CSR, N:M)") from None


def source_loc(op: Operation, op_id: int) -> SourceLoc:
    if op.loc is not None:
        return SourceLoc(op.loc.file, op.loc.line, op.loc.layer or "", op_id)
    if op.pos is not None:
        return SourceLoc(op.pos.file, op.pos.line, "", op_id)
    return SourceLoc("", 0, "", op_id)


def _one_hot_inputs(func: FuncOp) -> dict[Value, int]:
    """Integer arguments the runtime passes one-hot (f32, one more dim of this many
    classes): cross entropy's labels and the indices of ``graph.one_hot``."""
    out: dict[Value, int] = {}
    for op in func.body.ops:
        if op.name in ("graph.cross_entropy", "graph.cross_entropy_backward"):
            labels, classes = op.operands[-1], op.operands[-2].type.shape[1]  # type: ignore[union-attr]
            what = "labels"
        elif op.name == "graph.one_hot":
            labels, classes = op.operands[0], int(op.attributes["classes"])  # type: ignore[arg-type]
            what = "one_hot indices"
        else:
            continue
        if labels.defining_op is not None:
            raise error_at(op, f"{what} must be a function argument (the runtime passes "
                               "them one-hot)")
        if out.get(labels, classes) != classes:
            raise error_at(op, f"'%{labels.name_hint}' is used one-hot with {out[labels]} and "
                               f"with {classes} classes")
        out[labels] = classes
    ret = func.return_op
    for v in (ret.operands if ret is not None else []):
        if v in out:
            raise error_at(ret, f"'%{v.name_hint}' is passed one-hot and cannot be returned "
                                "as it is (the caller has it)")
    one_hot_uses = ("graph.cross_entropy", "graph.cross_entropy_backward", "graph.one_hot")
    for op in func.body.ops:  # stored one-hot, the indices exist nowhere else
        if op.name not in one_hot_uses and op.name != "graph.return":
            for v in op.operands:
                if v in out:
                    raise error_at(op, f"'%{v.name_hint}' is passed one-hot (for its "
                                       "cross_entropy or one_hot use) and cannot also be read "
                                       "as values here; pass the indices a second time")
    return out


@dataclass
class Lowering:
    """A lowering in progress: what :func:`begin` decided and the program built so far."""

    func: FuncOp
    target: Target
    options: CompileOptions
    tiling: Tiling
    plan: MemoryPlan
    hyper: HyperTable
    hyper_buf: Buffer | None
    classes: dict[Value, int]
    constants: dict[str, np.ndarray]
    prog: Program
    summary: list[OpStats] = field(default_factory=list)
    #: multicast groups configured so far: rectangle (x0, y0, x1, y1) -> group id
    mcast_groups: dict[tuple[int, int, int, int], int] = field(default_factory=dict)


def begin(func: FuncOp, target: Target, options: CompileOptions) -> Lowering:
    """Step 1: tiling, kernel availability, the memory plan and the program's symbols."""
    kernels = load_all()
    try:
        tiling = (choose_tiling(target, options.tile) if options.tile
                  else tiler_choice(func, target, packed_update_fits))
    except ValueError as err:
        raise error_at(func, str(err)) from None
    for op in func.body.ops:
        if op.name not in kernels and op.name not in NO_CODE:
            raise error_at(op, f"no ACF kernel for '{op.name}' yet")
        refusal = _integer_arithmetic_refusal(op)
        if refusal:
            raise error_at(op, refusal)
        for v in (*op.operands, *op.results):
            if isinstance(v.type, TensorType) and 0 in v.type.shape:
                raise error_at(op, f"an empty tensor ({v.type}): the kernels "
                                   "need every dimension at least 1")
            _check_storage(op, v)
            check_nm_tile(op, v, tiling, options.tile)
    for v in func.arguments:
        _check_storage(func, v)
        check_nm_tile(func, v, tiling, options.tile)
        name = v.name_hint or f"arg{v.index}"
        if re.fullmatch(r"(result|const)\d+|hyper", name):
            raise error_at(func, f"argument '%{name}' takes a name the program gives its own "
                                 "tensors (result<i>, const<i>, hyper); rename it")
    classes = _one_hot_inputs(func)
    arg_shapes = {v: (*v.type.shape, c) for v, c in classes.items()}  # type: ignore[union-attr]
    extra: dict[str, tuple[int, ...]] = {}
    named: dict[Value, str] = {}
    constants: dict[str, np.ndarray] = {}
    for op in func.body.ops:
        if op.name == "graph.constant":
            name = f"const{len(constants)}"
            constants[name] = np.asarray(op.attributes["value"].array, np.float32)  # type: ignore[union-attr]
            extra[name] = op.result.type.shape  # type: ignore[union-attr]
            named[op.result] = name
    n_opt = sum(op.name in OPTIMIZERS for op in func.body.ops)
    hyper = HyperTable()
    if n_opt:
        extra["hyper"] = (n_opt * hyper.stride,)
    for v in func.arguments:
        if not isinstance(v.type, TensorType):
            raise error_at(func, f"argument '%{v.name_hint}' must be a tensor")
    plan = plan_memory(func, tiling.shape, extra, arg_shapes, named, scratch_shapes,
                       guard=read_guard_bytes(func), align=dram_align(target))
    if plan.top > int(target.dram.size_bytes):
        raise error_at(func, f"needs {plan.top} bytes of DRAM; {target.name} has "
                             f"{target.dram.size_bytes}")
    hyper_buf = Buffer(plan.symbols["hyper"].addr, (1, n_opt * hyper.stride)) if n_opt else None
    prog = Program(target=target.name, symbols=dict(plan.symbols))
    return Lowering(func, target, options, tiling, plan, hyper, hyper_buf, classes, constants,
                    prog)


def lower_op(low: Lowering, op_id: int, op: Operation, placement: Callable | None = None) -> None:
    """Step 2: one op's kernel, its phases separated by barriers (and a barrier before it
    when the program already has instructions: it may read what they stored)."""
    loc = source_loc(op, op_id)
    multicast = low.options.multicast
    while True:
        ctx = KernelContext(op, op_id, loc, low.target, low.tiling, low.plan.buffers, low.hyper,
                            placement or low.options.placement)
        ctx.hyper_buffer = low.hyper_buf  # type: ignore[attr-defined]
        ctx.scratch = (low.plan.scratch or {}).get(op_id, [])
        ctx.options = low.options
        ctx.multicast = multicast
        ctx.mcast_groups = dict(low.mcast_groups)
        load_all()[op.name](ctx)
        try:
            merged = [merge(phase) for phase in ctx.all_phases()]
            break
        except TokensExhausted:
            if not multicast:
                raise
            multicast = False  # the kernel again, every cluster loading its own tiles
    low.mcast_groups.update(ctx.mcast_groups)
    prog = low.prog
    start = len(prog.instructions)
    if ctx.new_groups:  # multicast groups the kernel uses, set up once for the program:
        # noc.mcast applies at its end, and the barrier before the kernel waits for it
        if prog.instructions:
            _append(prog, make("barrier"), loc)
        for (x0, y0, x1, y1), grp in ctx.new_groups:
            _append(prog, make("noc.mcast", grp=grp, x0=x0, y0=y0, x1=x1, y1=y1), loc)
    for phase in merged:
        if prog.instructions:
            _append(prog, make("barrier"), loc)
        for ins, where in phase:
            _append(prog, ins, where)
    ctx.stats.instructions = len(prog.instructions) - start
    low.summary.append(ctx.stats)


def finish(low: Lowering) -> CompiledProgram:
    """Step 3: copies of returned arguments, ``halt``, and what the runtime binds."""
    func, prog = low.func, low.prog
    _copy_returned_arguments(func, low.plan, low.target, low.tiling, low.hyper, prog,
                             low.summary, low.options)
    _append(prog, make("halt"), SourceLoc())
    outputs = [f"result{i}" for i in range(len(func.return_op.operands))] if func.return_op else []
    compiled = CompiledProgram(prog, [a.name_hint or f"arg{a.index}" for a in func.arguments],
                               outputs, {v.name_hint or "": c for v, c in low.classes.items()},
                               low.constants, low.hyper, low.summary, low.tiling, low.plan)
    # what the binary carries for a run without the runtime: the constants, and the
    # hyperparameters with Adam's bias corrections at a constant step operand's value, else
    # at step 1
    prog.data = {name: data_bytes(value) for name, value in low.constants.items()}
    if low.hyper.slots:
        prog.data["hyper"] = compiled.hyper_values().tobytes()
    return compiled


def compile_func(func: FuncOp, target: Target, options: CompileOptions) -> CompiledProgram:
    low = begin(func, target, options)
    for op_id, op in enumerate(func.body.ops):
        if op.name not in NO_CODE:
            lower_op(low, op_id, op)
    return finish(low)


def _append(prog: Program, ins, loc: SourceLoc) -> None:
    if loc != SourceLoc():
        prog.debug[len(prog.instructions)] = loc
    prog.instructions.append(ins)


def _copy_returned_arguments(func, plan, target, tiling, hyper, prog, summary, options) -> None:
    """A result that is an argument, a constant or returned twice is copied to its symbol."""
    from .kernels.elementwise import copy

    ret = func.return_op
    if ret is None:
        return
    for i, v in enumerate(ret.operands):
        dst_sym = plan.symbols[f"result{i}"]
        src = plan.buffers[v]
        if src.addr == dst_sym.addr:
            continue
        dst = Buffer(dst_sym.addr, dst_sym.shape, dst_sym.fmt,
                     dst_sym.tile if dst_sym.tile else (0, 0), dst_sym.name)
        if src.fmt != dst.fmt or src.tile != dst.tile:
            raise error_at(ret, f"result #{i} changes format on return; not supported")
        loc = source_loc(ret, len(func.body.ops) - 1)
        ctx = KernelContext(ret, len(func.body.ops) - 1, loc, target, tiling, plan.buffers,
                            hyper, options.placement)
        copy(ctx, src, dst)
        if prog.instructions:
            _append(prog, make("barrier"), loc)
        for ins, where in merge(ctx.streams):
            _append(prog, ins, where)


def _check_grouped_conv_storage(op: Operation, sparse: Value | None) -> None:
    """Refuse, at the user's op, a grouped convolution whose rewrite would slice a sparse
    operand: the user wrote the convolution, not the per-group slices it becomes."""
    if sparse is None:
        return
    from ..sparse_encoding import encoding_to_format

    name = f"'%{sparse.name_hint}'" if sparse.name_hint else f"operand #{op.operands.index(sparse)}"
    enc = sparse.type.encoding  # type: ignore[union-attr]
    try:
        stored = encoding_to_format(enc)
    except ValueError:
        stored = str(enc)
    raise error_at(op, "grouped convolutions need dense-stored operands, as ungrouped ones do "
                       f"(each group convolves a slice of them): {name} is stored {stored}")


def compile_module(module: Module, target: Target, options: CompileOptions | None = None
                   ) -> CompiledProgram:
    """Compile one function of a verified graph-dialect module for ``target``.

    Grouped convolutions are first split in place (the ``split-groups`` rewrite, which the
    default pipelines also run): the kernels are for ungrouped ones. So is an input
    gradient whose padding reaches past its kernel (:mod:`~acf.compiler.passes.conv_padding`),
    a binary op whose operands both broadcast (:mod:`~acf.compiler.passes.broadcast_operands`),
    a softmax over an axis other than the last (:mod:`~acf.compiler.passes.softmax_axis`)
    and average pooling that leaves the padding out of its divisor
    (:mod:`~acf.compiler.passes.pool_divisor`).

    Raises :class:`~acf.compiler.codegen.errors.CodegenError` (a located ``IRError``)
    for an op or shape the target cannot run.
    """
    from ..passes.base import apply_patterns
    from ..passes.broadcast_operands import BINARY, expand_first_operand
    from ..passes.conv_padding import narrow_wide_padding
    from ..passes.pool_divisor import POOLS, divide_by_covered
    from ..passes.softmax_axis import AXIS_OPS, move_axis_last
    from ..passes.split_groups import sparse_operand_to_slice, split_grouped_conv

    options = options or CompileOptions()
    if not module.funcs:
        raise error_at(Operation("graph.module", [], []), "module has no function")
    func = module.func(options.func) if options.func else module.funcs[0]
    if any(op.name in CONV_OPS for op in func.body.ops):
        for op in func.body.ops:
            _check_grouped_conv_storage(op, sparse_operand_to_slice(op))
        apply_patterns(func, [split_grouped_conv, narrow_wide_padding])
    if any(op.name in BINARY for op in func.body.ops):
        apply_patterns(func, [expand_first_operand])
    if any(op.name in AXIS_OPS for op in func.body.ops):
        apply_patterns(func, [move_axis_last])
    if any(op.name in POOLS for op in func.body.ops):
        apply_patterns(func, [divide_by_covered])
    with gc_paused():
        return compile_func(func, target, options)
