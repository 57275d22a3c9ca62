"""Memory-system and NoC timing of emulator/interconnect.py, against hand-worked cases.

acf-small: 2x2 grid, W = 32 B/flit, r = 2; DRAM 2 channels x 32 B/cycle, burst 64,
interleave 256, latency 20; global buffer 4 x 32 B/cycle, latency 8.
acf-base: 4x4 grid, same NoC; DRAM 8 channels, latency 120.
"""

import numpy as np
import pytest

from acf.emulator.interconnect import Interconnect, InterconnectOrderError
from acf.emulator.routing import RoutingError
from acf.isa.target import load_target


def c(i):
    return ("c", i)


def p(y):
    return ("p", y)


@pytest.fixture
def small():
    return Interconnect(load_target("acf-small"))


@pytest.fixture
def base():
    return Interconnect(load_target("acf-base"))


def runs(*pairs):
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


# ---- DRAM -------------------------------------------------------------------------------


def test_dram_single_piece(small):
    # 100 B in chunk 0 -> channel 0, 2 bursts, busy ceil(128 / 32) = 4
    assert small.dram(0, runs((0, 100)), 0) == 4 + 20
    assert small.dram_bytes == 100 and small.dram_bursts == 2
    assert small.channel_bytes.tolist() == [100, 0]
    assert small.channel_free.tolist() == [4, 0]


def test_dram_run_crossing_an_interleave_boundary(small):
    # [200, 256) -> ch0 (56 B, 1 burst); [256, 300) -> ch1 (44 B, 1 burst); busy 2 each
    assert small.dram(10, runs((200, 100)), 0) == 10 + 2 + 20
    assert small.channel_bytes.tolist() == [56, 44]
    assert small.channel_bursts.tolist() == [1, 1]
    assert small.dram_bursts == 2 and small.dram_bytes == 100


def test_dram_long_run_over_many_chunks(small, base):
    # 1088 B from 0: chunks 0..3 full (4 bursts each), chunk 4 has 64 B (1 burst)
    # ch0: chunks 0, 2, 4 -> 9 bursts, busy 18; ch1: chunks 1, 3 -> 8 bursts, busy 16
    assert small.dram(0, runs((0, 1088)), 0) == 18 + 20
    assert small.channel_bytes.tolist() == [576, 512]
    # acf-base, 8 channels: [100, 5220): first piece 156 B (3 bursts) on ch0, full chunks
    # 1..19 (4 bursts each: ch1-3 get three, the others two), last piece 100 B (2 bursts)
    # on ch4. Bursts: ch0 11, ch1-3 12, ch4 10, ch5-7 8; busy = 2 * bursts.
    assert base.dram(0, runs((100, 5120)), 0) == 24 + 120
    assert base.channel_bursts.tolist() == [11, 12, 12, 12, 10, 8, 8, 8]
    assert base.channel_free.tolist() == [22, 24, 24, 24, 20, 16, 16, 16]
    assert int(base.channel_bytes.sum()) == 5120


def test_dram_channel_contention_fcfs(small):
    assert small.dram(0, runs((0, 64)), 0) == 0 + 2 + 20  # ch0 busy [0, 2)
    assert small.dram(1, runs((512, 64)), 0) == 2 + 2 + 20  # chunk 2 -> ch0 waits
    assert small.dram(1, runs((256, 64)), 1) == 1 + 2 + 20  # ch1 is free
    # a request over both channels ends with the later one
    assert small.dram(2, runs((0, 64), (256, 64)), 0) == 4 + 2 + 20
    assert small.channel_free.tolist() == [6, 5]


def test_dram_untouched_channels_and_empty_requests(small):
    small.dram(0, runs((256, 640)), 0)
    # [256, 896): chunks 1, 2 full, chunk 3 has 128 B: ch1 4 + 2 bursts -> 12; ch0 4 -> 8
    assert small.channel_free.tolist() == [8, 12]
    # a run on channel 0 only does not wait for channel 1; 32 B is still a 64 B burst
    assert small.dram(9, runs((0, 32)), 0) == 9 + 2 + 20
    assert small.dram(9, runs(), 1) == 9
    assert small.dram(9, runs((64, 0)), 2) == 9
    assert small.channel_free.tolist() == [11, 12]


