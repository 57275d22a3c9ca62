"""Planted timing bugs in the fast model must be caught by the equivalence check.

Each mutation monkeypatches one small thing in ``acf.emulator`` (a window off by one, a tie
broken the other way, a link booked one cycle too long, a bank count off by one...). On a
fixed set of generated micro-programs (plus a few aimed at the mutated feature) at least one
program must then disagree with the per-cycle reference. Programs on which the unmutated fast
model already disagrees are left out of the comparison.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, os.path.dirname(__file__))

import microprograms as mp
from reference import simulate
from test_reference_equivalence import compare, fast_run

N_PROGRAMS = 60


def _collect(n: int, **kw) -> list[mp.MicroProgram]:
    out: list[mp.MicroProgram] = []

    @settings(max_examples=n, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mp.microprograms(**kw))
    def grab(m):
        out.append(m)

    grab()
    return out


def _aimed(blocks: list[str], variants: list[dict] | None = None, n: int = 15):
    return _collect(n, blocks=blocks, variants=variants)


@dataclass
class Mutation:
    name: str
    apply: Callable  # (monkeypatch) -> None
    programs: Callable[[], list]  # extra aimed programs


def _ic():
    from acf.emulator import interconnect

    return interconnect.Interconnect


def m_link_booking(mpatch):
    """A NoC link stays booked one cycle after its last flit."""
    Interconnect = _ic()
    orig = Interconnect._reserve

    def _reserve(self, request, plan, F):
        end = orig(self, request, plan, F)
        for link, _ in plan.links:
            self.link_busy_until[link] += 1
        return end

    mpatch.setattr(Interconnect, "_reserve", _reserve)


def m_noc_tail(mpatch):
    """A transfer's end forgets one router pipeline stage (H*r - 1)."""
    Interconnect = _ic()
    orig = Interconnect._reserve

    def _reserve(self, request, plan, F):
        end = orig(self, request, plan, F)
        return end - 1 if plan.tail > 0 else end

    mpatch.setattr(Interconnect, "_reserve", _reserve)


def _init_patch(mpatch, tweak):
    Interconnect = _ic()
    orig = Interconnect.__init__

    def __init__(self, target, *a, **kw):
        orig(self, target, *a, **kw)
        tweak(self, target)

    mpatch.setattr(Interconnect, "__init__", __init__)


def m_gbuf_banks(mpatch):
    """The global buffer counts one bank too many."""
    _init_patch(mpatch, lambda ic, t: setattr(ic, "gbuf_bpc", (t.gbuf.banks + 1) * t.gbuf.bank_bytes))


def m_dram_interleave(mpatch):
    """DRAM channel interleaving at twice the configured granularity."""
    _init_patch(mpatch, lambda ic, t: setattr(ic, "interleave", 2 * ic.interleave))


def _cfg_patch(mpatch, **delta):
    """Change fields of the fast model's ClusterTiming (the cluster figures its closed forms
    read) by the given deltas."""
    import dataclasses

    from acf.emulator import timing_compute as tc

    orig = tc.ClusterTiming.of

    def of(target):
        cfg = orig(target)
        return dataclasses.replace(cfg, **{k: getattr(cfg, k) + v for k, v in delta.items()})

    mpatch.setattr(tc.ClusterTiming, "of", staticmethod(of))


def m_lookahead(mpatch):
    """The PE's lookahead window is one pair wider than configured."""
    _cfg_patch(mpatch, d=1)


def m_spad_banks(mpatch):
    """The scratchpad has one bank more than configured (vector bank conflicts)."""
    _cfg_patch(mpatch, banks=1)


def m_bank_wrap(mpatch):
    """A contiguous operand whose words wrap past the last scratchpad bank misses its last
    wrapped bank (``range(first + rem - nb - 1)`` in ``_bank_cycles_contiguous``)."""
    import inspect

    from acf.emulator import timing_compute as tc

    src = inspect.getsource(tc._bank_cycles_contiguous)
    old = "range(first + rem - nb)"
    assert src.count(old) == 1, "the wrap loop this mutation edits has changed"
    ns: dict = {}
    exec(compile(src.replace(old, "range(first + rem - nb - 1)"), tc.__file__, "exec"),  # noqa: S102
         tc.__dict__, ns)
    mpatch.setattr(tc, "_bank_cycles_contiguous", ns["_bank_cycles_contiguous"])


def m_fold(mpatch):
    """Each fold drains one cycle longer."""
    _cfg_patch(mpatch, Fo=1)


