"""``select-formats``: give every sparse weight the storage format the cost model finds
cheapest on the target at its observed density.

Candidates are the function arguments with a sparse encoding, a ``density`` attribute
(``{density = 0.1}``: the fraction of non-zeros, as measured by the runtime) or a density in
the ``densities`` option. For each, every format (dense, csr, csc, coo, bitmap, bcsr4x4, and
nm2:4 when the mask is known to be 2:4) is costed with :mod:`acf.compiler.cost_model` over
every GEMM that uses the value (``linear``, ``matmul``, ``sddmm``: as an operand or as the
sample, whose tiles the sddmm kernel loads per output tile and whose non-zeros it computes),
compiled the way codegen compiles it (the tiler's tile side, the default placement with its
multicast layouts: ``cost_model.gemm_cost`` times the kernel's own instructions), and the
cheapest is written into the value's type (``format_to_encoding``). An optimizer update of
the value and the function results follow the new encoding. A format within 1 % of the
cheapest counts as a tie: the current format, then dense, win ties. A sparse parameter whose
update has no mask operand keeps its zero pattern (``graph.sgd_update``), which a dense
encoding would drop: for it dense is no candidate (nor a ``fixed`` format), the remark says
so.

Options: ``target`` (a target name), ``density`` (default density in percent for a sparse
value that has no measured one; 0: leave such values alone), ``densities`` (per value, in
percent: ``w-10-w2-50``), ``fixed`` (force one format for ablations: ``csr``, ``bitmap``,
``nm2-4``...), ``remarks`` (explain each choice on stderr, at the first GEMM using the
value). From Python, ``SelectFormats(masks={"w": mask})`` costs the actual mask exactly
(``target_config=`` a loaded target, e.g. one with ``--set`` overrides, instead of a name).

Before::

    graph.func @f(%x: tensor<64x512xf32>, %w: tensor<512x512xf32, #csr> {density = 0.5}) ...

After ``select-formats{target=acf-base,remarks=true}``::

    graph.func @f(%x: tensor<64x512xf32>, %w: tensor<512x512xf32, #bitmap> {density = 0.5}) ...
    test.acfir:3:8: remark: %w: bitmap chosen at density 0.50: 25.3k cycles vs dense 32.7k, ...
"""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, TextIO

import numpy as np
from acf.isa.target import Target, load_target

from .. import cost_model as cm
from ..codegen.errors import error_at
from ..codegen.tiling import choose_tiling
from ..diagnostics import IRError
from ..graph_nn_ops import keeps_pattern
from ..ir import FuncOp, Module, Operation, TensorType, Value
from ..sparse_encoding import encoding_to_format, format_to_encoding
from ..verifier import op_position
from .base import ModulePass, OptionValueError, PassOption, target_option

GEMMS = ("graph.linear", "graph.matmul", "graph.sddmm")
UPDATES = ("graph.sgd_update", "graph.adam_update")
ALIAS = {"nm2:4": "nm24"}


def _kilo(c: float) -> str:
    if c >= 1e6:
        return f"{c / 1e6:.3g}M"
    if c >= 1e3:
        return f"{c / 1e3:.3g}k"
    return f"{c:.0f}"


def parse_densities(text: str) -> dict[str, float]:
    """``"w-10-w2-50"`` -> ``{"w": 0.1, "w2": 0.5}`` (percent in the text)."""
    parts = [p for p in text.split("-") if p]
    if len(parts) % 2:
        raise ValueError(f"densities '{text}': expected NAME-PERCENT pairs")
    return {parts[i]: float(parts[i + 1]) / 100.0 for i in range(0, len(parts), 2)}


def _fixed_format(text: str) -> str:
    text = text.strip().lower()
    if text.startswith("nm") and "-" in text:
        text = text.replace("-", ":")
    format_to_encoding(text)  # validates
    return text


def _fixed_option(text: str) -> str:
    """The ``fixed`` option: a format name, checked when the pipeline is parsed."""
    if text:
        try:
            _fixed_format(text)
        except ValueError as exc:
            raise OptionValueError(str(exc)) from None
    return text


