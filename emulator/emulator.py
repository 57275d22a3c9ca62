"""The emulator object (stepped or batched) and the ``run`` entry point."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from acf.emulator.energy import breakdown, scale_area_components, scale_energy_components
from acf.emulator.engine import DEFAULT_MAX_INSTRUCTIONS, Engine, Record
from acf.emulator.interconnect import Interconnect
from acf.emulator.report import Report
from acf.emulator.routing import link_name
from acf.emulator.state import State
from acf.isa import formats, symbols
from acf.isa.program import Program, gc_paused
from acf.isa.semantics import SemanticError
from acf.isa.spec import CLUSTER_UNITS, GLOBAL_UNITS
from acf.isa.target import Target, load_target
from acf.isa.tech import area_factor, check_node, energy_factor


class SymbolError(ValueError):
    """A ``.tensor`` the target cannot hold; ``symbol`` names it (so a caller holding the
    assembly can point at its line)."""

    def __init__(self, symbol: str, message: str):
        super().__init__(message)
        self.symbol = symbol


@dataclass
class Result:
    """Outputs (every ``.tensor`` symbol, read back per its format), report and records."""

    outputs: dict[str, np.ndarray]
    report: Report
    records: list[Record] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # symbol -> why it did not decode


class Emulator:
    """One program on one target. ``step()`` runs until the next instruction retires and
    returns its :class:`Record` (None when the program is over); ``run()`` goes to the end.
    ``queues``, ``state`` and ``cycle`` expose the machine to a debugger.

    ``max_instructions``: once that many instructions have been dispatched, the next one
    stops the run with a trap (``instruction limit of N reached``) instead of running on."""

    def __init__(self, program: Program, target: Target | str, inputs: dict[str, np.ndarray] | None = None,
                 max_instructions: int = DEFAULT_MAX_INSTRUCTIONS):
        self.target = load_target(target) if isinstance(target, str) else target
        self.program = program
        self.ic = ic = Interconnect(self.target)
        # a closure over the interconnect, not the emulator: no reference cycle to collect
        self.state = State(self.target, groups=lambda g: [n[1] for n in ic.group(g)])
        written: list[tuple[str, int, int, int]] = []  # (space, cluster, lo, hi) bound so far
        for sym in program.symbols.values():
            self._check_fits(sym)
        given = set(inputs or {})
        inputs = dict(inputs or {})
        for name, raw in program.data.items():  # initial contents an input may replace
            if name not in inputs and name in program.symbols:
                inputs[name] = symbols.data_array(program.symbols[name], raw)
        for name, value in inputs.items():
            sym = program.symbols.get(name)
            if sym is None:
                known = ", ".join(sorted(program.symbols)) or "none"
                raise ValueError(f"input {name!r} is not a .tensor symbol of the program (symbols: {known})")
            try:
                self._bind(sym, _as_f32(name, value), written)
            except ValueError as exc:  # every error binding it names it, and where it came from
                raise ValueError(_binding_error(name, name in given, exc)) from None
        self.engine = Engine(program, self.target, self.state, self.ic, max_instructions)

    def _check_fits(self, sym) -> None:
        """A ``.tensor`` must lie in a memory of this target (its cluster one that exists):
        a ValueError naming it, before anything runs."""
        try:
            self.state.check(sym.space, sym.cluster, sym.addr, symbols.symbol_nbytes(sym))
        except SemanticError as exc:
            where = f"{sym.space}[{sym.addr:#x}]" + (f" c{sym.cluster}" if sym.space in ("sp", "acc") else "")
            raise SymbolError(sym.name, f".tensor {sym.name!r} at {where} does not fit "
                                        f"{self.target.name}: {exc}") from None

    def _bind(self, sym, value: np.ndarray, written: list[tuple[str, int, int, int]]) -> None:
        """Place an input's bytes (:func:`acf.isa.symbols.pack_symbol`) in the fresh state."""
        st, cl, lo = self.state, sym.cluster if sym.space in ("sp", "acc") else 0, sym.addr
        if sym.fmt == "dense":  # pack_symbol's bytes, without copying them twice
            data = np.ascontiguousarray(symbols.as_symbol_array(sym, value)).reshape(-1).view(np.uint8)
            st.write(sym.space, sym.cluster, lo, data)
            written.append((sym.space, cl, lo, lo + data.size))
            return
        hi = lo + symbols.symbol_nbytes(sym)  # in range: every symbol was checked (_check_fits)
        if any(s == sym.space and c == cl and a < hi and lo < b for s, c, a, b in written):
            st.write(sym.space, sym.cluster, lo, np.frombuffer(symbols.pack_symbol(sym, value), np.uint8))
        else:  # memory not bound yet is zero: the slot padding is already in place
            # the tiles' decodings go to the decode cache: a load of one (validated there
            # by its bytes) need not decode what was just encoded
            key_cl = sym.cluster if sym.space in ("sp", "acc") else -1
            for off, blob, tile in symbols.packed_tiles_decoded(sym, value):
                raw = np.frombuffer(blob, np.uint8)
                st.write(sym.space, sym.cluster, lo + off, raw)
                st.decode_cache.put_decoded((sym.space, key_cl, lo + off), raw, tile)
        written.append((sym.space, cl, lo, hi))

    @property
    def cycle(self) -> int:
        return self.engine.now

    @property
    def queues(self) -> dict[str, list[int]]:
        """Instruction indices waiting in each non-empty queue, by queue name."""
        return {_qname(self.engine, q): [p.index for p in queue]
                for q, queue in enumerate(self.engine.queues) if queue}

    def step(self) -> Record | None:
        return self.engine.step()

    def run(self) -> Result:
        with gc_paused():
            self.engine.run()
            return self.result()

    def result(self) -> Result:
        outputs, bad = read_outputs(self.program, self.state)
        return Result(outputs, build_report(self), list(self.engine.records), bad)