def m_codec_index(mpatch):
    """The codec decodes one more index per cycle."""
    _cfg_patch(mpatch, codec_x=1)


def m_noc_tie(mpatch):
    """NoC requests of the same cycle are granted in reverse queue-id order."""
    from acf.emulator import engine

    Interconnect = _ic()
    orig_init = Interconnect.__init__

    def __init__(self, target, check_order=True):
        orig_init(self, target, check_order=False)

    mpatch.setattr(Interconnect, "__init__", __init__)
    orig_push = engine.Engine.push

    def push(self, cycle, phase, q, fn, arg):
        if phase == engine.REQUEST and isinstance(arg, tuple) and len(arg) == 4 and \
                arg[1] in ("noc", "mcast", "reduce"):
            q = 10_000 - q
        return orig_push(self, cycle, phase, q, fn, arg)

    mpatch.setattr(engine.Engine, "push", push)


def m_queue_depth(mpatch):
    """Unit queues hold one instruction more than configured."""
    from acf.emulator import engine

    orig = engine.Engine.__init__

    def __init__(self, *a, **kw):
        orig(self, *a, **kw)
        self.depth += 1

    mpatch.setattr(engine.Engine, "__init__", __init__)


SLOW_GB = [{"gbuf.banks": 1, "gbuf.bank_bytes": 8, "cluster.codec_values_per_cycle": 1,
            "cluster.codec_index_per_cycle": 2}]
SHALLOW = [{"cluster.queue_depth": 1}, {"cluster.queue_depth": 2, "cluster.issue_cycles": 3}]
# Tensors are 64-byte aligned: with 5 banks of 4 bytes a tensor at word 16 * i starts on bank
# i mod 5, so operand word ranges wrap past the last bank (with 2^k banks every one starts on
# bank 0 and never wraps); 64 lanes leave the vector ops bank-bound.
WRAP_BANKS = [{"cluster.spad_banks": 5, "cluster.spad_bank_bytes": 4, "cluster.vec_lanes": 64}]

MUTATIONS = [
    Mutation("noc link booked one cycle too long", m_link_booking,
             lambda: _aimed(["send", "multiload", "mcast"])),
    Mutation("noc end one cycle early", m_noc_tail, lambda: _aimed(["send", "mcast"])),
    Mutation("noc same-cycle tie broken the other way", m_noc_tie,
             lambda: _aimed(["burst"])),
    Mutation("global buffer bandwidth off by one bank", m_gbuf_banks,
             lambda: _aimed(["multiload", "dma", "ldg"], SLOW_GB)),
    Mutation("dram interleave doubled", m_dram_interleave,
             lambda: _aimed(["multiload", "dma", "mm"])),
    Mutation("lookahead window off by one", m_lookahead, lambda: _aimed(["mm", "sddmm"])),
    Mutation("scratchpad bank count off by one", m_spad_banks, lambda: _aimed(["vec"])),
    Mutation("bank wrap drops a bank", m_bank_wrap, lambda: _aimed(["vec"], WRAP_BANKS)),
    Mutation("fold drain off by one", m_fold, lambda: _aimed(["mm"])),
    Mutation("codec index rate off by one", m_codec_index, lambda: _aimed(["codec", "mm"])),
    Mutation("queue depth off by one", m_queue_depth,
             lambda: _aimed(["multiload", "tokens", "send"], SHALLOW)),
]


@pytest.fixture(scope="module")
def baseline():
    """Generated programs on which the unmutated fast model agrees with the reference,
    with the reference results (computed once)."""
    run = fast_run()
    progs = _collect(N_PROGRAMS)
    extra = {m.name: m.programs() for m in MUTATIONS}
    out = {}
    for key, lst in [("common", progs), *extra.items()]:
        keep = []
        for m in lst:
            prog, target = mp.load(m)
            ref = simulate(prog, target, m.inputs)
            if not compare(ref, run(prog, target, inputs=m.inputs)):
                keep.append((m, ref))
        out[key] = keep
    return out


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation_is_detected(mutation, baseline, monkeypatch):
    programs = baseline[mutation.name] + baseline["common"]
    assert programs, "no program on which the fast model agrees with the reference"
    mutation.apply(monkeypatch)
    run = fast_run()
    for m, ref in programs:
        prog, target = mp.load(m)
        try:
            fast = run(prog, target, inputs=m.inputs)
        except Exception:  # noqa: BLE001 - a crashing mutant is a detected one
            return
        if compare(ref, fast):
            return
    pytest.fail(f"mutation {mutation.name!r} survived {len(programs)} programs")
