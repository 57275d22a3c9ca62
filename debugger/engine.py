"""The debugger engine: breakpoints, watchpoints, stepping (forward and reverse), no I/O.

::

    dbg = Debugger(program, "acf-small", inputs)
    dbg.add_breakpoint("body c0.vec")            # label body, first instruction on c0.vec
    dbg.add_watchpoint("Y", kind="write")
    stop = dbg.cont()                            # Stop(reason="breakpoint", ...)
    stop = dbg.step(3)                           # three retirements
    stop = dbg.reverse_cont()                    # back to the previous hit
    dbg.goto_cycle(120)

Every command returns a :class:`Stop`. A *position* counts engine events since the start;
a hit "at position p" fired in the event that led to p, and the machine shown is the state
right after that event (a breakpoint stops once its instruction has started: its reads are
done, its writes not yet; a write watchpoint stops once the writer retired). Reverse
commands restore the nearest checkpoint and replay forward (the emulator is deterministic),
so the state after a reverse command is identical to a forward run to the same position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from acf.debugger import points as pt
from acf.debugger.expr import Expr, ExprError, ExprValueError
from acf.debugger.machine import Event, Machine
from acf.emulator.engine import DEFAULT_MAX_INSTRUCTIONS, MAX_LOOP_DEPTH
from acf.isa import symbols
from acf.isa.spec import token_counter


@dataclass
class Stop:
    """Why a command stopped: ``reason`` is breakpoint, watchpoint, step, cycle, end, trap or
    beginning; ``hits`` the points that fired; ``events`` what the last event did."""

    reason: str
    pos: int
    cycle: int
    hits: list[pt.Hit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    message: str = ""


class Debugger:
    """A program on a target under debug (see the module doc)."""

    def __init__(
        self,
        program,
        target,
        inputs: dict[str, np.ndarray] | None = None,
        checkpoint_every: int = 256,
        max_instructions: int = DEFAULT_MAX_INSTRUCTIONS,
    ):
        self.program = program
        self.m = Machine(program, target, inputs, checkpoint_every, max_instructions)
        self.breakpoints: dict[int, pt.Breakpoint] = {}
        self.watchpoints: dict[int, pt.Watchpoint] = {}
        self._next_id = 1
        self._cond_prev: dict[int, bool] = {}

    # ---- points ----------------------------------------------------------------------------
    def add_breakpoint(self, text: str) -> pt.Breakpoint:
        """``LOC [UNIT] [if COND]``; raises PointError/ExprError when it cannot resolve."""
        bp = pt.make_breakpoint(self._next_id, self.program, text)
        if bp.kind == "unit" and bp.value not in self.m.queue_names:  # c99.mac on 4 clusters
            raise pt.PointError(self._no_unit(bp.value))
        if bp.cond is not None:
            try:  # unknown names are reported now, not at a stop
                bp.cond.evaluate(self.lookup)
            except ExprValueError as exc:
                if exc.constant:  # 1/0: it fails whatever the machine holds
                    raise
                # otherwise the values of this moment (1/cycle at cycle 0): later ones may do
        self.breakpoints[bp.id] = bp
        self._next_id += 1
        return bp

    def add_watchpoint(self, text: str, kind: str = "write") -> pt.Watchpoint:
        if kind not in ("write", "read", "change", "nan"):
            raise pt.PointError(f"unknown watch kind {kind!r} (write read change nan)")
        wp = pt.make_watchpoint(self._next_id, self.program, kind, text)
        for r in wp.ranges:  # checked now: a watch on no memory would fail at every stop
            pt.check_range(self.m.state, r, text)
        self.watchpoints[wp.id] = wp
        self._next_id += 1
        return wp

    def delete(self, ident: int | None = None) -> None:
        """Delete one point by number, or all of them."""
        if ident is None:
            self.breakpoints.clear()
            self.watchpoints.clear()
            return
        if self.breakpoints.pop(ident, None) is None and self.watchpoints.pop(ident, None) is None:
            raise pt.PointError(f"no breakpoint or watchpoint number {ident}")

    # ---- forward -----------------------------------------------------------------------------
    def cont(self) -> Stop:
        """Run until a breakpoint or watchpoint fires, the program ends or traps."""
        return self._forward(lambda evs: False, "step")

    def step(self, n: int = 1) -> Stop:
        """Run until ``n`` instructions have retired (the emulator's ``step()`` unit)."""
        return self._counted(_count(n), lambda e: e.kind == "retire")

    def stepi(self, n: int = 1) -> Stop:
        """Run ``n`` instruction events (starts and retirements on any unit)."""
        return self._counted(_count(n), lambda e: True)

    def next_unit(self, unit: str, n: int = 1) -> Stop:
        """Run until ``n`` instructions start or retire on one unit (``c0.mac``, ``dma``)."""
        if unit not in self.m.queue_names:
            raise pt.PointError(self._no_unit(unit))
        return self._counted(_count(n), lambda e: e.queue == unit)

    def _no_unit(self, unit: str) -> str:
        return f"no unit {unit!r} (e.g. {self.m.queue_names[0]}, dma, cfg)"

    def run_to_cycle(self, cycle: int) -> Stop:
        """Run forward until every event before ``cycle`` is processed (or a point fires);
        a cycle already past does not move (``goto`` goes back)."""
        if self.m.pos > 0 and self.m.cycle >= cycle:  # an event at or after it is done
            return Stop("cycle", self.m.pos, self.m.cycle, message=(
                f"cycle {cycle} is in the past: the last event was at cycle {self.m.cycle} "
                f"(until only runs forward; goto {cycle} goes back to it)"))
        stop = self._forward(lambda evs: self._next_at_or_after(cycle), "cycle")
        return self._stop_cycle(cycle) if stop.reason == "cycle" else stop

    def _counted(self, n: int, pred: Callable[[Event], bool]) -> Stop:
        left = [n]

        def done(evs: list[Event]) -> bool:
            left[0] -= sum(1 for e in evs if pred(e))
            return left[0] <= 0

        return self._forward(done, "step")

    def _forward(self, done: Callable[[list[Event]], bool], reason: str) -> Stop:
        if done([]):
            return self._stop(reason, [], [])
        self._prime_conditions()
        while True:
            result = self._one()
            if result is None:
                return self._end()
            evs, hits = result
            if hits:
                return self._stop(hits[0].point.__class__.__name__.lower(), hits, evs)
            if done(evs):
                return self._stop(reason, [], evs)

    def _stop_cycle(self, cycle: int) -> Stop:
        return Stop("cycle", self.m.pos, self.m.cycle, message=self._at(cycle))

    def _next_at_or_after(self, cycle: int) -> bool:
        nxt = self.m.next_cycle()
        return nxt is None or nxt >= cycle

    def _one(self) -> tuple[list[Event], list[pt.Hit]] | None:
        """Advance one engine event; returns its events and the points that fired."""
        m = self.m
        retiring = m.peek_retire()
        before = {}
        if retiring is not None:
            for wp in self.watchpoints.values():
                if wp.enabled and wp.kind in ("change", "nan"):
                    before[wp.id] = [pt.range_bytes(m.state, r) for r in wp.ranges]
        prev_cycle = m.cycle
        evs = m.advance()
        if evs is None:
            return None
        hits = [h for e in evs for h in self._event_hits(e, before)]
        hits += self._clock_hits(prev_cycle)
        for h in hits:
            h.point.hits += 1
        return evs, hits

    def _event_hits(self, e: Event, before: dict[int, list]) -> list[pt.Hit]:
        out = []
        if e.kind == "start":
            ins = self.program.instructions[e.index]
            for bp in self.breakpoints.values():
                if not bp.enabled or bp.kind not in ("addr", "unit", "mnemonic"):
                    continue
                key = {"addr": e.index, "unit": e.queue, "mnemonic": ins.mnemonic}[bp.kind]
                hit = self._cond_hit(bp, e) if key == bp.value else None
                if hit is not None:
                    out.append(hit)
        ranges = e.reads if e.kind == "start" else e.writes
        for wp in self.watchpoints.values():
            if not wp.enabled or (wp.kind == "read") != (e.kind == "start"):
                continue
            if not any(pt.overlaps(a, b) for a in ranges for b in wp.ranges):
                continue
            if wp.kind == "change":
                now = [pt.range_bytes(self.m.state, r) for r in wp.ranges]
                if all(np.array_equal(a, b) for a, b in zip(before.get(wp.id, []), now)):
                    continue
            if wp.kind == "nan" and not pt.has_nonfinite(self.m.state, wp):
                continue
            out.append(pt.Hit(wp, e))
        return out

    def _clock_hits(self, prev_cycle: int) -> list[pt.Hit]:
        out = []
        nxt = self.m.next_cycle()
        for bp in self.breakpoints.values():
            if not bp.enabled:
                continue
            if bp.kind == "cycle":
                if (
                    self.m.pos > 0
                    and (nxt is None or nxt >= bp.value)
                    and self.m.cycle < bp.value
                ):
                    hit = self._cond_hit(bp)
                    if hit is not None:
                        out.append(hit)
            elif bp.kind == "cond":
                hit = self._cond_hit(bp)
                now = hit is not None and not hit.detail
                if hit is not None and (hit.detail or not self._cond_prev.get(bp.id, False)):
                    out.append(hit)
                self._cond_prev[bp.id] = now
        return out

    def _prime_conditions(self) -> None:
        """Each condition's value before a command moves (one that cannot be evaluated here
        counts as false: the stop for it, if any, was the last one)."""
        self._cond_prev = {}
        for bp in self.breakpoints.values():
            if bp.kind == "cond" and bp.enabled:
                hit = self._cond_hit(bp)
                self._cond_prev[bp.id] = hit is not None and not hit.detail

    def _cond_hit(self, bp: pt.Breakpoint, event: Event | None = None) -> pt.Hit | None:
        """A hit when the breakpoint's condition holds (or it has none); a condition that
        fails to evaluate (a division by zero) is a hit too, whose ``detail`` says why: the
        run stops where it failed, rather than going back to where the command began."""
        if bp.cond is None:
            return pt.Hit(bp, event)
        try:
            holds = bool(bp.cond.evaluate(self.lookup))
        except ExprError as exc:
            return pt.Hit(bp, event, detail=str(exc).splitlines()[0])
        return pt.Hit(bp, event) if holds else None

    def _stop(self, reason: str, hits: list[pt.Hit], evs: list[Event]) -> Stop:
        return Stop(reason, self.m.pos, self.m.cycle, hits, evs)

    def _end(self) -> Stop:
        if self.m.trap is not None:
            return Stop("trap", self.m.pos, self.m.cycle, message=str(self.m.trap))
        cycles = self.m.engine.total_cycles
        return Stop("end", self.m.pos, self.m.cycle, message=f"program finished at cycle {cycles}")

    # ---- reverse -----------------------------------------------------------------------------
    def reverse_cont(self) -> Stop:
        """Go back to the latest earlier position where a breakpoint or watchpoint fired."""
        return self._backward(lambda evs, hits: bool(hits))

    def reverse_step(self, n: int = 1) -> Stop:
        """Go back ``n`` retirements (the inverse of :meth:`step`)."""
        return self._backward(lambda evs, hits: any(e.kind == "retire" for e in evs), _count(n))

    def reverse_stepi(self, n: int = 1) -> Stop:
        return self._backward(lambda evs, hits: bool(evs), _count(n))

    def _backward(self, match: Callable[[list, list], bool], n: int = 1) -> Stop:
        cur = self.m.pos
        found: list[tuple[int, list, list]] = []
        seg_end = cur
        for base in self.m.checkpoints_before(cur):
            found = self._scan(base, seg_end, match) + found
            if len(found) >= n:
                break
            # the next segment ends at this checkpoint, included: the event that led to
            # it is the last one of the earlier segment
            seg_end = base + 1
        if len(found) < n:
            self._quiet_goto(0)
            return Stop("beginning", 0, self.m.cycle, message="reached the start of the program")
        pos, evs, hits = found[-n]
        self._quiet_goto(pos)
        reason = hits[0].point.__class__.__name__.lower() if hits else "step"
        return Stop(reason, pos, self.m.cycle, hits, evs)

    def _scan(self, base: int, end: int, match: Callable) -> list[tuple[int, list, list]]:
        """Positions in (base, end) whose event matches, replaying from checkpoint ``base``."""
        self._quiet_goto(base)
        self._prime_conditions()
        saved = {id(p): p.hits for p in [*self.breakpoints.values(), *self.watchpoints.values()]}
        out = []
        while self.m.pos < end - 1:
            result = self._one()
            if result is None:
                break
            evs, hits = result
            if match(evs, hits):
                out.append((self.m.pos, evs, hits))
        for p in [*self.breakpoints.values(), *self.watchpoints.values()]:
            p.hits = saved[id(p)]
        return out

    def _quiet_goto(self, pos: int) -> None:
        self.m.goto(pos)

    def goto_cycle(self, cycle: int) -> Stop:
        """Go (forward or back) to the state where every event before ``cycle`` is done."""
        if self.m.pos > 0 and self.m.cycle >= cycle:
            bases = [
                p
                for p in self.m.checkpoints_before(self.m.pos)
                if self.m.checkpoint_cycle(p) < cycle
            ]
            self._quiet_goto(max(bases, default=0))
        while not self._next_at_or_after(cycle):
            if self.m.advance() is None:
                return self._end()
        return Stop("cycle", self.m.pos, self.m.cycle, message=self._at(cycle))

    def _at(self, cycle: int) -> str:
        if self.m.next_cycle() is None and cycle > self.m.cycle:  # no event is left
            return f"the program's last event is at cycle {self.m.cycle}, before cycle {cycle}"
        return f"at cycle {cycle} (last event at cycle {self.m.cycle})"

    def goto_pos(self, pos: int) -> Stop:
        self._quiet_goto(pos)
        return Stop("step", self.m.pos, self.m.cycle)

    # ---- values ------------------------------------------------------------------------------
    def lookup(self, name: str, idx: tuple[int, ...] = ()) -> Any:
        """Value of a name of the condition language (see :mod:`acf.debugger.expr`)."""
        m, eng, st = self.m, self.m.engine, self.m.state
        sym = self.program.symbols.get(name)
        if sym is not None:
            if not idx:  # an expression's values are numbers: a whole tensor is not one
                letters = ",".join("ijklmn"[: max(1, len(sym.shape))])
                raise KeyError(f"{name} is a tensor; index it, {name}[{letters}] "
                               f"(it is f32{list(sym.shape)}; print {name} shows it whole)")
            return self._element(sym, idx)
        if idx:
            raise KeyError(f"{name!r} is not a tensor")
        if name == "cycle":
            return m.cycle
        if name == "pc":
            return eng.pc
        head, _, rest = name.partition(".")
        if len(name) > 2 and name[:2] in ("ar", "fr") and name[2:].isdigit() and int(name[2:]) < 16:
            return st.ar[int(name[2:])] if name[:2] == "ar" else float(st.fregs[0, int(name[2:])])
        if name[0] == "t" and name[1:].isdigit():  # a shared token, or cluster 0's local one
            return eng.tokens[token_counter(_token(name, int(name[1:])), 0)]
        if head[:1] == "c" and head[1:].isdigit() and rest[:1] == "t" and rest[1:].isdigit():
            if int(head[1:]) >= st.num_clusters:
                raise KeyError(f"no cluster {head} for {name!r} ({st.num_clusters} clusters)")
            return eng.tokens[token_counter(_token(name, int(rest[1:])), int(head[1:]))]
        if name.startswith("loop") and name[4:].isdigit():
            level = int(name[4:])
            if level >= MAX_LOOP_DEPTH:
                raise KeyError(f"no loop level {level} (loop0..loop{MAX_LOOP_DEPTH - 1})")
            return eng.loops[level][2] if level < len(eng.loops) else 0
        if head[:1] == "c" and head[1:].isdigit() and rest.startswith("fr") and rest[2:].isdigit():
            cl, reg = int(head[1:]), int(rest[2:])
            if cl < st.num_clusters and reg < 16:
                return float(st.fregs[cl, reg])
        if name.endswith(".depth") and name[:-6] in m.queue_names:
            return len(eng.queues[m.queue_names.index(name[:-6])])
        raise KeyError(
            f"unknown name {name!r} (cycle pc arN frN cK.frN tN loopN cK.UNIT.depth TENSOR[i,j])"
        )

    def _element(self, sym, idx: tuple[int, ...]) -> float:
        """One element of a tensor in a condition; NaN while its sparse tiles do not
        decode (never written yet), so a condition on it is false until they do."""
        shape = tuple(sym.shape)
        if len(idx) != len(shape) or not all(0 <= i < d for i, d in zip(idx, shape)):
            raise KeyError(f"{sym.name}[{', '.join(map(str, idx))}] is outside "
                           f"f32{list(shape)}")
        try:
            return self.tensor(sym.name)[idx]
        except KeyError:
            return float("nan")

    def tensor(self, name: str) -> np.ndarray:
        """A named tensor's current values, decoded from its format (KeyError saying why
        when its bytes do not decode: a sparse tensor never written has no tiles)."""
        sym = self.program.symbols[name]
        data = self.m.state.buf(sym.space, sym.cluster)[sym.addr : sym.addr + sym.nbytes]
        try:
            return symbols.unpack_symbol(sym, data)
        except ValueError as exc:  # formats.FormatError, or tiles that do not fit together
            if not np.any(data):
                raise KeyError(f"tensor {name!r} has no values yet: its {sym.fmt} tiles were "
                               "never written (no tile headers in its memory)") from None
            raise KeyError(f"tensor {name!r} does not decode as {sym.fmt}: {exc}") from None

    def evaluate(self, text: str) -> Any:
        return Expr(text).evaluate(self.lookup)


def _count(n: int) -> int:
    """A step count: at least 1 (a zero or negative count would not move, or move the
    wrong way)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"expected a positive count, got {n!r}")
    return n


def _token(name: str, tok: int) -> int:
    if not 1 <= tok <= 255:
        raise KeyError(f"no token {name!r} (t1..t255)")
    return tok
