"""Text views of a :class:`~acf.debugger.engine.Debugger`: stops, queues, tokens,
registers, NoC, memory, tensors and disassembly. Each returns lines; the shell prints them."""

from __future__ import annotations

import re

import numpy as np
from acf.debugger import points as pt
from acf.debugger.engine import Debugger, Stop
from acf.isa import formats, symbols
from acf.isa.disasm import format_instruction
from acf.isa.spec import token_name


def _ins_text(dbg: Debugger, index: int) -> str:
    prog = dbg.program
    labels = {a: n for n, a in prog.labels.items()}
    return format_instruction(prog.instructions[index], index, labels)


def location(dbg: Debugger, index: int) -> str:
    """``#12 body+1: vop c0, ...  [model.py:7 (fc1)]``."""
    from acf.emulator.traps import label_of

    label = label_of(dbg.program.labels, index)
    loc = dbg.program.debug.get(index)
    text = f"#{index}" + (f" <{label}>" if label else "") + f" {_ins_text(dbg, index)}"
    return text + (f"  [{loc}]" if loc else "")


def stop_lines(dbg: Debugger, stop: Stop) -> list[str]:
    head = f"cycle {stop.cycle}"
    if stop.reason in ("end", "trap"):
        return [stop.message]
    if stop.reason in ("beginning", "cycle"):
        return [stop.message if stop.reason == "cycle" else f"{stop.message} ({head})"]
    out = []
    for h in stop.hits:
        p, e = h.point, h.event
        if isinstance(p, pt.Breakpoint):
            what = f"breakpoint {p.id} ({p.describe()})"
        else:
            what = f"watchpoint {p.id} ({p.kind} {p.spec})"
        failed = f"its condition failed at cycle {stop.cycle}: {h.detail}" if h.detail else ""
        if e is not None:
            verb = "started" if e.kind == "start" else "retired"
            out.append(f"{what}: {e.queue} {verb} {location(dbg, e.index)} at cycle {e.cycle}"
                       + (f"; {failed}" if failed else ""))
        elif failed:
            out.append(f"{what}: {failed}")
        else:
            nxt = dbg.m.next_cycle()
            later = f", next at cycle {nxt}" if nxt is not None else ""
            out.append(f"{what} reached: last event at {head}{later}")
    if not out:
        last = stop.events[-1] if stop.events else None
        if last is not None:
            verb = "started" if last.kind == "start" else "retired"
            out.append(f"{head}: {last.queue} {verb} {location(dbg, last.index)}")
        else:
            out.append(f"stopped at {head}")
    return out


def queues(dbg: Debugger) -> list[str]:
    m = dbg.m
    eng = m.engine
    inflight = m.inflight()
    out = [f"cycle {m.cycle}; dispatcher at #{eng.pc}" + (" (halted)" if eng.halted else "")]
    for q, name in enumerate(m.queue_names):
        queue = eng.queues[q]
        run = inflight.get(q)
        if not queue and run is None:
            continue
        busy = f"running #{run.p.index} {run.p.ins.mnemonic} since {run.start}" if run else "idle"
        head = f"head #{queue[0].index} {queue[0].ins.mnemonic}" if queue else "empty"
        out.append(f"  {name:<9} depth {len(queue):>2}  {busy}; {head}")
    if len(out) == 1:
        out.append("  every queue is empty")
    return out


def tokens(dbg: Debugger) -> list[str]:
    eng = dbg.m.engine
    out = [f"  {token_name(t)} = {c}" for t, c in sorted(eng.tokens.items()) if c]
    waiting = []
    for q, queue in enumerate(eng.queues):
        waits = queue[0].ins.wait_counters if queue else ()
        if waits:
            short = [token_name(t) for t in sorted(set(waits)) if eng.tokens[t] < waits.count(t)]
            if short:
                waiting.append(
                    f"  {dbg.m.queue_names[q]} #{queue[0].index} waits for {', '.join(short)}"
                )
    return (out or ["  no token has a count"]) + waiting


def registers(dbg: Debugger) -> list[str]:
    st, eng = dbg.m.state, dbg.m.engine
    ars = [f"ar{i}={v}" for i, v in enumerate(st.ar) if v]
    out = ["  " + (" ".join(ars) if ars else "every address register is 0")]
    for cl in range(st.num_clusters):
        frs = [f"fr{i}={float(v):g}" for i, v in enumerate(st.fregs[cl]) if v]
        if frs:
            out.append(f"  c{cl}: " + " ".join(frs))
    for level, (start, end, left) in enumerate(eng.loops):
        out.append(f"  loop{level}: body #{start}..#{end - 1}, {left} iteration(s) left")
    return out


