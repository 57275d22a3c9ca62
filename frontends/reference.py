"""Eager PyTorch references for a training step, optionally with given ReLU decisions.

Two fp32 implementations of one step (eager PyTorch's and the fabric's) round differently, and
a ReLU input that lies within rounding of zero can come out positive in one and not in the
other. Such a flip is legitimate fp32 behaviour, but it changes which gradients pass through
that unit, and from there every gradient below it: at batch 32 a ResNet-18 step has a few
such inputs (of about 10^7) and one flip moves the weight gradients by ~1e-3 relative. To
tell the fabric's arithmetic from its luck, :func:`reference_gradients` can replay the ReLU
decisions an implementation made (the signs of its ReLU outputs, in call order, see
:meth:`CapturedStep.observe`) in an fp64 reference: what remains is rounding alone.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class ReluDecisions:
    """Record (``replay=None``) or replay the decisions ``x > 0`` of every ``F.relu`` call."""

    def __init__(self, replay: Sequence[np.ndarray] | None = None) -> None:
        self.replay = list(replay) if replay is not None else None
        self.recorded: list[np.ndarray] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[ReluDecisions]:
        original = F.relu
        calls = iter(self.replay) if self.replay is not None else None

        def relu(input: torch.Tensor, inplace: bool = False) -> torch.Tensor:  # noqa: A002
            x = input  # F.relu's own parameter names
            if calls is None:
                self.recorded.append((x > 0).detach().cpu().numpy())
                return original(x, inplace=inplace)
            decided = next(calls, None)
            if decided is None or tuple(decided.shape) != tuple(x.shape):
                raise ValueError(
                    f"ReLU call {len(self.recorded)}: replayed decisions "
                    f"{None if decided is None else tuple(decided.shape)} do not fit the "
                    f"input {tuple(x.shape)} (the decisions must come from the same model, "
                    f"in call order)")
            keep = torch.as_tensor(np.asarray(decided) > 0)
            self.recorded.append(keep.numpy())
            return torch.where(keep, x, torch.zeros((), dtype=x.dtype))

        F.relu = relu  # nn.ReLU and the models call F.relu at run time
        try:
            yield self
        finally:
            F.relu = original
        if calls is not None and next(calls, None) is not None:
            raise ValueError(f"only {len(self.recorded)} ReLU calls, more decisions given")


def reference_gradients(model: nn.Module, inputs: tuple, labels: Any,
                        masks: Mapping[str, Any] | None = None,
                        dtype: torch.dtype = torch.float64,
                        decisions: ReluDecisions | None = None) -> dict[str, np.ndarray]:
    """Parameter gradients of ``cross_entropy(model(*inputs), labels)`` in ``dtype`` on a copy
    of ``model``, masked weights as ``w * m`` and their gradients masked (as the fabric
    computes a masked step). ``decisions``: records or replays the ReLU decisions."""
    return reference_step(model, inputs, labels, masks, dtype, decisions)["grads"]


def reference_step(model: nn.Module, inputs: tuple, labels: Any,
                   masks: Mapping[str, Any] | None = None,
                   dtype: torch.dtype = torch.float64,
                   decisions: ReluDecisions | None = None) -> dict[str, Any]:
    """As :func:`reference_gradients`, with the rest of the forward and backward pass:
    ``{"grads": {name: array}, "output": array, "loss": float, "buffers": {name: array}}``
    (buffers after the forward pass: batch-norm running statistics)."""
    masks = dict(masks or {})
    ref = copy.deepcopy(model).to(dtype)
    params = dict(ref.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            params[name].mul_(torch.as_tensor(m).to(dtype))
    ctx = decisions.active() if decisions is not None else contextlib.nullcontext()
    with ctx:
        out = ref(*(x.to(dtype) for x in inputs))
        loss = F.cross_entropy(out, labels)
        loss.backward()
    grads = {}
    for name, p in params.items():
        g = p.grad.double().numpy() if p.grad is not None else np.zeros(p.shape)
        if name in masks:
            g = g * np.asarray(masks[name], np.float64)
        grads[name] = g
    return {"grads": grads, "output": out.detach().double().numpy(), "loss": float(loss.detach()),
            "buffers": {n: b.detach().double().numpy() for n, b in ref.named_buffers()}}


def flips(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> int:
    """How many ReLU decisions differ between two recordings of one step."""
    return sum(int(np.count_nonzero((np.asarray(x) > 0) != (np.asarray(y) > 0)))
               for x, y in zip(a, b))
