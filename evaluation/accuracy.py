"""Accuracy, convergence, time- and energy-to-accuracy of sparse training on the fabric.

The math is real eager-PyTorch training (:func:`acf.algorithms.train.train`) on the bundled
datasets (digits, MNIST-1D) for the MLP and the small CNN. The fabric cost is obtained by
emulating *sampled* iterations of the same run on a target (default ``acf-base``):

* the training step is captured once per run (``capture_training_step`` with the model's
  SGD settings and, for sparse algorithms, its masked weights) and loaded into one
  :class:`~acf.runtime.session.Session` (``formats="auto"``: each masked linear weight, with
  its sampled gradient, momentum and mask, stored in its density band's format, conv
  kernels dense-stored with zero-skipping; a density crossing a band, as under gradual
  pruning, re-specializes, measuring both programs on that step and keeping the faster);
* at a sampled iteration ``t`` (1-based iterations ``1 .. steps-1`` can be sampled; the hook
  of iteration ``t-1`` sees the model, masks and momentum buffers that iteration ``t``
  starts from) the step is bound to those weights, the current masks, the momentum buffers
  and a fixed probe batch (the first ``batch_size`` training samples) and run with
  ``run_step``. Iterations whose backward needs the dense weight gradient (RigL's
  ``needs_dense_grad``) run the dense weight-gradient variant and are costed separately;
* sampled iterations: ``1``, every ``sample_every``-th and the last; the first iteration
  after each mask update (at most ``max_update_samples``, evenly spaced); at most
  ``max_dense_grad_samples`` dense-gradient iterations (evenly spaced);
* every other iteration is estimated: a sparse-variant iteration takes the mean of the
  samples of its own mask epoch (masks, hence the program's skipping, are constant between
  two mask updates) and, when its epoch has no sample, the linear interpolation in the
  iteration index between the nearest samples (constant beyond the ends); a dense-gradient
  iteration interpolates the dense-gradient samples the same way;
* mask updates are costed apart from the steps: the first sampled iteration after one
  binds the new masks, and the session emulates bringing the stored weights to them
  (``StepReport.mask_update``: each changed weight read, masked and written back in its
  storage format, a compressed one decoded and re-encoded with its mask); every update
  step is charged the mean of those measurements (reported with their count, the update
  steps, changed layers and grown/pruned positions) and the totals and time/energy-to-
  target include them.

Only ``fabric_seed`` (default the first seed) is emulated per configuration; the other seeds
of that configuration use its per-iteration cost (the mask-update schedule is the same for
every seed, the activation sparsity differs a little). Time/energy-to-accuracy of a seed is
the estimated cumulative fabric time/energy up to the first evaluation point at which that
seed's test accuracy reaches the target (``target_fraction`` x the mean final accuracy of
dense training on the same dataset and model, default 0.95).

An accuracy drop is *measurable* when ``dense_mean - alg_mean > dense_std + alg_std``
(sample standard deviations over seeds).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("digits", "mnist1d")
MODELS = ("mlp", "cnn")
ALGORITHMS = ("dense", "rigl", "nm", "nm-srste", "static-magnitude", "gmp", "set")
#: N:M at its fixed 2:4 density: one-shot (nm) or with SR-STE, whose mask follows the dense
#: weights and so needs the dense weight gradient every step
NM_ALGORITHMS = ("nm", "nm-srste")
#: the algorithms whose sparsity is not a sweep point: dense (0) and N:M (its pattern's)
FIXED_SPARSITY = ("dense", *NM_ALGORITHMS)
SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
NM_N, NM_M = 2, 4


class AccuracyError(ValueError):
    """Bad experiment input."""


@dataclass(frozen=True)
class RunConfig:
    """One training run. ``sparsity`` is the fraction of zero weights in the sparsified
    layers (ignored for ``dense``; fixed at ``1 - N/M`` for ``nm``)."""

    dataset: str
    model: str
    algorithm: str
    sparsity: float
    seed: int = 0
    steps: int = 300
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    eval_every: int = 25
    update_every: int = 0  # delta_t; 0: steps // 10
    fabric: bool = True  # emulate sampled iterations
    target: str = "acf-base"
    sample_every: int = 0  # 0: steps // 5
    max_update_samples: int = 8
    max_dense_grad_samples: int = 2
    mask_reference: bool = True  # also run the masked program once with all-ones masks

    def validate(self) -> None:
        if self.dataset not in DATASETS:
            raise AccuracyError(f"unknown dataset {self.dataset!r}; choose one of {DATASETS}")
        if self.model not in MODELS:
            raise AccuracyError(f"unknown model {self.model!r}; choose one of {MODELS}")
        if self.algorithm not in ALGORITHMS:
            raise AccuracyError(f"unknown algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        if not (isinstance(self.sparsity, (int, float)) and 0.0 <= self.sparsity < 1.0):
            raise AccuracyError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if self.algorithm not in FIXED_SPARSITY and self.sparsity <= 0.0:
            raise AccuracyError(f"{self.algorithm} needs sparsity > 0, got {self.sparsity}")
        if self.algorithm == "dense" and self.sparsity != 0.0:
            raise AccuracyError(f"dense training has sparsity 0, got {self.sparsity}")
        if self.algorithm in NM_ALGORITHMS and abs(self.sparsity - (1 - NM_N / NM_M)) > 1e-9:
            raise AccuracyError(f"{self.algorithm} is {NM_N}:{NM_M}: sparsity is {1 - NM_N / NM_M}, got {self.sparsity}")
        for name in ("steps", "batch_size", "eval_every", "max_update_samples",
                     "max_dense_grad_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name.startswith("max_") else 1):
                raise AccuracyError(f"{name} must be a positive integer, got {v!r}")
        if self.steps < 2:
            raise AccuracyError(f"steps must be >= 2, got {self.steps}")
        for name in ("update_every", "sample_every"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 0:
                raise AccuracyError(f"{name} must be an integer >= 0, got {v!r}")
        if not self.lr > 0:
            raise AccuracyError(f"lr must be > 0, got {self.lr}")

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.model}/{self.algorithm}/{self.sparsity:g}"

    @property
    def run_id(self) -> str:
        """``key/seedN/`` and a digest of every other setting and of the code (the
        package version with its code hash): a resumed experiment reruns a run whose steps,
        lr, sampling or code differ instead of keeping the old row."""
        import dataclasses
        import hashlib
        import json

        from acf.evaluation.runner import package_version

        settings = {k: v for k, v in dataclasses.asdict(self).items() if k != "seed"}
        blob = json.dumps({**settings, "version": package_version()}, sort_keys=True).encode()
        return f"{self.key}/seed{self.seed}/{hashlib.sha256(blob).hexdigest()[:10]}"

    @property
    def delta_t(self) -> int:
        return self.update_every or max(1, self.steps // 10)

    @property
    def every(self) -> int:
        return self.sample_every or max(1, self.steps // 5)


def _evenly(items: list[int], k: int) -> list[int]:
    if k <= 0 or not items:
        return []
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return sorted({items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)})


def sample_plan(cfg: RunConfig, alg: Any) -> dict[str, list[int]]:
    """Which iterations to emulate: ``regular``, ``update`` (first after a mask update) and
    ``dense_grad`` (dense weight-gradient variant). Iterations are 0-based, in 1..steps-1."""
    last = cfg.steps - 1
    dense_grad = [t for t in range(1, cfg.steps) if alg is not None and alg.needs_dense_grad(t)]
    dg = set(dense_grad)
    regular = sorted({t for t in [1, *range(cfg.every, cfg.steps, cfg.every), last]
                      if 1 <= t <= last and t not in dg})
    updates = [] if alg is None else [u for u in range(1, cfg.steps) if alg.is_update_step(u)]
    updates = [u for u in updates if u not in dg]
    return {"regular": regular,
            "update": _evenly([u for u in updates if u not in regular], cfg.max_update_samples),
            "dense_grad": _evenly(dense_grad, cfg.max_dense_grad_samples)}


class FabricSampler:
    """``step_hook`` for :func:`train`: captures the step at the first call and emulates
    the planned iterations."""

    def __init__(self, cfg: RunConfig, data: Any) -> None:
        self.cfg, self.data = cfg, data
        self.x = data.x_train[: cfg.batch_size]
        self.y = data.y_train[: cfg.batch_size]
        self.samples: list[dict[str, Any]] = []
        self.plan: dict[str, list[int]] | None = None
        self.step = self.session = None
        self.capture_s = self.load_s = self.emulate_s = 0.0
        self.alg: Any = None
        self.reference: dict[str, Any] | None = None

    def __call__(self, step: int, model: Any, alg: Any) -> None:
        import torch

        from acf.frontends.training_step import Binding, capture_training_step
        from acf.runtime.session import Session, SessionOptions

        if self.plan is None:
            self.plan = sample_plan(self.cfg, alg)
            self.wanted = {t: kind for kind in ("regular", "update", "dense_grad")
                           for t in self.plan[kind]}
        t = step + 1  # the iteration whose starting state this hook sees
        if t not in self.wanted:
            return None
        masks = {} if alg is None else {n: m.detach().clone().float() for n, m in alg.masks.items()}
        self.alg = alg
        opt = alg.optimizer if alg is not None else None
        if self.step is None:
            t0 = time.perf_counter()
            self.step = capture_training_step(
                model, (self.x,), labels=self.y, optimizer="sgd",
                optimizer_options={"lr": self.cfg.lr, "momentum": self.cfg.momentum},
                masks=masks or None)
            t1 = time.perf_counter()
            needs_dense = bool(self.plan["dense_grad"])
            self.session = Session(self.cfg.target, SessionOptions(
                grad_variants=("sddmm", "dense") if needs_dense else ("sddmm",),
                formats="auto"))
            self.session.load(self.step.module)
            self.capture_s, self.load_s = t1 - t0, time.perf_counter() - t1
        state = {}
        if opt is not None:
            for name, p in model.named_parameters():
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    state[Binding("momentum_buf", name)] = buf
        kind = self.wanted[t]
        dense_grad = kind == "dense_grad"
        with torch.no_grad():
            args = self.step.bind(model, (self.x,), self.y, masks, state=state)
        t0 = time.perf_counter()
        res = self.session.run_step(args, dense_grad=dense_grad, step=t + 1)
        self.emulate_s += time.perf_counter() - t0
        rep = res.report
        if masks and self.cfg.mask_reference and self.reference is None:
            ones = {n: torch.ones_like(m) for n, m in masks.items()}
            with torch.no_grad():
                ref = self._pinned(rep.formats).run_step(
                    self.step.bind(model, (self.x,), self.y, ones, state=state), step=t + 1).report
            self.reference = {"iteration": t, "cycles": int(ref.total_cycles),
                              "seconds": float(ref.seconds), "energy_j": float(ref.energy_j),
                              "vs_sample_cycles": int(rep.total_cycles) if not dense_grad else None}
        nnz = sum(float(m.sum()) for m in masks.values())
        numel = sum(m.numel() for m in masks.values())
        self.samples.append({
            "iteration": t, "kind": kind, "variant": rep.variant, "cycles": int(rep.total_cycles),
            "seconds": float(rep.seconds), "energy_j": float(rep.energy_j),
            "density": nnz / numel if numel else 1.0,
            "by_kind_cycles": {k: int(v["busy_cycles"]) for k, v in rep.by_kind.items()},
            "mask_update": dict(rep.mask_update) or None,
            "effectual_macs": int(rep.effectual_macs), "issued_macs": int(rep.issued_macs),
            "host_ops": list(rep.host_ops)})
        return None


    def _pinned(self, formats: dict[str, str]) -> Any:
        """A session running the sampled program with the weights' storage formats
        ``formats`` whatever masks it is given (no re-specialization): the all-ones-masks
        reference. A dense-stored conv kernel's optimizer state, whose format follows the
        density, stays dense here, as the runtime keeps it at density 1."""
        from acf.compiler.parser import parse_module
        from acf.compiler.printer import print_module
        from acf.runtime.session import Session, SessionOptions
        from acf.runtime.variants import apply_formats

        module = parse_module(print_module(self.step.module))
        apply_formats(module, module.funcs[0], {p: f for p, f in formats.items() if f != "dense"})
        sess = Session(self.cfg.target, SessionOptions(respecialize="off"))
        sess.load(module)
        return sess


def _interp(samples: list[tuple[int, float]], t: int) -> float:
    if not samples:
        return float("nan")
    samples = sorted(samples)
    if t <= samples[0][0]:
        return samples[0][1]
    if t >= samples[-1][0]:
        return samples[-1][1]
    for (a, va), (b, vb) in zip(samples, samples[1:]):
        if a <= t <= b:
            return va if b == a else va + (vb - va) * (t - a) / (b - a)
    return samples[-1][1]


def mask_update_cost(fabric: dict[str, Any]) -> dict[str, float] | None:
    """Mean ``cycles``, ``seconds``, ``energy_j`` of the mask updates measured in a row's
    samples (and how many, ``measured``), or None when none was."""
    got = [s["mask_update"] for s in fabric["samples"] if s.get("mask_update")]
    if not got:
        return None
    return {**{q: statistics.fmean(float(m[q]) for m in got) for q in ("cycles", "seconds", "energy_j")},
            "measured": len(got)}


def per_step_costs(fabric: dict[str, Any], steps: int) -> list[dict[str, float]]:
    """Estimated fabric cost of every iteration (``cycles``, ``seconds``, ``energy_j``,
    ``dense_grad``, ``emulated``; ``update_*``: the mask update before it, if any) from a
    row's ``fabric`` record (see module doc)."""
    samples = fabric["samples"]
    updates = sorted(fabric["update_steps"])
    per_update = mask_update_cost(fabric)
    update_at = set(updates)
    dense_grad = set(fabric["dense_grad_iterations"])
    emulated = {s["iteration"]: s for s in samples}

    def epoch(t: int) -> int:
        return sum(1 for u in updates if u <= t)

    sparse = [s for s in samples if s["kind"] != "dense_grad"]
    dgs = [s for s in samples if s["kind"] == "dense_grad"] or sparse
    by_epoch: dict[int, list[dict[str, Any]]] = {}
    for s in sparse:
        by_epoch.setdefault(epoch(s["iteration"]), []).append(s)
    out = []
    for t in range(steps):
        row: dict[str, float] = {"dense_grad": t in dense_grad, "emulated": t in emulated}
        for q in ("cycles", "seconds", "energy_j"):
            if t in emulated:
                row[q] = float(emulated[t][q])
            elif t in dense_grad:
                row[q] = _interp([(s["iteration"], s[q]) for s in dgs], t)
            elif epoch(t) in by_epoch:
                row[q] = statistics.fmean(s[q] for s in by_epoch[epoch(t)])
            else:
                row[q] = _interp([(s["iteration"], s[q]) for s in sparse], t)
            row["update_" + q] = per_update[q] if per_update and t in update_at else 0.0
        out.append(row)
    return out


