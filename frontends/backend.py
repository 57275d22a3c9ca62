"""``torch.compile(model, backend="acf", options={...})``: run forward and backward on the fabric.

::

    import acf.frontends.backend            # registers "acf" (also found via the
                                            # torch_dynamo_backends entry point)
    cmodel = torch.compile(model, backend="acf", options={"target": "acf-small"})
    loss = F.cross_entropy(cmodel(x), y)
    loss.backward()                         # .grad filled from the emulator's results

The backend hands Dynamo's graph to ``aot_autograd`` under the pinned decomposition table;
its forward and backward compilers convert each core-ATen FX graph to a ``graph.func``
(:func:`acf.frontends.aten_to_ir.convert_graph`), load it into an :class:`acf.runtime.Session`
and return a boxed callable that binds the call's tensors, runs the program on the emulator
and returns torch tensors. Every call appends a :class:`acf.runtime.StepReport` to
``acf.frontends.backend.REPORTS`` (and to any active :func:`acf.runtime.profile`).

Options (unknown names raise ``ValueError`` listing the valid ones):

* ``target``: a shipped target name or TOML path (default ``acf-small``);
* ``skip_policy``: ``none`` | ``a`` | ``ab`` - the clusters' zero-skipping (``cluster.skip``);
* ``dtype``: ``fp32`` | ``bf16`` - the numeric mode (``numeric.mode``; bf16 multiply, fp32
  accumulate);
* ``fallback``: ``error`` (default: an op with no lowering or kernel raises) or ``host``
  (such a graph runs eagerly on the host; its unsupported ops are listed in the reports'
  ``host_ops``). The fallback is per graph, not per op;
* ``report``: a path; the reports of all calls so far are written there as JSON after
  each call (a path that cannot be written is refused when the options are read, before
  anything runs);
* ``pipeline``: the pass pipeline (default ``sparse-training``).

Code between Dynamo's graph breaks (``.item()``, a data-dependent ``if``) runs on the host,
each graph on either side on the fabric; ``fullgraph=True`` makes a break an error.

Shapes are static: programs are compiled for the shapes of the first call. A call with new
input shapes (e.g. another batch size) makes Dynamo recompile; with its default automatic
dynamic shapes that second graph would be symbolic, which the backend rejects with a clear
error. Pass ``torch.compile(..., dynamic=False)``: then each new shape compiles once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compiler.codegen import CodegenError
from ..compiler.ir import Module, TensorType, Value
from ..isa.outfiles import check_file_path, write_file
from ..runtime import Session, SessionOptions, StepReport
from ..runtime.report import record
from ..runtime.torch_io import to_numpy, to_torch
from .aten_to_ir import (
    TORCH_ELEMENT,
    PoolIndices,
    UnsupportedOpError,
    calling_user_frame,
    convert_graph,
)
from .decompositions import decomposition_table, tracing_modes
from .ir_builder import DropoutNode, FuncBuilder, dropout_nodes

OPTIONS = {
    "target": "acf-small",
    "skip_policy": None,
    "dtype": None,
    "fallback": "error",
    "report": None,
    "pipeline": "sparse-training",
}
REPORTS: list[StepReport] = []


def parse_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """The backend's options with defaults; a clear error for unknown names or values."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise ValueError(f"acf backend: unknown option(s) {', '.join(map(repr, unknown))}; "
                         f"valid options: {', '.join(sorted(OPTIONS))}")
    opts = {**OPTIONS, **given}
    if opts["fallback"] not in ("error", "host"):
        raise ValueError(f"acf backend: fallback must be 'error' or 'host', got "
                         f"{opts['fallback']!r}")
    if opts["skip_policy"] not in (None, "none", "a", "ab"):
        raise ValueError(f"acf backend: skip_policy must be 'none', 'a' or 'ab', got "
                         f"{opts['skip_policy']!r}")
    if opts["dtype"] not in (None, "fp32", "bf16"):
        raise ValueError(f"acf backend: dtype must be 'fp32' or 'bf16', got {opts['dtype']!r}")
    if opts["report"] is not None:
        _check_report_path(opts["report"])
    return opts


