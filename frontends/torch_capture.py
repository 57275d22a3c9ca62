"""Capture a whole PyTorch training step as two core-ATen FX graphs (forward and backward).

The module is traced by ``torch.compile(fullgraph=True)`` with a backend that hands the
Dynamo graph to ``aot_autograd`` under the pinned decomposition table
(:mod:`acf.frontends.decompositions`), on PyTorch's math SDPA backend (so attention arrives
as bmm + softmax). The forward/backward compilers only record the graphs. Going through
Dynamo (rather than calling ``aot_module_simplified`` on the eager module) is what gives each
ATen node its ``stack_trace`` (user file, line and column) and ``nn_module_stack`` (layer).

The plumbing between the two graphs is aot_autograd's::

    forward(*inputs)          -> (*new values of mutated inputs, *user outputs, *saved)
    backward(*saved, *tangents) -> (one gradient or None per forward input)

:class:`CapturedGraphs` records which forward input is which parameter, buffer or user
input, which inputs are mutated (batch-norm running statistics), and the counts that split
the outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from .decompositions import decomposition_table, tracing_modes

InputKind = Literal["param", "buffer", "input"]


@dataclass(frozen=True)
class GraphInput:
    """One forward-graph placeholder: a parameter, a buffer or a user input, by name."""

    kind: InputKind
    name: str


@dataclass
class CapturedGraphs:
    """The forward and backward FX graphs of one step and the plumbing between them."""

    forward: Any                      # torch.fx.GraphModule
    backward: Any                     # torch.fx.GraphModule
    inputs: list[GraphInput]          # forward placeholders, in order
    mutated_inputs: list[int]         # forward inputs whose new values lead the outputs
    num_user_outputs: int
    tangent_outputs: list[int]        # user outputs that have a tangent (in backward order)
    num_saved: int                    # saved tensors: forward's trailing outputs

    @property
    def saved_slice(self) -> slice:
        """Where the saved tensors sit among the forward outputs."""
        start = len(self.mutated_inputs) + self.num_user_outputs
        return slice(start, start + self.num_saved)

    def input_index(self, kind: InputKind, name: str) -> int:
        return self.inputs.index(GraphInput(kind, name))


_ROOT = re.compile(r"^L\['[^']*'\]")
_MODULES = re.compile(r"\._modules\['([^']*)'\]|\[(\d+)\]|\['([^']*)'\]")


def module_path(dynamo_path: str, strip: str = "") -> str:
    """``L['self']._modules['layer1']._modules['0'].conv1`` -> ``layer1.0.conv1``."""
    path = _ROOT.sub("", dynamo_path)
    path = _MODULES.sub(lambda m: "." + next(g for g in m.groups() if g is not None), path)
    path = path.lstrip(".")
    if strip and (path == strip or path.startswith(strip + ".")):
        path = path[len(strip):].lstrip(".")
    return path


def layer_of(node: Any, strip: str = "") -> str | None:
    """The innermost module path of an FX node, if any (``nn_module_stack``; backward nodes
    carry their forward node's as ``fwd_nn_module_stack``)."""
    stack = node.meta.get("nn_module_stack") or node.meta.get("fwd_nn_module_stack")
    if not stack:
        return None
    path = module_path(list(stack.values())[-1][0], strip)
    return path or None


def capture(module: Any, example_args: tuple, arg_names: list[str] | None = None,
            strip_prefix: str = "") -> CapturedGraphs:
    """Trace ``module(*example_args)`` fwd+bwd; its first output must be the scalar loss.

    Runs one real forward and backward on ``module`` (pass a copy to keep the original's
    gradients and running statistics untouched). Other outputs should be detached so that
    they get no tangent. ``arg_names`` name the user inputs (default ``input0``...).
    """
    import torch
    from torch._dynamo.backends.common import aot_autograd
    from torch._functorch.aot_autograd import make_boxed_func
    from torch._guards import TracingContext

    rec: dict[str, Any] = {}

    def fw_compiler(gm, _inputs):
        ctx = TracingContext.try_get()
        rec["forward"], rec["meta"] = gm, ctx.fw_metadata if ctx else None
        return make_boxed_func(gm.forward)

    def bw_compiler(gm, _inputs):
        rec["backward"] = gm
        return make_boxed_func(gm.forward)

    def backend(gm, inputs):
        rec["inputs"] = list(inputs)
        return aot_autograd(fw_compiler=fw_compiler, bw_compiler=bw_compiler,
                            decompositions=decomposition_table())(gm, inputs)

    names = arg_names or [f"input{i}" for i in range(len(example_args))]
    by_id: dict[int, GraphInput] = {}
    for name, p in module.named_parameters():
        by_id[id(p)] = GraphInput("param", module_path(name, strip_prefix))
    for name, b in module.named_buffers():
        by_id[id(b)] = GraphInput("buffer", module_path(name, strip_prefix))
    for name, a in zip(names, example_args):
        by_id[id(a)] = GraphInput("input", name)

    torch._dynamo.reset()  # every capture traces afresh (no recompile limit, no stale guards)
    compiled = torch.compile(module, backend=backend, fullgraph=True, dynamic=False)
    with tracing_modes(), torch._dynamo.config.patch(allow_rnn=True):
        out = compiled(*example_args)
        loss = out[0] if isinstance(out, (tuple, list)) else out
        loss.backward()
    torch._dynamo.reset()

    meta = rec["meta"]
    if meta is None or "backward" not in rec:
        raise RuntimeError("internal error: aot_autograd produced no forward/backward graphs")
    inputs = []
    for t in rec["inputs"]:
        if id(t) not in by_id:
            shape = list(getattr(t, "shape", []))
            raise ValueError(f"forward reads a tensor of shape {shape} that is neither a "
                             "parameter, a buffer nor an input (a tensor made outside the "
                             "model, such as a global mask): register it on the model "
                             "(module.register_buffer) or pass it as an input")
        inputs.append(by_id[id(t)])
    if getattr(meta, "num_intermediate_bases", 0):
        raise RuntimeError("internal error: outputs aliasing intermediates are not supported")
    mutated = [i for i, info in enumerate(meta.input_info)
               if info.mutates_data or info.mutates_metadata]
    num_user = len(meta.output_info)
    fw_outputs = _outputs(rec["forward"])
    bw_placeholders = [n for n in rec["backward"].graph.nodes if n.op == "placeholder"]
    num_saved = len(fw_outputs) - len(mutated) - num_user
    num_tangents = len(bw_placeholders) - num_saved
    tangent_outputs = [i for i, info in enumerate(meta.output_info) if info.requires_grad]
    if num_tangents != len(tangent_outputs):
        raise ValueError(f"the step's backward takes {num_tangents} gradient inputs for "
                         f"{len(tangent_outputs)} differentiable outputs: the model does "
                         "something in place that the capture cannot follow (for example "
                         "nn.Embedding(max_norm=...), which renormalizes its weight in place)")
    return CapturedGraphs(rec["forward"], rec["backward"], inputs, mutated, num_user,
                          tangent_outputs, num_saved)


def _outputs(gm: Any) -> list[Any]:
    out = next(n for n in gm.graph.nodes if n.op == "output")
    return list(out.args[0])
