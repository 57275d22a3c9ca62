"""The race detector against a brute-force one: random instruction starts on a few queues
(random token waits and barriers for the happens-before edges, random byte accesses, many
of them tiles of one pitch) are checked by :class:`RaceDetector`, with pruning and its
archive forced to run often, and by comparing every earlier access with every later one.
Each start must report a race exactly when the brute force finds one, and name an earlier
instruction that the brute force finds racing."""

from __future__ import annotations

import numpy as np
import pytest
from acf.emulator import races
from acf.emulator.races import RaceDetector
from acf.isa.semantics import Access
from hypothesis import given, settings
from hypothesis import strategies as st


def _bytes(a: Access) -> set[int]:
    return {a.addr + r * a.pitch + i for r in range(a.rows) for i in range(a.rowbytes)}


def _memory(a: Access) -> tuple[str, int]:
    """Scratchpads and accumulators are per cluster; DRAM is one memory for all."""
    return (a.space, a.cluster if a.space in ("sp", "acc") else -1)


class BruteForce:
    """Vector clocks as the detector's, and every access kept with its clock."""

    def __init__(self, nq: int):
        self.Q = np.zeros((nq, nq), np.int64)
        self.tokens: dict[int, list[np.ndarray]] = {}
        self.seen: list[tuple[int, int, Access, int]] = []  # (queue, epoch, access, index)

    def start(self, q: int, index: int, waits: tuple[int, ...], accesses: list[Access]
              ) -> tuple[np.ndarray, set[int]]:
        clock = self.Q[q].copy()
        for t in waits:
            clock = np.maximum(clock, self.tokens[t].pop(0))
        clock[q] += 1
        self.Q[q] = clock
        racing = set()
        for acc in accesses:
            for pq, epoch, prev, pindex in self.seen:
                if (pq != q and epoch > clock[pq] and (prev.write or acc.write)
                        and _memory(prev) == _memory(acc) and _bytes(prev) & _bytes(acc)):
                    racing.add(pindex)
        self.seen += [(q, int(clock[q]), acc, index) for acc in accesses]
        return clock, racing

    def end(self, clock: np.ndarray, signals: tuple[int, ...]) -> None:
        for t in signals:
            self.tokens.setdefault(t, []).append(clock)

    def barrier(self) -> None:
        self.Q[:] = self.Q.max(axis=0)
        self.seen.clear()


PITCHES = (48, 64, 100, 4096)


@st.composite
def accesses(draw) -> list[Access]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        space = draw(st.sampled_from(("dram", "dram", "sp")))
        cl = draw(st.integers(0, 1))
        write = draw(st.booleans())
        if draw(st.booleans()):  # a tile of a tensor: rows at one of a few pitches
            pitch = draw(st.sampled_from(PITCHES))
            acc = Access(space, cl, draw(st.integers(0, 900)), draw(st.integers(1, 12)),
                         draw(st.integers(1, min(pitch, 200))), pitch, write)
        else:  # runs, rows that overlap (pitch <= rowbytes), no rows, a zero pitch
            acc = Access(space, cl, draw(st.integers(0, 1100)), draw(st.integers(0, 3)),
                         draw(st.integers(0, 80)), draw(st.integers(0, 120)), write)
        out.append(acc)
    return out


STEP = st.tuples(st.integers(0, 3), accesses(), st.integers(0, 9), st.integers(0, 9),
                 st.integers(0, 30))
#: a step of a loop-like program: which of a few fixed instructions runs again
REPEAT = st.tuples(st.integers(0, 5), st.integers(0, 9), st.integers(0, 9), st.integers(0, 30))


def _check_against_brute_force(runs, prune_every: int, shift: int, col_shift: int | None) -> None:
    """``runs``: (instruction index, queue, accesses, wait, signal, barrier) in order."""
    nq = 4
    with pytest.MonkeyPatch.context() as mp:
        # prune often (idle queues send entries to the archive) and use small address and
        # column buckets, so accesses span several and the history is cut up as on big
        # programs (col_shift None: the detector's own column buckets)
        mp.setattr(races, "_PRUNE_EVERY", prune_every)
        mp.setattr(races, "_SHIFT", {"sp": shift, "acc": shift, "dram": shift, "gb": shift})
        if col_shift is not None:
            mp.setattr(races, "_col_shift", lambda pitch: col_shift)
        mp.setattr(races, "_ARCHIVE_MIN", 2)
        fast, slow = RaceDetector(nq), BruteForce(nq)
        for index, q, accs, wait, signal, barrier in runs:
            if barrier == 0:
                fast.barrier()
                slow.barrier()
            waits = (wait,) if wait < 4 and slow.tokens.get(wait) else ()
            clock, race = fast.start(q, index, waits, accs)
            want_clock, racing = slow.start(q, index, waits, accs)
            assert clock.tolist() == want_clock.tolist()
            assert (race is not None) == bool(racing), (index, race, racing)
            if race is not None:
                assert race[1] == index and race[0] in racing
            signals = (signal,) if signal < 4 else ()
            fast.end(clock, signals)
            slow.end(clock, signals)


