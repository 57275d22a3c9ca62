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

Mixed precision: when AMP's ``GradScaler.step(opt)`` skips ``opt.step()`` (inf/NaN
gradients), still call ``alg.step()``: the iteration counts, and an update that reads what
the optimizer step leaves (RigL's dense gradient, SR-STE's dense weights) is skipped and
recorded in ``skipped_updates`` instead of running on a missing or non-finite gradient.

Checkpoints: the model's ``state_dict`` holds the weights and (``EagerBinder``) the masks, the
optimizer's its moments, ``alg.state_dict()`` the rest (step count, RNG state, the masks,
update records, SR-STE's dense weights). Save all three; to resume, build model, optimizer
and algorithm as for a fresh run (the algorithm first registers the mask buffers the model's
``state_dict`` names), then load all three::

    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "algorithm": alg.state_dict()}, path)
    ...
    ckpt = torch.load(path)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    alg.load_state_dict(ckpt["algorithm"])    # training continues as if never stopped

``alg.close()`` removes every hook the algorithm and its binder put on the optimizer (to
stop sparse training and go on densely, or before building another algorithm on the same
optimizer); the masks stay on the model as buffers.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from acf.algorithms.masks import EagerBinder, MaskBinder
from torch import nn

DISTRIBUTIONS = ("uniform", "erk")
#: the options that schedule mask updates, with their defaults
SCHEDULE_OPTIONS = {"delta_t": 100, "t_start": 0, "t_end": None}


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
    is listed once, under its ``named_parameters`` name, and an excluded weight stays out
    under every module that uses it (a decoder tied to the embedding, say); frozen weights
    (``requires_grad=False``) are left out, since training never changes them."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    skip = set()  # ids of the excluded weight tensors, so a tied alias cannot bring one back
    if exclude_first_conv and convs:
        skip.add(id(convs[0].weight))
    if exclude_last_linear and linears:
        skip.add(id(linears[-1].weight))
    canonical = {id(p): n for n, p in model.named_parameters()}
    names = [
        canonical[id(m.weight)]
        for m in model.modules()
        if isinstance(m, (nn.Linear, nn.Conv2d))
        and id(m.weight) not in skip
        and m.weight.requires_grad
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


def largest_remainder(quotas: Mapping[str, float], caps: Mapping[str, int],
                      total: int) -> dict[str, int]:
    """Whole counts ``0 <= count[l] <= caps[l]``, each the floor or the ceiling of
    ``quotas[l]``, that add up to ``total`` (as far as the caps allow): every layer gets its
    floor, then the layers with the largest fractional parts one more (the earlier layer
    first on a tie). Rounding each layer on its own can miss the total by several weights."""
    counts = {n: min(caps[n], max(0, math.floor(q))) for n, q in quotas.items()}
    rest = {n: q - counts[n] for n, q in quotas.items()}
    short = total - sum(counts.values())
    if short > 0:
        up = sorted((n for n in counts if counts[n] < caps[n]), key=lambda n: -rest[n])
        for n in up[:short]:
            counts[n] += 1
    elif short < 0:  # only from float error in quotas that should sum to total
        down = sorted((n for n in counts if counts[n] > 0), key=lambda n: rest[n])
        for n in down[:-short]:
            counts[n] -= 1
    return counts


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


def parameter_aliases(model: nn.Module) -> dict[str, str]:
    """Every name a parameter is reachable under (tied weights have several) -> its
    ``named_parameters`` name."""
    canonical = {id(p): n for n, p in model.named_parameters()}
    return {n: canonical[id(p)] for n, p in model.named_parameters(remove_duplicate=False)}


def resolve_params(model: nn.Module, names: list[str]) -> dict[str, nn.Parameter]:
    """The parameters ``names`` refer to, each once, keyed by its ``named_parameters`` name:
    a weight shared by several modules (tied weights) may be named by any of them and
    gets one mask."""
    every = dict(model.named_parameters(remove_duplicate=False))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"unknown parameters {unknown}; the model has {sorted(every)}")
    canonical = parameter_aliases(model)
    return {canonical[n]: every[n] for n in names}