def _check_report_path(path: Any) -> None:
    """The report is written after each call, once the fabric has run the graph: a path
    that cannot be written must fail here, before anything runs, not lose that call's
    output to an OSError."""
    if not isinstance(path, str | os.PathLike) or not str(path):
        raise ValueError(f"acf backend: report must be a file path, got {path!r}")
    try:
        check_file_path(str(path))
    except OSError as exc:  # 'out/': resolving it would write a file named 'out'
        raise ValueError(f"acf backend: report {str(path)!r}: {exc.strerror}") from None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise ValueError(f"acf backend: report {str(path)!r} is a directory; give a file path")
    if not parent.is_dir():
        raise ValueError(f"acf backend: report {str(path)!r}: directory {str(parent)!r} "
                         "does not exist")
    if not os.access(p if p.exists() else parent, os.W_OK):
        raise ValueError(f"acf backend: report {str(path)!r} is not writable")


def _target(opts: dict[str, Any]) -> Any:
    from ..isa.target import load_target

    overrides: dict[str, Any] = {}
    if opts["skip_policy"] is not None:
        overrides["cluster.skip"] = opts["skip_policy"]
    if opts["dtype"] is not None:
        overrides["numeric.mode"] = opts["dtype"]
    return load_target(opts["target"], overrides or None)


