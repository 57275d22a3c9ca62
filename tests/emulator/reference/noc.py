"""NoC of the reference: routes and links stepped cycle by cycle (docs/timing.md section 7).

Every directed link keeps the cycle it is next free (``free``: end of its latest grant; the
contract grants paths first-come-first-served without back-filling) and a per-cycle
occupancy table: a transfer's flit ``f`` crosses the link at depth ``h`` at cycle
``t0 + h*r + f``, so its head advances one router every ``r`` cycles and each link carries at
most one flit per cycle (asserted).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field


class NocError(RuntimeError):
    pass


def cnode(i: int) -> tuple[str, int]:
    return ("c", i)


def pnode(y: int) -> tuple[str, int]:
    return ("p", y)


@dataclass
class Link:
    src: tuple
    dst: tuple
    free: int = 0
    busy: dict[int, int] = field(default_factory=dict)  # cycle -> transfer id

    def carry(self, cycle: int, tid: int) -> None:
        if cycle in self.busy:
            raise NocError(f"link {self.src}->{self.dst} carries two flits in cycle {cycle}")
        self.busy[cycle] = tid


class Noc:
    def __init__(self, target):
        self.X, self.Y = target.fabric.grid
        self.r = target.noc.router_latency
        self.W = target.noc.link_bytes
        self.topology = target.noc.topology
        self.routing = target.noc.routing
        self.groups: dict[int, list[int]] = {}
        self.pins: dict[tuple[int, int], int] = {}
        self.links: dict[tuple, Link] = {}
        self.next_tid = 0
        self.flits = 0  # flit-link traversals, for reports

    # ---- geometry ---------------------------------------------------------------------
    def xy(self, cid: int) -> tuple[int, int]:
        return cid % self.X, cid // self.X

    def cid(self, x: int, y: int) -> int:
        return y * self.X + x

    def link(self, a, b) -> Link:
        key = (a, b)
        if key not in self.links:
            self.links[key] = Link(a, b)
        return self.links[key]

    def _axis_steps(self, a: int, b: int, n: int) -> list[int]:
        """Positions visited (excluding ``a``) going from a to b on a line/ring of n."""
        if a == b:
            return []
        if self.topology == "torus":
            fwd = (b - a) % n
            back = n - fwd
            step = 1 if fwd <= back else -1  # ties: the positive direction
            out, p = [], a
            while p != b:
                p = (p + step) % n
                out.append(p)
            return out
        step = 1 if b > a else -1
        return list(range(a + step, b + step, step))

    def cluster_route(self, s: int, d: int, order: str | None = None) -> list[tuple]:
        """Links (node pairs) of the dimension-order route between two clusters."""
        order = order or self.routing
        (x, y), (dx, dy) = self.xy(s), self.xy(d)
        nodes = [(x, y)]
        for dim in order:
            if dim == "x":
                for nx in self._axis_steps(x, dx, self.X):
                    x = nx
                    nodes.append((x, y))
            else:
                for ny in self._axis_steps(y, dy, self.Y):
                    y = ny
                    nodes.append((x, y))
        ids = [cnode(self.cid(*n)) for n in nodes]
        return list(itertools.pairwise(ids))

    def unicast_route(self, s: int, d: int) -> list[tuple]:
        via = self.pins.get((s, d))
        if via is None or s == d:  # a transfer within one cluster uses no link
            return self.cluster_route(s, d)
        return self.cluster_route(s, via) + self.cluster_route(via, d)

    def from_port(self, y: int, d: int) -> list[tuple]:
        """Memory traffic: P_y -> (0, y) -> ... -> d."""
        return [(pnode(y), cnode(self.cid(0, y)))] + self.cluster_route(self.cid(0, y), d)

    def to_port(self, s: int) -> list[tuple]:
        _, y = self.xy(s)
        return self.cluster_route(s, self.cid(0, y)) + [(cnode(self.cid(0, y)), pnode(y))]

    def flits_of(self, nbytes: int) -> int:
        return max(1, -(-nbytes // self.W))

    # ---- grants ------------------------------------------------------------------------
    def _grant(self, request: int, hops: list[tuple[tuple, int]], F: int) -> int:
        """Find t0 by stepping cycles from ``request`` until every link of the path is free
        for its pipeline slot (granted in arrival order: no back-filling), then reserve."""
        links = [(self.link(*lk), off) for lk, off in hops]
        if len({id(lk) for lk, _ in links}) != len(links):
            raise NocError("a route uses one link twice")
        t0 = request
        while not all(lk.free <= t0 + off for lk, off in links):
            t0 += 1
        tid = self.next_tid
        self.next_tid += 1
        for lk, off in links:
            for f in range(F):
                lk.carry(t0 + off + f, tid)
            lk.free = t0 + off + F
            self.flits += F
        return t0

    def unicast(self, request: int, route: list[tuple], nbytes: int) -> int:
        """End cycle of a unicast transfer requested at ``request``."""
        F = self.flits_of(nbytes)
        H = len(route)
        if H == 0:
            return request + F
        t0 = self._grant(request, [(lk, h * self.r) for h, lk in enumerate(route)], F)
        return t0 + H * self.r + F

    def _tree(self, routes: list[list[tuple]]) -> tuple[dict[tuple, int], int]:
        depth: dict[tuple, int] = {}
        hmax = 0
        for route in routes:
            hmax = max(hmax, len(route))
            for h, lk in enumerate(route):
                if depth.setdefault(lk, h) != h:
                    raise NocError(f"link {lk} at two depths of a multicast tree")
        return depth, hmax

    def multicast(self, request: int, routes: list[list[tuple]], nbytes: int) -> int:
        F = self.flits_of(nbytes)
        depth, hmax = self._tree(routes)
        if not depth:
            return request + F
        t0 = self._grant(request, [(lk, h * self.r) for lk, h in depth.items()], F)
        return t0 + hmax * self.r + F

    def reduction(self, request: int, routes: list[list[tuple]], nbytes: int) -> int:
        F = self.flits_of(nbytes)
        depth, hmax = self._tree(routes)
        if not depth:
            return request + F
        hops = [((b, a), (hmax - h) * self.r) for (a, b), h in depth.items()]
        t0 = self._grant(request, hops, F)
        return t0 + hmax * (self.r + 1) + F
