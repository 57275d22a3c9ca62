"""``SparsityAlgorithm``: one API over a torch model and optimizer for every sparse method.

Usage (eager PyTorch; the fabric runtime replaces the binder, see ``masks.py``)::

    alg = algorithms.create("rigl", model, opt, density=0.1, delta_t=100, t_end=3000)
    for step, (x, y) in enumerate(batches):     # step == alg.step_count
        dense = alg.needs_dense_grad(step)      # runtime: dense weight grad or SDDMM
        loss_fn(model(x), y).backward()
        opt.step()                              # hooks: grads masked before, weights after
        alg.step()                              # may update masks, binds changed ones
        opt.zero_grad()

Step numbering: ``step_count`` is the number of completed ``step()`` calls. Iteration
``t`` (0-based) runs its backward with ``step_count == t``; its ``step()`` makes
``step_count == t + 1`` and runs a mask update when ``is_update_step(t + 1)``
(``delta_t`` divides ``t + 1``, ``t_start <= t + 1 <= t_end``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch
from acf.algorithms.masks import EagerBinder, MaskBinder
from torch import nn

DISTRIBUTIONS = ("uniform", "erk")


@dataclass(frozen=True)
class MaskUpdate:
    """One layer's mask change: ``grown``/``pruned`` count positions that flipped 0->1/1->0."""

    step: int
    layer: str
    grown: int
    pruned: int
    nnz: int
    numel: int


def sparsifiable(
    model: nn.Module, *, exclude_first_conv: bool = True, exclude_last_linear: bool = False
) -> list[str]:
    """Names of the weights of every nn.Linear and nn.Conv2d, in module order, minus the
    first Conv2d's and/or the last Linear's when asked. A weight shared by several modules
    is listed once, under its ``named_parameters`` name; frozen weights
    (``requires_grad=False``) are left out, since training never changes them."""
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    skip = set()
    if exclude_first_conv and convs:
        skip.add(convs[0])
    if exclude_last_linear and linears:
        skip.add(linears[-1])
    canonical = {id(p): n for n, p in model.named_parameters()}
    names = [
        canonical[id(m.weight)]
        for n, m in model.named_modules()
        if isinstance(m, (nn.Linear, nn.Conv2d)) and n not in skip and m.weight.requires_grad
    ]
    return list(dict.fromkeys(names))


def erk_densities(shapes: Mapping[str, torch.Size], density: float) -> dict[str, float]:
    """Erdős–Rényi-Kernel allocation (Evci et al. 2020): density of layer l proportional to
    ``sum(shape_l) / prod(shape_l)``, scaled so the total number of non-zeros is
    ``density * sum(numel)``. Layers whose density would exceed 1 are made dense and the
    scale is solved again for the others (the RigL reference code's rescaling)."""
    numel = {n: int(torch.Size(s).numel()) for n, s in shapes.items()}
    raw = {n: sum(s) / numel[n] for n, s in shapes.items()}
    dense: set[str] = set()
    while True:
        budget = density * sum(numel.values()) - sum(numel[n] for n in dense)
        divisor = sum(raw[n] * numel[n] for n in numel if n not in dense)
        eps = budget / divisor if divisor else 0.0
        over = [n for n in numel if n not in dense and eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else eps * raw[n] for n in numel}


