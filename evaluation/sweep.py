"""Sweeps: models x sparsities x mask kinds x targets x ``--set`` grids, resumable.

``run_sweep(grid, out_dir)`` expands a :class:`Grid` into :class:`RunSpec` s, skips run ids
already in ``out_dir/rows.jsonl`` and runs the rest on a local process pool (default), in
process (``jobs=1``) or on Ray (``executor="ray"``, imported lazily). Every finished run is
appended to ``rows.jsonl`` as one line in one ``write`` on an ``O_APPEND`` descriptor and
fsynced, so an interrupted sweep loses no finished row; a torn last line is ignored on
reading. ``rows.csv`` (flat scalar columns) is rewritten atomically from the JSON lines at
the end. Which rows are one point (``--set`` values written one way, the latest row of
each point) is decided in :mod:`acf.evaluation.points`.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from acf.evaluation.outputs import OUTPUT_FILES
from acf.evaluation.points import canonical_set_value
from acf.evaluation.runner import RunSpec, load, package_version, run_spec
from acf.evaluation.workloads import MASK_KINDS, MODELS, WorkloadError, check_density, nm_or_error

SPARSITIES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)
ROWS = "rows.jsonl"
CSV = "rows.csv"


class SweepError(ValueError):
    """Bad sweep input: unknown names, impossible densities, malformed --set."""


@dataclass
class Grid:
    models: list[str]
    sparsities: list[float] = field(default_factory=lambda: list(SPARSITIES))
    targets: list[str] = field(default_factory=lambda: ["acf-base", "acf-dense"])
    masks: list[str] = field(default_factory=lambda: ["random"])
    sets: dict[str, list[str]] = field(default_factory=dict)  # field -> values (a grid)
    act_density: float = 0.5
    batch: int | None = None
    formats: list[str] = field(default_factory=lambda: ["auto"])
    max_waves: int = 1
    max_k_chunks: int = 8
    full: bool = False
    seed: int = 0
    noc: list[str] = field(default_factory=lambda: ["auto"])

    def __post_init__(self) -> None:
        # one spelling per value (``32`` and ``0x20``, ``[2,2]`` and ``[2, 2]``): a value
        # written two ways is one point, run once under one run id
        self.sets = {key.strip(): list(dict.fromkeys(canonical_set_value(key.strip(), v) for v in vals))
                     for key, vals in self.sets.items()}

    def validate(self) -> None:
        from acf.isa.target import TargetError, available_targets

        for m in self.models:
            if m not in MODELS:
                raise SweepError(f"unknown model {m!r}; choose one of {', '.join(MODELS)}")
        for k in self.masks:
            if k not in MASK_KINDS:
                raise SweepError(f"unknown mask kind {k!r}; choose one of {', '.join(MASK_KINDS)}")
        for f in self.formats:
            if f not in ("auto", "csr", "dense"):
                raise SweepError(f"unknown formats mode {f!r}; choose auto, csr or dense")
        for n in self.noc:
            if n not in ("auto", "unicast"):
                raise SweepError(f"unknown NoC mode {n!r}; choose auto or unicast")
        for s in self.sparsities:
            try:
                check_density(s)
                if "nm" in self.masks and s > 0:
                    nm_or_error(1.0 - float(s))
            except WorkloadError as exc:
                raise SweepError(str(exc)) from None
        if not 0.0 < self.act_density <= 1.0:
            raise SweepError(f"impossible activation density {self.act_density!r}: must be in (0, 1]")
        for name, value in (("batch", self.batch), ("max-waves", self.max_waves),
                            ("max-k-chunks", self.max_k_chunks)):
            if value is not None and value < 1:
                raise SweepError(f"--{name} {value}: must be at least 1")
        known = available_targets()
        for t in self.targets:
            if t not in known and not Path(t).is_file():
                raise SweepError(f"unknown target {t!r}; choose one of {', '.join(known)}")
            for combo in self._set_combos():
                try:
                    load(RunSpec("tiny-mlp", 0.0, t, overrides=combo))
                except TargetError as exc:
                    raise SweepError(str(exc)) from None

    def _set_combos(self) -> list[tuple[tuple[str, str], ...]]:
        keys = sorted(self.sets)
        return [tuple(zip(keys, vals)) for vals in itertools.product(*(self.sets[k] for k in keys))] or [()]

    def specs(self) -> list[RunSpec]:
        self.validate()
        out = []
        for model, sp, mask, target, combo, fmt, noc in itertools.product(
                self.models, self.sparsities, self.masks, self.targets, self._set_combos(),
                self.formats, self.noc):
            out.append(RunSpec(model, float(sp), target, mask, self.act_density, self.batch, combo,
                               fmt, self.max_waves, self.max_k_chunks, self.full, self.seed, noc))
        return out


def parse_sets(items: Iterable[str]) -> dict[str, list[str]]:
    """``["cluster.lookahead=1,4,8"]`` -> ``{"cluster.lookahead": ["1", "4", "8"]}``.
    A value in brackets (``fabric.grid=[2, 2]``) is one value, not a list. Each value is
    written canonically (:func:`canonical_set_value`) and listed once."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or "." not in key:
            raise SweepError(f"--set {item}: expected SECTION.FIELD=V1,V2,...")
        value = value.strip()
        if value.startswith("["):
            vals = [v.strip() if v.strip().startswith("[") else "[" + v.strip()
                    for v in value.split(";")]
        else:
            vals = [v.strip() for v in value.split(",") if v.strip()]
        if not vals:
            raise SweepError(f"--set {item}: no value for {key.strip()}")
        if key.strip() in out:
            raise SweepError(f"--set {key.strip()} given twice (list every value in one: "
                             f"{key.strip()}=V1,V2,...)")
        out[key.strip()] = list(dict.fromkeys(canonical_set_value(key.strip(), v) for v in vals))
    return out


