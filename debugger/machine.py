"""The machine under the debugger: an :class:`acf.emulator.Emulator` driven one engine event
at a time, with checkpoints for reverse execution.

The emulator's stepped API returns after each retirement; a debugger also needs to see
instruction *starts* (breakpoints stop before an instruction's writes, read watchpoints see
its reads), so :meth:`Machine.advance` processes a single event of the engine's queue and
reports what it did as :class:`Event` values. ``pos`` counts processed events: the engine is
deterministic, so ``pos`` names a machine state exactly and replaying from a checkpoint to
``pos`` rebuilds it.

Checkpoints copy the engine (queues, in-flight instructions, tokens, registers, NoC state)
with :func:`copy.deepcopy`, but never the memories (a DRAM may be a 150 GB lazy mapping):
memory is tracked in 4 KiB pages made dirty by inputs and by each retiring write, and a
checkpoint keeps the dirty pages only, sharing the bytes of every page not written since
the checkpoint before it. Nor do they copy what only grows as the program runs (the
retirement records, the ends of sends, see :data:`HISTORY`): a checkpoint stores how long
each was, and a restore takes that prefix of the longest one seen (the engine is
deterministic, so every run to a position appends the same entries). Caches of pure
functions (decoded tiles, bank cycles) are shared. A checkpoint's size thus depends on the
machine's state, not on how far into the program it was taken.
"""

from __future__ import annotations

import copy
import hashlib
import heapq
import itertools
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from acf.emulator import Emulator, EmulatorTrap
from acf.emulator.engine import DEFAULT_MAX_INSTRUCTIONS
from acf.isa.semantics import view_span
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS

PAGE = 4096
PHASE_RETIRE, PHASE_START = 0, 1
#: Engine attributes that only grow, by appending (the list of records) or by inserting
#: keys never inserted before (a send's end, keyed by its unique pairing): a checkpoint
#: keeps their length instead of a copy.
HISTORY = ("records", "send_end")
#: The race detector's access lists (by memory, address bucket and queue): every list in
#: them only grows by appending (a pruning replaces a list by a new one, a barrier drops
#: them all), and the archive grows with the program. A checkpoint keeps each list with
#: its length, not a copy of its entries.
RACE_LISTS = ("history", "archive", "tiles", "tile_archive")
#: Engine and state attributes that are caches of pure functions (a decoded tile is used
#: only when its bytes match; bank cycles depend on addresses alone): shared, not copied.
SHARED_CACHES = (("engine", "gather_cache"), ("engine", "bank_cache"), ("state", "decode_cache"))


@dataclass
class Event:
    """Something an instruction did in one engine event: ``kind`` is ``start`` or ``retire``.

    ``reads``/``writes`` are ``(space, cluster, lo, hi)`` byte ranges (reads at start,
    writes at retirement); ``record`` is the emulator's Record (its ``end`` is final only
    for ``retire``)."""

    kind: str
    cycle: int
    index: int
    queue: str
    record: Any
    reads: list[tuple[str, int, int, int]] = field(default_factory=list)
    writes: list[tuple[str, int, int, int]] = field(default_factory=list)


@dataclass
class Checkpoint:
    """The machine after some events: an engine copy without its HISTORY (``lengths``
    says how long each was), the dirty pages' bytes, and whether the program was over."""

    emu: Emulator
    pages: dict[tuple[str, int, int], bytes]
    finished: bool
    lengths: dict[str, int]
    races: dict[str, Any]


def queue_names(num_clusters: int) -> list[str]:
    """Queue names in queue-id order: ``c0.ld .. c0.noc, c1.ld, ..., dma, cfg``."""
    return [f"c{c}.{u}" for c in range(num_clusters) for u in CLUSTER_UNITS] + list(GLOBAL_UNITS)


