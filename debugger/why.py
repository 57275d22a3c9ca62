"""``why UNIT``: what a unit is waiting for, and the chain of waits behind it.

A unit is running an instruction (and perhaps waiting for DRAM/NoC grants), idle, or its
queue head cannot start: a token count is short (the producer is the in-flight, queued or
not yet dispatched instruction that signals it), a ``recv`` waits for its ``send``, or the
head was dispatched this cycle. Following each blocked instruction to what it waits for
gives the critical path: it ends at the instruction everything depends on (one running, or
one the dispatcher has not reached) or closes a cycle (a deadlock). After a trap the run has
stopped: ``why`` says so first, then what the unit was doing when it stopped.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from acf.debugger.machine import Machine
from acf.debugger.points import unit_name
from acf.isa.spec import token_name


@dataclass
class Link:
    """One step of the chain: ``what`` describes the instruction, ``next_q`` the queue of the
    instruction it waits on (None at the root)."""

    what: str
    next_q: int | None = None
    next_index: int | None = None


def _name(m: Machine, index: int) -> str:
    ins = m.program.instructions[index]
    return f"{unit_name(ins)} #{index} {ins.mnemonic}"


def _producer(
    m: Machine, token: int, inflight: dict[int, Any]
) -> tuple[str, int | None, int | None]:
    """(description, queue, index) of the instruction that will signal ``token`` next."""
    running = sorted(
        (ex.end if not ex.parts else 1 << 62, q, ex)
        for q, ex in inflight.items()
        if token in ex.p.ins.signal_counters
    )
    if running:
        end, q, ex = running[0]
        when = f"ends at cycle {end}" if end < 1 << 62 else "waiting for shared-resource grants"
        return f"{_name(m, ex.p.index)} (running since cycle {ex.start}, {when})", q, ex.p.index
    for q, queue in enumerate(m.engine.queues):
        for k, p in enumerate(queue):
            if token in p.ins.signal_counters:
                where = "at the head of its queue" if k == 0 else f"queued, {k} ahead of it"
                return f"{_name(m, p.index)} ({where}, dispatched at cycle {p.D})", q, p.index
    prog = m.program.instructions
    for i in range(m.engine.pc, len(prog)):
        if token in prog[i].signal_counters if prog[i].op.queued else False:
            return f"{_name(m, i)} (not dispatched yet; {dispatcher_state(m)})", None, i
    return "no instruction (nothing left in the program signals it)", None, None


def _rank(
    m: Machine, q: int | None, index: int | None, inflight: dict[int, Any]
) -> tuple[int, int]:
    """Which of several producers the critical path follows: one not dispatched, then one
    still queued, then the running one that ends last."""
    if q is None:
        return (3, 0)
    ex = inflight.get(q)
    if ex is not None and ex.p.index == index:
        return (0, ex.end if not ex.parts else 1 << 62)
    queue = m.engine.queues[q]
    return (1 if queue and queue[0].index == index else 2, 0)


def dispatcher_state(m: Machine) -> str:
    eng = m.engine
    if eng.halted:
        return "the dispatcher has halted"
    blocked = eng.blocked
    if blocked is None:
        return f"the dispatcher is at #{eng.pc}"
    if blocked[0] == "full":
        return (
            f"the dispatcher waits at #{eng.pc} for room in full queue {m.queue_names[blocked[1]]}"
        )
    return f"the dispatcher waits at a barrier before #{eng.pc} for every queue to drain"


def explain(m: Machine, q: int) -> Link:
    """Why queue ``q`` is not making progress right now (after a trap: when the run
    stopped, in the past tense where it speaks of what comes next)."""
    stopped = m.trap is not None
    eng, name = m.engine, m.queue_names[q]
    inflight = m.inflight()
    queue = eng.queues[q]
    if eng.busy[q] and q in inflight:
        ex = inflight[q]
        if ex.parts:
            kinds = sorted({e[5][1] for e in eng.heap if isinstance(e[5], tuple) and e[5][0] is ex})
            busy = f"waiting for {', '.join(kinds) or 'shared-resource'} grants"
        else:
            busy = f"{'would end' if stopped else 'ends'} at cycle {ex.end}"
        text = f"{name} is busy: {_name(m, ex.p.index)} running since cycle {ex.start}, {busy}"
        if queue:
            text += f"; next: #{queue[0].index} {queue[0].ins.mnemonic}"
        return Link(text)
    if not queue:
        return Link(f"{name} is idle: nothing in its queue ({dispatcher_state(m)})")
    p = queue[0]
    head = f"{name}: head {_name(m, p.index)} (dispatched at cycle {p.D})"
    if eng.now < p.D + 1:
        return Link(f"{head} {'could' if stopped else 'can'} start at cycle {p.D + 1}")
    need = Counter(p.ins.wait_counters)
    missing = [(tok, k) for tok, k in sorted(need.items()) if eng.tokens[tok] < k]
    if missing:
        found = [(tok, k, *_producer(m, tok, inflight)) for tok, k in missing]
        parts = [
            f"token {token_name(tok)} (count {eng.tokens[tok]}, needs {k}), signalled by {what}"
            for tok, k, what, _, _ in found
        ]
        _, _, _, nq, ni = max(found, key=lambda f: _rank(m, f[3], f[4], inflight))
        return Link(f"{head} waits for " + "; and for ".join(parts), nq, ni)
    if p.ins.mnemonic == "recv" and p.match is not None:
        end = eng.send_end.get(p.match)
        if end is None or end > eng.now:
            for sq, squeue in enumerate(eng.queues):
                for sp in squeue:
                    if sp.match == p.match and sp.ins.mnemonic == "send":
                        return Link(
                            f"{head} waits for its send {_name(m, sp.index)} (queued)", sq, sp.index
                        )
            for sq, ex in inflight.items():
                if ex.p.match == p.match and ex.p.ins.mnemonic == "send":
                    return Link(
                        f"{head} waits for its send {_name(m, ex.p.index)} (running)",
                        sq,
                        ex.p.index,
                    )
            return Link(
                f"{head} waits for a send from c{p.ins['frm']} not dispatched yet ({dispatcher_state(m)})"
            )
    if stopped:
        return Link(f"{head} was ready to start at cycle {eng.now}")
    return Link(f"{head} is ready and starts at cycle {eng.now}")


def _trapped_here(m: Machine, q: int, trap: Any) -> bool:
    """Whether queue ``q``'s own instruction trapped as it started or retired (not one
    that still waits at its head, as in a deadlock)."""
    index = trap.index
    if not 0 <= index < len(m.program.instructions):
        return False
    if unit_name(m.program.instructions[index]) != m.queue_names[q]:
        return False
    queue, running = m.engine.queues[q], m.inflight().get(q)
    return not (queue and queue[0].index == index) and not (
        running is not None and running.p.index == index)


def why(m: Machine, unit: str) -> list[str]:
    """Lines: the unit's own reason, then the critical path back to its root."""
    if unit not in m.queue_names:
        raise KeyError(f"no unit {unit!r} (e.g. {m.queue_names[0]}, dma, cfg)")
    q = m.queue_names.index(unit)
    first = explain(m, q)
    lines = [first.what]
    trap = m.trap
    if trap is not None:  # nothing moves any more: what follows is the state it left
        lines = [f"the run has stopped: {trap}; nothing starts or ends any more"]
        if _trapped_here(m, q, trap):
            lines.append(f"{unit} trapped in {_name(m, trap.index)}")
        else:
            lines.append(f"when it stopped, {first.what}")
    if first.next_q is None:
        return lines
    lines.append("critical path:")
    lines.append(f"  {first.what.split(' (dispatched')[0]}")
    seen = {q}
    link = first
    while link.next_q is not None:
        nq = link.next_q
        queue = m.engine.queues[nq]
        inflight = m.inflight()
        if (
            link.next_index is not None
            and queue
            and queue[0].index != link.next_index
            and not (nq in inflight and inflight[nq].p.index == link.next_index)
        ):
            lines.append(
                f"  <- {_name(m, link.next_index)} queued behind the head of {m.queue_names[nq]}"
            )
        if nq in seen:
            lines.append(f"  <- {m.queue_names[nq]} again: a cycle of waits (deadlock)")
            break
        seen.add(nq)
        link = explain(m, nq)
        lines.append(f"  <- {link.what}")
    return lines