def noc(dbg: Debugger) -> list[str]:
    from acf.emulator.routing import link_name

    ic, now = dbg.m.emu.ic, dbg.m.cycle
    out = [f"  topology {ic.topology}, routing {ic.routing}"]
    out += [f"  pin c{s} -> c{d} via c{v}" for (s, d), v in sorted(ic.pins.items())]
    out += [
        f"  group {g}: x {x0}..{x1}, y {y0}..{y1}"
        for g, (x0, y0, x1, y1) in sorted(ic.groups.items())
    ]
    for link, flits in sorted(ic.link_flits.items(), key=lambda kv: link_name(kv[0])):
        until = ic.link_busy_until.get(link, 0)
        state = f"busy until {until}" if until > now else "free"
        out.append(f"  {link_name(link):<16} {flits:>6} flits  {state}")
    return out


def breakpoints(dbg: Debugger) -> list[str]:
    items = sorted([*dbg.breakpoints.values(), *dbg.watchpoints.values()], key=lambda p: p.id)
    if not items:
        return ["  no breakpoints or watchpoints"]
    out = []
    for p in items:
        kind = "break" if isinstance(p, pt.Breakpoint) else "watch"
        where = (
            f" at {location(dbg, p.value)}"
            if isinstance(p, pt.Breakpoint) and p.kind == "addr"
            else ""
        )
        out.append(f"  {p.id:<3} {kind} {p.describe()}{where}  hits {p.hits}")
    return out


