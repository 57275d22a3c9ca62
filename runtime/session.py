"""The runtime session: compile training-step modules, bind data and masks, run steps.

::

    from acf.runtime import Session, SessionOptions
    sess = Session("acf-small", SessionOptions(grad_variants=("sddmm", "dense")))
    sess.load(ir_text, carry={"result3": "w", "result4": "buf"})   # compiles both variants
    sess.bind_mask("w", mask)                  # MaskBinder protocol: a mask is data
    res = sess.run_step({"x": x, "w": w, "gy": gy, "buf": buf})
    res.outputs["result2"], res.report.total_cycles, res.report.by_kind["wgrad_sddmm"]
    res = sess.run_step({"x": x2, "gy": gy2}, dense_grad=True)   # w, buf carried over
    assert sess.compile_count == 2

Programs are cached by (IR text hash, target config hash, pipeline, tile, variant); see
:mod:`acf.runtime.variants` for what a variant is. Masks, weights, hyperparameters and
labels are data: changing them never recompiles. The one runtime-initiated recompilation
is *re-specialization*: when the measured density of a masked weight crosses a density band
(:mod:`acf.runtime.formats`), the storage format of that weight is re-chosen and that one
variant is compiled once (recorded in ``report.respecialized``).

A mask that differs from the previous step's is also costed: the session emulates a small
mask-update program (each changed weight brought to its new mask in the format it was
stored in, and written in its new format when the new mask's density re-specializes it;
its optimizer state, as the previous step left it, zeroed where the mask grows a
connection),
compiled once per set of changed weights and logged in ``compile_log`` (``reason``
``"mask-update"``; ``compile_count`` counts the step programs only), and reports it in
``report.mask_update``, apart from the step; :meth:`Session.cost_mask_update` gives the
same figure ahead of the step.

A mask bound over another one follows the sparsity algorithms' contract: the connections it
turns active start from zero, weight and optimizer state (:meth:`Session.bind_mask`).

The arrays a step hands back (``StepResult``) are the caller's: the results carried to the
next step are copied, so editing them in place changes nothing in the session.

Only a 2-D weight (a linear layer's) changes format: the conv kernels read their weights
dense, so a conv kernel (4-D) stays dense-stored whatever its density (its zeros are still
skipped by the PEs); with ``formats="auto"`` its optimizer state takes the band's format
instead, as its matrix view, where the target's codecs keep up with its memory ports
(:func:`acf.runtime.formats.codec_keeps_up`). A compressed weight's sampled gradient,
optimizer state and mask are stored in its format (an N:M weight's gradient and state, which
no op makes N:M, bitmap: :func:`~acf.runtime.variants.compress_with_weights`). Should the
re-specialized program still fail to compile for the target, the step runs the previous
program and the entry says why (``kept`` False, ``error``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from acf import emulator
from acf.compiler.codegen import CompiledProgram, CompileOptions, compile_module
from acf.compiler.codegen.errors import CodegenError
from acf.compiler.codegen.kernels import load_all
from acf.compiler.diagnostics import IRError
from acf.compiler.ir import FuncOp, Module, TensorType
from acf.compiler.parser import parse_module
from acf.compiler.pass_manager import PassManager, parse_pipeline
from acf.compiler.passes.sparsity_propagation import fold_update_masks
from acf.compiler.printer import print_module
from acf.compiler.sparse_encoding import format_to_encoding
from acf.compiler.verifier import verify_module
from acf.isa.formats import Format, FormatSpec
from acf.isa.target import Target, load_target

from .errors import BindError, RuntimeOptionError
from .formats import DensityBands, codec_keeps_up
from .report import StepReport, build_step_report, record
from .torch_io import to_numpy
from .variants import (
    OPTIMIZERS,
    Variant,
    apply_formats,
    compress_with_weights,
    dense_weight_gradients,
    elide_bound_masks,
    gemm_kind,
    lower_transposes,
    mark_densities,
    masked_params,
    materialize_broadcasts,
    value_format,
)

GRAD_VARIANTS = ("sddmm", "dense")


@dataclass(frozen=True)
class SessionOptions:
    """``pipeline``: the pass pipeline before codegen; ``grad_variants``: weight-gradient
    variants compiled up front at :meth:`Session.load`; ``respecialize``: ``"band"`` (the
    density-band rule) or ``"off"``; ``formats``: ``"ir"`` (masked weights keep the storage
    format the IR gives them) or ``"auto"`` (the band format of the first bound mask; with
    ``respecialize="off"`` that first choice is kept whatever the later densities);
    ``verify``: on a re-specialization step run the old and the new program and keep the
    faster (the step's outputs come from the kept one); ``tile``: force the tile side (or
    the GEMM sizes ``(m, n, k)``, ``codegen.tiling``);
    ``mode``: the emulator mode (``batched`` or ``stepped``); ``seed``: of the generator
    that draws dropout keep-masks (arguments with a ``dropout`` attribute) on steps that
    do not pass them."""

    pipeline: str = "sparse-training"
    grad_variants: tuple[str, ...] = ("sddmm",)
    respecialize: str = "band"
    formats: str = "ir"
    bands: DensityBands = field(default_factory=DensityBands)
    verify: bool = True
    tile: int | tuple[int, int, int] = 0
    mode: str = "batched"
    seed: int = 0

    def __post_init__(self) -> None:
        # every field is checked here, so that a bad value is reported by name when the
        # options are built, not as a TypeError from the tiler or numpy at the first load
        if not isinstance(self.pipeline, str):
            raise RuntimeOptionError(f"pipeline must be pass-pipeline text (e.g. "
                                     f"'sparse-training'), got {self.pipeline!r}")
        if self.pipeline:
            try:
                parse_pipeline(self.pipeline)
            except IRError as e:
                raise RuntimeOptionError(f"pipeline {self.pipeline!r}: "
                                         f"{str(e).splitlines()[0]}") from None
        # a bare string would be taken apart letter by letter
        if isinstance(self.grad_variants, str) or not isinstance(self.grad_variants, tuple | list):
            raise RuntimeOptionError(f"grad_variants must be a tuple of names from "
                                     f"{GRAD_VARIANTS}, got {self.grad_variants!r}")
        for g in self.grad_variants:
            if g not in GRAD_VARIANTS:
                raise RuntimeOptionError(f"grad_variants: unknown {g!r}; valid: {GRAD_VARIANTS}")
        object.__setattr__(self, "grad_variants", tuple(self.grad_variants))
        if self.respecialize not in ("band", "off"):
            raise RuntimeOptionError(f"respecialize must be 'band' or 'off', got "
                                     f"{self.respecialize!r}")
        if self.formats not in ("ir", "auto"):
            raise RuntimeOptionError(f"formats must be 'ir' or 'auto', got {self.formats!r}")
        if not isinstance(self.bands, DensityBands):
            raise RuntimeOptionError(f"bands must be a DensityBands, got {self.bands!r}")
        if not isinstance(self.verify, bool | np.bool_):
            raise RuntimeOptionError(f"verify must be True or False, got {self.verify!r}")
        _check_tile(self.tile)
        if self.mode not in ("batched", "stepped"):
            raise RuntimeOptionError(f"mode must be 'batched' or 'stepped', got {self.mode!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise RuntimeOptionError(f"seed must be a non-negative integer, got {self.seed!r}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def _check_tile(tile: Any) -> None:
    """``tile``: 0, a side, or ``(m, n, k)``; whether it fits the target is the tiler's
    call at compile time (the messages match the tiler's)."""
    if isinstance(tile, tuple | list):
        if len(tile) != 3 or not all(_is_int(v) for v in tile):
            raise RuntimeOptionError(f"tile must be a side (int) or the GEMM sizes (m, n, k), "
                                     f"got {tile!r}")
        if min(tile) <= 0:
            raise RuntimeOptionError(f"tile {'x'.join(map(str, tile))}: sizes must be positive")
        return
    if not _is_int(tile):
        raise RuntimeOptionError(f"tile must be a side (int, 0 for the tiler's choice) or the "
                                 f"GEMM sizes (m, n, k), got {tile!r}")
    if tile < 0:
        raise RuntimeOptionError(f"tile side {tile}: must be positive (or 0 for the tiler's "
                                 "choice)")


@dataclass
class StepResult:
    """``outputs``: result name -> array (``result0``... and any names given at load);
    ``values``: the results in order; ``report``: the :class:`StepReport`."""

    outputs: dict[str, np.ndarray]
    values: list[np.ndarray]
    report: StepReport


@dataclass
class Compiled:
    program: CompiledProgram
    func: FuncOp
    op_kinds: dict[int, str]
    op_layers: dict[int, str]


class LoadedStep:
    """One training-step module loaded into a session (its state, masks, variants)."""

    def __init__(self, session: Session, name: str, module: Module,
                 carry: Mapping[str, str], result_names: Sequence[str] | None) -> None:
        self.session, self.name = session, name
        if not module.funcs:
            raise BindError("module has no function")
        self.text = print_module(module)
        self.text_hash = hashlib.sha256(self.text.encode()).hexdigest()[:16]
        func = module.funcs[0]
        self.arg_names = [a.name_hint or f"arg{a.index}" for a in func.arguments]
        self.arg_types = {n: a.type for n, a in zip(self.arg_names, func.arguments)}
        self.n_results = len(func.return_op.operands) if func.return_op else 0
        # the fabric returns every value as f32: results are given back in these types
        self.result_elements = [getattr(v.type, "element", "f32")
                                for v in (func.return_op.operands if func.return_op else [])]
        self.result_names = list(result_names or [])
        if self.result_names and len(self.result_names) != self.n_results:
            raise BindError(f"result_names: {len(self.result_names)} names for "
                            f"{self.n_results} results")
        self.masks_of = masked_params(func)          # param -> mask argument
        # param -> its optimizer-state arguments (momentum; Adam's moments): zeroed with the
        # weight where a new mask turns a connection active
        self.state_args: dict[str, list[str]] = {p: [] for p in self.masks_of}
        # a state argument -> the position of its updated value among the results (a mask
        # update zeroes that value where the new mask grows a connection)
        self.state_results: dict[str, int] = {}
        position = {id(v): i for i, v in enumerate(func.return_op.operands if func.return_op else [])}
        for op in func.body.walk():
            if op.name not in OPTIMIZERS or op.operands[0].defining_op is not None:
                continue
            param = _argument_name(op.operands[0])
            n_state = 1 if op.name == "graph.sgd_update" else 2
            if param in self.state_args:
                for j, v in enumerate(op.operands[2:2 + n_state]):
                    if v.defining_op is None:
                        self.state_args[param].append(_argument_name(v))
                        if id(op.results[1 + j]) in position:
                            self.state_results[_argument_name(v)] = position[id(op.results[1 + j])]
        # dropout keep-mask argument -> drop probability (drawn each step unless given)
        self.dropout = {n: float(attrs["dropout"])  # type: ignore[arg-type]
                        for n, attrs in zip(self.arg_names, func.body.arg_attributes)
                        if "dropout" in attrs}
        self.ir_formats = {p: value_format(func.argument(p)) for p in self.masks_of}
        # arguments that are Adam's step operand: a bound value sets the bias corrections
        self.step_args = sorted({_argument_name(op.operands[4]) for op in func.body.walk()
                                 if op.name == "graph.adam_update"
                                 and op.operands[4].defining_op is None},
                                key=self.arg_names.index)
        # the compressed formats are packed 2-D tiles: a conv kernel (4-D) stays dense-stored
        self.storable = {p for p in self.masks_of
                         if isinstance(self.arg_types[p], TensorType) and len(self.arg_types[p].shape) == 2}
        for res, arg in carry.items():
            if arg not in self.arg_types:
                raise BindError(f"carry: {arg!r} is not an argument ({self._arg_list()})")
            if res not in self._result_keys():
                raise BindError(f"carry: {res!r} is not a result ({sorted(self._result_keys())})")
        self.carry = dict(carry)
        self.state: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}
        self.densities: dict[str, float] = {}
        self.bands: dict[str, str] = {}
        self.formats: dict[str, str] = {}            # param -> format chosen by the runtime
        self.state_formats: dict[str, str] = {}      # dense-stored param -> its state's format
        self.last_masks: dict[str, np.ndarray] = {}  # the masks the previous step ran with
        self.last_weights: dict[str, np.ndarray] = {}  # its masked weights, as stored
        # the optimizer state it left (momentum; Adam's moments), with the formats its
        # program stored them in
        self.last_states: dict[str, tuple[np.ndarray, str]] = {}
        self.step = 0

    def _arg_list(self) -> str:
        return ", ".join(self.arg_names)

    # what a step changes; restored when it fails, so a failed step leaves no trace
    _STEP_STATE = ("state", "masks", "densities", "bands", "formats", "state_formats",
                   "last_masks", "last_weights", "last_states")

    def snapshot(self) -> dict[str, Any]:
        # the values are arrays and strings a step replaces, never mutates: copy the dicts
        saved: dict[str, Any] = {f: dict(getattr(self, f)) for f in self._STEP_STATE}
        saved["step"] = self.step
        return saved

    def restore(self, saved: Mapping[str, Any]) -> None:
        self.step = saved["step"]
        for f in self._STEP_STATE:  # in place: a caller may hold loaded.state
            current = getattr(self, f)
            current.clear()
            current.update(saved[f])

    def _result_keys(self) -> set[str]:
        return {f"result{i}" for i in range(self.n_results)} | set(self.result_names)

    def variant(self, dense_grad: bool) -> Variant:
        return _variant_for(self, self.formats, dense_grad)


