"""Memory-system and NoC timing of the fast model (docs/timing.md sections 6 and 7).

:class:`Interconnect` owns every shared resource outside the clusters: DRAM channels, the
global buffer and the NoC links, plus the NoC configuration (topology, routing, multicast
groups, pinned routes). Each request method takes the cycle the resource is requested at
and returns the cycle the access ends::

    ic = Interconnect(load_target("acf-small"))
    end = ic.dram(s, np.array([[0x1000, 300]]), qid)        # DRAM runs (address, length)
    end = ic.transfer(s, ("c", 0), ("c", 3), 256, qid)       # unicast over the NoC
    end = ic.multicast(s, ("p", 0), ic.group(1), 256, qid)   # port -> group

Arbitration is first-come-first-served in call order: **the caller must issue requests of
each kind (DRAM, global buffer, NoC) in nondecreasing ``(request, qid)`` order** (request
cycle, ties in queue-id order). A call out of that order raises
:class:`InterconnectOrderError`, an internal error of the caller.

Resolved corner cases (the contract does not spell them out): a DRAM request with no bytes
touches no channel and ends at ``request``; a global-buffer request of 0 bytes follows the
formula (busy 0, ends at ``max(request, free) + latency``); a NoC transfer of 0 bytes is one
flit (``F = max(1, ...)``). Multicast and reduction trees use the dimension-order routes and
ignore pins; the reduction tree is the multicast tree from the root with every link reversed.

Statistics (cumulative; ``reset_stats()`` clears them with the contention state):
``link_flits`` (link -> flits carried), ``link_busy_until`` (link -> end of its latest
booking), ``dram_bytes`` (exact run bytes), ``dram_bursts``, ``channel_bytes`` and
``channel_bursts`` (per channel, int64 arrays), ``channel_free``, ``gbuf_bytes``, and
``flit_hops = {"router": ..., "link": ...}``: flits x router traversals and flits x links.
A unicast's flits traverse every cluster router on their route, source and destination
included, once each time they pass it (a route pinned through a cluster and back, c0 -> c3
-> c1 on a row c0..c3, passes c1 and c2 twice: 6 traversals); a multicast or reduction
tree counts each cluster router of the tree once. Ports are not routers.
``last_flit_hops`` holds the same two counts for the latest NoC operation.
``snapshot()`` / ``restore()`` copy all of it plus the configuration. ``last_free`` is
the end the latest DRAM or NoC request would have had on idle resources (its duration
without contention: the engine's resource-stall statistic).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from acf.emulator.routing import (
    Link,
    Node,
    RouteConfig,
    RoutingError,
    as_node,
    rectangle,
    tree,
    validate,
)
from acf.emulator.routing import route as _route
from acf.isa.semantics import RunGrid

__all__ = ["Interconnect", "InterconnectOrderError", "RoutingError"]

_KINDS = ("dram", "gbuf", "noc")


class InterconnectOrderError(RuntimeError):
    """Internal error: a caller issued requests out of (request cycle, qid) order."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


class _Plan:
    """Links of one NoC operation with their reservation offsets from t0, the end offset
    (``H*r``, ``Hmax*r`` or ``Hmax*(r+1)``) and the router traversals of one flit.

    ``path``: the links are one route in order (a unicast), which a flit follows through
    every cluster router on it, each time it passes one (a pinned route can come back
    through a router); otherwise a multicast or reduction tree, whose flit copies traverse
    each router of the tree once. Ports are not routers."""

    __slots__ = ("links", "routers", "tail")

    def __init__(self, links: list[tuple[Link, int]], tail: int, path: bool = False):
        self.links = links
        self.tail = tail
        if path:
            nodes = [links[0][0][0]] + [link[1] for link, _ in links] if links else []
            self.routers = sum(1 for n in nodes if n[0] == "c")
        else:
            self.routers = len({n for link, _ in links for n in link if n[0] == "c"})