class SparsityAlgorithm:
    """Base class. Subclasses set ``name`` and override ``init_masks`` and, if they change
    masks during training, ``update``; ``needs_dense_grad`` and ``before_optimizer_step``
    when they read dense gradients; ``_extra_state``/``_load_extra_state`` when they keep
    state between steps beyond the base class's."""

    name = "base"
    #: weights at inactive positions are forced to zero (False only for SR-STE)
    masks_weights = True
    #: connections that turn active start from zero, and so does their optimizer state
    zero_grown = True
    #: False for algorithms whose masks are fixed at construction
    updates_masks = True
    #: True for algorithms that regrow weights, which must be trainable
    needs_trainable = False
    #: True when a mask update reads what its iteration's optimizer step left (a dense
    #: gradient, dense weights): the update is skipped when that step did not run
    update_needs_optimizer_step = False
    #: the options of ``SCHEDULE_OPTIONS`` the algorithm reads. ``create`` takes all of them
    #: for every algorithm (callers such as ``train`` pass them whatever the algorithm);
    #: the others are accepted, ignored, and listed in ``ignored_options``
    schedule_options: tuple[str, ...] = tuple(SCHEDULE_OPTIONS)

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
        delta_t: int = SCHEDULE_OPTIONS["delta_t"],
        t_start: int = SCHEDULE_OPTIONS["t_start"],
        t_end: int | None = SCHEDULE_OPTIONS["t_end"],
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
        given = {"delta_t": delta_t, "t_start": t_start, "t_end": t_end}
        self.ignored_options = tuple(
            o for o, default in SCHEDULE_OPTIONS.items()
            if o not in self.schedule_options and given[o] != default
        )
        self.densities = self._allocate(density, distribution)
        self._nnz_targets = self._count_targets(density)
        self.distribution = distribution
        self.generator = torch.Generator().manual_seed(seed)
        self.step_count = 0
        self.events: list[MaskUpdate] = []
        self.update_steps: list[int] = []
        #: update steps skipped because their iteration's optimizer step did not run
        self.skipped_updates: list[int] = []
        self._masks: dict[str, torch.Tensor] = {}
        self._optimizer_stepped = False
        self.binder: MaskBinder = binder if binder is not None else EagerBinder(model)
        self._validate()
        # the handles let close() (and the binder's detach()) take the hooks off again
        self._handles = [
            optimizer.register_step_pre_hook(lambda *_: self.before_optimizer_step()),
            optimizer.register_step_post_hook(lambda *_: self._note_optimizer_step()),
        ]
        with torch.no_grad():
            for n, mask in self.init_masks().items():
                self._masks[n] = mask
                self.binder.bind(n, mask)
        attach = getattr(self.binder, "attach", None)
        if attach is not None:
            attach(self)

    # ---- masks -----------------------------------------------------------------------------
    @property
    def masks(self) -> dict[str, torch.Tensor]:
        """The mask in force for each sparsified parameter (bool, the parameter's shape)."""
        return {n: self.mask(n) for n in self._masks}

    def mask(self, name: str) -> torch.Tensor:
        """The mask in force for ``name``. A binder with ``current_mask`` (``EagerBinder``:
        the module buffer) is asked every time: ``model.to(device)`` replaces the buffer and
        ``model.load_state_dict`` overwrites it, and the mask enforced must be the model's."""
        current = getattr(self.binder, "current_mask", None)
        return self._masks[name] if current is None else current(name)

    # ---- allocation ----------------------------------------------------------------------
    def _allocate(self, density: float | Mapping[str, float], distribution: str) -> dict:
        if isinstance(density, Mapping):
            return self._per_layer(density)
        density = _check_density("the model", density)
        if distribution == "uniform":
            return {n: density for n in self.params}
        if distribution == "erk":
            return erk_densities({n: p.shape for n, p in self.params.items()}, density)
        raise ValueError(f"unknown distribution {distribution!r}; choose one of {DISTRIBUTIONS}")

    def _per_layer(self, density: Mapping[str, float]) -> dict[str, float]:
        """``{param: density}`` keyed by canonical names; a tied weight may be named under
        any of its aliases, as in ``params``, but only once."""
        aliases = parameter_aliases(self.model)
        given: dict[str, str] = {}  # canonical name -> the key that named it
        extra = []
        for key in density:
            name = aliases.get(key)
            if name not in self.params:
                extra.append(key)
            elif name in given:
                raise ValueError(f"per-layer densities name the tied parameter {name!r} twice "
                                 f"(as {given[name]!r} and {key!r})")
            else:
                given[name] = key
        missing = [n for n in self.params if n not in given]
        if extra or missing:
            raise ValueError(
                f"per-layer densities must name exactly the sparsified parameters "
                f"{list(self.params)}; unknown {sorted(extra)}, missing {missing}"
            )
        return {n: _check_density(n, density[given[n]]) for n in self.params}

    def _count_targets(self, density: float | Mapping[str, float]) -> dict[str, int]:
        """Active weights per layer at the target density. One density for the model
        (uniform or ERK) is one total, ``round(density * numel)`` over the sparsified weights,
        shared out by :func:`largest_remainder` so the layers add up to it exactly; per-layer
        densities are rounded per layer."""
        numel = {n: p.numel() for n, p in self.params.items()}
        quotas = {n: self.densities[n] * numel[n] for n in self.params}
        if isinstance(density, Mapping):
            return {n: round(q) for n, q in quotas.items()}
        return largest_remainder(quotas, numel, round(float(density) * sum(numel.values())))

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
        """Active weights of ``name`` at the target density (see ``_count_targets``)."""
        return self._nnz_targets[name]

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

    def _note_optimizer_step(self) -> None:
        self._optimizer_stepped = True

    def _skip_update(self, step: int) -> None:
        """The update due at ``step`` is not run: its optimizer step did not happen."""
        self.skipped_updates.append(step)

    # ---- schedule ------------------------------------------------------------------------
    def is_update_step(self, step: int) -> bool:
        """Is a mask update due when ``step_count`` reaches ``step``?"""
        if not self.updates_masks:
            return False
        if step < self.t_start or (self.t_end is not None and step > self.t_end):
            return False
        return (step - self.t_start) % self.delta_t == 0 and step > 0

    def step(self) -> list[MaskUpdate]:
        """Call after ``optimizer.step()`` (also when AMP skipped it): advances the step
        count, updates masks when due, binds the changed ones and returns the recorded
        changes."""
        stepped, self._optimizer_stepped = self._optimizer_stepped, False
        self.step_count += 1
        if not self.is_update_step(self.step_count):
            return []
        if self.update_needs_optimizer_step and not stepped:
            self._skip_update(self.step_count)
            return []
        with torch.no_grad():
            new = self.update(self.step_count)
            self.update_steps.append(self.step_count)
            return [e for n, m in new.items() if (e := self._commit(n, m)) is not None]

    def _commit(self, name: str, mask: torch.Tensor) -> MaskUpdate | None:
        old = self.mask(name)
        grown, pruned = mask & ~old, old & ~mask
        n_grown, n_pruned = int(grown.sum()), int(pruned.sum())
        if n_grown == 0 and n_pruned == 0:
            return None
        # Only connections that were inactive restart from zero: a weight that stays active,
        # a dropped one regrown in the same update included, keeps its value and optimizer
        # state (the RigL reference code, sparse_optimizers._get_update_op with its default
        # reinit_when_same=False).
        if self.zero_grown and n_grown:
            self._zero(self.params[name], grown)
        self._masks[name] = mask
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

    # ---- lifetime and checkpoints ----------------------------------------------------------
    def close(self) -> None:
        """Remove every optimizer hook the algorithm and its binder registered; the masks
        stay on the model and the weights as they are. Training goes on densely."""
        self.remove_hooks()
        detach = getattr(self.binder, "detach", None)
        if detach is not None:
            detach()

    def remove_hooks(self) -> None:
        """Remove the algorithm's own optimizer hooks (``close`` also detaches the binder)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def state_dict(self) -> dict[str, Any]:
        """What the algorithm keeps between steps, for ``torch.save`` next to the model's
        and the optimizer's state dicts (see the module docstring)."""
        return {
            "name": self.name,
            "step_count": self.step_count,
            "generator": self.generator.get_state(),
            "masks": {n: m.detach().clone() for n, m in self.masks.items()},
            "events": [asdict(e) for e in self.events],
            "update_steps": list(self.update_steps),
            "skipped_updates": list(self.skipped_updates),
            "optimizer_stepped": self._optimizer_stepped,
            **self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` into an algorithm built with the same options over the
        same model; its masks are bound again (on each parameter's device)."""
        if state.get("name") != self.name:
            raise ValueError(f"state of algorithm {state.get('name')!r} cannot be loaded into "
                             f"{self.name!r}")
        masks = state["masks"]
        if set(masks) != set(self.params):
            raise ValueError(f"{self.name}: the state has masks for {sorted(masks)}, the "
                             f"algorithm sparsifies {sorted(self.params)}")
        for n, m in masks.items():
            if m.shape != self.params[n].shape:
                raise ValueError(f"{self.name}: the mask of {n!r} has shape {tuple(m.shape)}, "
                                 f"the parameter {tuple(self.params[n].shape)}")
        self.step_count = check_count("step_count", state["step_count"])
        self.generator.set_state(state["generator"].cpu())
        self.events = [MaskUpdate(**e) for e in state["events"]]
        self.update_steps = list(state["update_steps"])
        self.skipped_updates = list(state.get("skipped_updates", []))
        self._optimizer_stepped = bool(state.get("optimizer_stepped", False))
        with torch.no_grad():
            for n, m in masks.items():
                mask = m.to(device=self.params[n].device, dtype=torch.bool)
                self._masks[n] = mask
                self.binder.bind(n, mask)
            self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        """Subclass state kept between steps, merged into :meth:`state_dict`."""
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved."""

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
