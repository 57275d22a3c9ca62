"""Capture a whole training step (forward, backward, optimizer update) as one ``graph.func``.

::

    step = capture_training_step(model, (x,), labels=y, optimizer="sgd",
                                 optimizer_options={"lr": 0.1, "momentum": 0.9},
                                 masks={"fc1.weight": mask})
    print(step.text())       # graph.func @train_step(%fc1.weight: ..., %x: ..., ...) {...}
    outs = run_func(step.func, step.bind(model, (x,), y, masks=...))

``@train_step`` takes, in order (see :attr:`CapturedStep.arguments`): every parameter and
buffer of the model (``named_parameters`` / ``named_buffers`` order), the user inputs, the
labels, one 0/1 mask per masked parameter, and the optimizer state (``momentum_buf`` per
updated parameter for SGD with momentum; ``adam_m``, ``adam_v`` per updated parameter and one
``adam_step``, 1-based, for Adam). It returns (see :attr:`CapturedStep.results`): the loss,
the model output, one gradient per parameter, the updated parameters, the updated buffers
that the step mutates (batch-norm running statistics), and the updated optimizer state.

The optimizer is ``"sgd"``, ``"adam"`` or ``"adamw"`` with ``optimizer_options``, or a
``torch.optim.SGD``/``Adam``/``AdamW`` built on ``model``: each of its param groups keeps
its own settings (e.g. no weight decay on biases and norms). A parameter the optimizer does
not update (``requires_grad=False``, or in no group) is not an updated result and keeps
its value, as in torch. :meth:`CapturedStep.bind` starts from the state such an optimizer
holds (momentum buffers, Adam's moments and step count), so that a run resumed after
eager steps continues where they left off; a named optimizer starts from zeros (step 1).

A masked parameter ``w`` enters the forward pass as ``graph.mask_apply %w, %mask``; its
gradient is masked the same way and so is the updated parameter (pruned weights stay zero).
Masks are arguments, so changing a mask needs no recapture.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..compiler.ir import Location, Module, TensorType, Value
from ..compiler.passes import PASSES
from ..compiler.printer import print_module
from ..compiler.verifier import verify_module
from .aten_to_ir import TORCH_ELEMENT, convert_graph
from .ir_builder import DropoutNode, FuncBuilder, dropout_nodes
from .torch_capture import CapturedGraphs, capture

WRAPPED = "model"  # attribute of the capture wrapper holding the user's model


@dataclass(frozen=True)
class Binding:
    """What one IR argument or result is: ``Binding("param", "fc1.weight")``."""

    kind: str
    name: str = ""


@dataclass(frozen=True)
class OptimizerConfig:
    """``sgd`` (lr, momentum, weight_decay, nesterov), ``adam`` (lr, betas, eps, weight_decay: added
    to the gradient) or ``adamw`` (the same, the weight decay decoupled: the parameter is
    scaled by ``1 - lr * weight_decay`` before the Adam step, as torch.optim.AdamW does)."""

    kind: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 1e-3  # torch.optim's default for SGD, Adam and AdamW
    momentum: float = 0.0
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    nesterov: bool = False

    @classmethod
    def make(cls, optimizer: Any, options: dict[str, Any] | None) -> OptimizerConfig:
        """The settings of ``optimizer`` (a torch optimizer: of its first param group, see
        :func:`param_settings` for every parameter's), or of the named optimizer with
        ``options``."""
        if isinstance(optimizer, torch.optim.Optimizer):
            return cls.of_group(optimizer, optimizer.param_groups[0])
        if optimizer not in ("sgd", "adam", "adamw"):
            raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw' or a "
                             f"torch.optim.SGD/Adam/AdamW, got {optimizer!r}")
        valid = {"sgd": ("lr", "momentum", "weight_decay", "nesterov"),
                 "adam": ("lr", "betas", "eps", "weight_decay"),
                 "adamw": ("lr", "betas", "eps", "weight_decay")}[optimizer]
        unknown = sorted(set(options or {}) - set(valid))
        if unknown:
            raise ValueError(f"optimizer_options: unknown option(s) "
                             f"{', '.join(map(repr, unknown))} for {optimizer!r}; valid: "
                             f"{', '.join(valid)}")
        if optimizer == "adamw":  # torch.optim.AdamW's default decay
            options = {"weight_decay": 0.01, **(options or {})}
        options = dict(options or {})
        if options.get("nesterov") and not float(options.get("momentum", 0.0)) > 0:
            raise ValueError("optimizer_options: nesterov needs a momentum > 0 (as in "
                             "torch.optim.SGD)")
        return cls(optimizer, **options)

    @classmethod
    def of_group(cls, optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> OptimizerConfig:
        """The settings of one param group of a torch.optim.SGD, Adam or AdamW."""
        kind = {torch.optim.SGD: "sgd", torch.optim.Adam: "adam",
                torch.optim.AdamW: "adamw"}.get(type(optimizer))
        if kind is None:
            raise ValueError(f"only torch.optim.SGD / Adam / AdamW are supported, got "
                             f"{type(optimizer).__name__}")
        unsupported = [k for k in ("dampening", "amsgrad", "maximize") if group.get(k)]
        if unsupported:  # each would change the update the step computes
            raise ValueError(f"{type(optimizer).__name__}({unsupported[0]}=...) is not "
                             "supported")
        if kind == "adam" and group.get("decoupled_weight_decay"):
            kind = "adamw"  # Adam(decoupled_weight_decay=True) is AdamW
        opts = {k: group[k] for k in ("lr", "momentum", "weight_decay", "betas", "eps",
                                      "nesterov") if k in group}
        return cls(kind, **{k: (tuple(v) if k == "betas" else
                                bool(v) if k == "nesterov" else float(v))
                            for k, v in opts.items()})


def param_settings(model: nn.Module, optimizer: Any, opt: OptimizerConfig
                   ) -> dict[str, OptimizerConfig]:
    """The settings each parameter the optimizer updates is updated with, by name: a torch
    optimizer's param groups each give their own (their lr, weight decay, momentum...); a
    named optimizer updates every parameter that requires grad with ``opt``. A parameter
    left out (frozen, ``requires_grad=False``, or in no param group) keeps its value, as in
    torch, whose optimizer skips a parameter without a gradient (weight decay included)."""
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not isinstance(optimizer, torch.optim.Optimizer):
        return {n: opt for n, _ in trainable}
    group_of = {id(p): OptimizerConfig.of_group(optimizer, g)
                for g in optimizer.param_groups for p in g["params"]}
    names = {id(p) for _, p in model.named_parameters()}
    strangers = sum(1 for i in group_of if i not in names)
    if strangers:
        raise ValueError(f"the optimizer holds {strangers} tensor(s) that are not parameters "
                         f"of the model (build it on the model passed to the capture)")
    return {n: group_of[id(p)] for n, p in trainable if id(p) in group_of}


@dataclass
class CapturedStep:
    """The IR of one training step and what each of its arguments and results is."""

    module: Module
    graphs: CapturedGraphs
    arguments: list[Binding]
    results: list[Binding]
    optimizer: OptimizerConfig
    masked: list[str] = field(default_factory=list)
    dropouts: list[DropoutNode] = field(default_factory=list)  # keep-mask arguments
    #: the settings each updated parameter is updated with (see :func:`param_settings`)
    settings: dict[str, OptimizerConfig] = field(default_factory=dict)
    #: the torch optimizer the step was captured with (None for a named one), and the
    #: parameters it keys its state by, by name: :meth:`bind` starts from that state
    torch_optimizer: Any = None
    optimizer_params: dict[str, Any] = field(default_factory=dict)

    @property
    def func(self):
        return self.module.func("train_step")

    def text(self) -> str:
        return print_module(self.module)

    def bind(self, model: nn.Module, inputs: tuple, labels: Any = None,
             masks: dict[str, Any] | None = None,
             state: dict[Binding, Any] | None = None) -> list[np.ndarray]:
        """Arrays in argument order. The optimizer state is, in this order: what ``state``
        gives; else what the torch optimizer the step was captured with holds now (its
        ``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``, and ``adam_step`` one past its
        ``step``: a run resumed after eager steps continues as eager would); else zeros
        (step 1, as a fresh optimizer)."""
        params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
        _check_static(self, inputs, labels)
        given = self.optimizer_state(without=set(state or {}))
        given.update({Binding("input", f"input{i}"): x for i, x in enumerate(inputs)})
        given[Binding("label", "labels")] = labels
        for name, m in (masks or {}).items():
            given[Binding("mask", name)] = m
        given.update(state or {})
        out = []
        for arg, binding in zip(self.func.arguments, self.arguments):
            if binding.kind in ("param", "buffer"):
                value = (params if binding.kind == "param" else buffers)[binding.name]
            elif binding in given:
                value = given[binding]
            elif binding.kind == "adam_step":
                value = 1.0
            elif binding.kind == "dropout":  # drawn as torch's dropout draws its mask
                value = next(n for n in self.dropouts if n.name == binding.name).draw()
            else:
                value = np.zeros(arg.type.shape, np.float32)  # type: ignore[union-attr]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            out.append(np.asarray(value))
        return out

    def optimizer_state(self, without: set[Binding] | frozenset[Binding] = frozenset()
                        ) -> dict[Binding, Any]:
        """The state of the torch optimizer the step was captured with, as it is now, by
        argument: SGD's ``momentum_buffer`` and Adam's ``exp_avg`` and ``exp_avg_sq`` of
        each parameter that has them, and ``adam_step`` = the steps taken + 1 (the step
        about to be taken, 1-based); arguments in ``without`` are left out. Empty for a
        named optimizer or one that has not stepped. Raises ValueError where Adam's
        parameters have taken different numbers of steps: the step has one ``adam_step``
        for all of them."""
        opt = self.torch_optimizer
        if opt is None:
            return {}
        keys = {"momentum_buf": "momentum_buffer", "adam_m": "exp_avg", "adam_v": "exp_avg_sq"}
        out: dict[Binding, Any] = {}
        taken: dict[str, int] = {}
        for binding in self.arguments:
            if binding.kind not in keys or binding in without:
                continue
            held = opt.state.get(self.optimizer_params[binding.name], {})
            value = held.get(keys[binding.kind])
            if value is not None:
                out[binding] = value.detach().clone()
            if binding.kind == "adam_m":
                taken[binding.name] = int(float(held["step"])) if "step" in held else 0
        step = Binding("adam_step")
        if step in self.arguments and step not in without and any(taken.values()):
            counts = sorted(set(taken.values()))
            if len(counts) > 1:
                detail = ", ".join(f"{n}: {c}" for n, c in taken.items())
                raise ValueError(f"the optimizer's parameters have taken different numbers of "
                                 f"steps ({detail}); the captured step has one adam_step for "
                                 "all of them: pass state={Binding('adam_step'): ...} and the "
                                 "moments to choose")
            out[step] = float(counts[0] + 1)
        return out

    def observe(self, op_name: str) -> list[Binding]:
        """Also return the result of every ``op_name`` op (e.g. ``"graph.relu"``), in program
        order, as ``Binding("observed", "relu0")``...; call before loading the module.

        An observed value stays in DRAM to the end of the step instead of sharing its memory
        once dead, so observing can shift a run's cycles slightly. Used to check the fabric
        against a reference that takes the fabric's own ReLU decisions."""
        func = self.func
        ret = func.return_op
        if ret is None:
            raise ValueError("the captured function has no graph.return")
        short = op_name.split(".")[-1]
        added = []
        for op in list(func.body.ops):
            if op.name != op_name:
                continue
            for value in op.results:
                ret.operands.append(value)
                func.function_result_types.append(value.type)
                added.append(Binding("observed", f"{short}{len(added)}"))
        self.results.extend(added)
        return added

    def unpack(self, outputs: list[np.ndarray]) -> dict[Binding, np.ndarray]:
        """``{Binding("grad", "fc1.weight"): array, ...}`` from the function's results."""
        return dict(zip(self.results, outputs))


class _StepModule(nn.Module):
    """model + loss, returning (loss, detached output) so only the loss has a tangent."""

    def __init__(self, model: nn.Module, loss_fn: Callable | None, has_labels: bool) -> None:
        super().__init__()
        setattr(self, WRAPPED, model)
        self.loss_fn = loss_fn
        self.has_labels = has_labels

    def forward(self, *args: Any) -> tuple:
        inputs, labels = (args[:-1], args[-1]) if self.has_labels else (args, None)
        out = getattr(self, WRAPPED)(*inputs)
        if self.loss_fn is None and not self.has_labels:
            return (out,)
        loss = self.loss_fn(out, labels) if self.has_labels else self.loss_fn(out)
        return (loss, out.detach()) if isinstance(out, torch.Tensor) else (loss,)


def _ttype(t: torch.Tensor) -> TensorType:
    return TensorType(tuple(int(d) for d in t.shape), TORCH_ELEMENT[t.dtype])


def capture_training_step(model: nn.Module, example_inputs: tuple, labels: Any = None,
                          loss_fn: Callable | None = None, optimizer: Any = "sgd",
                          masks: dict[str, Any] | None = None,
                          optimizer_options: dict[str, Any] | None = None) -> CapturedStep:
    """Capture ``loss_fn(model(*example_inputs), labels)``, its backward and one optimizer
    step as ``@train_step``. ``loss_fn`` defaults to cross entropy when labels are given;
    with neither, the model must return the scalar loss. The model is not modified."""
    frame = inspect.stack()[1]
    caller = Location(frame.filename, frame.lineno, 1)
    opt = OptimizerConfig.make(optimizer, optimizer_options)
    _check_arguments(model, example_inputs, labels, masks)
    if labels is not None and loss_fn is None:
        loss_fn = torch.nn.functional.cross_entropy
    inputs = tuple(example_inputs)
    wrapper = _StepModule(copy.deepcopy(model), loss_fn, labels is not None)
    args = inputs + ((labels,) if labels is not None else ())
    names = [f"input{i}" for i in range(len(inputs))] + (["labels"] if labels is not None else [])
    graphs = capture(wrapper, args, names, strip_prefix=WRAPPED)
    masked = [n for n, _ in model.named_parameters() if masks and n in masks]
    settings = param_settings(model, optimizer, opt)
    skipped = _without_gradient(graphs, settings)  # torch's optimizer skips a parameter whose
    settings = {n: s for n, s in settings.items() if n not in skipped}  # .grad stays None
    step = _build(model, inputs, labels, graphs, settings, masked, caller, opt)
    if isinstance(optimizer, torch.optim.Optimizer):
        step.torch_optimizer = optimizer
        step.optimizer_params = dict(model.named_parameters())
    _note_densities(step, masks or {})
    return step


def _without_gradient(graphs: CapturedGraphs, names) -> set[str]:
    """Of ``names``, the parameters the loss gives no gradient: not inputs of the captured
    graphs at all (unused by forward), or inputs the backward graph returns None for."""
    out_node = next(n for n in graphs.backward.graph.nodes if n.op == "output")
    with_grad = {gi.name for gi, g in zip(graphs.inputs, out_node.args[0])
                 if gi.kind == "param" and g is not None}
    return set(names) - with_grad


def _note_densities(step: CapturedStep, masks: dict[str, Any]) -> None:
    """Record each example mask's density as a ``density`` attribute of its mask argument:
    a hint the compiler's cost models use to tile for zero-skipping (masks stay data: a
    different mask at run time is still correct, only tiled for this density)."""
    for binding, attrs in zip(step.arguments, step.func.body.arg_attributes):
        if binding.kind == "mask" and binding.name in masks:
            m = torch.as_tensor(masks[binding.name])
            density = float((m != 0).float().mean()) if m.numel() else 0.0
            attrs["density"] = round(density, 4)


def _dense(x: Any, what: str) -> None:
    if isinstance(x, torch.Tensor) and x.layout != torch.strided:
        raise ValueError(f"{what}: a {x.layout} tensor is not supported; pass a dense "
                         f"(strided) tensor, e.g. x.to_dense() (sparsity reaches the fabric "
                         f"through masks, which it stores in its own formats)")


def _fp32(x: Any, what: str) -> None:
    """Floating tensors must be fp32 (the fabric trains fp32 models; bf16 is a target mode)."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float32:
        raise ValueError(f"{what} is {x.dtype}; the capture takes fp32 models and inputs "
                         "(model.float(), x.float())")


def _check_arguments(model: nn.Module, inputs: Any, labels: Any,
                     masks: dict[str, Any] | None) -> None:
    """Clear errors for arguments the capture cannot take (before tracing starts)."""
    if not isinstance(inputs, (tuple, list)):
        raise ValueError(f"example_inputs must be a tuple of tensors, got {type(inputs).__name__}")
    for i, x in enumerate(inputs):
        _dense(x, f"example_inputs[{i}]")
        _fp32(x, f"example_inputs[{i}]")
        if isinstance(x, torch.Tensor) and x.numel() == 0:
            raise ValueError(f"example_inputs[{i}] is empty (shape {list(x.shape)}); the step "
                             "needs at least one sample")
    _dense(labels, "labels")
    for name, p in model.named_parameters():
        _dense(p, f"parameter {name!r}")
        _fp32(p, f"parameter {name!r}")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.momentum is None:
            raise ValueError(f"{name or 'the model'}: {type(m).__name__}(momentum=None) keeps a "
                             "cumulative average whose factor depends on the step count, which "
                             "tracing cannot follow; give it a momentum (0.1 is torch's default)")
        if isinstance(m, nn.RNNBase) and m.training and m.dropout and m.num_layers > 1:
            raise ValueError(f"{name or 'the model'}: {type(m).__name__}(dropout={m.dropout}) "
                             "drops out between its layers, which the capture does not see "
                             "(it would train without it); use dropout=0, or stacked layers "
                             "with nn.Dropout between them")
    params = dict(model.named_parameters())
    for name, m in (masks or {}).items():
        if name not in params:
            raise ValueError(f"masks: {name!r} is not a parameter of the model (parameters: "
                             f"{', '.join(params)})")
        _dense(m, f"mask of {name!r}")
        if tuple(m.shape) != tuple(params[name].shape):
            raise ValueError(f"masks: mask of {name!r} has shape {list(m.shape)}, the "
                             f"parameter {list(params[name].shape)}")


def _check_static(step: CapturedStep, inputs: tuple, labels: Any) -> None:
    """Shapes are static: a new batch size needs a new capture."""
    types = dict(zip(step.arguments, step.func.arguments))
    given = [(Binding("input", f"input{i}"), x) for i, x in enumerate(inputs)]
    given.append((Binding("label", "labels"), labels))
    for binding, x in given:
        arg = types.get(binding)
        if arg is None or x is None:
            continue
        _dense(x, binding.name)
        want, got = tuple(arg.type.shape), tuple(np.shape(x))  # type: ignore[union-attr]
        if want != got:
            raise ValueError(f"{binding.name}: the step was captured for shape {list(want)}, "
                             f"got {list(got)}; shapes are static: capture the step again "
                             f"for the new shape (e.g. another batch size)")


def _build(model: nn.Module, inputs: tuple, labels: Any, graphs: CapturedGraphs,
           settings: dict[str, OptimizerConfig], masked: list[str], caller: Location,
           opt: OptimizerConfig) -> CapturedStep:
    params = list(model.named_parameters())
    buffers = list(model.named_buffers())
    arguments: list[Binding] = []
    types: list[TensorType] = []

    def arg(binding: Binding, ttype: TensorType) -> None:
        arguments.append(binding)
        types.append(ttype)

    for name, p in params:
        arg(Binding("param", name), _ttype(p))
    for name, b in buffers:
        arg(Binding("buffer", name), _ttype(b))
    for i, x in enumerate(inputs):
        arg(Binding("input", f"input{i}"), _ttype(x))
    if labels is not None:
        arg(Binding("label", "labels"), _ttype(labels))
    pshape = {name: _ttype(p) for name, p in params}
    for name in masked:
        arg(Binding("mask", name), pshape[name])
    for kind in ("momentum_buf", "adam_m", "adam_v"):
        for name, _ in params:
            s = settings.get(name)
            if s is not None and kind in _STATE[s.kind] and (kind != "momentum_buf" or s.momentum):
                arg(Binding(kind, name), pshape[name].dense())
    adam = any(s.kind in ("adam", "adamw") for s in settings.values())
    if adam:
        arg(Binding("adam_step"), TensorType((), "f32"))
    dropouts = dropout_nodes(graphs.forward)  # keep-masks: drawn by the runtime each step
    first_dropout = len(arguments)
    for node in dropouts:
        arg(Binding("dropout", node.name), TensorType(node.shape))

    b = FuncBuilder("train_step", types, [f"{a.kind}.{a.name}" if a.kind not in
                                          ("param", "buffer", "input", "label") else a.name
                                          for a in arguments])
    by = dict(zip(arguments, b.args))
    b.use_dropout_masks(dropouts, first_dropout)

    def at(layer: str) -> Location:
        return Location(caller.file, caller.line, caller.col, layer or None)

    effective: dict[Binding, Value] = dict(by)
    for name in masked:
        b.loc = at(name.rpartition(".")[0])
        effective[Binding("param", name)] = b.one(
            "graph.mask_apply", [by[Binding("param", name)], by[Binding("mask", name)]])
    fw_args = []
    for gi in graphs.inputs:
        kind = "label" if gi.kind == "input" and gi.name == "labels" else gi.kind
        fw_args.append(effective[Binding(kind, gi.name)])
    fw_out = convert_graph(b, graphs.forward, fw_args, WRAPPED, caller)
    n_mut = len(graphs.mutated_inputs)
    user = fw_out[n_mut:n_mut + graphs.num_user_outputs]
    b.loc = at("")
    tangents = [b.constant(np.ones((), np.float32)) if i == 0 else
                b.constant(np.zeros(user[i].type.shape, np.float32))
                for i in graphs.tangent_outputs]
    bw_out = convert_graph(b, graphs.backward, fw_out[graphs.saved_slice] + tangents,
                           WRAPPED, caller)

    results: list[Binding] = [Binding("loss")]
    values: list[Value] = [user[0]]
    if len(user) > 1:
        results.append(Binding("output"))
        values.append(user[1])
    grads: dict[str, Value] = {}
    for gi, g in zip(graphs.inputs, bw_out):
        if gi.kind == "param":
            grads[gi.name] = g
    for name, _ in params:
        b.loc = at(name.rpartition(".")[0])
        g = grads.get(name) or b.constant(np.zeros(pshape[name].shape, np.float32))
        if name in masked:
            g = b.one("graph.mask_apply", [g, by[Binding("mask", name)]])
        grads[name] = g
        results.append(Binding("grad", name))
        values.append(g)
    new_state: list[tuple[Binding, Value]] = []
    for name, _ in params:
        if name not in settings:  # frozen: keeps its value (no weight decay either)
            continue
        b.loc = at(name.rpartition(".")[0])
        p = by[Binding("param", name)]
        new_p, state = _update(b, settings[name], p, grads[name], by, name)
        if name in masked:
            new_p = b.one("graph.mask_apply", [new_p, by[Binding("mask", name)]])
        results.append(Binding("param", name))
        values.append(new_p)
        new_state += state
    for idx, v in zip(graphs.mutated_inputs, fw_out[:n_mut]):
        results.append(Binding("buffer", graphs.inputs[idx].name))
        values.append(v)
    if adam:
        b.loc = at("")
        step = by[Binding("adam_step")]
        new_state.append((Binding("adam_step"), b.one("graph.add", [step, b.constant(1.0)])))
    for binding, v in sorted(new_state, key=lambda s: arguments.index(s[0])):
        results.append(binding)
        values.append(v)
    module = Module([b.finish(values)])
    PASSES["dce"]().run(module)
    verify_module(module)
    return CapturedStep(module, graphs, arguments, results, opt, masked, dropouts, settings)


#: the optimizer state each kind keeps per parameter (SGD's only with a momentum)
_STATE = {"sgd": ("momentum_buf",), "adam": ("adam_m", "adam_v"), "adamw": ("adam_m", "adam_v")}


def _update(b: FuncBuilder, opt: OptimizerConfig, p: Value, g: Value,
            by: dict[Binding, Value], name: str) -> tuple[Value, list[tuple[Binding, Value]]]:
    if opt.kind == "sgd":
        buf_arg = by.get(Binding("momentum_buf", name))
        buf = buf_arg if buf_arg is not None else b.constant(
            np.zeros(p.type.shape, np.float32))  # type: ignore[union-attr]
        new_p, new_buf = b.op("graph.sgd_update", [p, g, buf], lr=float(opt.lr),
                              momentum=float(opt.momentum),
                              weight_decay=float(opt.weight_decay),
                              **({"nesterov": True} if opt.nesterov else {}))
        return new_p, ([(Binding("momentum_buf", name), new_buf)] if buf_arg is not None else [])
    m, v = by[Binding("adam_m", name)], by[Binding("adam_v", name)]
    decay = float(opt.weight_decay)
    if opt.kind == "adamw" and decay:  # decoupled: the parameter shrinks first
        p = b.one("graph.mul", [p, b.constant(np.float32(1.0 - float(opt.lr) * decay))])
        decay = 0.0
    new_p, new_m, new_v = b.op("graph.adam_update", [p, g, m, v, by[Binding("adam_step")]],
                               lr=float(opt.lr), beta1=float(opt.betas[0]),
                               beta2=float(opt.betas[1]), eps=float(opt.eps),
                               weight_decay=decay)
    return new_p, [(Binding("adam_m", name), new_m), (Binding("adam_v", name), new_v)]
