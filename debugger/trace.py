"""Timeline traces in the Chrome / Perfetto JSON format, streamed to disk.

Layout: one process per cluster (``pid = 1 + cluster``, one thread per unit), one for the
memory system (``dma``, ``cfg`` threads) and one for the NoC (link-load counters). Every
retired instruction is a complete event (``ph: X``; args: pc, mnemonic, operands, source
location, energy); every token a waiter consumed is a flow (``s`` in the signaller's slice,
``f`` bound to the waiter's slice, ``bp: e``); counters (``ph: C``) give each queue's
depth, each unit's power (energy / duration, pJ/ns = mW) and each NoC link's load (flits
per cycle, when an emulator is sampled). Time: **1 simulated cycle = 1 ns**, so ``ts`` and
``dur`` (microseconds, as the format requires) are cycles / 1000; the file's ``metadata``
says so too.

Streaming: events go through a buffer of at most ``flush_every`` entries, written out as
JSON array items when full, so memory stays bounded however long the program::

    with TraceWriter("out.json", program, target) as w:
        while (rec := emu.step()) is not None:
            w.add(rec)
            w.sample(emu)
    write_trace(result_or_records_or_emulator, program, target, "out.json")

``acfc run --trace out.json`` calls :func:`write_trace` with an un-run Emulator.
"""

from __future__ import annotations

import bisect
import heapq
import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Self

from acf.isa.disasm import format_instruction
from acf.isa.program import Program
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS, token_name

MEMORY_PID, NOC_PID = 0, 10_000


def us(cycle: float) -> float:
    """Cycles to trace microseconds (1 cycle = 1 ns)."""
    return cycle / 1000.0