# ---- rows on disk --------------------------------------------------------------------------


def read_rows(out_dir: Path | str) -> list[dict[str, Any]]:
    """Every complete row of ``rows.jsonl`` (a torn last line is skipped)."""
    path = Path(out_dir) / ROWS
    rows = []
    if not path.exists():
        return rows
    with path.open() as fh:
        for line in fh:
            if not line.endswith("\n"):
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):  # anything else is not a row of ours
                rows.append(row)
    return rows


def repair_rows(out_dir: Path) -> None:
    """Cut a torn last line (a run interrupted mid-write) off ``rows.jsonl``, so the next
    row starts on a line of its own instead of being glued to the fragment."""
    path = out_dir / ROWS
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def append_row(out_dir: Path, row: dict[str, Any]) -> None:
    data = (json.dumps(row, sort_keys=True) + "\n").encode()
    fd = os.open(out_dir / ROWS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def flat(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v, sort_keys=True) if isinstance(v, dict) else v)
            for k, v in row.items() if not isinstance(v, list) or k == "grid"}


def write_csv(out_dir: Path, rows: list[dict[str, Any]]) -> Path:
    path = out_dir / CSV
    cols: list[str] = []
    for r in rows:
        for k in flat(r):
            if k not in cols and k not in ("noc_link_flits",):
                cols.append(k)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(flat(r))
    os.replace(tmp, path)
    return path


def _safe_run(spec: RunSpec) -> dict[str, Any]:
    try:
        return run_spec(spec)
    except Exception as exc:  # one failing point must not stop the sweep; the row says why
        target_hash = ""
        try:
            target_hash = load(spec).config_hash()
        except Exception:
            pass
        return {"run_id": spec.run_id(target_hash, package_version()), "status": "error",
                "error": f"{type(exc).__name__}: {exc}", "target": spec.target,
                "package_version": package_version(), "config_hash": target_hash,
                **{k: v for k, v in spec.as_dict().items() if k != "target"}}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError("--executor ray needs the optional 'ray' package (pip install ray)") from None
    return ray


def output_files() -> tuple[str, ...]:
    """The files a sweep and its report write in the results folder."""
    return (ROWS, CSV, CSV + ".tmp") + OUTPUT_FILES


