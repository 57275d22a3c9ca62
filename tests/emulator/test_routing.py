"""Routes, multicast trees and the deadlock check of emulator/routing.py (docs/timing.md 7)."""

import pytest

from acf.emulator.routing import (
    RouteConfig,
    RoutingError,
    check_deadlock_free,
    dependency_edges,
    rectangle,
    route,
    tree,
    validate,
)


def c(i):
    return ("c", i)


def p(y):
    return ("p", y)


def path(*ids):
    """Links along a list of node ids (ints are clusters, 'pN' strings ports)."""
    nodes = [p(int(n[1:])) if isinstance(n, str) else c(n) for n in ids]
    return list(zip(nodes, nodes[1:]))


MESH2 = RouteConfig((2, 2), "mesh", "xy", 2)
MESH4 = RouteConfig((4, 4), "mesh", "xy", 2)
TORUS4 = RouteConfig((4, 4), "torus", "xy", 2)


def test_mesh_2x2_routes():
    assert route(c(0), c(3), MESH2) == path(0, 1, 3)
    assert route(c(0), c(3), RouteConfig((2, 2), "mesh", "yx")) == path(0, 2, 3)
    assert route(c(3), c(0), MESH2) == path(3, 2, 0)
    assert route(c(2), c(2), MESH2) == []
    # memory ports sit west of router (0, y)
    assert route(p(1), c(3), MESH2) == path("p1", 2, 3)
    assert route(c(1), p(0), MESH2) == path(1, 0, "p0")
    assert route(p(0), c(0), MESH2) == path("p0", 0)
    assert route(p(0), p(1), MESH2) == path("p0", 0, 2, "p1")


def test_mesh_4x4_routes():
    assert route(c(0), c(15), MESH4) == path(0, 1, 2, 3, 7, 11, 15)
    assert route(c(0), c(15), RouteConfig((4, 4), "mesh", "yx")) == path(0, 4, 8, 12, 13, 14, 15)
    assert route(c(14), c(4), MESH4) == path(14, 13, 12, 8, 4)
    assert route(p(2), c(10), MESH4) == path("p2", 8, 9, 10)


def test_torus_4x4_routes_take_the_short_way_ties_positive():
    # 0 -> 3 is one hop west over the wrap link, in both dimensions
    assert route(c(0), c(15), TORUS4) == path(0, 3, 15)
    # two hops either way: positive direction
    assert route(c(0), c(2), TORUS4) == path(0, 1, 2)
    assert route(c(3), c(1), TORUS4) == path(3, 0, 1)
    assert route(c(0), c(10), TORUS4) == path(0, 1, 2, 6, 10)
    assert route(c(12), c(4), TORUS4) == path(12, 0, 4)
    # port traffic enters at (0, y), then the short way round the row
    assert route(p(1), c(7), TORUS4) == path("p1", 4, 7)


def test_torus_2x2_has_the_mesh_links():
    t2 = RouteConfig((2, 2), "torus", "xy", 1)
    for s in range(4):
        for d in range(4):
            assert route(c(s), c(d), t2) == route(c(s), c(d), MESH2)
    check_deadlock_free(t2)  # rings of two have no wrap links: acyclic even with one VC


def test_pinned_route_two_legs_in_default_order():
    cfg = RouteConfig((4, 4), "mesh", "xy", 2, {(0, 10): 8})
    assert route(c(0), c(10), cfg) == path(0, 4, 8, 9, 10)
    assert route(c(0), c(10), cfg, use_pins=False) == path(0, 1, 2, 6, 10)
    yx = RouteConfig((4, 4), "mesh", "yx", 2, {(0, 10): 3})
    assert route(c(0), c(10), yx) == path(0, 1, 2, 3, 7, 11, 10)
    # pins apply to that ordered cluster pair only
    assert route(c(10), c(0), cfg) == path(10, 9, 8, 4, 0)