BUCKETS = (st.sampled_from((1, 3, 7)), st.sampled_from((6, 10)), st.sampled_from((2, 4, 6, None)))


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40), *BUCKETS)
def test_detector_equals_brute_force(steps, prune_every: int, shift: int, col_shift) -> None:
    _check_against_brute_force([(i, *step) for i, step in enumerate(steps)], prune_every, shift,
                               col_shift)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), accesses()), min_size=5, max_size=5), accesses(),
       st.lists(REPEAT, min_size=1, max_size=60), st.lists(REPEAT, min_size=1, max_size=10),
       *BUCKETS)
def test_detector_equals_brute_force_on_repeated_instructions(program, late, steps, tail,
                                                              prune_every: int, shift: int,
                                                              col_shift) -> None:
    """A loop runs the same few instructions again and again while one queue has not
    started (instruction 5, on queue 3, comes only in the tail): the archive keeps what is
    pruned meanwhile, only each instruction's latest instance of an access, cut at
    different times in different buckets, and a check must still find every race (naming
    the instruction)."""
    program = [*program, (3, late)]
    runs = [(i % 5, *program[i % 5], wait, signal, barrier) for i, wait, signal, barrier in steps]
    runs += [(i, *program[i], wait, signal, barrier) for i, wait, signal, barrier in tail]
    _check_against_brute_force(runs, prune_every, shift, col_shift)


@pytest.mark.parametrize("col_shift", [2, 3, 6])
def test_two_tiles_of_one_pitch_race_exactly_when_they_share_a_byte(col_shift: int) -> None:
    """Every placement of a second tile against a first of the same pitch (either one
    starting in a later column bucket, or a later address bucket, than the other)."""
    pitch = 64
    first = Access("dram", 0, 2 * pitch + 20, 3, 12, pitch, True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(races, "_SHIFT", {"sp": 7, "acc": 7, "dram": 7, "gb": 7})
        mp.setattr(races, "_col_shift", lambda p: col_shift)
        for row in range(6):
            for col in range(pitch - 8):
                for write in (False, True):
                    second = Access("dram", 1, row * pitch + col, 2, 8, pitch, write)
                    det = RaceDetector(2)
                    clock, race = det.start(0, 0, (), [first])
                    det.end(clock, ())
                    _, race = det.start(1, 1, (), [second])
                    assert (race is not None) == bool(_bytes(first) & _bytes(second)), (row, col)


def test_a_loop_archived_while_a_queue_idles_still_races_with_its_latest_instance() -> None:
    """Queue 0 runs two instructions again and again while queue 1 has not started: each
    pruning moves their entries to the archive, whose lists keep only each instruction's
    latest instance, cut at different times where the two share a bucket. Queue 1 then
    waits for the token of instruction A's first instance (so it knows only that one) and
    reads A's bytes: A's later instances race with it, and the check must find one."""
    a = Access("dram", 0, 72, 4, 40, 64, True)  # rows 1-4 of a 64-byte pitch, columns 8-48
    b = Access("dram", 0, 264, 2, 8, 64, True)  # rows 4-5, columns 8-16: another bucket's list
    read = Access("dram", 0, 72, 2, 40, 64, False)  # rows 1-2 of A: not B's
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(races, "_PRUNE_EVERY", 1)
        mp.setattr(races, "_ARCHIVE_MIN", 1)
        mp.setattr(races, "_SHIFT", {"sp": 7, "acc": 7, "dram": 7, "gb": 7})
        mp.setattr(races, "_col_shift", lambda pitch: 4)
        det = RaceDetector(2)
        clock, race = det.start(0, "A", (), [a])
        det.end(clock, (1,))  # token 1: after A's first instance
        for _ in range(6):
            for name, acc in (("A", a), ("B", b), ("B", b)):
                clock, race = det.start(0, name, (), [acc])
                assert race is None
                det.end(clock, ())
        assert det.tile_archive and not any(det.tiles.values())  # all pruned, kept for queue 1
        clock, race = det.start(1, "read", (1,), [read])
        assert clock.tolist() == [1, 1] and race == ("A", "read")
