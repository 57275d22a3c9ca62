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


PITCHES = (48, 64, 100)


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
                         draw(st.integers(1, pitch)), pitch, write)
        else:
            acc = Access(space, cl, draw(st.integers(0, 1100)), draw(st.integers(1, 3)),
                         draw(st.integers(0, 80)), draw(st.integers(1, 120)), write)
        out.append(acc)
    return out


STEP = st.tuples(st.integers(0, 3), accesses(), st.integers(0, 9), st.integers(0, 9),
                 st.integers(0, 30))


@settings(max_examples=400, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=40), st.sampled_from((1, 3, 7)), st.sampled_from((6, 10)),
       st.sampled_from((2, 4, 6)))
def test_detector_equals_brute_force(steps, prune_every: int, shift: int, col_shift: int) -> None:
    nq = 4
    with pytest.MonkeyPatch.context() as mp:
        # prune often (idle queues send entries to the archive) and use small address and
        # column buckets, so accesses span several and the history is cut up as on big
        # programs
        mp.setattr(races, "_PRUNE_EVERY", prune_every)
        mp.setattr(races, "_SHIFT", {"sp": shift, "acc": shift, "dram": shift, "gb": shift})
        mp.setattr(races, "_col_shift", lambda pitch: col_shift)
        mp.setattr(races, "_ARCHIVE_MIN", 2)
        fast, slow = RaceDetector(nq), BruteForce(nq)
        for index, (q, accs, wait, signal, barrier) in enumerate(steps):
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