def is_count(value, minimum: int = 0) -> bool:
    """Is ``value`` an integer (any ``numbers.Integral``, never a bool) ``>= minimum``?"""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_count(option: str, value, minimum: int = 0) -> int:
    """``value`` as an int, or a ValueError naming ``option``: steps and lengths are whole
    numbers, and a fractional one silently truncated would run another schedule."""
    if not is_count(value, minimum):
        raise ValueError(f"{option} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_density(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        # every option error of the algorithms is a ValueError, so callers catch one type
        raise ValueError(  # noqa: TRY004
            f"density for {name} must be a number in [0, 1], got {value!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"density for {name} must be in [0, 1], got {value}")
    return value


def resolve_params(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    """The parameters ``names`` refer to, each once, keyed by its ``named_parameters`` name:
    a weight shared by several modules (tied weights) may be named by any of them and
    gets one mask."""
    every = dict(model.named_parameters(remove_duplicate=False))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the model has {sorted(every)}")
    canonical = {id(p): n for n, p in model.named_parameters()}
    return {canonical[id(every[n])]: every[n] for n in names}


class SparsityAlgorithm:
    """Base class. Subclasses set ``name`` and override ``init_masks`` and, if they change
    masks during training, ``update``; ``needs_dense_grad`` and ``before_optimizer_step``
    when they read dense gradients."""

    name = "base"
    #: weights at inactive positions are forced to zero (False only for SR-STE)
    masks_weights = True
    #: newly grown weights (and their optimizer state) start from zero
    zero_grown = True
    #: False for algorithms whose masks are fixed at construction
    updates_masks = True
    #: True for algorithms that regrow weights, which must be trainable
    needs_trainable = False

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        density: float | Mapping[str, float] = 0.1,
        *,
        distribution: str = "uniform",
        params: list[str] | None = None,
        exclude_first_conv: bool = True,
        exclude_last_linear: bool = False,
        delta_t: int = 100,
        t_start: int = 0,
        t_end: int | None = None,
        seed: int = 0,
        binder: MaskBinder | None = None,
    ):
        self.model = model
        self.optimizer = optimizer
        if params is not None and not params:
            raise ValueError(f"params={params!r} names no parameters to sparsify")
        names = params or sparsifiable(
            model, exclude_first_conv=exclude_first_conv, exclude_last_linear=exclude_last_linear
        )
        if not names:
            raise ValueError("the model has no parameter to sparsify (trainable Linear and "
                             "Conv weights; the first convolution is left dense unless "
                             "exclude_first_conv=False): name them with params=[...]")
        self.params: dict[str, nn.Parameter] = resolve_params(model, names)
        self._check_trainable()
        self.delta_t = check_count("delta_t", delta_t, 1)
        self.t_start = check_count("t_start", t_start, 0)
        self.t_end = None if t_end is None else check_count("t_end", t_end, 0)
        if self.t_end is not None and self.t_end < self.t_start:
            raise ValueError(f"t_end ({t_end}) must be >= t_start ({t_start})")
        self.densities = self._allocate(density, distribution)
        self.distribution = distribution
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.events: list[MaskUpdate] = []
        self.update_steps: list[int] = []
        self.masks: dict[str, torch.Tensor] = {}
        self.binder: MaskBinder = binder if binder is not None else EagerBinder(model)
        self._validate()
        optimizer.register_step_pre_hook(lambda *_: self.before_optimizer_step())
        with torch.no_grad():
            for n, mask in self.init_masks().items():
                self.masks[n] = mask
                self.binder.bind(n, mask)
        attach = getattr(self.binder, "attach", None)
        if attach is not None:
            attach(self)

    # ---- allocation ----------------------------------------------------------------------
    def _allocate(self, density: float | Mapping[str, float], distribution: str) -> dict:
        if isinstance(density, Mapping):
            extra = sorted(set(density) - set(self.params))
            missing = sorted(set(self.params) - set(density))
            if extra or missing:
                raise ValueError(
                    f"per-layer densities must name exactly the sparsified parameters "
                    f"{list(self.params)}; unknown {extra}, missing {missing}"
                )
            return {n: _check_density(n, density[n]) for n in self.params}
        density = _check_density("the model", density)
        if distribution == "uniform":
            return {n: density for n in self.params}
        if distribution == "erk":
            return erk_densities({n: p.shape for n, p in self.params.items()}, density)
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")

    def _validate(self) -> None:
        """Subclass hook to reject impossible options (raise ValueError)."""

    def _check_trainable(self) -> None:
        """Algorithms that move masks by training signals refuse frozen weights, which
        would get no gradient to grow from and could never recover a regrown weight."""
        if not self.needs_trainable:
            return
        frozen = [n for n, p in self.params.items() if not p.requires_grad]
        if frozen:
            raise ValueError(f"{self.name}: parameters {frozen} have requires_grad=False; "
                             "a frozen weight cannot be regrown, leave it out of params")

    def nnz_target(self, name: str) -> int:
        return round(self.densities[name] * self.params[name].numel())

    # ---- subclass interface --------------------------------------------------------------
    def init_masks(self) -> dict[str, torch.Tensor]:
        """Masks at construction (default: everything active)."""
        return {n: torch.ones_like(p, dtype=torch.bool) for n, p in self.params.items()}

    def update(self, step: int) -> dict[str, torch.Tensor]:
        """New masks for the layers that change at ``step`` (only called on update steps)."""
        return {}

    def needs_dense_grad(self, step: int) -> bool:
        """Does iteration ``step``'s backward need the full dense weight gradient?"""
        return False

    def masks_grads(self, step: int) -> bool:
        """Should the optimizer see gradients zeroed at inactive positions at ``step``?"""
        return True

    def before_optimizer_step(self) -> None:
        """Runs (as an optimizer pre-hook) after backward, before the binder masks grads."""

    # ---- schedule ------------------------------------------------------------------------
    def is_update_step(self, step: int) -> bool:
        """Is a mask update due when ``step_count`` reaches ``step``?"""
        if not self.updates_masks:
            return False
        if step < self.t_start or (self.t_end is not None and step > self.t_end):
            return False
        return (step - self.t_start) % self.delta_t == 0 and step > 0

    def step(self) -> list[MaskUpdate]:
        """Call after ``optimizer.step()``: advances the step count, updates masks when due,
        binds the changed ones and returns the recorded changes."""
        self.step_count += 1
        if not self.is_update_step(self.step_count):
            return []
        with torch.no_grad():
            new = self.update(self.step_count)
            self.update_steps.append(self.step_count)
            return [e for n, m in new.items() if (e := self._commit(n, m)) is not None]

    def grown_positions(self, name: str, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """Positions whose weight and optimizer state restart from zero in this update
        (default: those that turned active)."""
        return new & ~old

    def _commit(self, name: str, mask: torch.Tensor) -> MaskUpdate | None:
        old = self.masks[name]
        grown = self.grown_positions(name, old, mask)
        if self.zero_grown and bool(grown.any()):
            self._zero(self.params[name], grown)
        n_grown, n_pruned = int((mask & ~old).sum()), int((old & ~mask).sum())
        if n_grown == 0 and n_pruned == 0:
            return None
        self.masks[name] = mask
        self.binder.bind(name, mask)
        event = MaskUpdate(self.step_count, name, n_grown, n_pruned, int(mask.sum()), mask.numel())
        self.events.append(event)
        return event

    def _zero(self, param: nn.Parameter, positions: torch.Tensor) -> None:
        """Zero ``param`` and its same-shaped optimizer state (momentum, Adam moments) at
        ``positions``."""
        param.masked_fill_(positions, 0.0)
        for value in self.optimizer.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.masked_fill_(positions, 0.0)

    # ---- reports -------------------------------------------------------------------------
    def density_report(self) -> dict:
        """Per-layer and overall density of the masks (over the sparsified weights only)."""
        layers = {}
        for n, m in self.masks.items():
            layers[n] = {
                "numel": m.numel(),
                "nnz": int(m.sum()),
                "density": float(m.float().mean()),
                "target": self.densities[n],
            }
        numel = sum(v["numel"] for v in layers.values())
        nnz = sum(v["nnz"] for v in layers.values())
        return {"layers": layers, "numel": numel, "nnz": nnz, "density": nnz / max(numel, 1)}

    def update_cost(self) -> dict:
        """Totals of the mask updates, to report their cost apart from training steps."""
        return {
            "update_steps": len(self.update_steps),
            "layer_updates": len(self.events),
            "grown": sum(e.grown for e in self.events),
            "pruned": sum(e.pruned for e in self.events),
            "events": [asdict(e) for e in self.events],
        }