class Session:
    """Compiles, caches and runs training-step programs on one target (see module doc).

    Implements the ``MaskBinder`` protocol of :mod:`acf.algorithms.masks` structurally
    (``bind_mask``/``bind``, and ``attach``): an algorithm built with ``binder=session``
    binds its masks as data, and a mask update restarts the connections it grows from zero
    (weight and optimizer state, see :meth:`bind_mask`), as the algorithms' contract says.

    Not for SR-STE (or any algorithm with ``masks_weights`` False): the session stores each
    masked weight multiplied by its mask, so the pruned weights SR-STE keeps training are
    lost; :meth:`attach` refuses such an algorithm. Train it eagerly (``EagerBinder``)."""

    def __init__(self, target: Target | str = "acf-small",
                 options: SessionOptions | None = None) -> None:
        if isinstance(target, str | os.PathLike):
            target = load_target(target)
        elif not isinstance(target, Target):
            raise RuntimeOptionError(f"target must be a target name (e.g. 'acf-small'), a "
                                     f"target TOML path or a Target, got {target!r}")
        if options is not None and not isinstance(options, SessionOptions):
            raise RuntimeOptionError(f"options must be a SessionOptions, got {options!r}")
        self.target = target
        self.options = options or SessionOptions()
        self.rng = np.random.default_rng(self.options.seed)  # dropout keep-masks
        self.compile_count = 0
        self.compile_log: list[dict[str, Any]] = []  # program, variant, reason, seconds
        self._cache: dict[tuple[str, ...], Compiled] = {}
        self._updates: dict[tuple[str, ...], CompiledProgram] = {}  # mask-update programs
        self._steps: dict[str, LoadedStep] = {}
        self._current: LoadedStep | None = None

    # ---- loading -----------------------------------------------------------------------
    def load(self, module: Module | str | Any, name: str = "step", *,
             carry: Mapping[str, str] | None = None,
             result_names: Sequence[str] | None = None) -> LoadedStep:
        """Load a graph-dialect module (or its text) and compile its up-front variants
        (with ``formats="auto"``, a masked step's first variant is compiled by the first
        :meth:`run_step`: its storage formats follow the densities of the bound masks).

        ``carry``: ``{result: argument}`` pairs whose result becomes the argument's value on
        the next step (updated weights, optimizer state); ``result_names``: names for the
        results besides ``result0``...

        ``module`` may also be a captured training step
        (:func:`acf.frontends.training_step.capture_training_step`): its ``.module`` is
        loaded.

        A load that raises (a module that does not parse, verify or compile) changes nothing:
        the programs loaded before, the current one and their weights, masks and state stay
        as they were.
        """
        if not isinstance(module, Module | str) and isinstance(getattr(module, "module", None), Module):
            module = module.module  # a CapturedStep: the runtime does not import torch
        if isinstance(module, str):
            module = parse_module(module, f"<{name}>")
        if not isinstance(module, Module):
            raise BindError(f"load takes a graph-dialect Module, its text, or a captured "
                            f"training step; got {type(module).__name__}")
        loaded = LoadedStep(self, name, module, carry or {}, result_names)
        # all or nothing: the program is registered (and made current) only once its
        # variants compiled, so a load that fails leaves the loaded programs, the current
        # one with its weights, masks and state, and the compile count as they were
        cached, count, logged = set(self._cache), self.compile_count, len(self.compile_log)
        try:
            # with formats="auto", the storage formats follow the first bound masks: a masked
            # step's variants are compiled then
            if not (self.options.formats == "auto" and loaded.masks_of):
                for g in self.options.grad_variants:
                    self._compiled(loaded, loaded.variant(g == "dense"), "initial")
        except BaseException:
            for key in set(self._cache) - cached:
                del self._cache[key]
            self.compile_count = count
            del self.compile_log[logged:]
            raise
        self._steps[name] = loaded
        self._current = loaded
        return loaded

    def _get(self, name: str | None) -> LoadedStep:
        if name is None:
            if self._current is None:
                raise BindError("no program loaded: call Session.load first")
            return self._current
        if name not in self._steps:
            raise BindError(f"no program {name!r} loaded (loaded: {sorted(self._steps)})")
        return self._steps[name]

    def _compiled(self, loaded: LoadedStep, variant: Variant, reason: str) -> Compiled:
        o = self.options
        key = (loaded.text_hash, self.target.config_hash(), o.pipeline, str(o.tile),
               variant.key())
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        module = parse_module(loaded.text, f"<{loaded.name}>")
        func = module.funcs[0]
        for op in func.body.ops:  # a compile error names the user's source line where the
            if op.loc is not None:  # op has one, not the line of this IR text
                op.pos = None
        # the update takes the mask that the step's mask_apply applies while its param is
        # still dense, where that is exact: a sparse-encoded param's update without a mask
        # keeps the stored pattern, and grown connections (mask 1, weight 0) would not train
        # (verified first: the rewrite assumes well-typed IR)
        if variant.formats:
            verify_module(module)
            fold_update_masks(func)
        apply_formats(module, func, dict(variant.formats))
        verify_module(module)
        if o.pipeline:
            PassManager.from_text(o.pipeline).run(module)
        elide_bound_masks(func, loaded.masks_of)
        mark_densities(func, loaded.densities)
        if variant.wgrad == "dense":
            dense_weight_gradients(func)
        compress_with_weights(func, loaded.masks_of, dict(variant.states))
        if "graph.transpose" not in load_all():
            lower_transposes(func)
        materialize_broadcasts(func)
        verify_module(module)
        program = compile_module(module, self.target, CompileOptions(tile=o.tile))
        kinds, layers = {}, {}
        for i, op in enumerate(func.body.ops):
            kinds[i] = gemm_kind(func, op)
            layers[i] = (op.loc.layer if op.loc is not None and op.loc.layer else "") or ""
        compiled = Compiled(program, func, kinds, layers)
        self._cache[key] = compiled
        self.compile_count += 1
        self.compile_log.append({"program": loaded.name, "variant": variant.key(),
                                 "reason": reason, "seconds": time.perf_counter() - t0})
        return compiled

    # ---- data --------------------------------------------------------------------------
    def bind_mask(self, param_name: str, mask: Any, program: str | None = None) -> None:
        """Make ``mask`` (bool / 0-1, the parameter's shape) the active set of a masked
        parameter. Data only: never recompiles (a density-band crossing is acted on at the
        next :meth:`run_step`).

        As the sparsity algorithms' contract has it (:mod:`acf.algorithms.base`), a
        connection the mask turns active (on where the mask bound before was off) starts
        from zero: the session's stored weight and the parameter's optimizer state
        (momentum, Adam's moments) are zeroed there. Where both masks are on, weight and
        state are kept. The first mask bound to a parameter zeroes nothing."""
        loaded = self._get(program)
        _take_mask(loaded, param_name, self._checked_mask(loaded, param_name, mask))

    bind = bind_mask  # the MaskBinder protocol's method name

    def attach(self, algorithm: Any) -> None:
        """The ``MaskBinder`` hook a sparsity algorithm calls once it is built: refuses an
        algorithm whose pruned weights live on (``masks_weights`` False: SR-STE), which a
        session cannot train (see the class doc). The masks it bound while being built stay
        bound (data; the algorithm is not built)."""
        if not getattr(algorithm, "masks_weights", True):
            name = getattr(algorithm, "name", type(algorithm).__name__)
            raise BindError(f"algorithm {name!r} keeps its pruned weights (masks_weights is "
                            f"False, as SR-STE's), which a Session cannot train: it stores "
                            f"each masked weight multiplied by its mask, so the pruned values "
                            f"are lost; train it eagerly (EagerBinder) instead")

    def _checked_mask(self, loaded: LoadedStep, param_name: str, mask: Any) -> np.ndarray:
        if param_name not in loaded.masks_of:
            raise BindError(_not_masked(loaded, param_name))
        m = to_numpy(mask, param_name)
        shape = loaded.arg_types[param_name].shape  # type: ignore[union-attr]
        if tuple(m.shape) != tuple(shape):
            raise BindError(f"mask for {param_name!r}: expected shape {list(shape)}, "
                            f"got {list(m.shape)}")
        return _mask01(m, param_name)

    def set_params(self, values: Mapping[str, Any], program: str | None = None) -> None:
        """Set persistent argument values (weights, optimizer state) by argument name.

        A mask argument (``mask.<param>``, or whatever the program names it) is bound as
        :meth:`bind_mask` binds it, before the other values are set (so weights and state
        given in the same call are kept as given). A dropout keep-mask is refused: the
        session draws it each step unless :meth:`run_step` is given one."""
        loaded = self._get(program)
        param_of_mask = {m: p for p, m in loaded.masks_of.items()}
        masks: dict[str, np.ndarray] = {}
        checked: dict[str, np.ndarray] = {}
        # all checked before any is set
        for name, value in values.items():
            if name in param_of_mask:
                param = param_of_mask[name]
                masks[param] = self._checked_mask(loaded, param, value)
            elif name in loaded.dropout:
                raise BindError(f"{name!r} is a dropout keep-mask, drawn each step: pass it "
                                f"to run_step to fix one step's, not to set_params")
            else:
                # a copy: to_numpy shares a torch tensor's memory, and a later in-place
                # edit of the model must not change the session's weights
                checked[name] = np.array(self._check(loaded, name, value))
        for param, m in masks.items():
            _take_mask(loaded, param, m)
        loaded.state.update(checked)

    def _check(self, loaded: LoadedStep, name: str, value: Any) -> np.ndarray:
        if name not in loaded.arg_types:
            raise BindError(f"unknown tensor {name!r} for {loaded.name!r}; arguments: "
                            f"{loaded._arg_list()}")
        x = to_numpy(value, name)
        t = loaded.arg_types[name]
        shape = tuple(t.shape) if isinstance(t, TensorType) else ()
        if tuple(x.shape) != shape:
            raise BindError(f"tensor {name!r}: expected shape {list(shape)}, got {list(x.shape)}; "
                            f"the program's shapes are static: capture the step again at the "
                            f"new shape (e.g. another batch size) and load it")
        if x.dtype.kind not in "biuf":
            raise BindError(f"tensor {name!r}: dtype {x.dtype} is not numeric")
        if isinstance(t, TensorType) and t.element.startswith("i") and t.element != "i1" \
                and x.dtype.kind == "f":
            # labels and indices: the one-hot conversion would truncate 1.5 to 1
            bad = x[~(np.isfinite(x) & (x == np.round(x)))]
            if bad.size:
                raise BindError(f"tensor {name!r} holds integers (labels or indices), got "
                                f"the non-integral value {bad.reshape(-1)[0].item()!r}")
        return x

    # ---- running -----------------------------------------------------------------------
    def run_step(self, inputs: Mapping[str, Any] | Sequence[Any] | None = None, *,
                 dense_grad: bool = False, step: int | None = None,
                 program: str | None = None) -> StepResult:
        """Run one step. ``inputs``: by argument name (or all arguments positionally);
        arguments not given come from :meth:`set_params` / carried results; a masked
        parameter's mask argument comes from :meth:`bind_mask` unless given. ``dense_grad``
        picks the dense weight-gradient variant.

        Adam's bias corrections use, in this order: ``step`` (1-based) when given; else the
        value bound to the program's Adam step operand (e.g. ``adam_step``, set by
        ``CapturedStep.bind``, from ``state=`` or from the torch optimizer's own count, by
        :meth:`set_params` or carried from the previous step's result), so that a step
        resumed from torch's optimizer state continues at torch's count; else, for a
        program without one, the next step of this program
        (``report.step`` is the step used).

        A step that raises changes nothing in the session (weights, masks, densities,
        formats, the step count and the dropout generator are as before it)."""
        loaded = self._get(program)
        if step is not None:
            step = _check_step(step, "step")
        saved, rng_state = loaded.snapshot(), self.rng.bit_generator.state
        try:
            return self._run_step(loaded, inputs, dense_grad, step)
        except BaseException:
            loaded.restore(saved)
            self.rng.bit_generator.state = rng_state
            raise

    def _run_step(self, loaded: LoadedStep, inputs: Mapping[str, Any] | Sequence[Any] | None,
                  dense_grad: bool, step: int | None) -> StepResult:
        given: dict[str, np.ndarray] = {}
        if inputs is not None and not isinstance(inputs, Mapping):
            values = list(inputs)
            if len(values) != len(loaded.arg_names):
                raise BindError(f"{loaded.name!r} takes {len(loaded.arg_names)} arguments "
                                f"({loaded._arg_list()}), got {len(values)}")
            inputs = dict(zip(loaded.arg_names, values))
        for name, value in (inputs or {}).items():
            given[name] = self._check(loaded, name, value)
        for param, mask_arg in loaded.masks_of.items():
            if mask_arg in given:  # bound as bind_mask binds it (grown connections at zero)
                _take_mask(loaded, param, _mask01(given[mask_arg], mask_arg))
        args = {**loaded.state, **given}
        stored: dict[str, np.ndarray] = {}  # changed masks: each weight as stored before them
        for param, mask_arg in loaded.masks_of.items():
            if param not in loaded.masks:
                raise BindError(f"no mask bound for masked parameter {param!r}: call "
                                f"bind_mask({param!r}, mask) or pass {mask_arg!r}")
            mask = loaded.masks[param]
            args[mask_arg] = mask
            last = loaded.last_masks.get(param)
            if param in args and last is not None and not np.array_equal(last, mask):
                stored[param] = np.asarray(args[param], np.float32) * last
            if param in args:  # weights are stored masked (packed, for a sparse format)
                args[param] = np.asarray(args[param], np.float32) * mask
        for name, p in loaded.dropout.items():
            if name not in given:  # keep each element with probability 1 - p
                shape = loaded.arg_types[name].shape  # type: ignore[union-attr]
                args[name] = (self.rng.random(shape) >= p).astype(np.float32)
        missing = [n for n in loaded.arg_names if n not in args]
        if missing:
            raise BindError(f"missing inputs for {loaded.name!r}: {', '.join(missing)}")
        # Adam's step (see the docstring): the operand the user bound wins over the count
        bind_step: int | None = step
        if step is None and loaded.step_args:
            steps = [_check_step(args[name], f"tensor {name!r}") for name in loaded.step_args]
            step = steps[0]  # every operand checked; the first sets the corrections
        elif step is None:
            step = bind_step = loaded.step + 1
        loaded.step = step
        # the changed masks are applied to the weights as stored before this step
        stored_as = {p: self._format_of(loaded, p) for p in stored}
        respec, state_changes = self._track_density(loaded)

        ordered = [args[n] for n in loaded.arg_names]
        before = self.compile_count
        report_extra: list[dict[str, Any]] = list(state_changes)
        try:
            variant = loaded.variant(dense_grad)
            compiled = self._compiled(loaded, variant, "variant")
        except CodegenError as e:
            if not respec:
                raise
            # the new formats do not compile for this target: run the previous program
            for param, old_fmt, new_fmt in respec:
                loaded.formats[param] = old_fmt
                report_extra.append({"param": param, "density": loaded.densities[param],
                                     "from": old_fmt, "to": new_fmt, "kept": False,
                                     "error": str(e)})
            respec = []
            variant = loaded.variant(dense_grad)
            compiled = self._compiled(loaded, variant, "variant")
        result = self._emulate(compiled, ordered, bind_step)
        for param, old_fmt, new_fmt in respec:
            entry = {"param": param, "density": loaded.densities[param], "from": old_fmt,
                     "to": new_fmt, "new_cycles": int(result.report.total_cycles)}
            if self.options.verify:
                old_formats = dict(loaded.formats)
                old_formats[param] = old_fmt
                old_variant = _variant_for(loaded, old_formats, dense_grad)
                old = self._compiled(loaded, old_variant, "respecialize-baseline")
                old_result = self._emulate(old, ordered, bind_step)
                entry["old_cycles"] = int(old_result.report.total_cycles)
                entry["kept"] = entry["new_cycles"] <= entry["old_cycles"]
                if not entry["kept"]:
                    loaded.formats[param] = old_fmt
                    variant, compiled, result = old_variant, old, old_result
            else:
                entry["kept"] = True
            report_extra.append(entry)

        values = [_as_element(result.outputs[n], el)
                  for n, el in zip(compiled.program.outputs, loaded.result_elements)]
        outputs = dict(zip(compiled.program.outputs, values))
        outputs.update(zip(loaded.result_names, values))
        rep = build_step_report(loaded.step, loaded.name, variant.key(), result,
                                compiled.program.program, compiled.op_kinds, compiled.op_layers,
                                {i: op.name for i, op in enumerate(compiled.func.body.ops)})
        # a weight this step re-specialized ran in its new format (also when verify then
        # kept the old program): bringing it to its mask converted it (not after a compile
        # failure, which left the weight as stored)
        converted = {param: new_fmt for param, _, new_fmt in respec}
        rep.mask_update = self._mask_update(
            loaded, stored, formats={p: (f, converted.get(p, f)) for p, f in stored_as.items()}
        ) if stored else {}
        loaded.last_masks = {p: m.copy() for p, m in loaded.masks.items()}
        loaded.last_weights = {p: args[p] for p in loaded.masks_of if p in args}
        symbols = compiled.program.symbols
        loaded.last_states = {a: (np.asarray(values[i], np.float32), symbols[a].fmt)
                              for a, i in loaded.state_results.items() if a in symbols}
        rep.compiled = self.compile_count > before
        rep.densities = dict(loaded.densities)
        rep.formats = {p: loaded.formats.get(p, loaded.ir_formats[p]) for p in loaded.masks_of}
        rep.respecialized = report_extra
        for res, arg in loaded.carry.items():
            # a copy: the caller owns the returned arrays, and editing them in place must
            # not change what the next step starts from
            loaded.state[arg] = np.array(outputs[res])
        record(rep)
        return StepResult(outputs, values, rep)

    def cost_mask_update(self, masks: Mapping[str, Any], program: str | None = None) -> dict[str, Any]:
        """The fabric's cost of moving the last step's stored weights to ``masks``
        (``{param: mask}``; those equal to the last step's cost nothing), as the next
        :meth:`run_step` would report it in ``report.mask_update``, without running a step
        or binding the masks: each weight in the format it is stored in now, and, where the
        new mask's density makes the next step re-specialize it, converted to its new format
        (see :meth:`_mask_update`; a new format that then fails to compile for the target is
        not converted to, and not foreseen here)."""
        loaded = self._get(program)
        stored, new, formats = {}, {}, {}
        for param, mask in masks.items():
            if param not in loaded.masks_of:
                raise BindError(_not_masked(loaded, param))
            if param not in loaded.last_weights:
                raise BindError(f"{param!r}: no step has run with it masked yet (the first "
                                f"step's mask costs no mask update)")
            m = _mask01(to_numpy(mask, param), param)
            if m.shape != loaded.last_masks[param].shape:
                raise BindError(f"mask for {param!r}: expected shape "
                                f"{list(loaded.last_masks[param].shape)}, got {list(m.shape)}")
            if not np.array_equal(m, loaded.last_masks[param]):
                stored[param], new[param] = loaded.last_weights[param], m
                now = self._format_of(loaded, param)
                formats[param] = (now, self._crossing(loaded, param, m) or now)
        return self._mask_update(loaded, stored, new, formats) if stored else {}

    @staticmethod
    def _format_of(loaded: LoadedStep, param: str) -> str:
        """The format ``param`` is stored in now."""
        return loaded.formats.get(param, loaded.ir_formats[param])

    def _mask_update(self, loaded: LoadedStep, stored: dict[str, np.ndarray],
                     masks: Mapping[str, np.ndarray] | None = None,
                     formats: Mapping[str, tuple[str, str]] | None = None) -> dict[str, Any]:
        """Cycles, time and energy on the fabric of bringing the weights whose masks
        changed since the previous step to their new masks (``report.mask_update``, apart
        from the step's own totals): each weight, in the format it is stored in when the
        mask is applied (the previous step's), is read, masked and written back (a
        compressed one decoded and re-encoded with its new pattern), and a compressed
        weight's mask, stored encoded beside it, is encoded anew. ``formats``: ``{param:
        (stored format, new format)}``; a weight whose new mask moves it to another format
        (a re-specialization) is written in the new one, its mask encoded in it: the
        conversion is part of the mask update (``converted``: ``{param: [from, to]}``).
        Its optimizer state (momentum; Adam's moments: what the previous step left, in the
        format its program stored it in) is zeroed where the new mask grows a connection,
        each read and written back in that format (a state that a re-specialization stores
        in another format next is not charged the conversion).
        The session applies the same masks to the values it binds, so the step computes on
        them either way; this is what the fabric would spend doing it."""
        names = sorted(stored)
        formats = formats or {}
        inputs = []
        weights = []
        for p in names:
            new = (masks or loaded.masks)[p]
            inputs += [stored[p], new]
            now = self._format_of(loaded, p)
            states = [loaded.last_states[a] for a in loaded.state_args[p] if a in loaded.last_states]
            if states:  # kept: off where the new mask turns a connection on
                old = loaded.last_masks[p]
                inputs += [v for v, _ in states] + [1 - ((new != 0) & (old == 0)).astype(np.float32)]
            weights.append((tuple(loaded.arg_types[p].shape),  # type: ignore[union-attr]
                            *formats.get(p, (now, now)), tuple(f for _, f in states)))
        text = mask_update_ir(weights)
        key = ("mask-update", hashlib.sha256(text.encode()).hexdigest()[:16], self.target.config_hash(),
               str(self.options.tile))
        program = self._updates.get(key)
        if program is None:
            t0 = time.perf_counter()
            program = compile_module(parse_module(text, "<mask-update>"), self.target,
                                     CompileOptions(tile=self.options.tile))
            self._updates[key] = program
            self.compile_log.append({"program": loaded.name, "variant": ",".join(names),
                                     "reason": "mask-update", "seconds": time.perf_counter() - t0})
        result = emulator.run(program.program, self.target, program.bind(inputs), mode=self.options.mode)
        rep = result.report
        out = {"params": names, "cycles": int(rep.total_cycles), "seconds": float(rep.time_s),
               "energy_j": float(rep.energy_total_j)}
        converted = {p: [old, new] for p, (_, old, new, _) in zip(names, weights) if old != new}
        if converted:
            out["converted"] = converted
        return out

    def _emulate(self, compiled: Compiled, ordered: list[np.ndarray], step: int | None) -> Any:
        """``step``: Adam's step for the bias corrections; None: the step operands' values."""
        _check_indices(compiled.program, ordered)
        inputs = compiled.program.bind(ordered, step)
        return emulator.run(compiled.program.program, self.target, inputs, mode=self.options.mode)

    def _crossing(self, loaded: LoadedStep, param: str, mask: np.ndarray) -> str | None:
        """The storage format a step run with ``mask`` re-specializes the 2-D weight
        ``param`` to (its density crossed into another band), or None: it stays."""
        if (param not in loaded.storable or param not in loaded.bands
                or self.options.respecialize == "off"):
            return None  # a conv kernel, a first measurement, or no re-specialization
        d = float(mask.mean()) if mask.size else 0.0
        band = self.options.bands.band(d, loaded.bands[param])
        if band == loaded.bands[param] or band == self._format_of(loaded, param):
            return None
        return band

    def _track_density(self, loaded: LoadedStep
                       ) -> tuple[list[tuple[str, str, str]], list[dict[str, Any]]]:
        """Update measured densities; return the (param, old format, new format) crossings
        of weight formats, and the optimizer-state format changes of dense-stored weights
        (report entries: a lossless storage change, taken without measuring)."""
        bands = self.options.bands
        # formats="auto" picks each format at the first measurement; respecialize="off"
        # keeps that choice, "band" follows later band crossings
        auto = self.options.formats == "auto"
        follow = self.options.respecialize != "off"
        states = auto and codec_keeps_up(self.target)
        out, changes = [], []
        for param in loaded.masks_of:
            mask = loaded.masks[param]
            d = float(mask.mean()) if mask.size else 0.0
            loaded.densities[param] = d
            current = self._format_of(loaded, param)
            first = param not in loaded.bands
            # computed before the band is updated below (cost_mask_update asks the same)
            crossing = self._crossing(loaded, param, mask)
            band = bands.band(d) if first else bands.band(d, loaded.bands[param])
            changed = not first and band != loaded.bands[param]
            loaded.bands[param] = band
            if param not in loaded.storable:  # a conv kernel: only its state's format
                old = loaded.state_formats.get(param, "dense")
                if states and (first or (changed and follow)) and band != old:
                    loaded.state_formats[param] = band
                    if changed:
                        changes.append({"param": param, "density": d, "from": old, "to": band,
                                        "state": True, "kept": True})
                continue
            if first:  # first measurement: no crossing
                if auto:
                    loaded.formats[param] = bands.format_for(d)
                continue
            if crossing is not None:
                loaded.formats[param] = crossing
                out.append((param, current, crossing))
        return out, changes