def check_out_dir(out: Path, names: Iterable[str] | None = None) -> None:
    """Refuse a results folder the sweep or its report could not write into, before any
    run starts (not after an hour of runs, with a traceback): a folder where a file goes
    (``rows.jsonl/``, ``summary.md/``), a file or folder without write permission."""
    try:
        if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
            raise SweepError(f"--out {out}: cannot write into the results folder: Permission denied")
        for name in output_files() if names is None else names:
            path = out / name
            if path.is_dir():
                raise SweepError(f"--out {out}: {path} is a directory where the sweep writes a "
                                 "file; remove or rename it")
            if path.exists() and not os.access(path, os.W_OK):
                raise SweepError(f"--out {out}: cannot write {path}: Permission denied")
    except OSError as exc:  # a folder above it that cannot be searched
        raise SweepError(f"--out {out}: cannot use the results folder: {exc.strerror or exc}") from None


def _run_ray(specs: list[RunSpec], jobs: int, on_row: Callable[[dict], None]) -> None:
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=jobs or None, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(_safe_run)
        pending = [remote.remote(s) for s in specs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                on_row(ray.get(ref))
    finally:
        if started:
            ray.shutdown()


@dataclass
class SweepResult:
    """``rows``: every row in the folder (other grids and code versions too; a report reads
    :func:`latest_rows` of them); ``errors``: this grid's points whose last row is an error."""

    out_dir: Path
    rows: list[dict[str, Any]]
    ran: int
    skipped: int
    errors: list[dict[str, Any]] = field(default_factory=list)


def run_sweep(grid: Grid, out_dir: Path | str, jobs: int = 0, executor: str = "process",
              progress: bool = True, fail_after: int | None = None) -> SweepResult:
    """Run every spec of ``grid`` not already finished in ``out_dir``.

    ``jobs``: workers (0 = CPU count; 1 = in this process). ``fail_after``: raise after that
    many new rows (a simulated interruption, for tests).
    """
    if executor not in ("process", "ray"):
        raise SweepError(f"unknown executor {executor!r}; choose process or ray")
    if jobs < 0:
        raise SweepError(f"--jobs {jobs}: must be 0 (every CPU) or more")
    specs = list(dict.fromkeys(grid.specs()))  # a value listed twice is one point
    if executor == "ray":
        _import_ray()  # before the results folder exists: a refused sweep leaves nothing
    out = Path(out_dir)
    check_out_dir(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"--out {out}: cannot create the results folder: {exc.strerror}") from None
    repair_rows(out)
    done_ids = {r["run_id"] for r in read_rows(out) if r.get("status") == "ok"}
    version = package_version()
    ids = [s.run_id(load(s).config_hash(), version) for s in specs]
    todo = [s for s, i in zip(specs, ids) if i not in done_ids]
    jobs = jobs or os.cpu_count() or 1
    written = 0

    bar = None
    if progress:
        from rich.progress import Progress

        bar = Progress(transient=False)
        bar.start()
        task = bar.add_task("sweep", total=len(todo))

    def on_row(row: dict[str, Any]) -> None:
        nonlocal written
        append_row(out, row)
        written += 1
        if bar is not None:
            bar.advance(task)
        if fail_after is not None and written >= fail_after:
            raise KeyboardInterrupt(f"simulated interruption after {written} rows")

    try:
        if executor == "ray":
            _run_ray(todo, jobs, on_row)
        elif jobs == 1 or len(todo) <= 1:
            for s in todo:
                on_row(_safe_run(s))
        else:
            with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
                futures = [pool.submit(_safe_run, s) for s in todo]
                try:
                    for fut in as_completed(futures):
                        on_row(fut.result())
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    finally:
        if bar is not None:
            bar.stop()
    rows = read_rows(out)
    write_csv(out, rows)
    last: dict[str, dict[str, Any]] = {}
    for r in rows:  # the last row of each of this grid's points decides
        last[r.get("run_id", "")] = r
    errors = [last[i] for i in ids if i in last and last[i].get("status") != "ok"]
    return SweepResult(out, rows, written, len(specs) - len(todo), errors)
