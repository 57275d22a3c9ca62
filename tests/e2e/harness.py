"""Run a captured training step on the emulator through the runtime and compare it with
eager PyTorch, step by step (forward output, loss, every gradient, parameters and buffers
after each optimizer step)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from acf.frontends.training_step import Binding, CapturedStep, capture_training_step
from acf.runtime import Session, SessionOptions, StepReport
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

RTOL = 1e-4
ATOL_REL = 1e-5     # atol = ATOL_REL * max|ref|
L2_MAX = 1e-5       # relative L2 error ||got - ref|| / ||ref||
FP32_FACTOR = 2.0   # see assert_close: fabric error vs fp64 <= 2x eager fp32's error vs fp64
# The largest element error is a tail statistic: it moves with the BLAS kernels' summation
# order more than the L2 does (the CPU decides which kernels run). On an AMD EPYC host the
# step-3 gradient of ResNet-18-reduced's layer4.1.bn1.weight has eager fp32 at 2.0e-5 of
# fp64 (max) where the fabric is at 4.4e-5, while their L2 errors are 1.9e-5 and 2.3e-5.
FP32_MAX_FACTOR = 4.0
STATE = ("momentum_buf", "adam_m", "adam_v", "adam_step")


def _name(b: Binding) -> str:
    """The IR argument name the frontend gives a binding."""
    if b.kind in ("param", "buffer", "input", "label"):
        return b.name
    return f"{b.kind}.{b.name}" if b.name else f"{b.kind}."


@dataclass
class Errors:
    """The worst errors seen over every compared tensor (for the report)."""

    rel_l2: float = 0.0
    rel_max: float = 0.0      # max|got-ref| / max|ref|
    worst: str = ""
    compared: int = 0
    # (what, L2 vs eager fp32, L2 vs fp64, eager fp32 vs fp64) where the fp64 rule applied
    l2_vs_fp64: list[tuple[str, float, float, float]] = field(default_factory=list)

    def add(self, what: str, got: np.ndarray, ref: torch.Tensor) -> None:
        r = ref.detach().double().numpy().ravel()
        g = np.asarray(got, np.float64).ravel()
        nr = float(np.linalg.norm(r))
        l2 = float(np.linalg.norm(g - r)) / nr if nr > 0 else float(np.linalg.norm(g))
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        mx = float(np.max(np.abs(g - r))) / scale if scale > 0 else 0.0
        self.compared += 1
        if l2 > self.rel_l2:
            self.rel_l2, self.worst = l2, what
        self.rel_max = max(self.rel_max, mx)


def _rel_l2(got: np.ndarray, ref: torch.Tensor) -> float:
    r = ref.detach().double().reshape(-1)
    g = torch.as_tensor(np.asarray(got, np.float64)).reshape(-1)
    nr = float(torch.linalg.vector_norm(r))
    return float(torch.linalg.vector_norm(g - r)) / nr if nr > 0 else 0.0


def _rel_max(got: np.ndarray, ref: torch.Tensor) -> float:
    r = ref.detach().double().reshape(-1)
    g = torch.as_tensor(np.asarray(got, np.float64)).reshape(-1)
    scale = float(r.abs().max()) if r.numel() else 0.0
    return float((g - r).abs().max()) / scale if scale > 0 else 0.0


def assert_close(got: Any, ref: torch.Tensor, what: str, errors: Errors | None = None,
                 exact: torch.Tensor | None = None) -> None:
    """``torch.testing.assert_close(rtol=1e-4, atol=1e-5*max|ref|)`` and relative L2 error
    <= 1e-5 against the fp32 eager result ``ref``.

    ``exact``: the same quantity from an fp64 eager run. Where one of the two checks fails,
    the fabric and eager fp32 are both compared with the exact answer: the fabric passes if
    its error vs fp64 is within the bound or at most ``FP32_FACTOR`` x eager fp32's own
    error in relative L2 and ``FP32_MAX_FACTOR`` x in max-abs/max|exact| (fp32 rounding of
    the same size as PyTorch's, not a wrong computation). Each such case is recorded in
    ``errors.l2_vs_fp64``."""
    ref = ref.detach().float()
    got_t = torch.as_tensor(np.asarray(got, np.float32)).reshape(ref.shape)
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    l2 = _rel_l2(got_t.numpy(), ref)
    try:
        torch.testing.assert_close(got_t, ref, rtol=RTOL, atol=ATOL_REL * max(scale, 1e-12),
                                   msg=lambda m: f"{what}: {m}")
        assert l2 <= L2_MAX, f"{what}: relative L2 error {l2:.3g} > {L2_MAX}"
    except AssertionError as err:
        if exact is None:
            raise
        fab_l2, eager_l2 = _rel_l2(got_t.numpy(), exact), _rel_l2(ref.numpy(), exact)
        fab_mx, eager_mx = _rel_max(got_t.numpy(), exact), _rel_max(ref.numpy(), exact)
        if fab_l2 > max(L2_MAX, FP32_FACTOR * eager_l2) or fab_mx > max(
                ATOL_REL, FP32_MAX_FACTOR * eager_mx):
            raise AssertionError(
                f"{err}\n{what}: vs fp64: fabric L2 {fab_l2:.3g}, max {fab_mx:.3g}; eager "
                f"fp32 L2 {eager_l2:.3g}, max {eager_mx:.3g}") from None
        if errors is not None:
            errors.l2_vs_fp64.append((what, l2, fab_l2, eager_l2))
    if errors is not None:
        errors.add(what, got_t.numpy(), ref)


class FabricTrainer:
    """A model's training step captured once, loaded into a :class:`Session`, and stepped
    with weights, buffers and optimizer state carried on the runtime side."""

    def __init__(self, model: nn.Module, inputs: tuple, labels: torch.Tensor, *,
                 optimizer: Any = "sgd", options: dict | None = None,
                 masks: dict[str, torch.Tensor] | None = None,
                 target: Any = "acf-small", session_options: SessionOptions | None = None,
                 loss_fn: Callable | None = None) -> None:
        self.masks = dict(masks or {})
        # ``optimizer``: a name, or ``model -> torch optimizer`` (param groups)
        self.step_ir: CapturedStep = capture_training_step(
            model, inputs, labels=labels,
            optimizer=optimizer(model) if callable(optimizer) else optimizer,
            optimizer_options=options,
            masks=self.masks or None, loss_fn=loss_fn)
        self.session = Session(target, session_options or SessionOptions())
        names = [f"r{i}.{b.kind}.{b.name}" for i, b in enumerate(self.step_ir.results)]
        self.result_of = dict(zip(self.step_ir.results, names))
        carry = {}
        args = set(self.step_ir.arguments)
        for b, rname in self.result_of.items():
            if b in args and b.kind in ("param", "buffer") + STATE:
                carry[rname] = _name(b)
        self.loaded = self.session.load(self.step_ir.module, carry=carry, result_names=names)
        # initial weights, buffers and (zero) optimizer state
        init = self.step_ir.bind(model, inputs, labels, masks=self.masks or None)
        self.session.set_params({_name(b): v for b, v in zip(self.step_ir.arguments, init)
                                 if b.kind in ("param", "buffer") + STATE})
        for name, m in self.masks.items():
            self.session.bind_mask(name, m)
        self.reports: list[StepReport] = []

    def bind_mask(self, name: str, mask: torch.Tensor) -> None:
        self.masks[name] = mask
        self.session.bind_mask(name, mask)

    def step(self, inputs: tuple, labels: torch.Tensor, dense_grad: bool = False,
             extra: dict[str, Any] | None = None) -> dict[Binding, np.ndarray]:
        """``extra``: more arguments by name (e.g. dropout keep-masks)."""
        feed = {f"input{i}": x for i, x in enumerate(inputs)}
        feed["labels"] = labels
        feed.update(extra or {})
        res = self.session.run_step(feed, dense_grad=dense_grad)
        self.reports.append(res.report)
        out = {b: res.outputs[n] for b, n in self.result_of.items()}
        held = self.session._get(None).state  # a parameter the step does not update
        for b in self.step_ir.arguments:
            if b.kind == "param" and b not in out:
                out[b] = held[_name(b)]
        return out


@dataclass
class EagerTrainer:
    """The same steps in eager PyTorch (masks applied to weights, gradients and updates;
    a new mask's grown connections restart from zero, see :meth:`bind_mask`)."""

    model: nn.Module
    optimizer: Any = "sgd"  # a name, or model -> torch optimizer (param groups)
    options: dict = field(default_factory=dict)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    loss_fn: Callable = F.cross_entropy

    def __post_init__(self) -> None:
        self.model = copy.deepcopy(self.model).train()
        if callable(self.optimizer):
            self.opt = self.optimizer(self.model)
        else:
            cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam,
                   "adamw": torch.optim.AdamW}[self.optimizer]
            self.opt = cls(self.model.parameters(), **self.options)
        self._apply(self.masks)

    def _apply(self, masks: dict[str, torch.Tensor]) -> None:
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, m in masks.items():
                params[n].mul_(m)

    def bind_mask(self, name: str, mask: torch.Tensor) -> None:
        """A mask update as the sparsity algorithms make one (``acf.algorithms.base``): the
        connections it turns active start from zero, weight and optimizer state (momentum,
        Adam's moments); those that stay active keep both. ``Session.bind_mask`` does the
        same with the session's weights and state."""
        old = self.masks.get(name)
        self.masks[name] = mask
        if old is not None:
            param = dict(self.model.named_parameters())[name]
            grown = (mask != 0) & (old == 0)
            with torch.no_grad():
                param.masked_fill_(grown, 0.0)
                for value in self.opt.state.get(param, {}).values():
                    if isinstance(value, torch.Tensor) and value.shape == param.shape:
                        value.masked_fill_(grown, 0.0)
        self._apply({name: mask})

    def step(self, inputs: tuple, labels: torch.Tensor) -> dict[str, Any]:
        params = dict(self.model.named_parameters())
        self.opt.zero_grad()
        with sdpa_kernel(SDPBackend.MATH):
            out = self.model(*inputs)
            loss = self.loss_fn(out, labels)
        loss.backward()
        for n, m in self.masks.items():
            if params[n].grad is not None:
                params[n].grad.mul_(m)
        grads = {n: p.grad.clone() for n, p in params.items() if p.grad is not None}
        self.opt.step()
        self._apply(self.masks)
        return {"loss": loss.detach(), "output": out.detach(), "grads": grads,
                "params": {n: p.detach().clone() for n, p in params.items()},
                "buffers": {n: b.clone() for n, b in self.model.named_buffers()}}


def compare(got: dict[Binding, np.ndarray], ref: dict[str, Any], step: int,
            errors: Errors | None = None, exact: dict[str, Any] | None = None,
            params: bool = True) -> None:
    """Every result of one step against the eager fp32 step (``exact``: the fp64 step)."""
    ex = exact or {"grads": {}, "params": {}, "buffers": {}}

    def check(value: Any, key: str, name: str | None, what: str) -> None:
        r = ref[key] if name is None else ref[key][name]
        e = ex.get(key) if name is None else ex[key].get(name)
        assert_close(value, r.float(), f"step {step}: {what}", errors,
                     None if e is None else e.double())

    check(got[Binding("loss")], "loss", None, "loss")
    check(got[Binding("output")], "output", None, "output")
    for n in ref["grads"]:
        check(got[Binding("grad", n)], "grads", n, f"grad of {n}")
    if not params:
        return
    for n in ref["params"]:
        check(got[Binding("param", n)], "params", n, f"{n} after the update")
    for b, v in got.items():
        if b.kind == "buffer":
            check(v, "buffers", b.name, f"buffer {b.name}")


def train_and_compare(model: nn.Module, batches: list[tuple[tuple, torch.Tensor]], *,
                      optimizer: Any, options: dict, masks: dict | None = None,
                      target: Any = "acf-small",
                      session_options: SessionOptions | None = None
                      ) -> tuple[FabricTrainer, Errors]:
    """Capture with the first batch, run every batch on the fabric, in eager fp32 and in
    eager fp64, and compare each step (see :func:`assert_close`)."""
    inputs, labels = batches[0]
    fabric = FabricTrainer(model, inputs, labels, optimizer=optimizer, options=options,
                           masks=masks, target=target, session_options=session_options)
    eager = EagerTrainer(model, optimizer, options, dict(masks or {}))
    eager64 = EagerTrainer(copy.deepcopy(model).double(), optimizer, options,
                           {k: v.double() for k, v in (masks or {}).items()})
    errors = Errors()
    for i, (x, y) in enumerate(batches, 1):
        exact = eager64.step(tuple(t.double() if t.is_floating_point() else t for t in x), y)
        compare(fabric.step(x, y), eager.step(x, y), i, errors, exact)
    return fabric, errors