def mask_update_ir(weights: Sequence[tuple[tuple[int, ...], str]
                                     | tuple[tuple[int, ...], str, str]
                                     | tuple[tuple[int, ...], str, str, tuple[str, ...]]]
                   ) -> str:
    """IR of a mask update: each weight (shape, storage format[, new storage format[,
    its optimizer state's storage formats]]), argument ``%wI`` with its new 0/1 mask ``%mI``
    after it, brought to the mask (``graph.mask_apply``: a compressed one decoded and
    re-encoded with the new pattern) and written in its new format (by default its storage
    format: a conversion rides on the same pass), and a compressed weight's mask encoded
    anew, in the new format, beside it. Each optimizer-state tensor (``%sI_J``, after the
    mask; then ``%kI``, 0 where the new mask grows a connection) is zeroed where ``%kI`` is
    0 and written back in its format.

    An N:M weight's mask comes in N:M-encoded: only a mask that is N:M makes the masked
    weight N:M (the verifier's rule), and it is then already stored as the weight needs it."""
    sig, ops, rets = [], [], []
    for i, (shape, fmt, *rest) in enumerate(weights):
        new = rest[0] if rest else fmt
        states = rest[1] if len(rest) > 1 else ()
        tw, tn = (TensorType(shape, "f32", format_to_encoding(f)) for f in (fmt, new))
        tm = TensorType(shape, "f32", format_to_encoding(new)) if _is_nm(new) else TensorType(shape)
        sig += [f"%w{i}: {tw}", f"%m{i}: {tm}"]
        ops.append(f"  %r{i} = graph.mask_apply %w{i}, %m{i} : {tw}, {tm} -> {tn}")
        rets.append((f"%r{i}", tn))
        if new != "dense" and not _is_nm(new):
            ops.append(f"  %e{i} = graph.mask_apply %m{i}, %m{i} : {tm}, {tm} -> {tn}")
            rets.append((f"%e{i}", tn))
        if states:
            tk = TensorType(shape)
            for j, sf in enumerate(states):
                ts = TensorType(shape, "f32", format_to_encoding(sf))
                sig.append(f"%s{i}_{j}: {ts}")
                ops.append(f"  %z{i}_{j} = graph.mask_apply %s{i}_{j}, %k{i} : {ts}, {tk} -> {ts}")
                rets.append((f"%z{i}_{j}", ts))
            sig.append(f"%k{i}: {tk}")
    types = ", ".join(str(t) for _, t in rets)
    return (f"graph.func @mask_update({', '.join(sig)}) -> ({types}) {{\n" + "\n".join(ops)
            + f"\n  graph.return {', '.join(v for v, _ in rets)} : {types}\n}}\n")