def _binding_error(name: str, given: bool, exc: ValueError) -> str:
    """``input 'X': ...`` (or ``.data of 'X': ...`` for a program's initial contents), once:
    the packing's own ``tensor 'X': `` prefix is replaced, not repeated."""
    msg = str(exc)
    for prefix in (f"input {name!r}: ", f"tensor {name!r}: "):
        msg = msg.removeprefix(prefix)
    return f"{'input' if given else '.data of'} {name!r}: {msg}"


def _as_f32(name: str, value) -> np.ndarray:
    """An input as float32, refusing what fp32 cannot hold: complex or non-numeric values,
    and finite values past its range (they would silently become inf)."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"input {name!r}: {arr.dtype} values; the fabric holds fp32 numbers")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size:
        finite = arr[np.isfinite(arr)]
        if finite.size and float(np.abs(finite).max()) > float(np.finfo(np.float32).max):
            raise ValueError(f"input {name!r}: {float(np.abs(finite).max()):g} is beyond the fp32 "
                             f"range (±{float(np.finfo(np.float32).max):g})")
    return arr.astype(np.float32)


def run(program: Program, target: Target | str, inputs: dict[str, np.ndarray] | None = None,
        mode: str = "batched", max_instructions: int = DEFAULT_MAX_INSTRUCTIONS) -> Result:
    """Run a program to the end. ``mode`` is ``batched`` or ``stepped`` (same results);
    ``max_instructions`` bounds the run (see :class:`Emulator`)."""
    emu = Emulator(program, target, inputs, max_instructions)
    if mode == "stepped":
        while emu.step() is not None:
            pass
        return emu.result()
    if mode != "batched":
        raise ValueError(f"unknown mode {mode!r} (batched, stepped)")
    return emu.run()


def read_outputs(program: Program, state: State) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    out, bad = {}, {}
    for name, sym in sorted(program.symbols.items()):
        try:
            n = sym.nbytes
            state.check(sym.space, sym.cluster, sym.addr, n)
            out[name] = _unpack_symbol(sym, state, state.buf(sym.space, sym.cluster)[sym.addr:sym.addr + n])
        except (formats.FormatError, ValueError) as exc:  # e.g. a never-written sparse tensor
            buf = state.buf(sym.space, sym.cluster)
            raw = buf[sym.addr:sym.addr + sym.nbytes] if sym.addr + sym.nbytes <= buf.size else None
            if raw is not None and raw.size and not raw.any():
                bad[name] = f"its {sym.fmt} tiles were never written (no tile headers in its memory)"
            else:
                bad[name] = f"its {sym.fmt} tile bytes do not decode: {exc}"
    return out, bad


def _unpack_symbol(sym, state: State, buf: np.ndarray) -> np.ndarray:
    """:func:`acf.isa.symbols.unpack_symbol`, reusing the tiles the run already decoded
    (``state.decode_cache``, validated by their bytes) instead of decoding them again."""
    cache = getattr(state, "decode_cache", None)
    if sym.fmt == "dense" or cache is None:
        return symbols.unpack_symbol(sym, buf)
    cl = sym.cluster if sym.space in ("sp", "acc") else -1

    def decode(off: int, raw: np.ndarray) -> np.ndarray:
        hit = cache.get((sym.space, cl, sym.addr + off), raw)
        return hit[0] if hit is not None else formats.unpack(raw)

    return symbols.unpack_symbol(sym, buf, decode)


def _qname(engine: Engine, q: int) -> str:
    n = len(CLUSTER_UNITS)
    if q < engine.ncl * n:
        return f"c{q // n}.{CLUSTER_UNITS[q % n]}"
    return GLOBAL_UNITS[q - engine.ncl * n]


def build_report(emu: Emulator) -> Report:
    eng, t, ic = emu.engine, emu.target, emu.ic
    total = eng.total_cycles
    seconds = total / (float(t.clock.freq_ghz) * 1e9)
    busy: Counter = Counter()
    tok: Counter = Counter()
    res: Counter = Counter()
    issued = effectual = 0
    for r in eng.records:
        name = r.unit if r.unit in GLOBAL_UNITS else f"c{r.cluster}.{r.unit}"
        busy[name] += r.end - r.start
        tok[name] += r.token_wait_cycles
        res[name] += r.resource_stall_cycles
        issued += r.issued_macs
        effectual += r.effectual_macs
    totals = getattr(eng, "event_totals", Counter())
    energy = breakdown(t, totals, seconds)
    area = t.area_breakdown_mm2()
    # Technology knob: tables are given at tech.node_nm; scale_to_nm > 0 reports the on-chip
    # components at another node (Stillmaker & Baas 2017, acf.isa.tech). DRAM energy (an
    # HBM interface figure) and the DRAM PHY area are not CMOS logic: they stay as given
    # (energy.UNSCALED_ENERGY, UNSCALED_AREA; docs/energy.md). The node reported is the
    # tabulated node whose factors were used (a target refuses any other).
    node = check_node(t.tech.node_nm)
    e_factor = a_factor = 1.0
    if t.tech.scale_to_nm:
        to_nm = check_node(t.tech.scale_to_nm)
        e_factor = energy_factor(node, to_nm)
        a_factor = area_factor(node, to_nm)
        node = to_nm
        energy = scale_energy_components(energy, e_factor)
        area = scale_area_components(area, a_factor)
    peak = t.num_clusters * t.macs_per_cluster * total
    mem = {
        "dram_bytes": int(ic.dram_bytes),
        "gbuf_bytes": int(ic.gbuf_bytes),
        "spad_read_bytes": int(totals.get("spad_read_byte", 0)),
        "spad_write_bytes": int(totals.get("spad_write_byte", 0)),
        "acc_access_bytes": int(totals.get("acc_access_byte", 0)),
    }
    return Report(
        target=t.name, target_config_hash=t.config_hash(), numeric_mode=str(t.numeric.mode),
        total_cycles=int(total), time_s=seconds, clock_ghz=float(t.clock.freq_ghz),
        instructions_count=len(eng.records),
        busy_cycles={k: int(v) for k, v in sorted(busy.items())},
        stall_cycles={k: {"token_wait_cycles": int(tok[k]), "resource_cycles": int(res[k])}
                      for k in sorted(busy)},
        utilization_ratio={k: (v / total if total else 0.0) for k, v in sorted(busy.items())},
        macs_issued_count=int(issued), macs_effectual_count=int(effectual),
        macs_skipped_count=int(issued - effectual),
        mac_array_utilization_ratio=effectual / peak if peak else 0.0,
        memory_bytes=mem,
        noc_link_flits={link_name(k): int(v) for k, v in sorted(ic.link_flits.items())},
        noc_flit_hops={"router_flit_hops": int(ic.flit_hops["router"]), "link_flit_hops": int(ic.flit_hops["link"])},
        energy_events_count={k: int(v) for k, v in sorted(totals.items())},
        energy_pj=dict(sorted(energy.items())),
        energy_j={k: v * 1e-12 for k, v in sorted(energy.items())},
        energy_total_pj=float(sum(energy.values())), energy_total_j=float(sum(energy.values())) * 1e-12,
        area_mm2=dict(sorted(area.items())), area_total_mm2=float(sum(area.values())),
        tech_node_nm=node, tech_energy_scale=e_factor, tech_area_scale=a_factor,
    )