def _percent_option(text: str) -> float:
    """The ``density`` option: a percentage, checked when the pipeline is parsed."""
    try:
        value = float(text)
    except ValueError:
        raise OptionValueError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 100.0:
        raise OptionValueError(f"{text} % is not in 0-100 %")
    return value


_percent_option.__name__ = "a percentage"  # read by PassOption's error message


def _densities_option(text: str) -> str:
    """The ``densities`` option: NAME-PERCENT pairs, checked when the pipeline is parsed."""
    try:
        for name, d in parse_densities(text).items():
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"densities: {name} at {100 * d:g} % is not in 0-100 %")
    except ValueError as exc:
        raise OptionValueError(str(exc)) from None
    return text


def _dims_2d(t: TensorType) -> tuple[int, int]:
    if not t.shape:
        return 1, 1
    rows = t.shape[0]
    cols = int(np.prod(t.shape[1:])) if len(t.shape) > 1 else 1
    return rows, cols


def _nm_result_held_by(func: FuncOp, arg: Value) -> Operation | None:
    """The first op whose declared N:M result is N:M because ``arg``, an N:M mask, is
    (``dialect._check_nm_result``: a ``mask_apply`` under it, or an update masked by it).
    Re-encoding ``arg`` would leave that result declared N:M with nothing making it so:
    invalid IR. (An update's parameter is re-encoded with its result instead.)"""
    from ..graph_nn_ops import update_mask

    enc = getattr(arg.type, "encoding", None)
    if enc is None or not any(lvl.kind == "structured" for _, lvl in enc.levels):
        return None
    for op in func.body.ops:
        if op.name == "graph.mask_apply":
            mask = op.operands[1]
        elif op.name in UPDATES:
            mask = update_mask(op)
        else:
            continue
        if mask is arg and getattr(op.results[0].type, "encoding", None) == enc:
            return op
    return None