def _is_nm(fmt: str) -> bool:
    return FormatSpec.parse(fmt).format == Format.NM


def _variant_for(loaded: LoadedStep, formats: dict[str, str], dense_grad: bool) -> Variant:
    v = Variant("dense" if dense_grad else "sddmm")
    for p, f in sorted(formats.items()):
        if f != loaded.ir_formats.get(p):
            v = v.with_format(p, f)
    for p, f in sorted(loaded.state_formats.items()):
        if f != "dense":
            v = v.with_state(p, f)
    return v


def _as_element(value: np.ndarray, element: str) -> np.ndarray:
    """A result the fabric computed in f32 as the graph's element type says: an ``i64``
    result as int64 (exact: the fabric's integers are exact in fp32 below 2^24, see
    ``CompiledProgram.bind``), an ``i1`` one as bool."""
    if element == "i1":
        return np.asarray(value) != 0
    if element.startswith("i"):
        return np.rint(np.asarray(value)).astype(np.int64)
    return value


def _argument_name(value: Any) -> str:
    return value.name_hint or f"arg{value.index}"


def _check_step(value: Any, what: str) -> int:
    """Adam's 1-based step: an integer >= 1 (step 0 would divide by a zero bias correction)."""
    a = np.asarray(value)
    ok = a.size == 1 and a.dtype.kind in "iuf"
    v = a.reshape(-1)[0] if ok else None
    if not ok or not np.isfinite(v) or v != np.round(v) or v < 1:
        shown = v.item() if ok else value
        raise BindError(f"{what}: Adam's step must be an integer >= 1 (1-based), got {shown!r}")
    return int(v)