class FabricGraph:
    """One FX graph compiled for the fabric (or kept on the host under ``fallback=host``)."""

    def __init__(self, gm: torch.fx.GraphModule, example_inputs: list[Any], kind: str,
                 session: Session, opts: dict[str, Any]) -> None:
        self.gm, self.kind, self.opts, self.session = gm, kind, opts, session
        self.host_ops: list[str] = []
        self.none_outputs: list[int] = []
        self.pool_indices: dict[int, PoolIndices] = {}  # output -> computed on the host
        self.dropouts: list[DropoutNode] = []
        self.bool_outputs: set[int] = set()
        self.int_outputs: dict[int, torch.dtype] = {}  # output -> eager's integer dtype
        self.passthrough: dict[int, int] = {}  # output -> the input it returns unchanged
        self.constants: dict[int, np.ndarray] = {}  # output -> its value (host-folded indices)
        self.n_outputs = 0
        try:
            self._compile(example_inputs)
            self.on_host = False
        except (UnsupportedOpError, CodegenError) as err:
            if opts["fallback"] != "host":
                raise
            self.on_host = True
            self.host_ops = [getattr(err, "op", None) or str(err).splitlines()[0]]

    def _compile(self, example_inputs: list[Any]) -> None:
        types, names = [], []
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        promoted = {n for n in placeholders if _read_as_float(n)}
        for i, x in enumerate(example_inputs):
            if not isinstance(x, torch.Tensor):
                raise UnsupportedOpError("<non-tensor graph input>", None,
                                         f"input {i} is {type(x).__name__}")
            if x.dtype not in TORCH_ELEMENT:
                raise _unsupported_dtype(x.dtype)
            # a bool input (a dropout keep-mask saved for the backward) is 0/1 f32 on the
            # fabric (int32 indices are i64 ones: TORCH_ELEMENT)
            element = "f32" if x.dtype == torch.bool or placeholders[i] in promoted \
                else TORCH_ELEMENT[x.dtype]
            types.append(TensorType(tuple(int(d) for d in x.shape), element))
            names.append(f"arg{i}")
        self.dropouts = dropout_nodes(self.gm)  # keep-masks drawn with torch's RNG per call
        types += [TensorType(d.shape) for d in self.dropouts]
        names += [f"dropout.{d.name}" for d in self.dropouts]
        b = FuncBuilder(self.kind, types, names)
        b.use_dropout_masks(self.dropouts, len(example_inputs))
        outs = convert_graph(b, self.gm, b.args[:len(example_inputs)],
                             default_loc=calling_user_frame())
        out_node = next(n for n in self.gm.graph.nodes if n.op == "output")
        self.bool_outputs = {i for i, a in enumerate(out_node.args[0])
                             if isinstance(a, torch.fx.Node) and isinstance(a.meta.get("val"), torch.Tensor)
                             and a.meta["val"].dtype == torch.bool}
        # integer outputs (a count, labels + 1) come back from the fabric as numbers:
        # returned in eager's dtype
        self.int_outputs = {i: a.meta["val"].dtype for i, a in enumerate(out_node.args[0])
                            if isinstance(a, torch.fx.Node)
                            and isinstance(a.meta.get("val"), torch.Tensor)
                            and not a.meta["val"].is_floating_point()
                            and a.meta["val"].dtype != torch.bool}
        self.n_outputs = len(outs)
        self.none_outputs = [i for i, v in enumerate(outs) if v is None]
        self.pool_indices = {i: v for i, v in enumerate(outs) if isinstance(v, PoolIndices)}
        # an input returned as it is (token ids saved for the backward) stays on the host:
        # the fabric may hold it in another form (one-hot)
        given = {id(a): k for k, a in enumerate(b.args[:len(example_inputs)])}
        self.passthrough = {i: given[id(v)] for i, v in enumerate(outs) if id(v) in given}
        # a constant output (index tensors an upsampling saves for its backward) is
        # returned from the host, not stored by the program and read back
        self.constants = {i: np.array(v.defining_op.attributes["value"].array)
                          for i, v in enumerate(outs)
                          if isinstance(v, Value) and v.defining_op is not None
                          and v.defining_op.name == "graph.constant"}
        values = [v.x if isinstance(v, PoolIndices) else v for i, v in enumerate(outs)
                  if v is not None and i not in self.passthrough and i not in self.constants]
        self.name = f"{self.kind}{id(self)}"
        self.session.load(Module([b.finish(values)]), name=self.name)

    def __call__(self, args: list[Any]) -> list[Any]:
        if self.on_host:
            outs = self.gm(*args)
            rep = StepReport(step=0, program=self.kind, variant="host", target="host",
                             total_cycles=0, seconds=0.0, energy_j=0.0,
                             host_ops=list(self.host_ops))
            _keep(rep, self.opts)
            return list(outs)
        arrays = [to_numpy(a, f"arg{i}") for i, a in enumerate(args)]
        arrays = [a.astype(np.float32) if a.dtype == np.bool_ else a for a in arrays]
        # drawn as eager dropout draws them (bernoulli on torch's generator, in graph order)
        arrays += [d.draw() for d in self.dropouts]
        kept = {i: args[k] for i, k in self.passthrough.items()}
        args.clear()  # boxed calling convention: the callee may free its inputs
        res = self.session.run_step(arrays, program=self.name)
        _keep(res.report, self.opts)
        it = iter(res.values)
        out: list[Any] = []
        for i in range(self.n_outputs):
            if i in kept:
                out.append(kept[i])
                continue
            if i in self.constants:
                out.append(torch.from_numpy(self.constants[i].copy()))
                continue
            value = None if i in self.none_outputs else np.asarray(next(it))
            if value is not None and i in self.bool_outputs:
                value = value != 0
            elif value is not None and i in self.int_outputs and i not in self.pool_indices:
                # exact: the fabric's integers are exact in fp32 below 2^24
                out.append(to_torch(np.rint(value)).to(self.int_outputs[i]))
                continue
            out.append(None if value is None else to_torch(value))
        for i, p in self.pool_indices.items():  # the fabric returned the pool input
            out[i] = torch.ops.aten.max_pool2d_with_indices(out[i], list(p.kernel_size),
                                                             list(p.stride), list(p.padding))[1]
        return out


def _unsupported_dtype(dtype: torch.dtype) -> UnsupportedOpError:
    """A graph input (parameter, buffer or input) of a dtype the fabric has no values of,
    at the user's call that compiles the graph."""
    import linecache

    loc = calling_user_frame()
    code = linecache.getline(loc.file, loc.line).rstrip() if loc else ""
    if dtype.is_floating_point:
        reason = ("the fabric computes in fp32: make the model and its inputs fp32 "
                  "(model.float(), x.float()); for bf16 multiplies, compile the fp32 model "
                  "with options={'dtype': 'bf16'}")
    else:
        reason = "the fabric has f32 values and integer indices (int64, int32) and bools"
    return UnsupportedOpError(str(dtype), loc, reason, code or None, kind="dtype")


#: float arithmetic an integer operand takes part in promoted to float (torch's promotion)
_FLOAT_ARITHMETIC = frozenset({torch.ops.aten.div.Tensor, torch.ops.aten.mul.Tensor,
                               torch.ops.aten.add.Tensor, torch.ops.aten.sub.Tensor})