def disassemble(dbg: Debugger, center: int, count: int = 7) -> list[str]:
    """Instructions around ``center``; ``=>`` marks running ones, ``>`` queue heads,
    ``*`` breakpoints, ``D`` the dispatcher's next."""
    m = dbg.m
    running = {ex.p.index for ex in m.inflight().values()}
    heads = {queue[0].index for queue in m.engine.queues if queue}
    bps = {b.value for b in dbg.breakpoints.values() if b.kind == "addr"}
    n = len(dbg.program.instructions)
    lo = max(0, min(center - count // 2, n - count))
    out = []
    for i in range(lo, min(n, lo + count)):
        mark = "=>" if i in running else (" >" if i in heads else "  ")
        flag = ("*" if i in bps else " ") + ("D" if i == m.engine.pc else " ")
        for name, a in sorted(dbg.program.labels.items()):
            if a == i:
                out.append(f"{name}:")
        out.append(f"{mark}{flag} {location(dbg, i)}")
    return out


def unit_pc(dbg: Debugger, unit: str) -> int:
    """The instruction a unit is at: running, else its queue head, else the dispatcher's."""
    m = dbg.m
    q = m.queue_names.index(unit)
    run = m.inflight().get(q)
    if run is not None:
        return run.p.index
    queue = m.engine.queues[q]
    return queue[0].index if queue else min(m.engine.pc, len(dbg.program.instructions) - 1)


def where(dbg: Debugger) -> list[str]:
    """Backtrace-like: the dispatcher with its loop frames, then every active unit."""
    m, eng = dbg.m, dbg.m.engine
    n = len(dbg.program.instructions)
    out = [f"cycle {m.cycle}, position {m.pos}"]
    out.append(
        f"  dispatcher at {location(dbg, eng.pc) if eng.pc < n else 'end'}"
        + (" (halted)" if eng.halted else "")
    )
    for level in range(len(eng.loops) - 1, -1, -1):
        start, _end, left = eng.loops[level]
        out.append(f"  #{level} in loop {location(dbg, start - 1)} ({left} iteration(s) left)")
    inflight = m.inflight()
    for q, name in enumerate(m.queue_names):
        if q in inflight:
            out.append(f"  {name}: running {location(dbg, inflight[q].p.index)}")
        elif eng.queues[q]:
            out.append(f"  {name}: waiting {location(dbg, eng.queues[q][0].index)}")
    return out


def tensor(dbg: Debugger, text: str) -> list[str]:
    """``NAME`` or ``NAME[tile I,J]`` (one packed tile of a sparse tensor, with its header)."""
    m = re.fullmatch(r"(\w+)\s*(?:\[\s*tile\s+([-+]?\d+)\s*,\s*([-+]?\d+)\s*\])?",
                     text.strip())
    sym = dbg.program.symbols.get(m.group(1)) if m else None
    if sym is None:
        name = text.split("[")[0].strip()
        if name in dbg.program.symbols:  # the tensor is there; what follows it is not read
            raise KeyError(f"cannot read {text.strip()!r}: {name}[tile I,J] shows one packed "
                           f"tile, I and J whole numbers from 0")
        raise KeyError(f"no tensor {text.strip()!r}")
    head = f"{sym.name}: {sym.space}[{sym.addr:#x}] f32{list(sym.shape)} {sym.fmt}"
    if sym.tile:
        head += f" tile{list(sym.tile)}"
    buf = dbg.m.state.buf(sym.space, sym.cluster)
    if m.group(2) is not None:
        if sym.fmt == "dense":
            raise KeyError(f"{sym.name} is dense: it has no packed tiles")
        ti, tj = int(m.group(2)), int(m.group(3))
        gr, gc = symbols.tile_grid(sym)
        if not (0 <= ti < gr and 0 <= tj < gc):
            raise KeyError(f"{sym.name} has a {gr}x{gc} tile grid: tile ({ti},{tj}) is not in it")
        addr = symbols.tile_address(sym, ti, tj)
        raw = buf[addr : addr + symbols.slot_bytes(sym)]
        hdr = formats.header(raw)
        values = formats.unpack(raw[: hdr.encoded_size])
        return [head, f"tile ({ti},{tj}) at {addr:#x}: {hdr}", *_array(values)]
    raw = buf[sym.addr : sym.addr + sym.nbytes]
    try:
        values = symbols.unpack_symbol(sym, raw)
    except ValueError as exc:  # formats.FormatError, or tiles whose sizes do not fit together
        if not np.any(raw):
            raise KeyError(f"tensor {sym.name!r} has no values yet: its {sym.fmt} tiles were "
                           "never written (no tile headers in its memory)") from None
        return [head, f"not decodable: {exc}"]
    return [head, *_array(values)]


def _array(values: np.ndarray) -> list[str]:
    with np.printoptions(precision=4, suppress=True, threshold=256, linewidth=100):
        return str(values).splitlines()


def examine(dbg: Debugger, fmt: str, where: str) -> list[str]:
    """``x/NF WHERE``: N units of f (f32), x (u32 hex), d (i32) or b (bytes) from a memory
    range or address, or from the first byte of a ``.tensor``."""
    m = re.fullmatch(r"(\d*)([fxdb]?)", fmt)
    if not m:
        raise KeyError(f"bad format /{fmt} (x/NF with F one of f x d b)")
    count, kind = int(m.group(1) or 8), m.group(2) or "x"
    if count < 1:
        raise KeyError(f"bad format /{fmt}: the count must be at least 1")
    sym = dbg.program.symbols.get(where)
    if sym is not None:  # a tensor's first bytes, as the message for a bad range says
        space, cl, lo = sym.space, sym.cluster if sym.space in ("sp", "acc") else 0, sym.addr
    else:
        space, cl, lo, _ = pt.parse_range(where, dbg.program)
    size = 1 if kind == "b" else 4
    pt.check_range(dbg.m.state, (space, cl, 0, 0), where)  # the cluster exists
    buf = dbg.m.state.buf(space, cl)
    if lo + count * size > buf.size:
        raise KeyError(f"{where}: {count * size} bytes at {lo:#x} run past the end of "
                       f"{space} ({buf.size:#x} bytes)")
    raw = buf[lo : lo + count * size].copy()
    view = {"f": np.float32, "x": np.uint32, "d": np.int32, "b": np.uint8}[kind]
    vals = raw[: raw.size // size * size].view(view)
    per = 16 if kind == "b" else 4
    prefix = f"c{cl}." if space in ("sp", "acc") else ""
    out = []
    for i in range(0, vals.size, per):
        chunk = vals[i : i + per]
        cells = [
            f"{v:#010x}"
            if kind == "x"
            else (f"{v:#04x}" if kind == "b" else (f"{float(v):g}" if kind == "f" else str(int(v))))
            for v in chunk
        ]
        out.append(f"  {prefix}{space}[{lo + i * size:#x}]: " + "  ".join(cells))
    return out