def write_ranges(effect: Any) -> list[tuple[str, int, int, int]]:
    """Byte ranges an Effect's writes cover (a pitched tile counts as its whole span)."""
    out = []
    for space, cl, addr, data, pitch in effect.writes:
        if isinstance(pitch, tuple):  # a destination view
            span = view_span(pitch)
        elif data.ndim == 2:
            rows, rb = data.shape[0], data.shape[1] * data.itemsize
            span = (rows - 1) * (pitch or rb) + rb if rows and rb else 0
        else:
            span = data.size * data.itemsize
        out.append((space, cl, addr, addr + span))
    return out


class Machine:
    """An emulator plus event-level stepping, positions and checkpoints."""

    def __init__(
        self,
        program,
        target,
        inputs: dict[str, np.ndarray] | None = None,
        checkpoint_every: int = 256,
        max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
    ):
        self.program = program
        self.emu = Emulator(program, target, inputs, max_instructions)
        self.target = self.emu.target
        self.queue_names = queue_names(self.target.num_clusters)
        self.pos = 0
        self.trap: EmulatorTrap | None = None
        self.finished = False
        self.every = checkpoint_every
        self._dirty: set[tuple[str, int, int]] = set()
        # pages written since the checkpoint last taken or restored, whose pages
        # (``_base_pages``) hold the bytes of every other dirty page
        self._changed: set[tuple[str, int, int]] = set()
        self._base_pages: dict[tuple[str, int, int], bytes] = {}
        # the longest run of each HISTORY attribute seen (see the module doc)
        self._history: dict[str, Any] = {name: getattr(self.engine, name) for name in HISTORY}
        for sym in program.symbols.values():  # bound from inputs or from .data
            if sym.name in (inputs or {}) or sym.name in program.data:
                self._mark(sym.space, sym.cluster, sym.addr, sym.addr + sym.nbytes)
        self._checkpoints: dict[int, tuple] = {}
        self._checkpoint()

    # ---- views of the engine -------------------------------------------------------------
    @property
    def engine(self):
        return self.emu.engine

    @property
    def state(self):
        return self.emu.state

    @property
    def cycle(self) -> int:
        return self.engine.now

    def next_cycle(self) -> int | None:
        """Cycle of the next event, None when nothing is left to process."""
        heap = self.engine.heap
        return heap[0][0] if heap else None

    def peek_retire(self) -> Any | None:
        """The in-flight instruction the next event retires, if the next event is a retirement."""
        heap = self.engine.heap
        if heap and heap[0][1] == PHASE_RETIRE:
            return heap[0][5]
        return None

    def inflight(self) -> dict[int, Any]:
        """Queue id -> the started, not yet retired instruction (an engine ``Inflight``)."""
        out = {}
        for entry in self.engine.heap:
            arg = entry[5]
            ex = arg[0] if isinstance(arg, tuple) and arg and hasattr(arg[0], "effect") else arg
            if hasattr(ex, "effect") and hasattr(ex, "p"):
                out[ex.p.q] = ex
        return out

    # ---- stepping --------------------------------------------------------------------------
    def advance(self) -> list[Event] | None:
        """Process one engine event; None when the program is over (or has trapped)."""
        if self.trap is not None or self.finished:
            return None
        eng = self.engine
        if not eng.heap:
            self.finished = True
            try:
                eng._check_deadlock()
            except EmulatorTrap as exc:
                self.trap = exc
            return None
        cycle, phase, q, _seq, fn, arg = heapq.heappop(eng.heap)
        eng.now = cycle
        events: list[Event] = []
        head = eng.queues[q][0] if phase == PHASE_START and eng.queues[q] else None
        if phase == PHASE_RETIRE and hasattr(arg, "effect"):
            ranges = write_ranges(arg.effect)
            for space, cl, lo, hi in ranges:
                self._mark(space, cl, lo, hi)
            events.append(
                Event("retire", cycle, arg.p.index, self.queue_names[q], arg.record, writes=ranges)
            )
        try:
            fn(arg, cycle)
        except EmulatorTrap as exc:
            self.trap = exc
        self.pos += 1
        if head is not None and eng.busy[q] and (not eng.queues[q] or eng.queues[q][0] is not head):
            ex = self.inflight().get(q)
            reads = []
            if ex is not None:
                reads = [
                    (a.space, a.cluster, a.addr, a.end) for a in ex.effect.accesses if not a.write
                ]
            events.append(
                Event(
                    "start",
                    cycle,
                    head.index,
                    self.queue_names[q],
                    ex.record if ex is not None else None,
                    reads=reads,
                )
            )
        if self.pos % self.every == 0 and self.pos not in self._checkpoints and self.trap is None:
            self._checkpoint()
        return events

    def goto(self, pos: int, force: bool = False) -> None:
        """Rebuild the state after ``pos`` events: restore a checkpoint, replay forward
        (from where the machine is, when that is on the way, unless ``force``)."""
        base = max(p for p in self._checkpoints if p <= pos)
        if force or not (base <= self.pos <= pos and self.trap is None):
            self._restore(base)
        while self.pos < pos and self.advance() is not None:
            pass

    def rewind(self, pos: int) -> None:
        """``goto`` from a checkpoint whatever the machine holds now (after a command failed
        half-way, it may not match ``self.pos``)."""
        self.goto(pos, force=True)

    def checkpoint_cycle(self, pos: int) -> int:
        """The clock of the checkpoint at ``pos``."""
        return self._checkpoints[pos].emu.engine.now

    def checkpoints_before(self, pos: int) -> list[int]:
        """Checkpoint positions strictly before ``pos``, latest first."""
        return sorted((p for p in self._checkpoints if p < pos), reverse=True)

    # ---- checkpoints -------------------------------------------------------------------------
    def _mark(self, space: str, cl: int, lo: int, hi: int) -> None:
        for page in range(lo // PAGE, (max(hi, lo + 1) - 1) // PAGE + 1):
            key = (space, cl if space in ("sp", "acc") else 0, page)
            self._dirty.add(key)
            self._changed.add(key)

    def _pages(self) -> dict[tuple[str, int, int], bytes]:
        """The dirty pages' bytes: copies of the pages written since the last checkpoint
        taken or restored, that checkpoint's bytes objects for the others."""
        out = {key: data for key, data in self._base_pages.items() if key in self._dirty}
        for key in self._changed:
            space, cl, page = key
            buf = self.state.buf(space, cl)
            out[key] = bytes(buf[page * PAGE : (page + 1) * PAGE])
        return out

    def _checkpoint(self) -> None:
        eng = self.engine
        lengths = {}
        for name in HISTORY:
            live = getattr(eng, name)
            lengths[name] = len(live)
            if len(live) > len(self._history[name]):
                self._history[name] = live  # never changed in place: a restore takes a copy
        pages = self._pages()
        self._base_pages, self._changed = pages, set()
        races = {name: _freeze(getattr(eng.races, name)) for name in RACE_LISTS}
        self._checkpoints[self.pos] = Checkpoint(self._clone(self.emu), pages, self.finished,
                                                 lengths, races)

    def _restore(self, pos: int) -> None:
        cp = self._checkpoints[pos]
        live = self.state
        self.emu = self._clone(cp.emu, live)
        for name, n in cp.lengths.items():
            full = self._history[name]
            prefix = full[:n] if isinstance(full, list) else dict(itertools.islice(full.items(), n))
            setattr(self.emu.engine, name, prefix)
        for name, frozen in cp.races.items():
            setattr(self.emu.engine.races, name, _thaw(frozen))
        for key in self._dirty - set(cp.pages):
            space, cl, page = key
            live.buf(space, cl)[page * PAGE : (page + 1) * PAGE] = 0
        for (space, cl, page), data in cp.pages.items():
            live.buf(space, cl)[page * PAGE : page * PAGE + len(data)] = np.frombuffer(
                data, np.uint8
            )
        self._dirty = set(cp.pages)
        self._base_pages, self._changed = cp.pages, set()
        self.pos, self.trap, self.finished = pos, None, cp.finished

    def _clone(self, emu: Emulator, state_from: Any = None) -> Emulator:
        """Deep copy of an emulator sharing the program, target, memory buffers and caches,
        without the HISTORY attributes (empty in the copy; :meth:`_restore` fills them in).

        Memory buffers are shared (their contents are restored page by page); closures the
        engine keeps in its event queue get fresh cells so they refer to the copies."""
        memo: dict[int, Any] = {id(self.program): self.program, id(emu.target): emu.target}
        for ins in self.program.instructions:
            memo[id(ins)] = ins
        src, live = emu.state, state_from or emu.state
        for name in ("dram", "gb"):
            memo[id(getattr(src, name))] = getattr(live, name)
        for name in ("sp", "acc"):
            for a, b in zip(getattr(src, name), getattr(live, name)):
                memo[id(a)] = b
        for owner, name in SHARED_CACHES:
            cache = getattr(getattr(emu, owner), name)
            memo[id(cache)] = cache
        for name in HISTORY:
            memo[id(getattr(emu.engine, name))] = type(getattr(emu.engine, name))()
        for name in RACE_LISTS:
            memo[id(getattr(emu.engine.races, name))] = {}
        fixups = []
        for fn in _closures(emu):
            cells = tuple(types.CellType() for _ in fn.__closure__)
            memo[id(fn)] = types.FunctionType(
                fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__, cells
            )
            fixups.append((fn.__closure__, cells))
        out = copy.deepcopy(emu, memo)
        for old, new in fixups:
            for o, n in zip(old, new):
                n.cell_contents = copy.deepcopy(o.cell_contents, memo)
        return out

    # ---- identity ------------------------------------------------------------------------------
    def digest(self) -> str:
        """SHA-256 of the architectural and queue state (memories, registers, tokens,
        queues, dispatcher, clock, records), independent of how the state was reached."""
        h = hashlib.sha256()
        eng, st = self.engine, self.state
        for key in sorted(self._dirty):
            space, cl, page = key
            data = bytes(st.buf(space, cl)[page * PAGE : (page + 1) * PAGE])
            if any(data):
                h.update(repr(key).encode() + data)
        h.update(
            repr(
                (
                    list(st.ar),
                    st.fregs.tobytes(),
                    sorted(eng.tokens.items()),
                    eng.now,
                    eng.pc,
                    [[p.index for p in queue] for queue in eng.queues],
                    list(eng.busy),
                    [(r.index, r.start, r.end) for r in eng.records],
                    eng.loops,
                )
            ).encode()
        )
        if any(st.views):  # view registers (mview), hashed only once a program sets one
            h.update(repr([sorted(v.items()) for v in st.views]).encode())
        return h.hexdigest()


def _closures(emu: Emulator) -> list[types.FunctionType]:
    """Functions with closures reachable from the emulator's event queue and state."""
    found = []
    groups = getattr(emu.state, "_groups", None)
    if isinstance(groups, types.FunctionType) and groups.__closure__:
        found.append(groups)
    for entry in emu.engine.heap:
        arg = entry[5]
        for item in arg if isinstance(arg, tuple) else (arg,):
            if isinstance(item, types.FunctionType) and item.__closure__:
                found.append(item)
    return found


class _Prefix:
    """The entries an append-only list holds now: the list and its length."""

    __slots__ = ("items", "n")

    def __init__(self, items: list):
        self.items, self.n = items, len(items)


def _freeze(tree: Any) -> Any:
    """Nested dicts and tuples of append-only lists, each list as a :class:`_Prefix`: its
    entries as they are now, however the list grows later."""
    if isinstance(tree, dict):
        return {key: _freeze(value) for key, value in tree.items()}
    if isinstance(tree, tuple):
        return tuple(_freeze(value) for value in tree)
    return _Prefix(tree)


def _thaw(frozen: Any) -> Any:
    """What :func:`_freeze` saw, in fresh containers (the entries are shared)."""
    if isinstance(frozen, dict):
        return {key: _thaw(value) for key, value in frozen.items()}
    if isinstance(frozen, tuple):
        return tuple(_thaw(value) for value in frozen)
    return frozen.items[: frozen.n]