class Interconnect:
    """DRAM channels, global buffer and NoC of one target, with FCFS contention."""

    def __init__(self, target, check_order: bool = True):
        X, Y = (int(v) for v in target.fabric.grid)
        self.grid = (X, Y)
        noc, dram, gb = target.noc, target.dram, target.gbuf
        self.W = int(noc.link_bytes)
        self.r = int(noc.router_latency)
        self.virtual_channels = int(noc.virtual_channels)
        self.channels = int(dram.channels)
        self.burst = int(dram.burst_bytes)
        self.interleave = int(dram.interleave_bytes)
        self.dram_bpc = int(dram.bytes_per_cycle)
        self.dram_latency = int(dram.latency_cycles)
        self.gbuf_bpc = int(gb.banks) * int(gb.bank_bytes)
        self.gbuf_latency = int(gb.latency_cycles)
        self.check_order = check_order
        # configuration
        self.topology = str(noc.topology)
        self.routing = str(noc.routing)
        self.pins: dict[tuple[int, int], int] = {}
        self.groups: dict[int, tuple[int, int, int, int]] = {}
        validate(self._config())
        self._routes: dict[tuple[Node, Node], list[Link]] = {}
        self._plans: dict[tuple, _Plan] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        """Forget all contention state and statistics (configuration is kept)."""
        self.link_busy_until: dict[Link, int] = {}
        self.link_flits: dict[Link, int] = {}
        # per-channel state as Python ints: a request touches a few channels, and numpy's
        # per-call cost on 8-element arrays would dominate (the properties give arrays)
        self._free = [0] * self.channels
        self._cbytes = [0] * self.channels
        self._cbursts = [0] * self.channels
        self.gbuf_free = 0
        self.dram_bytes = 0
        self.dram_bursts = 0
        self.gbuf_bytes = 0
        self.flit_hops = {"router": 0, "link": 0}
        self.last_flit_hops = {"router": 0, "link": 0}
        self.last_free = 0
        self._last = {k: (-(1 << 62), -1) for k in _KINDS}

    # ---- configuration ---------------------------------------------------------------------

    def _config(self, **change) -> RouteConfig:
        fields = {"grid": self.grid, "topology": self.topology, "routing": self.routing,
                  "virtual_channels": self.virtual_channels, "pins": self.pins}
        fields.update(change)
        return RouteConfig(**fields)

    def _apply(self, **change) -> None:
        cfg = self._config(**change)
        validate(cfg)  # raises before anything changes
        self.topology, self.routing, self.pins = cfg.topology, cfg.routing, dict(cfg.pins)
        self._routes.clear()
        self._plans.clear()

    def set_topology(self, name: str) -> None:
        """``noc.topo``: mesh or torus (wrap links on); rejected if it could deadlock."""
        self._apply(topology=name)

    def set_routing(self, name: str) -> None:
        """``noc.route``: default dimension order xy or yx."""
        self._apply(routing=name)

    def pin(self, src_cluster: int, dst_cluster: int, via_cluster: int) -> None:
        """``noc.pin``: route src -> via -> dst (each leg in the default order)."""
        pins = dict(self.pins)
        pins[(int(src_cluster), int(dst_cluster))] = int(via_cluster)
        self._apply(pins=pins)

    def clear_pins(self) -> None:
        """``noc.clear``: remove every pinned route."""
        self._apply(pins={})

    def set_group(self, g: int, x0: int, y0: int, x1: int, y1: int) -> None:
        """``noc.mcast``: group g is the cluster rectangle [x0..x1] x [y0..y1]."""
        if int(g) < 0:
            raise RoutingError(f"multicast group id {g} is negative")
        rectangle(self.grid, x0, y0, x1, y1)  # validates
        self.groups[int(g)] = (int(x0), int(y0), int(x1), int(y1))

    def group(self, g: int) -> list[Node]:
        """Members of multicast group g, in ascending cluster id."""
        try:
            rect = self.groups[int(g)]
        except KeyError:
            raise RoutingError(f"multicast group {g} is not defined (noc.mcast)") from None
        return rectangle(self.grid, *rect)

    def route(self, src: Node | int, dst: Node | int) -> list[Link]:
        """Links from src to dst under the current configuration (pins included)."""
        return list(self._route(as_node(src), as_node(dst)))

    def _route(self, src: Node, dst: Node) -> list[Link]:
        key = (src, dst)
        r = self._routes.get(key)
        if r is None:
            self._check_node(src)
            self._check_node(dst)
            r = self._routes[key] = _route(src, dst, self._config())
        return r

    def _check_node(self, n: Node) -> None:
        X, Y = self.grid
        limit = {"c": X * Y, "p": Y}.get(n[0])
        if limit is None or not 0 <= n[1] < limit:
            raise RoutingError(f"no NoC node {n!r} on a {X}x{Y} fabric")

    def _plan(self, kind: str, src: Node | int, members) -> _Plan:
        """Cached reservation plan of a unicast ("u", members = dst), multicast ("m") or
        reduction ("r"): each link with its offset from t0, and the end offset."""
        src = as_node(src)
        dsts = (as_node(members),) if kind == "u" else tuple(as_node(m) for m in members)
        key = (kind, src, dsts)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        r = self.r
        if kind == "u":
            links = self._route(src, dsts[0])
            plan = _Plan([(link, h * r) for h, link in enumerate(links)], len(links) * r, path=True)
        else:
            for n in (src, *dsts):
                self._check_node(n)
            t = tree(src, dsts, self._config())
            hmax = max((h + 1 for _, h in t), default=0)
            if kind == "m":
                plan = _Plan([(link, h * r) for link, h in t], hmax * r)
            else:
                plan = _Plan([((b, a), (hmax - h) * r) for (a, b), h in t], hmax * (r + 1))
        self._plans[key] = plan
        return plan

    # ---- ordering --------------------------------------------------------------------------

    def _order(self, kind: str, request: int, qid: int) -> None:
        key = (request, qid)
        if key < self._last[kind]:
            raise InterconnectOrderError(
                f"internal error: {kind} request (cycle {request}, qid {qid}) arrived after "
                f"(cycle {self._last[kind][0]}, qid {self._last[kind][1]}); requests must come "
                "in nondecreasing (cycle, qid) order"
            )
        self._last[kind] = key

    # ---- memory ----------------------------------------------------------------------------

    channel_free = property(lambda self: np.array(self._free, dtype=np.int64),
                            lambda self, v: setattr(self, "_free", [int(x) for x in v]))
    channel_bytes = property(lambda self: np.array(self._cbytes, dtype=np.int64),
                             lambda self, v: setattr(self, "_cbytes", [int(x) for x in v]))
    channel_bursts = property(lambda self: np.array(self._cbursts, dtype=np.int64),
                              lambda self, v: setattr(self, "_cbursts", [int(x) for x in v]))

    def dram(self, request: int, runs: np.ndarray | RunGrid, qid: int) -> int:
        """DRAM access of byte runs ``(address, length)``; returns the end cycle (latency in).

        Runs split at interleave boundaries; a piece goes to channel
        ``(a // interleave) % channels`` and costs ``ceil(len / burst)`` bursts. Each touched
        channel is busy ``ceil(bursts * burst / bytes_per_cycle)`` from
        ``max(request, free_c)``. ``runs`` is an ``(n, 2)`` array or a
        :class:`~acf.isa.semantics.RunGrid` (rows of a pitched block, a gather).
        """
        request = int(request)
        if self.check_order:
            self._order("dram", request, qid)
        self.last_free = request
        touched = self._channels(runs)
        if not touched:
            return request
        B, bpc = self.burst, self.dram_bpc
        free, cbytes, cbursts = self._free, self._cbytes, self._cbursts
        end = longest = 0
        total_bytes = total_bursts = 0
        for c, b, n in touched:
            busy = -(-(b * B) // bpc)
            s = free[c]
            s = max(s, request) + busy
            free[c] = s
            end = max(end, s)
            longest = max(longest, busy)
            cbytes[c] += n
            cbursts[c] += b
            total_bytes += n
            total_bursts += b
        self.last_free = request + longest + self.dram_latency  # idle channels
        self.dram_bytes += total_bytes
        self.dram_bursts += total_bursts
        return end + self.dram_latency

    def _channels(self, runs: np.ndarray | RunGrid) -> tuple[tuple[int, int, int], ...]:
        """``(channel, bursts, bytes)`` of every channel the runs touch, ascending channel."""
        I, ch, B = self.interleave, self.channels, self.burst
        if isinstance(runs, RunGrid):
            if runs.runs == 0:
                return ()
            if runs.addr < 0 or runs.length < 0 or min(runs.pitches) < 0:
                raise ValueError("DRAM runs need nonnegative addresses and lengths")
            ic = I * ch
            # channels and piece lengths depend on addresses modulo interleave x channels only
            return _grid_channels(I, ch, B, runs.addr % ic, runs.counts,
                                  tuple(p % ic for p in runs.pitches), runs.length)
        runs = np.asarray(runs, dtype=np.int64).reshape(-1, 2)
        if runs.size == 0:
            return ()
        if runs.shape[0] <= _PY_RUNS:
            pairs = runs.tolist()
            if min(min(r) for r in pairs) < 0:
                raise ValueError("DRAM runs need nonnegative addresses and lengths")
            return _split_py(pairs, I, ch, B)
        if runs.min() < 0:
            raise ValueError("DRAM runs need nonnegative addresses and lengths")
        bursts, nbytes = self._dram_split(runs[:, 0], runs[:, 1])
        return tuple((c, b, n) for c, (b, n) in enumerate(zip(bursts.tolist(), nbytes.tolist())) if b)

    def _dram_split(self, addr: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bursts and bytes per channel of the runs (vectorized: :func:`_dram_split_arrays`)."""
        return _dram_split_arrays(addr, length, self.interleave, self.channels, self.burst)

    def gbuf(self, request: int, nbytes: int, qid: int) -> int:
        """Global-buffer access of nbytes: one shared port of banks*bank_bytes bytes/cycle."""
        request = int(request)
        if self.check_order:
            self._order("gbuf", request, qid)
        s = max(request, self.gbuf_free)
        busy = _cdiv(int(nbytes), self.gbuf_bpc)
        self.gbuf_free = s + busy
        self.gbuf_bytes += int(nbytes)
        return s + busy + self.gbuf_latency

    # ---- NoC -------------------------------------------------------------------------------

    def flits(self, nbytes: int) -> int:
        return max(1, _cdiv(int(nbytes), self.W))

    def transfer(
        self, request: int, src: Node | int, dst: Node | int, nbytes: int, qid: int
    ) -> int:
        """Unicast of nbytes from src to dst over the current route; returns the end cycle.

        Link h carries the ``F`` flits during ``[t0 + h*r, t0 + h*r + F)`` with
        ``t0 = max(request, max_h(free_h - h*r))``; ends at ``t0 + H*r + F``.
        """
        if self.check_order:
            self._order("noc", request, qid)
        return self._reserve(int(request), self._plan("u", src, dst), self.flits(nbytes))

    def multicast(self, request: int, src: Node | int, members: list, nbytes: int, qid: int) -> int:
        """Multicast over the union of the default routes; a link at depth h is reserved at
        ``t0 + h*r``; ends at ``t0 + Hmax*r + F``."""
        if self.check_order:
            self._order("noc", request, qid)
        return self._reserve(int(request), self._plan("m", src, members), self.flits(nbytes))

    def reduce(self, request: int, root: Node | int, members: list, nbytes: int, qid: int) -> int:
        """Reduction over the multicast tree of root reversed: a link at depth h is reserved at
        ``t0 + (Hmax - h)*r``; ends at ``t0 + Hmax*(r + 1) + F``."""
        if self.check_order:
            self._order("noc", request, qid)
        return self._reserve(int(request), self._plan("r", root, members), self.flits(nbytes))

    def _reserve(self, request: int, plan: _Plan, F: int) -> int:
        """Pipelined FCFS reservation of every link of plan; returns the end cycle."""
        free, flits = self.link_busy_until, self.link_flits
        t0 = request
        for link, off in plan.links:
            t0 = max(t0, free.get(link, 0) - off)
        for link, off in plan.links:
            free[link] = t0 + off + F
            flits[link] = flits.get(link, 0) + F
        hops = {"router": plan.routers * F, "link": len(plan.links) * F}
        self.last_flit_hops = hops
        self.flit_hops["router"] += hops["router"]
        self.flit_hops["link"] += hops["link"]
        self.last_free = request + plan.tail + F  # idle links: t0 = request
        return t0 + plan.tail + F

    # ---- reverse execution -----------------------------------------------------------------

    def snapshot(self) -> dict:
        """Copy of all mutable state (configuration, contention, statistics)."""
        return {
            "topology": self.topology,
            "routing": self.routing,
            "pins": dict(self.pins),
            "groups": dict(self.groups),
            "link_busy_until": dict(self.link_busy_until),
            "link_flits": dict(self.link_flits),
            "channel_free": self.channel_free.copy(),
            "gbuf_free": self.gbuf_free,
            "dram_bytes": self.dram_bytes,
            "dram_bursts": self.dram_bursts,
            "channel_bytes": self.channel_bytes.copy(),
            "channel_bursts": self.channel_bursts.copy(),
            "gbuf_bytes": self.gbuf_bytes,
            "flit_hops": dict(self.flit_hops),
            "last_flit_hops": dict(self.last_flit_hops),
            "last_free": self.last_free,
            "_last": dict(self._last),
        }

    def restore(self, snap: dict) -> None:
        """Return to a snapshot (the snapshot stays usable for later restores)."""
        for key, value in snap.items():
            if isinstance(value, (dict, np.ndarray)):
                value = value.copy()
            setattr(self, key, value)
        self._routes.clear()
        self._plans.clear()


#: Up to this many runs are split in plain Python (numpy's fixed cost is larger there).
_PY_RUNS = 24


def _split_py(runs, I: int, ch: int, B: int) -> tuple[tuple[int, int, int], ...]:
    """``(channel, bursts, bytes)`` per touched channel of ``(address, length)`` runs, one
    run at a time (the same pieces as :meth:`Interconnect._dram_split`)."""
    bursts = [0] * ch
    nbytes = [0] * ch
    full = [0] * ch  # full interleave chunks per channel
    rounds = 0       # full chunks on every channel
    for a, L in runs:
        if L <= 0:
            continue
        stop = a + L
        k0 = a // I
        k1 = (stop - 1) // I
        c = k0 % ch
        if k1 == k0:
            bursts[c] += -(-L // B)
            nbytes[c] += L
            continue
        first = (k0 + 1) * I - a
        bursts[c] += -(-first // B)
        nbytes[c] += first
        last = stop - k1 * I
        c = k1 % ch
        bursts[c] += -(-last // B)
        nbytes[c] += last
        m = k1 - k0 - 1
        if m:
            q, r = divmod(m, ch)
            rounds += q
            c = (k0 + 1) % ch
            for _ in range(r):
                full[c] += 1
                c = c + 1 if c + 1 < ch else 0
    per_chunk = -(-I // B)
    out = []
    for c in range(ch):
        f = full[c] + rounds
        b = bursts[c] + f * per_chunk
        if b:
            out.append((c, b, nbytes[c] + f * I))
    return tuple(out)


@lru_cache(maxsize=8192)
def _grid_channels(I: int, ch: int, B: int, a: int, counts: tuple[int, ...],
                   pitches: tuple[int, ...], L: int) -> tuple[tuple[int, int, int], ...]:
    """:func:`_split_py` of a :class:`RunGrid` whose address and pitches are taken modulo
    ``I*ch`` (a pure function of its arguments, hence cached: a program repeats a few tile
    shapes and alignments many times).

    In a 1-D grid, rows ``T = I*ch / gcd(pitch, I*ch)`` apart start at the same place
    modulo ``I*ch``, so only ``min(rows, T)`` distinct rows are split."""
    if len(counts) > 1:
        if math.prod(counts) <= _PY_RUNS:
            return _split_py(np.asarray(RunGrid(a, counts, pitches, L)).tolist(), I, ch, B)
        runs = np.asarray(RunGrid(a, counts, pitches, L))
        return _split_arrays(runs[:, 0], runs[:, 1], I, ch, B)
    rows, p = counts[0], pitches[0]
    period = (I * ch) // math.gcd(p, I * ch)
    reps, rest = divmod(rows, period) if rows > period else (0, rows)
    if reps == 0:
        return _split_rows(I, ch, B, a, rows, L, p)
    acc: dict[int, list[int]] = {}
    for c, b, n in _split_rows(I, ch, B, a, period, L, p):
        acc[c] = [reps * b, reps * n]
    for c, b, n in _split_rows(I, ch, B, a, rest, L, p) if rest else ():
        e = acc.setdefault(c, [0, 0])
        e[0] += b
        e[1] += n
    return tuple((c, b, n) for c, (b, n) in sorted(acc.items()))


def _split_rows(I: int, ch: int, B: int, a: int, rows: int, L: int, p: int
                ) -> tuple[tuple[int, int, int], ...]:
    if rows <= _PY_RUNS:
        return _split_py([(a + r * p, L) for r in range(rows)], I, ch, B)
    return _split_arrays(a + p * np.arange(rows, dtype=np.int64), np.full(rows, L, np.int64), I, ch, B)


def _split_arrays(addr: np.ndarray, length: np.ndarray, I: int, ch: int, B: int
                  ) -> tuple[tuple[int, int, int], ...]:
    bursts, nbytes = _dram_split_arrays(addr, length, I, ch, B)
    return tuple((c, b, n) for c, (b, n) in enumerate(zip(bursts.tolist(), nbytes.tolist())) if b)


def _dram_split_arrays(addr: np.ndarray, length: np.ndarray, I: int, ch: int, B: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Bursts and bytes per channel of the runs (vectorized, no loop over runs).

    Every run is a first piece (up to its first interleave boundary), ``m`` full chunks
    and a last piece (empty when the run stays inside one chunk; an empty run is one
    empty first piece). The full chunks put ``m // ch`` on every channel and one more
    on the ``m % ch`` channels from ``(k0 + 1) % ch`` on (a difference array over
    ``2 * ch`` slots).
    """
    stop = addr + length
    k0 = addr // I
    k1 = np.maximum((stop - 1) // I, k0)
    multi = k1 > k0
    pch = k0 % ch
    plen = np.minimum(length, (k0 + 1) * I - addr)
    full = np.zeros(ch, dtype=np.int64)
    if multi.any():
        k0m, k1m = k0[multi], k1[multi]
        pch = np.concatenate([pch, k1m % ch])
        plen = np.concatenate([plen, stop[multi] - k1m * I])
        m = k1m - k0m - 1
        lo = (k0m + 1) % ch
        diff = np.bincount(lo, minlength=2 * ch + 1) - np.bincount(
            lo + m % ch, minlength=2 * ch + 1
        )
        cover = np.cumsum(diff[: 2 * ch])
        full += cover[:ch] + cover[ch:] + int((m // ch).sum())
    bursts = np.bincount(pch, weights=-(-plen // B), minlength=ch)
    nbytes = np.bincount(pch, weights=plen, minlength=ch)
    bursts = np.rint(bursts).astype(np.int64) + full * _cdiv(I, B)
    nbytes = np.rint(nbytes).astype(np.int64) + full * I
    return bursts, nbytes