def _read_as_float(placeholder: torch.fx.Node) -> bool:
    """An integer input whose every use is float arithmetic: a count a mean divides by
    (cross entropy's under label smoothing, saved for the backward). It is declared f32:
    the runtime stores an integer input that is not taken one-hot as f32 values anyway,
    exact up to 2^24, and torch promotes it to float in that arithmetic as well."""
    val = placeholder.meta.get("val")
    if not isinstance(val, torch.Tensor) or val.dtype not in (torch.int64, torch.int32):
        return False
    users = list(placeholder.users)
    return bool(users) and all(
        u.target in _FLOAT_ARITHMETIC and isinstance(u.meta.get("val"), torch.Tensor)
        and u.meta["val"].is_floating_point() for u in users)


def _keep(report: StepReport, opts: dict[str, Any]) -> None:
    REPORTS.append(report)
    if report.variant == "host":
        record(report)
    if opts["report"]:  # whole or not at all (isa.outfiles): a reader never sees half a file
        write_file(str(opts["report"]), (json.dumps(
            {"steps": [r.as_dict() for r in REPORTS]}, sort_keys=True, indent=2) + "\n").encode())


def acf_backend(gm: torch.fx.GraphModule, example_inputs: list[Any],
                options: dict[str, Any] | None = None, **kwargs: Any) -> Callable:
    """The Dynamo backend (``torch.compile(..., backend="acf", options=...)``)."""
    from torch._dynamo.backends.common import aot_autograd

    opts = parse_options({**(options or {}), **kwargs})
    _reject_dynamic(example_inputs)
    session = Session(_target(opts), SessionOptions(pipeline=opts["pipeline"]))

    def compiler(kind: str) -> Callable:
        def compile_graph(fx_gm: torch.fx.GraphModule, inputs: list[Any]) -> Callable:
            return _boxed(FabricGraph(fx_gm, list(inputs), kind, session, opts))
        return compile_graph

    # aot_autograd traces forward and backward here: attention as bmm + softmax (the CPU
    # flash kernel has no lowering), recurrent layers as their GEMMs (see decompositions)
    with tracing_modes():
        return aot_autograd(fw_compiler=compiler("forward"), bw_compiler=compiler("backward"),
                            decompositions=decomposition_table())(gm, example_inputs)


def _reject_dynamic(example_inputs: list[Any]) -> None:
    for i, x in enumerate(example_inputs):
        symbolic = isinstance(x, torch.SymInt) or (
            isinstance(x, torch.Tensor) and any(not isinstance(d, int) for d in x.shape))
        if symbolic:
            raise ValueError(
                "acf backend: dynamic shapes are not supported (programs are compiled for "
                "static shapes); this graph has a symbolic shape, e.g. after a call with a "
                "new batch size. Use torch.compile(model, backend='acf', dynamic=False): each "
                "new shape is then compiled once.")


def _boxed(graph: FabricGraph) -> Callable:
    def run(args: list[Any]) -> list[Any]:
        return graph(args)
    run._boxed_call = True  # type: ignore[attr-defined]
    return run


def register() -> None:
    """Register ``"acf"`` with Dynamo (idempotent), and let Dynamo trace recurrent layers.

    Dynamo runs ``nn.LSTM``/``nn.GRU``/``nn.RNN`` eagerly on the host, outside every graph
    and without a word, unless ``torch._dynamo.config.allow_rnn`` is set; a model compiled
    for the fabric would then leave its recurrent layers off the fabric's numbers. The
    setting is process-wide (Dynamo reads it when it traces the user's call, after the
    backend is looked up), so importing this module turns it on.

    Where Dynamo already knows ``"acf"`` from the installed package's entry point, this
    module is being imported by that entry point's load (``torch.compile(backend="acf")``
    without importing acf first) or will be on first use; Dynamo registers the function
    itself right after the load and refuses a name registered twice, so it is left to do so.
    """
    from torch._dynamo.backends.registry import _BACKENDS, _COMPILER_FNS, register_backend

    torch._dynamo.config.allow_rnn = True
    if _COMPILER_FNS.get("acf") is acf_backend or _BACKENDS.get("acf") is not None:
        return
    _COMPILER_FNS.pop("acf", None)  # another "acf" registered by hand: ours replaces it
    register_backend(compiler_fn=acf_backend, name="acf")


register()