class TraceWriter:
    """Streams one trace file; ``add(record)`` in retirement order, ``close()`` at the end."""

    def __init__(self, path: str, program: Program, target: Any, flush_every: int = 4096):
        self.program, self.target = program, target
        self.flush_every = max(1, flush_every)
        self.max_buffered = 0
        self.events_written = 0
        self._fh = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._buf: list[dict] = []
        self._first = True
        self._labels = {a: n for n, a in program.labels.items()}
        self._signals: dict[int, list[tuple[int, int, int, int]]] = defaultdict(list)
        self._flow_id = 0
        self._depth_pending: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        self._depth: dict[tuple[int, int], int] = defaultdict(int)
        self._links: dict[Any, int] = {}
        self._link_rate: dict[Any, float] = {}
        self._last_sample = 0
        meta = {
            "time_convention": "1 simulated cycle = 1 ns; ts and dur are in microseconds",
            "target": getattr(target, "name", str(target)),
            "clock_ghz": float(target.clock.freq_ghz) if hasattr(target, "clock") else None,
            "program_instructions": len(program.instructions),
        }
        self._fh.write(
            '{"displayTimeUnit": "ns", "metadata": ' + json.dumps(meta) + ', "traceEvents": [\n'
        )
        self._names(target)

    # ---- tracks ----------------------------------------------------------------------------
    def _names(self, target: Any) -> None:
        def meta(kind: str, pid: int, tid: int, name: str) -> None:
            self._emit({"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}})

        meta("process_name", MEMORY_PID, 0, "memory system")
        meta("process_name", NOC_PID, 0, "NoC")
        for g, unit in enumerate(GLOBAL_UNITS):
            meta("thread_name", MEMORY_PID, g, unit)
        for cl in range(int(target.num_clusters)):
            meta("process_name", 1 + cl, 0, f"cluster c{cl}")
            for u, unit in enumerate(CLUSTER_UNITS):
                meta("thread_name", 1 + cl, u, f"c{cl}.{unit}")

    @staticmethod
    def track(unit: str, cluster: int) -> tuple[int, int]:
        """(pid, tid) of a unit's thread."""
        if unit in CLUSTER_UNITS:
            return 1 + cluster, CLUSTER_UNITS.index(unit)
        return MEMORY_PID, GLOBAL_UNITS.index(unit) if unit in GLOBAL_UNITS else len(GLOBAL_UNITS)

    # ---- events ----------------------------------------------------------------------------
    def add(self, rec: Any) -> None:
        """One retired instruction (records must come in retirement order)."""
        ins = self.program.instructions[rec.index]
        pid, tid = self.track(rec.unit, rec.cluster)
        dur = rec.end - rec.start
        loc = self.program.debug.get(rec.index)
        self._emit(
            {
                "ph": "X",
                "name": rec.mnemonic,
                "cat": rec.unit,
                "pid": pid,
                "tid": tid,
                "ts": us(rec.start),
                "dur": us(dur),
                "args": {
                    "pc": rec.index,
                    "mnemonic": rec.mnemonic,
                    "operands": format_instruction(ins, rec.index, self._labels),
                    "source": str(loc) if loc else "",
                    "op_id": loc.op_id if loc else -1,
                    "dispatch_cycle": rec.dispatch,
                    "start_cycle": rec.start,
                    "end_cycle": rec.end,
                    "energy_pj": rec.energy_pj,
                },
            }
        )
        self._flows(rec, ins, pid, tid)
        unit = f"c{rec.cluster}.{rec.unit}" if rec.unit in CLUSTER_UNITS else rec.unit
        power = rec.energy_pj / dur if dur else 0.0
        self._emit(
            {
                "ph": "C",
                "name": f"power {unit} (mW)",
                "pid": pid,
                "ts": us(rec.start),
                "args": {"mW": power},
            }
        )
        self._emit(
            {
                "ph": "C",
                "name": f"power {unit} (mW)",
                "pid": pid,
                "ts": us(rec.end),
                "args": {"mW": 0.0},
            }
        )
        self._queue_depth(rec, pid, tid, unit)

    def _flows(self, rec: Any, ins: Any, pid: int, tid: int) -> None:
        for tok in ins.wait_counters:
            pending = self._signals.get(tok, [])
            pick = next((k for k, s in enumerate(pending) if s[0] <= rec.start), None)
            if pick is None:
                continue
            end, spid, stid, sstart = pending.pop(pick)
            self._flow_id += 1
            ts = us(end - 0.5) if end > sstart else us(end)
            self._emit(
                {
                    "ph": "s",
                    "name": token_name(tok),
                    "cat": "token",
                    "id": self._flow_id,
                    "pid": spid,
                    "tid": stid,
                    "ts": ts,
                }
            )
            self._emit(
                {
                    "ph": "f",
                    "bp": "e",
                    "name": token_name(tok),
                    "cat": "token",
                    "id": self._flow_id,
                    "pid": pid,
                    "tid": tid,
                    "ts": us(rec.start),
                }
            )
        for tok in ins.signal_counters:
            bisect.insort(self._signals[tok], (rec.end, pid, tid, rec.start))

    def _queue_depth(self, rec: Any, pid: int, tid: int, unit: str) -> None:
        """Depth changes (+1 at dispatch, -1 at start) are final below this record's dispatch
        cycle: a queue's records arrive in order, so later ones change it no earlier."""
        key = (pid, tid)
        pending = self._depth_pending[key]
        heapq.heappush(pending, (rec.dispatch, 1))
        heapq.heappush(pending, (rec.start, -1))
        self._flush_depth(key, unit, rec.dispatch)

    def _flush_depth(self, key: tuple[int, int], unit: str, before: float) -> None:
        pending = self._depth_pending[key]
        while pending and pending[0][0] < before:
            t = pending[0][0]
            while pending and pending[0][0] == t:
                self._depth[key] += heapq.heappop(pending)[1]
            self._emit(
                {
                    "ph": "C",
                    "name": f"queue depth {unit}",
                    "pid": key[0],
                    "ts": us(t),
                    "args": {"depth": self._depth[key]},
                }
            )

    def sample(self, emu: Any) -> None:
        """NoC link load since the previous sample (flits per cycle), at the emulator's clock."""
        from acf.emulator.routing import link_name

        now = emu.cycle
        if now <= self._last_sample:
            return
        span = now - self._last_sample
        flits = emu.ic.link_flits
        for link in sorted(set(flits) | set(self._link_rate), key=link_name):
            rate = (flits.get(link, 0) - self._links.get(link, 0)) / span
            if rate != self._link_rate.get(link, 0.0):
                self._emit(
                    {
                        "ph": "C",
                        "name": f"link {link_name(link)}",
                        "pid": NOC_PID,
                        "ts": us(self._last_sample),
                        "args": {"flits_per_cycle": rate},
                    }
                )
                self._link_rate[link] = rate
        self._links = dict(flits)
        self._last_sample = now

    # ---- output ------------------------------------------------------------------------------
    def _emit(self, event: dict) -> None:
        self._buf.append(event)
        self.max_buffered = max(self.max_buffered, len(self._buf))
        if len(self._buf) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if not self._buf:
            return
        text = ",\n".join(json.dumps(e, separators=(",", ":")) for e in self._buf)
        self._fh.write(("" if self._first else ",\n") + text)
        self._fh.flush()
        self._first = False
        self.events_written += len(self._buf)
        self._buf.clear()

    def close(self) -> None:
        if self._fh.closed:
            return
        names = {
            (1 + c, u): f"c{c}.{n}"
            for c in range(int(self.target.num_clusters))
            for u, n in enumerate(CLUSTER_UNITS)
        }
        names.update({(MEMORY_PID, g): n for g, n in enumerate(GLOBAL_UNITS)})
        for key in list(self._depth_pending):
            self._flush_depth(key, names.get(key, "?"), float("inf"))
        self.flush()
        self._fh.write("\n]}\n")
        self._fh.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_trace(
    source: Any, program: Program, target: Any, path: str, flush_every: int = 4096
) -> Any:
    """Write a trace of ``source``: an emulator Result, an iterable of Records, or an
    Emulator not yet run (it is stepped to the end with NoC sampling, and its Result is
    returned). Returns the Result when it has one, else None."""
    if hasattr(source, "step") and hasattr(source, "result"):
        with TraceWriter(path, program, target, flush_every) as w:
            while (rec := source.step()) is not None:
                w.add(rec)
                w.sample(source)
        return source.result()
    records: Iterable[Any] = getattr(source, "records", source)
    with TraceWriter(path, program, target, flush_every) as w:
        for rec in records:
            w.add(rec)
    return source if hasattr(source, "records") else None