def fabric_totals(fabric: dict[str, Any], steps: int) -> dict[str, Any]:
    costs = per_step_costs(fabric, steps)
    sp = [c for c in costs if not c["dense_grad"]]
    dg = [c for c in costs if c["dense_grad"]]
    tot = lambda cs, q: float(sum(c[q] for c in cs))
    return {
        "sparse_steps": len(sp), "dense_grad_steps": len(dg),
        "sparse_seconds": tot(sp, "seconds"), "sparse_energy_j": tot(sp, "energy_j"),
        "dense_grad_seconds": tot(dg, "seconds"), "dense_grad_energy_j": tot(dg, "energy_j"),
        "mask_update_steps": sum(1 for c in costs if c["update_cycles"]),
        "mask_update_measured": (mask_update_cost(fabric) or {}).get("measured", 0),
        "mask_update_cycles": tot(costs, "update_cycles"),
        "mask_update_seconds": tot(costs, "update_seconds"),
        "mask_update_energy_j": tot(costs, "update_energy_j"),
        "total_seconds": tot(costs, "seconds") + tot(costs, "update_seconds"),
        "total_energy_j": tot(costs, "energy_j") + tot(costs, "update_energy_j"),
        "total_cycles": tot(costs, "cycles") + tot(costs, "update_cycles"),
        "mean_sparse_step_cycles": tot(sp, "cycles") / len(sp) if sp else None,
        "mean_dense_grad_step_cycles": tot(dg, "cycles") / len(dg) if dg else None,
        "emulated_steps": sum(1 for c in costs if c["emulated"]),
    }