def _not_masked(loaded: LoadedStep, name: str) -> str:
    known = ", ".join(sorted(loaded.masks_of)) or "none"
    return f"{name!r} is not a masked parameter of {loaded.name!r} (masked parameters: {known})"


def _take_mask(loaded: LoadedStep, param: str, mask: np.ndarray) -> None:
    """Make the checked 0/1 ``mask`` the active set of ``param``; the connections it turns
    active start from zero (see :meth:`Session.bind_mask`)."""
    old = loaded.masks.get(param)
    loaded.masks[param] = mask
    if old is None:
        return
    grown = (mask != 0) & (old == 0)
    if not grown.any():
        return
    for name in (param, *loaded.state_args[param]):
        value = loaded.state.get(name)
        if value is not None:
            # a new array, never an in-place edit: a failed step restores the old one
            loaded.state[name] = np.where(grown, np.zeros((), value.dtype), value)


def _mask01(m: np.ndarray, name: str) -> np.ndarray:
    """A mask as 0/1 f32; anything but 0/1 (or bool) is refused, not rounded to 1."""
    if m.dtype != np.bool_:
        bad = m[~np.isin(m, (0, 1))] if m.dtype.kind in "iuf" else m.reshape(-1)
        if bad.size:
            raise BindError(f"mask {name!r}: values must be 0 or 1 (or bool), got "
                            f"{bad.reshape(-1)[0].item()!r}")
    return (m != 0).astype(np.float32)


def _check_indices(program: CompiledProgram, ordered: Sequence[np.ndarray]) -> None:
    """Labels and indices the program takes one-hot must name a class: the error says so
    (with what a negative label usually is) rather than naming the one-hot conversion."""
    for name, value in zip(program.inputs, ordered):
        classes = program.onehot.get(name)
        v = np.asarray(value)
        if classes is None or not v.size or (v.min() >= 0 and v.max() < classes):
            continue
        bad = v.min() if v.min() < 0 else v.max()
        hint = ("; labels to ignore (cross_entropy's ignore_index, -100 by default) are not "
                "supported: every label must be a class") if bad < 0 else ""
        raise BindError(f"input {name!r}: index {int(bad)} is outside [0, {classes}){hint}")