class SelectFormats(ModulePass):
    """Choose each sparse value's format by modelled cost (see the module docstring)."""

    name = "select-formats"
    options = {
        "target": PassOption(target_option, "acf-base", "target name"),
        "density": PassOption(_percent_option, 0.0, "default density in percent (0: only measured ones)"),
        "densities": PassOption(_densities_option, "", "per value densities in percent: NAME-PCT-NAME-PCT"),
        "fixed": PassOption(_fixed_option, "", "force this format for every candidate (ablations)"),
        "remarks": PassOption(bool, False, "print a remark explaining each choice to stderr"),
    }

    def __init__(self, masks: dict[str, np.ndarray] | None = None, stream: TextIO | None = None,
                 target_config: Target | None = None, **values: Any) -> None:
        super().__init__(**values)
        self.masks = dict(masks or {})
        self.stream = stream
        self.target_config = target_config  # a loaded target (with --set overrides) over ``target``
        self.choices: dict[str, cm.Choice] = {}

    def run(self, module: Module) -> None:
        target = self.target_config or load_target(self.target)
        tiling = choose_tiling(target)
        per_value = parse_densities(self.densities) if self.densities else {}
        names = {a.name_hint or f"arg{a.index}" for f in module.funcs for a in f.arguments}
        unknown = sorted(set(per_value) - names)
        if unknown and module.funcs:
            raise error_at(module.funcs[0], f"select-formats{{densities}} names {', '.join(unknown)}, "
                                            f"no argument of the module (arguments: "
                                            f"{', '.join(sorted(names)) or 'none'})")
        fixed = _fixed_format(self.fixed) if self.fixed else ""
        for func in module.funcs:
            for arg, attrs in zip(func.arguments, func.body.arg_attributes):
                if not isinstance(arg.type, TensorType) or arg.type.rank != 2:
                    if self.remarks and isinstance(arg.type, TensorType) and arg.type.rank == 4:
                        self._conv_remark(func, arg, attrs, per_value)
                    continue
                name = arg.name_hint or f"arg{arg.index}"
                mask = self.masks.get(name)
                density = self._density(func, arg, attrs, name, per_value, mask)
                if density is None:
                    continue
                uses = [op for op in func.body.ops if arg in op.operands]
                rows, cols = _dims_2d(arg.type)
                # an update without a mask keeps a sparse param's zeros: dense would not
                pinned = next((op.name for op in uses if op.name in UPDATES
                               and op.operands[0] is arg and keeps_pattern(op)), None)
                current = encoding_to_format(arg.type.encoding) if arg.type.encoding else "dense"  # type: ignore[union-attr]
                holder = _nm_result_held_by(func, arg)
                if holder is not None:  # its format is part of another value's type
                    if self.remarks:
                        self._held_remark(holder, name, current)
                    continue
                if fixed:
                    choice = current if pinned and fixed == "dense" else fixed
                    costs = {choice: 0.0}
                else:
                    cands = [f for f in cm.candidates(mask, rows, cols) if not pinned or f != "dense"]
                    costs = {f: self._cost(target, tiling.t, f, arg, uses, mask, density)
                             for f in cands}
                    choice = cm.choose(costs, current)
                self.choices[name] = cm.Choice(choice, costs, density)
                self._rewrite(module, func, arg, attrs, choice)
                if self.remarks:
                    self._remark(func, uses, name, choice, costs, density, bool(fixed), pinned)

    # ---- what to cost -----------------------------------------------------------------
    def _density(self, func: FuncOp, arg: Value, attrs: dict, name: str,
                 per_value: dict[str, float], mask: np.ndarray | None) -> float | None:
        if mask is not None:
            return float(np.mean(np.asarray(mask) != 0))
        if name in per_value:
            return per_value[name]
        if "density" in attrs:
            value = attrs["density"]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise error_at(func, f"argument '%{name}': density must be a fraction in [0, 1], "
                                     f"got {value!r}")
            return float(value)
        if arg.type.encoding is not None and self.density > 0:  # type: ignore[union-attr]
            return self.density / 100.0
        return None

    def _cost(self, target, t: int, fmt: str, value: Value, uses: list[Operation],
              mask: np.ndarray | None, density: float) -> float:
        rows, cols = _dims_2d(value.type)  # type: ignore[arg-type]
        total = 0.0
        for op in uses:
            if op.name not in GEMMS:
                continue
            gemm = self._gemm(op, value, fmt, mask, density)
            if gemm is None:
                continue
            m, n, k, a, b, sample = gemm
            out_enc = op.result.type.encoding  # type: ignore[union-attr]
            out_fmt = encoding_to_format(out_enc) if out_enc else "dense"  # it pins the tiles
            try:
                total += cm.gemm_cost(target, m, n, k, a, b, t=t, sample=sample,
                                      out_fmt=out_fmt).cycles
            except IRError as exc:
                if exc.pos is not None:
                    raise
                # the model's kernel context has no IR op to point at: point at this GEMM
                message = exc.message
                if message.startswith("'"):  # "'graph.matmul': ...", the context's stand-in op
                    message = message.split("': ", 1)[-1]
                name = value.name_hint or f"arg{value.index}"
                raise error_at(op, f"costing %{name} as {fmt}: {message}") from exc
        if total == 0.0:  # no GEMM use: the cost of loading it once
            total = sum(cm.tile_cost(target, fmt, min(t, rows - r0), min(t, cols - c0),
                                     mask=None if mask is None else mask[r0:r0 + t, c0:c0 + t],
                                     density=density).load_cycles
                        for r0 in range(0, rows, t) for c0 in range(0, cols, t))
        return total

    def _gemm(self, op: Operation, value: Value, fmt: str, mask, density: float):
        """(m, n, k, A, B, S) of a GEMM use, with ``value`` in ``fmt`` (S: an sddmm's
        sample, the ``m x n`` mask its outputs are computed at, else None); None for a
        batched matmul."""
        def operand(v: Value, rows: int, cols: int, transposed: bool = False) -> cm.Operand:
            if v is value:
                return cm.Operand(rows, cols, fmt, mask, density, transposed)
            enc = v.type.encoding  # type: ignore[union-attr]
            return cm.Operand(rows, cols, encoding_to_format(enc) if enc else "dense", None, 1.0,
                              transposed)

        x, w = op.operands[0], op.operands[1]
        if op.name == "graph.linear":
            # x[..., K]: every leading dim is a row of the GEMM (as the linear kernel views it)
            shape = x.type.shape  # type: ignore[union-attr]
            m, k = int(np.prod(shape[:-1])), shape[-1]
            n = w.type.shape[0]  # type: ignore[union-attr]
            return m, n, k, operand(x, m, k), operand(w, n, k, True), None
        ta = bool(op.attributes.get("transpose_a", False))
        tb = bool(op.attributes.get("transpose_b", False))
        if x.type.rank != 2 or w.type.rank != 2:  # type: ignore[union-attr]
            return None
        ra, ca = x.type.shape  # type: ignore[union-attr]
        rb, cb = w.type.shape  # type: ignore[union-attr]
        m, k = (ca, ra) if ta else (ra, ca)
        n = rb if tb else cb
        # an sddmm is costed as its own kernel: the sample's tile loaded per output tile,
        # only its non-zeros computed (a load of B's tiles it is not: 30-55 % low)
        sample = operand(op.operands[2], m, n) if op.name == "graph.sddmm" else None
        return m, n, k, operand(x, ra, ca, ta), operand(w, rb, cb, tb), sample

    # ---- rewriting ----------------------------------------------------------------------
    def _rewrite(self, module: Module, func: FuncOp, arg: Value, attrs: dict, fmt: str) -> None:
        enc = format_to_encoding(fmt)
        if enc is not None and enc not in module.aliases.values():
            alias = "#" + ALIAS.get(fmt, fmt.replace(":", ""))
            if alias not in module.aliases:
                module.aliases[alias] = enc
        changed = {arg}
        arg.type = replace(arg.type, encoding=enc)  # type: ignore[type-var]
        if "sparsity" in attrs and str(attrs["sparsity"]).startswith("weight"):
            attrs["sparsity"] = f"weight:{fmt}"
        for op in func.body.ops:
            if op.name in UPDATES and op.operands[0] in changed:
                r = op.results[0]
                r.type = replace(r.type, encoding=enc)  # type: ignore[type-var]
                changed.add(r)
            if op.name == "graph.return":
                for i, v in enumerate(op.operands):
                    if v in changed:
                        func.function_result_types[i] = v.type

    def _held_remark(self, holder: Operation, name: str, current: str) -> None:
        pos = op_position(holder)
        head = f"{pos.file}:{pos.line}:{pos.col}: " if pos else ""
        (self.stream or sys.stderr).write(
            f"{head}remark: %{name}: {current} kept: this {holder.name.removeprefix('graph.')} "
            f"declares an N:M result that its {current} mask makes N:M\n")

    def _conv_remark(self, func: FuncOp, arg: Value, attrs: dict, per_value: dict[str, float]) -> None:
        """Say why a convolution weight with a known density keeps its dense storage."""
        name = arg.name_hint or f"arg{arg.index}"
        density = self._density(func, arg, attrs, name, per_value, self.masks.get(name))
        uses = [op for op in func.body.ops if arg in op.operands and op.name.startswith("graph.conv2d")]
        if density is None or not uses:
            return
        pos = op_position(uses[0])
        head = f"{pos.file}:{pos.line}:{pos.col}: " if pos else ""
        (self.stream or sys.stderr).write(
            f"{head}remark: %{name}: dense kept at density {density:.2f}: the conv kernels read "
            f"weights dense (their zeros are still skipped by the PEs, the a operand of mm)\n")

    def _remark(self, func: FuncOp, uses: list[Operation], name: str, fmt: str,
                costs: dict[str, float], density: float, fixed: bool,
                pinned: str | None = None) -> None:
        where = next((op for op in uses if op.name in GEMMS), uses[0] if uses else func)
        pos = op_position(where)
        head = f"{pos.file}:{pos.line}:{pos.col}: " if pos else ""
        if fixed:
            text = f"%{name}: {fmt} fixed at density {density:.2f}"
        else:
            others = sorted((c, f) for f, c in costs.items() if f != fmt)
            rest = ", ".join(f"{f} {_kilo(c)}" for c, f in others)
            text = (f"%{name}: {fmt} chosen at density {density:.2f}: {_kilo(costs[fmt])} cycles"
                    + (f" vs {rest}" if rest else ""))
        if pinned:
            text += (f" (not dense: its {pinned.removeprefix('graph.')} has no mask operand and "
                     "keeps its zero pattern, which a dense encoding would drop)")
        (self.stream or sys.stderr).write(f"{head}remark: {text}\n")
