"""A seeded, deterministic eager-PyTorch training loop for the sparse algorithms.

``train("rigl", density=0.1, steps=300)`` trains the chosen model on a bundled dataset and
returns a :class:`TrainResult`: the test-accuracy curve, the final accuracy, the mask updates
and, per iteration, whether the algorithm needed the dense weight gradient (what the fabric
runtime will use to pick the weight-gradient kernel). ``algorithm=None`` (or ``"dense"``)
trains densely.

``step_hook(step, model, algorithm)`` is called after every iteration (optimizer step and
``algorithm.step()`` done; ``step`` is the 0-based iteration index, ``algorithm`` is None for
dense runs). The fabric runtime hooks in here: it can re-read masks that changed
(``algorithm.events``), and ask ``algorithm.needs_dense_grad(step + 1)`` before the next
backward. A non-None return value is appended to ``TrainResult.hook_records``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from acf.algorithms import SparsityAlgorithm, create
from acf.algorithms.data import load_dataset
from acf.algorithms.models import make_model
from torch import nn

StepHook = Callable[[int, nn.Module, "SparsityAlgorithm | None"], Any]


@dataclass
class TrainResult:
    algorithm: str
    dataset: str
    model: str
    steps: int
    curve: list[tuple[int, float]]  # (step, test accuracy) at each evaluation point
    final_accuracy: float
    mask_updates: int  # update steps at which at least the schedule ran
    mask_update_events: int  # (step, layer) pairs whose mask changed
    dense_grad: list[bool]  # per iteration: dense weight gradient needed?
    density: dict | None = None  # algorithm.density_report() at the end
    update_cost: dict | None = None
    hook_records: list = field(default_factory=list)


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    was_training = model.training
    model.eval()
    acc = float((model(x).argmax(dim=1) == y).float().mean())
    model.train(was_training)
    return acc


def train(
    algorithm: str | None = "rigl",
    density: float | None = 0.1,
    steps: int = 300,
    *,
    dataset: str = "digits",
    model: str = "mlp",
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eval_every: int = 50,
    seed: int = 0,
    step_hook: StepHook | None = None,
    **options: Any,
) -> TrainResult:
    """Train and evaluate; ``options`` go to ``algorithms.create`` (``t_end`` defaults to
    ``3/4`` of ``steps`` and ``delta_t`` to ``steps // 20``; for ``nm``/``nm-srste`` pass
    ``density=None`` and ``n``/``m``)."""
    name = "dense" if algorithm in (None, "dense") else algorithm
    data = load_dataset(dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = make_model(model, data.input_shape, data.num_classes)
        opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        alg = None
        if name != "dense":
            options.setdefault("t_end", max(1, steps * 3 // 4))
            options.setdefault("delta_t", max(1, steps // 20))
            options.setdefault("seed", seed)
            if density is not None:
                options["density"] = density
            alg = create(name, net, opt, **options)
        gen = torch.Generator().manual_seed(seed)
        loss_fn = nn.CrossEntropyLoss()
        n = len(data.y_train)
        order, pos = torch.randperm(n, generator=gen), 0
        curve, dense_grad, records = [], [], []
        net.train()
        for step in range(steps):
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=gen), 0
            idx = order[pos : pos + batch_size]
            pos += batch_size
            dense_grad.append(True if alg is None else alg.needs_dense_grad(step))
            opt.zero_grad(set_to_none=True)
            loss_fn(net(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
            if alg is not None:
                alg.step()
            if step_hook is not None and (rec := step_hook(step, net, alg)) is not None:
                records.append(rec)
            if (step + 1) % eval_every == 0 or step + 1 == steps:
                curve.append((step + 1, accuracy(net, data.x_test, data.y_test)))
    return TrainResult(
        algorithm=name,
        dataset=dataset,
        model=model,
        steps=steps,
        curve=curve,
        final_accuracy=curve[-1][1] if curve else accuracy(net, data.x_test, data.y_test),
        mask_updates=0 if alg is None else len(alg.update_steps),
        mask_update_events=0 if alg is None else len(alg.events),
        dense_grad=dense_grad,
        density=None if alg is None else alg.density_report(),
        update_cost=None
        if alg is None
        else {k: v for k, v in alg.update_cost().items() if k != "events"},
        hook_records=records,
    )