def run(cfg: RunConfig, *, fabric: bool | None = None) -> dict[str, Any]:
    """Train one configuration (and emulate its sampled iterations when ``fabric``);
    returns one row."""
    import torch

    from acf.algorithms.data import load_dataset
    from acf.algorithms.train import train
    from acf.evaluation.runner import package_version
    from acf.isa.target import load_target

    cfg.validate()
    fabric = cfg.fabric if fabric is None else fabric
    data = load_dataset(cfg.dataset)
    sampler = FabricSampler(cfg, data) if fabric else None
    opts: dict[str, Any] = {}
    if cfg.algorithm in NM_ALGORITHMS:
        density, opts = None, {"n": NM_N, "m": NM_M}
    elif cfg.algorithm == "dense":
        density = None
    else:
        density = 1.0 - cfg.sparsity
        opts["delta_t"] = cfg.delta_t
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    res = train(cfg.algorithm, density, cfg.steps, dataset=cfg.dataset, model=cfg.model,
                batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                eval_every=cfg.eval_every, seed=cfg.seed, step_hook=sampler, **opts)
    wall = time.perf_counter() - t0
    cost = res.update_cost or {}
    update_steps = [] if sampler is None or sampler.alg is None else list(sampler.alg.update_steps)
    row: dict[str, Any] = {
        "run_id": cfg.run_id, "key": cfg.key, "dataset": cfg.dataset, "model": cfg.model,
        "algorithm": cfg.algorithm, "sparsity": cfg.sparsity, "seed": cfg.seed,
        "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
        "momentum": cfg.momentum, "delta_t": None if cfg.algorithm in FIXED_SPARSITY else cfg.delta_t,
        "nm": f"{NM_N}:{NM_M}" if cfg.algorithm in NM_ALGORITHMS else None,
        "final_accuracy": res.final_accuracy, "curve": [list(c) for c in res.curve],
        "measured_density": None if res.density is None else res.density["density"],
        "mask_updates": res.mask_updates, "mask_update_events": res.mask_update_events,
        "grown": cost.get("grown", 0), "pruned": cost.get("pruned", 0),
        "dense_grad_iterations": [i for i, d in enumerate(res.dense_grad) if d and cfg.algorithm != "dense"],
        "train_wall_s": wall,
        "package_version": package_version(),  # the code the numbers come from
        "fabric_target": cfg.target if fabric else None,
        "fabric_config_hash": load_target(cfg.target).config_hash() if fabric else None,
    }
    if sampler is not None:
        f = {"target": cfg.target, "seed": cfg.seed, "samples": sampler.samples,
             "plan": sampler.plan, "update_steps": update_steps,
             "dense_grad_iterations": row["dense_grad_iterations"],
             "probe_batch": f"first {cfg.batch_size} training samples",
             "estimation": "sparse iterations: mean of the samples in the same mask epoch, else "
                           "linear interpolation in the iteration index between the nearest "
                           "samples (constant beyond the ends); dense-gradient iterations: "
                           "interpolation between dense-gradient samples; mask updates: "
                           "the mean of the measured ones (the first sample after an update) "
                           "at every update step",
             "masked_program_all_ones": sampler.reference,
             "capture_s": sampler.capture_s, "compile_s": sampler.load_s,
             "emulate_s": sampler.emulate_s}
        f["totals"] = fabric_totals(f, cfg.steps)
        row["fabric"] = f
    return row