def test_rectangle_and_tree_depths():
    assert rectangle((4, 4), 1, 0, 2, 1) == [c(1), c(2), c(5), c(6)]
    with pytest.raises(RoutingError, match="not inside"):
        rectangle((4, 4), 2, 0, 4, 1)
    with pytest.raises(RoutingError):
        rectangle((4, 4), 2, 0, 1, 1)
    t = dict(tree(c(0), [c(1), c(2), c(5), c(6)], MESH4))
    assert t == {
        (c(0), c(1)): 0,
        (c(1), c(2)): 1,
        (c(1), c(5)): 1,
        (c(2), c(6)): 2,
    }
    # a member equal to the source adds nothing; trees ignore pins
    pinned = RouteConfig((4, 4), "mesh", "xy", 2, {(0, 5): 4})
    assert dict(tree(c(0), [c(0), c(5)], pinned)) == {(c(0), c(1)): 0, (c(1), c(5)): 1}
    t = dict(tree(p(0), [c(0), c(1)], MESH4))
    assert t == {(p(0), c(0)): 0, (c(0), c(1)): 1}


def test_deadlock_free_configurations_pass():
    for topo in ("mesh", "torus"):
        for order in ("xy", "yx"):
            validate(RouteConfig((4, 4), topo, order, 2))
    validate(RouteConfig((3, 5), "torus", "yx", 4))
    validate(RouteConfig((4, 4), "mesh", "xy", 1))


def _assert_is_cycle(cycle):
    assert len(cycle) >= 3 and cycle[0] == cycle[-1]
    for (a, _), (b, _) in zip(cycle, cycle[1:]):
        assert a[1] == b[0]  # consecutive links meet at a router


def test_torus_with_one_vc_is_rejected_naming_the_ring():
    cfg = RouteConfig((4, 4), "torus", "xy", 1)
    with pytest.raises(RoutingError) as exc:
        validate(cfg)
    err = exc.value
    _assert_is_cycle(err.cycle)
    edges = dependency_edges(cfg)
    for e in zip(err.cycle, err.cycle[1:]):
        assert e in edges
    assert "channel dependency cycle" in err.reason and "1 virtual channel" in err.reason
    names = [f"{a[0]}{a[1]}->{b[0]}{b[1]}" for (a, b), _ in err.cycle]
    assert " -> ".join(names) in err.reason
    # the cycle goes once round one ring: four links, one of them the wrap link
    assert len(err.cycle) == 5


def test_dateline_classes_on_torus():
    edges = dependency_edges(TORUS4)
    wrap = (c(3), c(0))
    # after the wrap link (class 0) a route continues in class 1
    assert (((c(2), c(3)), 0), (wrap, 0)) in edges
    assert ((wrap, 0), ((c(0), c(1)), 1)) in edges
    assert ((wrap, 0), ((c(0), c(1)), 0)) not in edges
    # a new dimension starts again at class 0
    assert ((wrap, 0), ((c(0), c(4)), 0)) in edges


def test_cyclic_pins_are_rejected():
    ok = RouteConfig((2, 2), "mesh", "xy", 2, {(0, 3): 2})
    validate(ok)
    bad = RouteConfig((2, 2), "mesh", "xy", 2, {(0, 3): 2, (3, 0): 1})
    with pytest.raises(RoutingError) as exc:
        validate(bad)
    _assert_is_cycle(exc.value.cycle)
    assert {link for link, _ in exc.value.cycle} == set(path(0, 2, 3, 1, 0))
    assert "c0->c2" in exc.value.reason and "c3->c1" in exc.value.reason


def test_pin_replaces_the_default_route_in_the_graph():
    # the default route's dependencies of a pinned pair no longer count
    base = dependency_edges(MESH4)
    pinned = dependency_edges(RouteConfig((4, 4), "mesh", "xy", 2, {(0, 5): 4}))
    turn = (((c(0), c(4)), 0), ((c(4), c(5)), 0))
    assert turn not in base and pinned[turn] == 1
    # (c0->c1, c1->c5) is used from c0 and p0 to c5, c9 and c13: six pairs
    e = (((c(0), c(1)), 0), ((c(1), c(5)), 0))
    assert base[e] == 6 and pinned[e] == 5


def test_invalid_fields():
    with pytest.raises(RoutingError, match="topology"):
        validate(RouteConfig((2, 2), "ring", "xy"))
    with pytest.raises(RoutingError, match="routing"):
        validate(RouteConfig((2, 2), "mesh", "zz"))
    with pytest.raises(RoutingError, match="via cluster 4"):
        validate(RouteConfig((2, 2), "mesh", "xy", 2, {(0, 1): 4}))
    with pytest.raises(RoutingError, match="same cluster"):
        validate(RouteConfig((2, 2), "mesh", "xy", 2, {(1, 1): 0}))
