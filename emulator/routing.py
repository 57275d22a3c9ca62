"""NoC topology, routes, multicast trees and the deadlock check (docs/timing.md section 7).

Nodes are small tuples: ``("c", id)`` is the cluster at ``(x, y)`` with ``id = y*X + x``;
``("p", y)`` is the memory port of row ``y``, attached to the west side of router
``(0, y)``. A link is a directed pair of nodes, ``(("c", 0), ("c", 1))``; port links are
``(("p", y), ("c", y*X))`` and back. Routes are lists of links from source to destination:

* dimension order ``xy`` (all x hops, then y) or ``yx``; on a torus each ring is taken the
  shorter way round (ties: the positive direction);
* traffic from or to a port goes through router ``(0, y)`` of its row:
  ``P_y -> (0,y) -> ... -> dst``;
* a pinned cluster pair ``src -> via -> dst`` is two legs, each in the default order.

Torus wrap links exist only in rings of three or more routers: in a ring of two the
neighbour links already join both routers, so a 2-wide torus has exactly the mesh's links.

The deadlock check builds the channel dependency graph (a channel is ``(link, vc)``) over
every ordered source/destination pair of nodes (clusters and ports) under a candidate
configuration and raises :class:`RoutingError` naming a cycle. On a torus with at least two
virtual channels, channels carry dateline classes: each dimension-order segment starts in
class 0 and moves to class 1 after it crosses the wrap link of its ring (a new leg or a new
dimension starts again at class 0). With one virtual channel every link is class 0, so a
ring that routes carry across more than one hop (four or more routers) is cyclic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

Node = tuple[str, int]
Link = tuple[Node, Node]
Channel = tuple[Link, int]

TOPOLOGIES = ("mesh", "torus")
ROUTINGS = ("xy", "yx")


class RoutingError(ValueError):
    """A routing configuration or request is invalid; ``reason`` says why.

    For a configuration that could deadlock, ``cycle`` lists the channels
    (``(link, vc)``) of one dependency cycle, first channel repeated at the end.
    """

    def __init__(self, reason: str, cycle: list[Channel] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.cycle = cycle or []


def cluster(cid: int) -> Node:
    return ("c", int(cid))


def port(row: int) -> Node:
    return ("p", int(row))


def node_name(n: Node) -> str:
    return f"{n[0]}{n[1]}"


def link_name(link: Link) -> str:
    return f"{node_name(link[0])}->{node_name(link[1])}"


def as_node(n: Node | int) -> Node:
    """Accept a node tuple or a bare cluster id."""
    if isinstance(n, tuple):
        return n
    return ("c", int(n))


@dataclass(frozen=True)
class RouteConfig:
    """One routing configuration: grid, wrap links, dimension order, VCs and pins."""

    grid: tuple[int, int]
    topology: str = "mesh"
    routing: str = "xy"
    virtual_channels: int = 2
    pins: Mapping[tuple[int, int], int] = field(default_factory=dict)

    @property
    def vc_classes(self) -> int:
        return 2 if self.topology == "torus" and self.virtual_channels >= 2 else 1


# ---- rings and dimension-order routes ----------------------------------------------------


def _ring_steps(a: int, b: int, n: int, torus: bool) -> tuple[int, int]:
    """(direction, hops) from coordinate a to b in a line or ring of n routers."""
    if a == b:
        return 0, 0
    if not torus:
        return (1, b - a) if b > a else (-1, a - b)
    fwd = (b - a) % n
    back = n - fwd
    return (1, fwd) if fwd <= back else (-1, back)


def _is_wrap(a: int, b: int, n: int, torus: bool) -> bool:
    return torus and n >= 3 and {a, b} == {0, n - 1}


def _segment(x: int, y: int, tx: int, ty: int, dim: int, X: int, Y: int, torus: bool):
    """Links (with a wrap flag) moving along one dimension; returns (links, x, y)."""
    out: list[tuple[Link, bool]] = []
    if dim == 0:
        d, hops = _ring_steps(x, tx, X, torus)
        for _ in range(hops):
            nx = (x + d) % X
            out.append(((("c", y * X + x), ("c", y * X + nx)), _is_wrap(x, nx, X, torus)))
            x = nx
    else:
        d, hops = _ring_steps(y, ty, Y, torus)
        for _ in range(hops):
            ny = (y + d) % Y
            out.append(((("c", y * X + x), ("c", ny * X + x)), _is_wrap(y, ny, Y, torus)))
            y = ny
    return out, x, y


def _leg(src: int, dst: int, grid: tuple[int, int], torus: bool, order: str, classes: int
         ) -> list[Channel]:
    """Dimension-order route between two clusters, each link tagged with its VC class."""
    X, Y = grid
    x, y = src % X, src // X
    tx, ty = dst % X, dst // X
    out: list[Channel] = []
    for dim in ((0, 1) if order == "xy" else (1, 0)):
        seg, x, y = _segment(x, y, tx, ty, dim, X, Y, torus)
        vc = 0
        for link, wrap in seg:
            out.append((link, vc))
            if wrap and classes > 1:
                vc = 1
    return out


def channel_route(src: Node, dst: Node, cfg: RouteConfig, use_pins: bool = True) -> list[Channel]:
    """The route from src to dst under cfg, each link with its dateline VC class."""
    if src == dst:
        return []
    X, Y = cfg.grid
    torus = cfg.topology == "torus"
    classes = cfg.vc_classes
    head: list[Channel] = []
    tail: list[Channel] = []
    s, d = src, dst
    if src[0] == "p":
        s = ("c", src[1] * X)
        head = [((src, s), 0)]
    if dst[0] == "p":
        d = ("c", dst[1] * X)
        tail = [((d, dst), 0)]
    via = cfg.pins.get((src[1], dst[1])) if use_pins and src[0] == dst[0] == "c" else None
    if via is None:
        body = _leg(s[1], d[1], cfg.grid, torus, cfg.routing, classes)
    else:
        body = (_leg(s[1], via, cfg.grid, torus, cfg.routing, classes)
                + _leg(via, d[1], cfg.grid, torus, cfg.routing, classes))
    return head + body + tail


def route(src: Node, dst: Node, cfg: RouteConfig, use_pins: bool = True) -> list[Link]:
    """The list of links from src to dst (pins apply unless use_pins is False)."""
    return [link for link, _ in channel_route(src, dst, cfg, use_pins)]


def all_nodes(grid: tuple[int, int]) -> list[Node]:
    X, Y = grid
    return [("c", i) for i in range(X * Y)] + [("p", y) for y in range(Y)]


def rectangle(grid: tuple[int, int], x0: int, y0: int, x1: int, y1: int) -> list[Node]:
    """Clusters of the rectangle [x0..x1] x [y0..y1], row-major (ascending id)."""
    X, Y = grid
    if not (0 <= x0 <= x1 < X and 0 <= y0 <= y1 < Y):
        raise RoutingError(
            f"multicast rectangle [{x0}..{x1}] x [{y0}..{y1}] is not inside the {X}x{Y} grid"
        )
    return [("c", y * X + x) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]


def tree(src: Node, members: Iterable[Node], cfg: RouteConfig) -> list[tuple[Link, int]]:
    """Multicast tree: the union of the default (unpinned) routes from src to every member,
    each link with its depth (0-based hop index). Dimension-order routes from one source
    are prefix-closed, so every link has one depth."""
    depth: dict[Link, int] = {}
    for m in members:
        for h, link in enumerate(route(src, m, cfg, use_pins=False)):
            depth.setdefault(link, h)
    return list(depth.items())


# ---- deadlock check ------------------------------------------------------------------------


def _route_edges(chans: list[Channel]) -> Iterable[tuple[Channel, Channel]]:
    return zip(chans, chans[1:])


@lru_cache(maxsize=32)
def _default_edges(grid: tuple[int, int], topology: str, routing: str, classes: int
                   ) -> dict[tuple[Channel, Channel], int]:
    """Channel dependencies of the unpinned routes of every pair, with multiplicity."""
    cfg = RouteConfig(grid, topology, routing, 2 if classes > 1 else 1)
    count: dict[tuple[Channel, Channel], int] = {}
    nodes = all_nodes(grid)
    for s in nodes:
        for d in nodes:
            if s != d:
                for e in _route_edges(channel_route(s, d, cfg, use_pins=False)):
                    count[e] = count.get(e, 0) + 1
    return count


def dependency_edges(cfg: RouteConfig) -> dict[tuple[Channel, Channel], int]:
    """The channel dependency graph of cfg: edge -> number of routes that create it."""
    count = dict(_default_edges(tuple(cfg.grid), cfg.topology, cfg.routing, cfg.vc_classes))
    for (s, d) in cfg.pins:
        src, dst = ("c", s), ("c", d)
        for e in _route_edges(channel_route(src, dst, cfg, use_pins=False)):
            count[e] -= 1
        for e in _route_edges(channel_route(src, dst, cfg)):
            count[e] = count.get(e, 0) + 1
    return {e: n for e, n in count.items() if n > 0}


def find_cycle(edges: Iterable[tuple[Channel, Channel]]) -> list[Channel] | None:
    """One cycle of the directed graph (first node repeated at the end), or None."""
    succ: dict[Channel, list[Channel]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
        succ.setdefault(b, [])
    state: dict[Channel, int] = {}  # 1: on the DFS path, 2: finished
    for root in succ:
        if root in state:
            continue
        path = [root]
        its = [iter(succ[root])]
        state[root] = 1
        while its:
            nxt = next(its[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                its.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                its.append(iter(succ[nxt]))
    return None


def _describe(cfg: RouteConfig) -> str:
    vcs, pins = cfg.virtual_channels, len(cfg.pins)
    return (
        f"topology={cfg.topology}, routing={cfg.routing}, "
        f"{vcs} virtual channel{'s' if vcs != 1 else ''}, "
        f"{pins} pinned route{'s' if pins != 1 else ''}"
    )


def check_deadlock_free(cfg: RouteConfig) -> None:
    """Raise RoutingError naming a channel dependency cycle if cfg could deadlock."""
    cycle = find_cycle(dependency_edges(cfg))
    if cycle is None:
        return
    multi = cfg.vc_classes > 1
    names = " -> ".join(link_name(l) + (f"[vc{vc}]" if multi else "") for l, vc in cycle)
    raise RoutingError(
        f"routing configuration could deadlock ({_describe(cfg)}): "
        f"channel dependency cycle {names}",
        cycle,
    )


def validate(cfg: RouteConfig) -> None:
    """Check every field of cfg, then the deadlock freedom of its routes."""
    X, Y = cfg.grid
    if cfg.topology not in TOPOLOGIES:
        raise RoutingError(f"unknown topology {cfg.topology!r} (expected mesh or torus)")
    if cfg.routing not in ROUTINGS:
        raise RoutingError(f"unknown routing {cfg.routing!r} (expected xy or yx)")
    n = X * Y
    for (s, d), v in cfg.pins.items():
        for what, c in (("src", s), ("dst", d), ("via", v)):
            if not 0 <= c < n:
                raise RoutingError(f"pin {s}->{d} via {v}: {what} cluster {c} is not in 0..{n - 1}")
        if s == d:
            raise RoutingError(f"pin {s}->{d} via {v}: source and destination are the same cluster")
    check_deadlock_free(cfg)