# ---- aggregation ---------------------------------------------------------------------------

def _mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def attach_fabric(rows: list[dict[str, Any]]) -> None:
    """Give every row of a configuration the fabric record of its emulated seed."""
    by_key = {r["key"]: r["fabric"] for r in rows if r.get("fabric")}
    for r in rows:
        if not r.get("fabric") and r["key"] in by_key:
            r["fabric_from_seed"] = by_key[r["key"]]["seed"]


def time_to_target(rows: list[dict[str, Any]], target_fraction: float = 0.95) -> None:
    """Add ``target_accuracy``, ``steps_to_target``, ``seconds_to_target`` and
    ``energy_to_target_j`` (None when not reached) to every row, in place."""
    if not 0 < target_fraction <= 1:
        raise AccuracyError(f"target_fraction must be in (0, 1], got {target_fraction}")
    dense = {}
    for r in rows:
        if r["algorithm"] == "dense":
            dense.setdefault((r["dataset"], r["model"]), []).append(r["final_accuracy"])
    fabric = {r["key"]: r["fabric"] for r in rows if r.get("fabric")}
    cum_cache: dict[str, tuple[list[float], list[float]]] = {}
    for r in rows:
        ref = dense.get((r["dataset"], r["model"]))
        r["target_fraction"] = target_fraction
        r["target_accuracy"] = target_fraction * statistics.fmean(ref) if ref else None
        r["steps_to_target"] = r["seconds_to_target"] = r["energy_to_target_j"] = None
        if r["target_accuracy"] is None:
            continue
        hit = next((s for s, a in r["curve"] if a >= r["target_accuracy"]), None)
        r["steps_to_target"] = hit
        f = fabric.get(r["key"])
        if hit is None or f is None:
            continue
        if r["key"] not in cum_cache:
            costs = per_step_costs(f, r["steps"])
            sec, en, a, b = [], [], 0.0, 0.0
            for c in costs:
                a += c["seconds"] + c["update_seconds"]
                b += c["energy_j"] + c["update_energy_j"]
                sec.append(a)
                en.append(b)
            cum_cache[r["key"]] = (sec, en)
        sec, en = cum_cache[r["key"]]
        r["seconds_to_target"] = sec[hit - 1]
        r["energy_to_target_j"] = en[hit - 1]