def _naive_dram(ic, request, rr):
    """Per-piece loop straight from docs/timing.md 6 (reference for the vectorized code)."""
    bursts = [0] * ic.channels
    for a, n in rr:
        while n > 0:
            piece = min(n, (a // ic.interleave + 1) * ic.interleave - a)
            ch = (a // ic.interleave) % ic.channels
            bursts[ch] += -(-piece // ic.burst)
            a, n = a + piece, n - piece
    end = None
    free = ic.channel_free.tolist()
    for ch, b in enumerate(bursts):
        if b:
            s = max(request, free[ch])
            free[ch] = s + -(-b * ic.burst // ic.dram_bpc)
            end = max(end or 0, free[ch])
    return bursts, free, (request if end is None else end + ic.dram_latency)


@pytest.mark.parametrize("target", ["acf-small", "acf-base", "acf-h200-iso"])
def test_dram_vectorized_matches_per_piece_loop(target):
    rng = np.random.default_rng(7)
    ic = Interconnect(load_target(target))
    request = 0
    for trial in range(12):
        n = int(rng.integers(1, 300))
        addr = rng.integers(0, 1 << 20, n)
        length = rng.integers(0, [64, 600, 5000, 40000][trial % 4], n)
        rr = np.stack([addr, length], axis=1)
        bursts0 = ic.channel_bursts.copy()
        want_bursts, want_free, want_end = _naive_dram(ic, request, rr.tolist())
        assert ic.dram(request, rr, trial) == want_end
        assert (ic.channel_bursts - bursts0).tolist() == want_bursts
        assert ic.channel_free.tolist() == want_free
        request += int(rng.integers(0, 50))


def test_dram_strided_gather_is_vectorized(base):
    # 10^5 single-element runs (a strided gather); exact bytes, bursts per piece
    addr = np.arange(100_000, dtype=np.int64) * 1028
    end = base.dram(0, np.stack([addr, np.full_like(addr, 4)], axis=1), 0)
    assert base.dram_bytes == 400_000 and base.dram_bursts == 100_000
    assert end == int(base.channel_free.max()) + 120


# ---- global buffer ----------------------------------------------------------------------


def test_gbuf(small):
    assert small.gbuf(0, 300, 0) == 3 + 8  # 128 B/cycle
    assert small.gbuf(1, 128, 0) == 3 + 1 + 8  # waits for the port
    assert small.gbuf(10, 1, 0) == 10 + 1 + 8
    assert small.gbuf_bytes == 429 and small.gbuf_free == 11


# ---- NoC --------------------------------------------------------------------------------


def test_transfer_alone_and_within_a_cluster(base):
    # c0 -> c2: H = 2, F = ceil(100 / 32) = 4 -> ends at 5 + 2*2 + 4
    assert base.transfer(5, c(0), c(2), 100, 0) == 13
    assert base.link_busy_until == {(c(0), c(1)): 9, (c(1), c(2)): 11}
    assert base.link_flits == {(c(0), c(1)): 4, (c(1), c(2)): 4}
    assert base.flit_hops == {"router": 12, "link": 8}
    assert base.transfer(6, 3, 3, 100, 0) == 6 + 4  # H = 0
    assert base.transfer(7, c(3), c(3), 0, 0) == 7 + 1  # an empty send is one flit
    assert base.flit_hops == {"router": 12, "link": 8}


def test_two_transfers_sharing_a_link(base):
    # A: c0 -> c2 (F = 4) holds c1->c2 during [2, 6); B: c1 -> c3 starts there at 6
    assert base.transfer(0, c(0), c(2), 128, 0) == 0 + 4 + 4
    assert base.transfer(0, c(1), c(3), 128, 1) == 6 + 2 * 2 + 4
    assert base.link_busy_until[(c(2), c(3))] == 6 + 2 + 4


def test_pipelined_staggering(base):
    # A: c0 -> c2; B: c0 -> c3 over the same first two links follows A by exactly F
    assert base.transfer(0, c(0), c(2), 128, 0) == 8
    assert base.transfer(0, c(0), c(3), 128, 1) == 4 + 3 * 2 + 4
    assert base.link_busy_until == {(c(0), c(1)): 8, (c(1), c(2)): 10, (c(2), c(3)): 12}


def test_downstream_conflict_is_offset_by_the_hop_latency(base):
    # A holds c2->c3 until 4; B reaches that link (h = 2) at t0 + 4: no wait
    assert base.transfer(0, c(2), c(3), 128, 0) == 2 + 4
    assert base.transfer(0, c(0), c(3), 128, 1) == 0 + 6 + 4
    # B left c2->c3 at 8; C (F = 6) takes it during [10, 16)
    assert base.transfer(10, c(2), c(3), 192, 0) == 10 + 2 + 6
    # D reaches c2->c3 at t0 + 4, so t0 = max(10, 16 - 4) = 12
    assert base.transfer(10, c(0), c(3), 32, 1) == 12 + 6 + 1


def test_port_transfers(small):
    # p0 -> c1: port link, then c0 -> c1; F = 2
    assert small.transfer(10, p(0), c(1), 64, 0) == 10 + 2 * 2 + 2
    assert small.link_flits == {(p(0), c(0)): 2, (c(0), c(1)): 2}
    assert small.flit_hops == {"router": 4, "link": 4}  # routers c0, c1
    assert small.transfer(11, c(3), p(1), 64, 0) == 11 + 2 * 2 + 2


def test_multicast_tree_and_following_unicast(base):
    base.set_group(1, 1, 0, 2, 1)
    members = base.group(1)
    assert members == [c(1), c(2), c(5), c(6)]
    # tree: c0->c1 @0, c1->c2 @1, c1->c5 @1, c2->c6 @2; Hmax = 3, F = 4
    assert base.multicast(0, c(0), members, 100, 0) == 3 * 2 + 4
    assert base.link_busy_until == {
        (c(0), c(1)): 4, (c(1), c(2)): 6, (c(1), c(5)): 6, (c(2), c(6)): 8,
    }
    assert base.flit_hops == {"link": 16, "router": 20}  # 4 links, 5 routers
    # c1 -> c2 waits for the tree's depth-1 reservation
    assert base.transfer(1, c(1), c(2), 64, 0) == 6 + 2 + 2
    # a second multicast: t0 = max over links of free - depth * r = max(4, 8-2, 6-4, 8-4)
    assert base.multicast(2, c(0), members, 32, 0) == 6 + 6 + 1


def test_multicast_from_a_port_and_degenerate_trees(small):
    small.set_group(0, 0, 0, 1, 1)
    assert small.multicast(0, p(0), small.group(0), 32, 0) == 3 * 2 + 1
    assert small.multicast(1, c(2), [c(2)], 64, 0) == 1 + 2  # only itself: H = 0
    assert small.reduce(1, c(2), [c(2)], 64, 0) == 1 + 2


def test_reduce_reverse_tree(base):
    base.set_group(1, 1, 0, 2, 1)
    members = base.group(1) + [c(0)]
    # reversed links: c1->c0 @0 at +6, c2->c1 and c5->c1 @1 at +4, c6->c2 @2 at +2
    assert base.reduce(0, c(0), members, 100, 0) == 3 * (2 + 1) + 4
    assert base.link_busy_until == {
        (c(1), c(0)): 10, (c(2), c(1)): 8, (c(5), c(1)): 8, (c(6), c(2)): 6,
    }
    # again: t0 = max(10 - 6, 8 - 4, 6 - 2) = 4
    assert base.reduce(0, c(0), members, 100, 1) == 4 + 9 + 4


def test_transfer_follows_pins_and_torus(base):
    base.pin(0, 10, 8)
    assert base.route(0, 10) == [(c(0), c(4)), (c(4), c(8)), (c(8), c(9)), (c(9), c(10))]
    assert base.transfer(0, c(0), c(10), 32, 0) == 4 * 2 + 1
    base.clear_pins()
    base.set_topology("torus")
    assert base.route(c(0), c(15)) == [(c(0), c(3)), (c(3), c(15))]
    assert base.transfer(0, c(0), c(15), 32, 1) == 2 * 2 + 1


# ---- configuration ----------------------------------------------------------------------


def test_deadlock_free_configurations_are_accepted(base):
    base.set_routing("yx")
    base.set_topology("torus")  # 2 virtual channels: dateline classes
    base.set_routing("xy")
    base.set_topology("mesh")
    assert (base.topology, base.routing) == ("mesh", "xy")


def test_torus_with_one_vc_is_rejected_and_state_kept():
    ic = Interconnect(load_target("acf-base", {"noc.virtual_channels": 1}))
    ic.transfer(0, c(0), c(2), 32, 0)
    before = ic.snapshot()
    with pytest.raises(RoutingError, match="channel dependency cycle c") as exc:
        ic.set_topology("torus")
    assert exc.value.cycle
    assert ic.topology == "mesh"
    assert ic.route(0, 3) == [(c(0), c(1)), (c(1), c(2)), (c(2), c(3))]
    _assert_same_state(ic.snapshot(), before)


def test_cyclic_pins_are_rejected_and_state_kept(small):
    small.pin(0, 3, 2)
    with pytest.raises(RoutingError) as exc:
        small.pin(3, 0, 1)
    ring = ["c0->c2", "c2->c3", "c3->c1", "c1->c0"]
    reason = exc.value.reason
    assert any(" -> ".join(ring[i:] + ring[:i + 1]) in reason for i in range(4)), reason
    assert small.pins == {(0, 3): 2}
    assert small.route(0, 3) == [(c(0), c(2)), (c(2), c(3))]
    assert small.route(3, 0) == [(c(3), c(2)), (c(2), c(0))]
    small.clear_pins()
    assert small.pins == {}


def test_routing_change_is_checked_against_the_pins(small):
    # under xy these pins are the default routes; under yx their x-then-y turns close
    # the cycle c0->c1 -> c1->c3 -> c3->c2 -> c2->c0 with the yx default routes
    small.pin(0, 3, 1)
    small.pin(3, 0, 2)
    with pytest.raises(RoutingError, match="routing=yx"):
        small.set_routing("yx")
    assert small.routing == "xy"
    assert small.route(1, 2) == [(c(1), c(0)), (c(0), c(2))]
    small.clear_pins()
    small.set_routing("yx")
    assert small.route(1, 2) == [(c(1), c(3)), (c(3), c(2))]


def test_invalid_configuration_requests(small):
    for bad in (lambda: small.set_topology("ring"), lambda: small.set_routing("zx"),
                lambda: small.pin(0, 4, 1), lambda: small.pin(2, 2, 1),
                lambda: small.set_group(0, 0, 0, 2, 1), lambda: small.group(5),
                lambda: small.route(c(0), c(4)), lambda: small.route(p(2), c(0))):
        with pytest.raises(RoutingError):
            bad()
    assert (small.topology, small.routing, small.pins, small.groups) == ("mesh", "xy", {}, {})


def test_requests_out_of_order_are_an_internal_error(small):
    small.dram(5, runs((0, 4)), 3)
    with pytest.raises(InterconnectOrderError, match="internal error"):
        small.dram(4, runs((0, 4)), 0)
    with pytest.raises(InterconnectOrderError):
        small.dram(5, runs((0, 4)), 2)  # same cycle, lower queue id
    small.dram(5, runs((0, 4)), 3)  # equal keys are fine
    small.transfer(1, c(0), c(1), 4, 0)  # other resource kinds keep their own order
    small.gbuf(0, 4, 0)
    unchecked = Interconnect(load_target("acf-small"), check_order=False)
    unchecked.dram(5, runs((0, 4)), 0)
    unchecked.dram(4, runs((0, 4)), 0)


# ---- reverse execution ------------------------------------------------------------------


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert a[k].tolist() == b[k].tolist(), k
        else:
            assert a[k] == b[k], k


def _workload(ic, t0):
    ic.dram(t0, runs((100, 700), (4096, 64)), 0)
    ic.gbuf(t0, 1000, 1)
    ic.transfer(t0, c(0), c(15), 300, 2)
    ic.multicast(t0 + 1, p(1), ic.group(2), 200, 0)
    ic.reduce(t0 + 2, c(5), ic.group(2), 64, 0)
    return (ic.dram(t0 + 3, runs((0, 5000)), 0), ic.transfer(t0 + 3, c(3), c(12), 64, 1))


def test_snapshot_restore_round_trip(base):
    base.set_group(2, 0, 0, 3, 1)
    _workload(base, 0)
    snap = base.snapshot()
    first = _workload(base, 10)
    after = base.snapshot()
    base.set_topology("torus")
    base.pin(0, 15, 5)
    base.set_group(2, 1, 1, 2, 2)
    _workload(base, 20)
    base.restore(snap)
    _assert_same_state(base.snapshot(), snap)
    assert base.route(0, 15)[0] == (c(0), c(1))  # mesh again, no pin
    assert _workload(base, 10) == first
    _assert_same_state(base.snapshot(), after)
    base.restore(snap)  # a snapshot can be restored more than once
    assert _workload(base, 10) == first


# ---- randomized invariants of the pipelined link reservation -----------------------------


@pytest.mark.parametrize("topology", ["mesh", "torus"])
def test_random_noc_traffic_books_links_without_overlap_and_as_early_as_allowed(topology):
    """Every link interval starts after the link's previous booking ends, the hops of one
    operation are r apart (multicast) or mirrored (reduce), and t0 is the earliest such."""
    ic = Interconnect(load_target("acf-base"))
    ic.set_topology(topology)
    ic.set_group(0, 1, 1, 3, 2)
    rng = np.random.default_rng(3)
    r = ic.r
    booked = {}  # link -> end of its latest interval
    request = 0
    for i in range(400):
        request += int(rng.integers(0, 4))
        nbytes = int(rng.integers(0, 300))
        F = max(1, -(-nbytes // ic.W))
        kind = rng.integers(0, 4)
        if kind < 2:
            src, dst = c(int(rng.integers(0, 16))), c(int(rng.integers(0, 16)))
            if kind == 1:
                src = p(int(rng.integers(0, 4)))
            links = ic.route(src, dst)
            end = ic.transfer(request, src, dst, nbytes, 0)
            offs = [h * r for h in range(len(links))]
            tail = len(links) * r
        else:
            root = c(int(rng.integers(0, 16)))
            members = ic.group(0)
            depth = {}
            for m in members:
                for h, link in enumerate(ic.route(root, m)):
                    depth[link] = h
            hmax = max(depth.values(), default=-1) + 1
            if kind == 2:
                end = ic.multicast(request, root, members, nbytes, 0)
                links, offs, tail = list(depth), [h * r for h in depth.values()], hmax * r
            else:
                end = ic.reduce(request, root, members, nbytes, 0)
                links = [(b, a) for a, b in depth]
                offs = [(hmax - h) * r for h in depth.values()]
                tail = hmax * (r + 1)
        t0 = end - tail - F
        assert t0 >= request
        tight = t0 == request
        for link, off in zip(links, offs):
            assert t0 + off >= booked.get(link, 0)
            tight |= t0 + off == booked.get(link, 0)
            booked[link] = t0 + off + F
        assert tight
    assert booked == ic.link_busy_until
