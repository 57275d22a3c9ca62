"""Race detection with vector clocks (happens-before, not timing).

Happens-before edges: program order within a queue, a token's k-th signal before its k-th
consumption (FIFO per token), a ``send`` before its matching ``recv``, and a ``barrier``
(everything dispatched before it, before everything after). Two accesses to overlapping
bytes of one buffer, at least one a write, from different queues and unordered by these
edges are a race. History entries every active queue has already passed are pruned, so the
check stays cheap on long programs; a queue that was idle at a pruning (its first access may
come later, knowing none of them) checks the pruned entries too until its clock passes them.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable

import numpy as np
from acf.emulator.traps import Where
from acf.isa.semantics import Access

#: accesses recorded between prunings: a pruning walks every bucket of the history (a few
#: ms on a large program), a check bisects past what its clock already orders, so rare
#: prunings cost less than the longer lists they leave (ResNet-18 b16 step: 24 s -> 20 s
#: at 4096 instead of 256)
_PRUNE_EVERY = 4096
# History is bucketed by address region (64 KiB on chip, 1 MiB in DRAM and the global
# buffer: a ResNet-18 b32 step emulated in 17.1 s, against 19.5 s at 16 KiB and 256 KiB,
# where an access spanned four buckets on average) and, inside a bucket, by queue in epoch
# order: a check skips every entry its clock already orders in one bisection, and looks
# only at nearby addresses. A queue's writes are also listed on their own: a read need
# only look at those. Tiles (strided rows that do not wrap past a row of the grid their
# pitch draws over memory) are bucketed further by pitch and column: the tiles of one
# tensor that other clusters store between two barriers share address regions (a tile's
# rows span most of a tensor's rows) but not columns, and comparing each store with all
# of them made the check quadratic (a ResNet-18 step: 460 candidates per DRAM store, 19 %
# of the emulation time).
_SHIFT = {"sp": 16, "acc": 16, "gb": 20, "dram": 20}


def _col_shift(pitch: int) -> int:
    """log2 of the column buckets' width for tiles of one pitch: 16 to 32 of them per row
    of the grid (64 bytes at least)."""
    return max(6, pitch.bit_length() - 5)


#: an archive list is first cut to the latest instance of each access past this length
_ARCHIVE_MIN = 32


def _epoch(entry: tuple) -> int:
    return entry[4]


def _latest_instances(entries: list[tuple]) -> list[tuple]:
    """The entries less every one that a later entry repeats (same access by the same
    instruction), in their order (epoch order)."""
    last = {(e[2], e[5]): i for i, e in enumerate(entries)}
    return [entries[i] for i in sorted(last.values())]


def _contiguous(a: Access) -> bool:
    return a.rows <= 1 or a.pitch <= a.rowbytes


def _overlap(a: Access, b: Access) -> bool:
    if a.end <= b.addr or b.end <= a.addr or a.rowbytes == 0 or b.rowbytes == 0:
        return False
    return _meets(a, b)


def _meets(a: Access, b: Access) -> bool:
    """:func:`_overlap` for accesses whose byte ranges ``[addr, end)`` are known to
    intersect and whose rows are not empty (the detector's candidates)."""
    _, _, aaddr, arows, arb, ap, _ = a
    _, _, baddr, brows, brb, bp, _ = b
    if ap == bp and arows > 1 and brows > 1 and ap > arb and bp > brb:
        # tiles of one tensor, the common case: two rectangles on the grid the pitch draws
        # (each one piece unless its rows wrap past a grid row)
        ra, ca = divmod(aaddr, ap)
        rb, cb = divmod(baddr, bp)
        if ca + arb <= ap and cb + brb <= bp:
            return ra < rb + brows and rb < ra + arows and ca < cb + brb and cb < ca + arb
    ca, cb = _contiguous(a), _contiguous(b)
    if ca and cb:
        return True
    # the common cases in closed form (tiles of one tensor: strided rows of one pitch, or a
    # strided tile against a contiguous run), else interval lists
    if ca or cb:
        run, tile = (a, b) if ca else (b, a)
        return _rows_hit(tile, run.addr, run.end)
    if a.pitch == b.pitch:
        return any(r0 < s1 and s0 < r1 and c0 < d1 and d0 < c1
                   for r0, r1, c0, c1 in _pieces(a) for s0, s1, d0, d1 in _pieces(b))
    sa, ea = _intervals(a)
    sb, eb = _intervals(b)
    i = np.searchsorted(eb, sa, side="right")
    ok = i < sb.size
    return bool(np.any(sb[i[ok]] < ea[ok]))


def _rows_hit(t: Access, lo: int, hi: int) -> bool:
    """Whether some row of the strided ``t`` meets the bytes ``[lo, hi)``."""
    # row r spans [addr + r*pitch, + rowbytes): it meets [lo, hi) for first <= r <= last
    first = max(0, (lo - t.addr - t.rowbytes) // t.pitch + 1)
    last = min(t.rows - 1, (hi - 1 - t.addr) // t.pitch)
    return first <= last


def _pieces(a: Access) -> list[tuple[int, int, int, int]]:
    """A strided access as (first row, end row, first column, end column) rectangles of the
    grid its pitch draws over memory (one, or two where its rows wrap past a grid row)."""
    row, col = divmod(a.addr, a.pitch)
    if col + a.rowbytes <= a.pitch:
        return [(row, row + a.rows, col, col + a.rowbytes)]
    return [(row, row + a.rows, col, a.pitch), (row + 1, row + a.rows + 1, 0, col + a.rowbytes - a.pitch)]


def _intervals(a: Access) -> tuple[np.ndarray, np.ndarray]:
    if _contiguous(a):
        return np.array([a.addr]), np.array([a.end])
    s = a.addr + a.pitch * np.arange(a.rows, dtype=np.int64)
    return s, s + a.rowbytes


class RaceDetector:
    """Vector clocks per queue; ``start`` checks an instruction's accesses."""

    def __init__(self, nqueues: int, where_of: Callable[[int], Where] | None = None):
        self.nq = nqueues
        # history entries hold instruction indices; a race is reported by where_of(index)
        self.where_of = where_of
        self.Q = np.zeros((nqueues, nqueues), np.int64)
        self.active = np.zeros(nqueues, bool)
        self.tokens: dict[int, deque] = {}
        self.sends: dict[tuple, np.ndarray] = {}
        # (space, cluster) -> bucket -> queue -> (every entry, the writes among them), each
        # [(lo, hi, access, queue, epoch, where)] in epoch order
        self.history: dict[tuple[str, int], dict[int, dict[int, tuple[list, list]]]] = {}
        # tiles: (space, cluster) -> bucket -> pitch -> column bucket -> queue -> the same
        # lists, each entry followed by its rectangle (pitch, row0, row1, col0, col1)
        self.tiles: dict[tuple[str, int], dict[int, dict[int, dict[int, dict]]]] = {}
        # entries pruned while some queue was idle (same layouts as history and tiles), and
        # the clock every active queue had reached then: a queue behind it must still check them
        self.archive: dict[tuple[str, int], dict[int, dict[int, tuple[list, list]]]] = {}
        self.tile_archive: dict[tuple[str, int], dict[int, dict[int, dict[int, dict]]]] = {}
        self.archived = np.zeros(nqueues, np.int64)
        # (space, cluster) -> queue -> the latest epoch of that queue's entries there: a
        # check looks only at the queues whose entries its clock may not order (most
        # accesses find one to three of them, or none)
        self.latest: dict[tuple[str, int], dict[int, int]] = {}
        # archive list (by its path) -> its length after it was last cut to latest instances
        self._archive_cut: dict[tuple, int] = {}
        self._added = 0

    def start(self, q: int, where: Where | int, waits: tuple[int, ...], accesses: list[Access],
              send_key: tuple | None = None) -> tuple[np.ndarray, tuple[Where, Where] | None]:
        """Clock of an instruction starting on queue q; the first race found, if any.
        ``where`` names the instruction: a Where, or its index when ``where_of`` is set."""
        clock = self.Q[q].copy()
        if waits:
            tokens = self.tokens
            for t in waits:
                fifo = tokens.get(t)
                if fifo:
                    np.maximum(clock, fifo.popleft(), out=clock)
        if send_key is not None and send_key in self.sends:
            np.maximum(clock, self.sends.pop(send_key), out=clock)
        epoch = clock.item(q) + 1
        clock[q] = epoch
        self.Q[q] = clock
        self.active[q] = True
        race = None
        history, tiles, item = self.history, self.tiles, clock.item
        behind = (self.archive or self.tile_archive) and (clock < self.archived).any()
        for acc in accesses:
            space, cl, lo, rows, rowbytes, pitch, write = acc
            if rows <= 0 or rowbytes <= 0:  # touches no byte (rows of nothing reach no row)
                continue
            hi = lo + (rows - 1) * pitch + rowbytes  # Access.end
            grid: tuple = ()
            if rows > 1 and pitch > rowbytes:
                r0, c0 = divmod(lo, pitch)
                if c0 + rowbytes <= pitch:
                    grid = (pitch, r0, r0 + rows, c0, c0 + rowbytes)
            # DRAM and the global buffer are one memory for every cluster: an access's
            # cluster names its issuer, not its memory
            hkey = (space, cl if space in ("sp", "acc") else -1)
            sh = _SHIFT[space]
            k0, k1 = lo >> sh, ((hi - 1) >> sh) + 1
            latest = self.latest.get(hkey)
            if latest is None:
                latest = self.latest[hkey] = {}
            if race is None:
                unknown = [(pq, item(pq)) for pq, ep in latest.items() if pq != q and ep > item(pq)]
                if unknown:
                    race = self._check(history.get(hkey), tiles.get(hkey), k0, k1, sh, acc, lo,
                                       hi, grid, unknown, clock, where)
                    if race is None and behind:
                        race = self._check(self.archive.get(hkey), self.tile_archive.get(hkey),
                                           k0, k1, sh, acc, lo, hi, grid, unknown, clock, where)
            latest[q] = epoch
            entry = (lo, hi, acc, q, epoch, where) + grid
            if grid:
                buckets = tiles.get(hkey)
                if buckets is None:
                    buckets = tiles[hkey] = {}
                cs = _col_shift(pitch)
                cols = range(grid[3] >> cs, ((grid[4] - 1) >> cs) + 1)
                for key in range(k0, k1):
                    by_pitch = buckets.get(key)
                    if by_pitch is None:
                        by_pitch = buckets[key] = {}
                    by_col = by_pitch.get(pitch)
                    if by_col is None:
                        by_col = by_pitch[pitch] = {}
                    for cb in cols:
                        per_q = by_col.get(cb)
                        if per_q is None:
                            by_col[cb] = {q: ([entry], [entry] if write else [])}
                        else:
                            _append(per_q, q, entry, write)
            else:
                buckets = history.get(hkey)
                if buckets is None:
                    buckets = history[hkey] = {}
                for key in range(k0, k1):
                    per_q = buckets.get(key)
                    if per_q is None:
                        buckets[key] = {q: ([entry], [entry] if write else [])}
                    else:
                        _append(per_q, q, entry, write)
            self._added += 1
        if self._added >= _PRUNE_EVERY:
            self._prune()
        if race is not None and self.where_of is not None:
            race = tuple(self.where_of(w) if isinstance(w, int) else w for w in race)
        return clock, race

    @staticmethod
    def _check(buckets: dict | None, tile_buckets: dict | None, k0: int, k1: int, sh: int,
               acc: Access, lo: int, hi: int, grid: tuple, unknown: list[tuple[int, int]],
               clock: np.ndarray, where: Where | int) -> tuple | None:
        """The first earlier entry, of the ``unknown`` queues (each with what ``clock``
        knows of it), that ``clock`` does not order and whose bytes meet ``acc``'s (a read
        looks only at writes)."""
        which = 0 if acc.write else 1  # a read conflicts only with writes
        # An entry spanning several buckets is looked at in the first one the two share
        # (where an archive list was cut to latest instances, a later instance of the
        # entry stands in for it there: the same bytes, a later epoch, the same instruction)
        several = k1 - k0 > 1
        P = grid[0] if grid else 0
        for key in range(k0, k1):
            per_q = buckets.get(key) if buckets else None
            if per_q:
                for entry in _unordered(per_q, unknown, which):
                    plo = entry[0]
                    if plo >= hi or lo >= entry[1] or several and key != k0 and plo >> sh < key:
                        continue
                    if _meets(entry[2], acc):
                        return (entry[5], where)
            by_pitch = tile_buckets.get(key) if tile_buckets else None
            if not by_pitch:
                continue
            for pitch, by_col in by_pitch.items():
                cs = _col_shift(pitch)
                if pitch == P:  # tiles of one pitch: rectangles, in the columns they share
                    _, r0, r1, c0, c1 = grid
                    b0 = c0 >> cs
                    for cb in range(b0, ((c1 - 1) >> cs) + 1):
                        per_q = by_col.get(cb)
                        if not per_q:
                            continue
                        for entry in _unordered(per_q, unknown, which):
                            if (several and key != k0 and entry[0] >> sh < key
                                    or cb != b0 and entry[9] >> cs < cb):
                                continue
                            if entry[7] < r1 and r0 < entry[8] and entry[9] < c1 and c0 < entry[10]:
                                return (entry[5], where)
                    continue
                for cb, per_q in by_col.items():  # each entry in its first column bucket
                    for entry in _unordered(per_q, unknown, which):
                        plo = entry[0]
                        if (plo >= hi or lo >= entry[1] or entry[9] >> cs != cb
                                or several and key != k0 and plo >> sh < key):
                            continue
                        if _meets(entry[2], acc):
                            return (entry[5], where)
        return None

    def end(self, clock: np.ndarray, signals: tuple[int, ...], send_key: tuple | None = None) -> None:
        for t in signals:
            self.tokens.setdefault(t, deque()).append(clock)
        if send_key is not None:
            self.sends[send_key] = clock

    def barrier(self) -> None:
        """Every queue's clock joins every other's: all before happens-before all after.

        Every queue then knows every access so far (an entry's epoch is at most the column
        maximum), so no later check could report one: the history is dropped."""
        self.Q[:] = self.Q.max(axis=0)
        for tree in (self.history, self.tiles, self.archive, self.tile_archive, self.latest):
            tree.clear()
        self._archive_cut.clear()

    def _prune(self) -> None:
        """Drop the entries every active queue's clock has passed. While some queue has
        started nothing yet (its clock need not know them) they move to the archive
        instead, which a queue whose clock is still behind checks."""
        self._added = 0
        floor_arr = self.Q[self.active].min(axis=0) if self.active.any() else np.zeros(self.nq, np.int64)
        floor = floor_arr.tolist()
        keep = not self.active.all()
        if keep:
            np.maximum(self.archived, floor_arr, out=self.archived)
        for hkey, buckets in self.history.items():
            for key in list(buckets):
                if self._prune_lists(buckets[key], ("history", hkey, key), floor, keep):
                    del buckets[key]
        for hkey, buckets in self.tiles.items():
            for key in list(buckets):
                by_pitch = buckets[key]
                for pitch in list(by_pitch):
                    by_col = by_pitch[pitch]
                    for cb in list(by_col):
                        if self._prune_lists(by_col[cb], ("tiles", hkey, key, pitch, cb), floor, keep):
                            del by_col[cb]
                    if not by_col:
                        del by_pitch[pitch]
                if not by_pitch:
                    del buckets[key]

    def _prune_lists(self, per_q: dict, path: tuple, floor: list[int], keep: bool) -> bool:
        """Prune one bucket's lists (archiving what is cut when ``keep``); True if it is empty."""
        for pq in list(per_q):
            every, writes = per_q[pq]
            f = floor[pq]
            if every[0][4] > f:
                continue
            cut = len(every) if every[-1][4] <= f else bisect_right(every, f, key=_epoch)
            wcut = bisect_right(writes, f, key=_epoch) if writes else 0
            if keep:
                self._to_archive(path, pq, every[:cut], writes[:wcut])
            if cut == len(every):
                del per_q[pq]
            else:
                per_q[pq] = (every[cut:], writes[wcut:])
        return not per_q

    def _to_archive(self, path: tuple, pq: int, every: list, writes: list) -> None:
        node = self.archive if path[0] == "history" else self.tile_archive
        for key in path[1:]:
            node = node.setdefault(key, {})
        per_q = node
        lists = per_q.get(pq)
        if lists is None:
            per_q[pq] = (list(every), list(writes))
            return
        # later prunings cut later epochs: the lists stay in epoch order
        lists[0].extend(every)
        lists[1].extend(writes)
        # While a queue never starts, nothing leaves the archive: a loop would grow it with
        # every iteration. Of one instruction's repeated access only its latest instance
        # matters (a clock that does not order an earlier one does not order the latest),
        # so the lists keep that one once they have doubled since they were last cut. New
        # lists replace the old ones, which stay as they were (the debugger's checkpoints
        # hold prefixes of them).
        where = path + (pq,)
        if len(lists[0]) > 2 * self._archive_cut.get(where, _ARCHIVE_MIN):
            per_q[pq] = cut = (_latest_instances(lists[0]), _latest_instances(lists[1]))
            self._archive_cut[where] = len(cut[0])


def _unordered(per_q: dict, unknown: list[tuple[int, int]], which: int) -> list[tuple]:
    """A bucket's entries (``which``: 0 every one, 1 the writes) of the ``unknown`` queues
    that their clock, what it knows of each, does not order."""
    out: list[tuple] = []
    for pq, known in unknown:
        lists = per_q.get(pq)
        if lists is not None:
            lst = lists[which]
            if lst and lst[-1][4] > known:
                out += lst[bisect_right(lst, known, key=_epoch):]
    return out


def _append(per_q: dict, q: int, entry: tuple, write: bool) -> None:
    lists = per_q.get(q)
    if lists is None:
        per_q[q] = ([entry], [entry] if write else [])
    else:
        lists[0].append(entry)
        if write:
            lists[1].append(entry)