@dataclass
class Summary:
    groups: list[dict[str, Any]] = field(default_factory=list)
    drops: list[dict[str, Any]] = field(default_factory=list)


def summarize(rows: list[dict[str, Any]]) -> Summary:
    """Mean/std per configuration and, per (dataset, model, algorithm), the lowest sparsity
    whose accuracy drop is measurable (see module doc)."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault(r["key"], []).append(r)
    fabric = {r["key"]: r["fabric"] for r in rows if r.get("fabric")}
    groups = []
    for key, rs in by.items():
        r0 = rs[0]
        acc = _mean_std([r["final_accuracy"] for r in rs])
        g = {"key": key, "dataset": r0["dataset"], "model": r0["model"],
             "algorithm": r0["algorithm"], "sparsity": r0["sparsity"], "seeds": len(rs),
             "acc_mean": acc[0], "acc_std": acc[1], "steps": r0["steps"],
             "target_accuracy": r0.get("target_accuracy"),
             "reached": sum(1 for r in rs if r.get("steps_to_target") is not None)}
        for q in ("steps_to_target", "seconds_to_target", "energy_to_target_j"):
            g[q] = _mean_std([r.get(q) for r in rs if r.get(q) is not None])
        f = fabric.get(key)
        if f is not None:
            g["fabric"] = f["totals"]
            g["emulated_iterations"] = sorted(s["iteration"] for s in f["samples"])
        groups.append(g)
    groups.sort(key=lambda g: (g["dataset"], g["model"], ALGORITHMS.index(g["algorithm"]), g["sparsity"]))
    dense = {(g["dataset"], g["model"]): g for g in groups if g["algorithm"] == "dense"}
    for g in groups:
        d = dense.get((g["dataset"], g["model"]))
        g["delta_vs_dense"] = None if d is None else g["acc_mean"] - d["acc_mean"]
        g["measurable_drop"] = None if d is None or g["seeds"] < 2 or d["seeds"] < 2 else (
            d["acc_mean"] - g["acc_mean"] > d["acc_std"] + g["acc_std"])
        if d is not None and d.get("fabric") and g.get("fabric"):
            # an algorithm whose every step takes the dense weight gradient (SR-STE) has
            # no sparse-gradient steps: its typical step is a dense-gradient one
            f = g["fabric"]
            typical = f["mean_sparse_step_cycles"] or f["mean_dense_grad_step_cycles"]
            g["step_cycles_vs_dense"] = typical / d["fabric"]["mean_sparse_step_cycles"]
    drops = []
    seen = sorted({(g["dataset"], g["model"], g["algorithm"]) for g in groups if g["algorithm"] != "dense"})
    for ds, m, a in seen:
        gs = sorted((g for g in groups if (g["dataset"], g["model"], g["algorithm"]) == (ds, m, a)),
                    key=lambda g: g["sparsity"])
        first = next((g["sparsity"] for g in gs if g["measurable_drop"]), None)
        drops.append({"dataset": ds, "model": m, "algorithm": a, "first_drop_sparsity": first,
                      "tested": [g["sparsity"] for g in gs]})
    return Summary(groups, drops)


# ---- experiment driver and report ------------------------------------------------------------

def grid(datasets=DATASETS, models=MODELS, seeds=(0, 1, 2), sparsities=SPARSITIES[1:],
         core=("dense", "rigl", "nm", "nm-srste"), sweep=("static-magnitude", "gmp", "set"),
         sweep_models=("mlp",), steps: dict[tuple[str, str], int] | int = 300,
         fabric_seed: int | None = 0, per_model: dict[str, dict[str, Any]] | None = None,
         **common: Any) -> list[RunConfig]:
    """The configurations of the experiment: ``core`` algorithms on every model, ``sweep``
    algorithms on ``sweep_models``; ``nm`` at its N:M sparsity, ``dense`` at 0, the others at
    ``sparsities``. Only seed ``fabric_seed`` emulates."""
    out = []
    for ds in datasets:
        for m in models:
            algs = list(core) + [a for a in sweep if m in sweep_models]
            n = steps if isinstance(steps, int) else steps[(ds, m)]
            for a in algs:
                sps = [0.0] if a == "dense" else [1 - NM_N / NM_M] if a in NM_ALGORITHMS else list(sparsities)
                for s in sps:
                    for seed in seeds:
                        kw = {**common, **((per_model or {}).get(m, {}))}
                        cfg = RunConfig(ds, m, a, float(s), seed=seed, steps=n,
                                        fabric=(seed == fabric_seed), **kw)
                        cfg.validate()
                        out.append(cfg)
    if not out:
        raise AccuracyError("empty grid")
    return out


def _fmt(ms: tuple[float, float], scale: float = 1.0, digits: int = 3) -> str:
    m, s = ms
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    return f"{m * scale:.{digits}f} ± {s * scale:.{digits}f}"


def write_report(rows: list[dict[str, Any]], out_dir: Any, *, target_fraction: float = 0.95,
                 command: str = "") -> dict[str, Any]:
    """``summary.md`` and the plots (accuracy vs sparsity per algorithm, accuracy curves,
    accuracy-time-energy trade-off) of ``rows``; returns the summary as a dict."""
    from pathlib import Path

    if not rows:
        raise AccuracyError(f"no rows to report in {out_dir}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    time_to_target(rows, target_fraction)
    summ = summarize(rows)
    _plots(rows, summ, out)
    L = ["# Accuracy, convergence, time- and energy-to-accuracy on the fabric", ""]
    if command:
        L += ["Command:", "", f"    {command}", ""]
    r0 = rows[0]
    L += [f"Training: eager PyTorch (`algorithms.train`), SGD lr {r0['lr']} momentum "
          f"{r0['momentum']}, batch {r0['batch_size']}; steps per run in the tables. "
          f"Seeds per configuration: {sorted({r['seed'] for r in rows})}. Accuracy is the "
          "test accuracy at the last step, mean ± sample std over seeds.",
          f"Target accuracy = {target_fraction:.0%} of the mean final dense accuracy of the "
          "same dataset and model. A drop is *measurable* when dense_mean - mean > "
          "dense_std + std.",
          "Fabric (target in the rows, `acf-base`): sampled iterations of one seed per "
          "configuration are emulated through the runtime (capture once, bind current masks, "
          "weights and momentum, fixed probe batch); the rest are estimated (see "
          "`evaluation/accuracy.py`). RigL's dense-gradient iterations run the dense "
          "weight-gradient variant and are totalled separately. Mask updates (the stored "
          "weights brought to their new masks, compressed ones re-encoded) are emulated at "
          "the first sample after one, charged at every update step (mean of the "
          "measured ones), listed apart and included in time/energy-to-target.", ""]
    L += ["## Final accuracy and fabric cost per configuration", "",
          "| dataset | model | algorithm | sparsity | seeds | steps | accuracy | Δ vs dense | "
          "drop? | reached target | steps to target | fabric ms to target | fabric mJ to "
          "target | mean step kcycles (sparse var.) | vs dense program | vs same program, "
          "all-ones masks | dense-grad steps (mean kcycles) | mask updates (mean kcycles, "
          "total µJ) | emulated iterations |",
          "|" + "---|" * 19]
    fab = {r["key"]: r["fabric"] for r in rows if r.get("fabric")}
    for g in summ.groups:
        ft = g.get("fabric") or {}
        f = fab.get(g["key"]) or {}
        ref = f.get("masked_program_all_ones")
        vs_ones = "-"
        if ref and ft.get("mean_sparse_step_cycles"):
            vs_ones = f"{ft['mean_sparse_step_cycles'] / ref['cycles']:.3f}"
        delta = "-" if g["delta_vs_dense"] is None else f"{g['delta_vs_dense']:+.3f}"
        mcyc = "-" if not ft.get("mean_sparse_step_cycles") else \
            f"{ft['mean_sparse_step_cycles'] / 1e3:.1f}"
        vsd = "-" if g.get("step_cycles_vs_dense") is None else f"{g['step_cycles_vs_dense']:.3f}"
        dg = "-" if not ft.get("dense_grad_steps") else \
            f"{ft['dense_grad_steps']} ({ft['mean_dense_grad_step_cycles'] / 1e3:.1f})"
        mu = "-" if not ft.get("mask_update_steps") else (
            f"{ft['mask_update_steps']} ({ft['mask_update_cycles'] / ft['mask_update_steps'] / 1e3:.1f}, "
            f"{ft['mask_update_energy_j'] * 1e6:.1f})")
        L.append(
            f"| {g['dataset']} | {g['model']} | {g['algorithm']} | {g['sparsity']:.0%} | "
            f"{g['seeds']} | {g['steps']} | {_fmt((g['acc_mean'], g['acc_std']))} | "
            f"{delta} | "
            f"{'-' if g['algorithm'] == 'dense' else ('yes' if g['measurable_drop'] else 'no')} | "
            f"{g['reached']}/{g['seeds']} | {_fmt(g['steps_to_target'], 1, 0)} | "
            f"{_fmt(g['seconds_to_target'], 1e3, 2)} | {_fmt(g['energy_to_target_j'], 1e3, 2)} | "
            f"{mcyc} | {vsd} | "
            f"{vs_ones} | {dg} | {mu} | {','.join(map(str, g.get('emulated_iterations', []))) or '-'} |")
    L += ["", "## Where accuracy measurably drops", "",
          "| dataset | model | algorithm | lowest sparsity with a measurable drop | tested |",
          "|---|---|---|---|---|"]
    for d in summ.drops:
        first = "none up to the highest tested" if d["first_drop_sparsity"] is None \
            else f"{d['first_drop_sparsity']:.0%}"
        L.append(f"| {d['dataset']} | {d['model']} | {d['algorithm']} | {first} | "
                 f"{', '.join(f'{s:.0%}' for s in d['tested'])} |")
    L += ["", "Plots: `accuracy_vs_sparsity.png`, `accuracy_curves.png`, `tradeoff.png`.", ""]
    (out / "summary.md").write_text("\n".join(L))
    return {"groups": summ.groups, "drops": summ.drops}


def _plots(rows: list[dict[str, Any]], summ: Summary, out: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(g["dataset"], g["model"]) for g in summ.groups})
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (ds, m) in zip(axes[0], panels):
        gs = [g for g in summ.groups if (g["dataset"], g["model"]) == (ds, m)]
        dense = next((g for g in gs if g["algorithm"] == "dense"), None)
        for a in ALGORITHMS:
            pts = sorted((g["sparsity"], g["acc_mean"], g["acc_std"]) for g in gs if g["algorithm"] == a)
            if not pts or a == "dense":
                continue
            if dense is not None and a not in NM_ALGORITHMS:
                pts = [(0.0, dense["acc_mean"], dense["acc_std"])] + pts
            x, y, e = zip(*pts)
            ax.errorbar([100 * v for v in x], y, yerr=e, marker="o", ms=3, capsize=2, label=a)
        if dense is not None:
            ax.axhspan(dense["acc_mean"] - dense["acc_std"], dense["acc_mean"] + dense["acc_std"],
                       color="grey", alpha=0.25, label="dense ± std")
        ax.set_title(f"{ds} / {m}")
        ax.set_xlabel("weight sparsity (%)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)  # every panel: the panels run different algorithms
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_sparsity.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, (ds, m) in zip(axes[0], panels):
        for key in sorted({r["key"] for r in rows if (r["dataset"], r["model"]) == (ds, m)}):
            rs = [r for r in rows if r["key"] == key]
            a, sp = rs[0]["algorithm"], rs[0]["sparsity"]
            if not (a in FIXED_SPARSITY or (a == "rigl" and abs(sp - 0.9) < 1e-9)):
                continue
            steps = [s for s, _ in rs[0]["curve"]]
            accs = [statistics.fmean(r["curve"][i][1] for r in rs) for i in range(len(steps))]
            ax.plot(steps, accs, label=f"{a} {sp:.0%}" if a != "dense" else "dense")
        tgt = next((r.get("target_accuracy") for r in rows if (r["dataset"], r["model"]) == (ds, m)), None)
        if tgt:
            ax.axhline(tgt, ls="--", color="k", lw=0.8, label="target")
        ax.set_title(f"{ds} / {m} (mean over seeds)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "accuracy_curves.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(2, n, figsize=(4.2 * n, 6.6), squeeze=False)
    markers = dict(zip(ALGORITHMS, "*osPD^v"))
    for j, (ds, m) in enumerate(panels):
        for i, (q, lab, scale) in enumerate((("total_seconds", "fabric time per run (ms)", 1e3),
                                             ("total_energy_j", "fabric energy per run (mJ)", 1e3))):
            ax = axes[i][j]
            for a in ALGORITHMS:
                gs = [g for g in summ.groups if (g["dataset"], g["model"], g["algorithm"]) == (ds, m, a)
                      and g.get("fabric")]
                if not gs:
                    continue
                ax.errorbar([g["fabric"][q] * scale for g in gs], [g["acc_mean"] for g in gs],
                            yerr=[g["acc_std"] for g in gs], fmt=markers[a], ms=5, capsize=2, label=a)
                for g in gs:
                    if a not in FIXED_SPARSITY:
                        ax.annotate(f"{g['sparsity']:.0%}", (g["fabric"][q] * scale, g["acc_mean"]),
                                    fontsize=6)
            ax.set_xlabel(lab)
            ax.set_ylabel("final test accuracy")
            ax.set_title(f"{ds} / {m}")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "tradeoff.png", dpi=120)
    plt.close(fig)
