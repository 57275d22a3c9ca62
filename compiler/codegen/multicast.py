"""Operand multicast layouts: which output tiles each cluster takes so that clusters of one
fabric row (or column) read the same operand tiles in the same order, one of them loads
each and ``bcast``s it to the others (docs/timing.md section 7: a multicast crosses each
link of its tree once, so the operand crosses the memory port once instead of once per
cluster).

A kernel emits such tiles *in step*: for every step, first each sender's load and
``bcast`` (:meth:`KernelContext.bcast` records the write in every receiver's stream), then
every cluster's use of the operands, so each stream sees the multicast where it lands among
its own accesses (``schedule``). A layout is only offered where every cluster gets as many
tiles (or, asked for a *ragged* one, where a segment's clusters take turns over a count of
items that does not divide among them: the last step of each ``a`` item leaves some
receivers idle, ``None`` in their tile lists), the fabric has the multicast groups left and
the shared tokens suffice, and only in
place of the default placement (an explicit one, such as the NoC-aware placement of the
``place`` pass, is kept); ``lower`` compiles a kernel again without multicast if its
tokens still run out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import schedule
from .context import MCAST_GROUPS, KernelContext
from .placement import row_spread


@dataclass
class Layout:
    """Tiles per cluster (tuples of item indices, ``None`` for a step a cluster sits out),
    and per shared operand each cluster's sender, each sender's group id and receivers.
    A sender never sits out a step in which one of its receivers has a tile."""

    tiles: dict[int, list[tuple[int, int] | None]]
    sender: dict[str, dict[int, int]] = field(default_factory=dict)
    group: dict[str, dict[int, int]] = field(default_factory=dict)
    receivers: dict[str, dict[int, list[int]]] = field(default_factory=dict)

    def sends(self, operand: str, cl: int) -> bool:
        """Whether ``cl`` loads ``operand`` (its sender, or not shared at all)."""
        senders = self.sender.get(operand)
        return senders is None or senders[cl] == cl

    def shared(self, operand: str) -> bool:
        return operand in self.sender

    @property
    def order(self) -> list[int]:
        return sorted(self.tiles)

    @property
    def steps(self) -> int:
        return max(len(t) for t in self.tiles.values())


def _grid(ctx: KernelContext) -> tuple[int, int]:
    gx, gy = (int(v) for v in ctx.target.fabric.grid)
    return gx, gy


def _groups(ctx: KernelContext, layout: Layout, operand: str,
            members: list[list[int]], rects: list[tuple[int, int, int, int]],
            senders: list[int]) -> None:
    layout.sender[operand], layout.group[operand], layout.receivers[operand] = {}, {}, {}
    for cls, rect, s in zip(members, rects, senders):
        grp = ctx.mcast_group(*rect)
        assert grp is not None  # checked by _fits
        layout.group[operand][s] = grp
        layout.receivers[operand][s] = [c for c in cls if c != s]
        for c in cls:
            layout.sender[operand][c] = s


def _fits(ctx: KernelContext, rects: list[tuple[int, int, int, int]], pairs: int) -> bool:
    """Whether the groups' ids and the shared tokens of ``pairs`` (sender, receiver) pairs
    (one token each way) are available."""
    if not ctx.multicast or ctx.placement is not row_spread:
        return False  # an explicit placement (e.g. the NoC-aware one of `place`) is kept
    new = len({r for r in rects if r not in ctx.mcast_groups})
    return new <= MCAST_GROUPS - len(ctx.mcast_groups) and 2 * pairs <= schedule.shared_tokens_free()


def _share_first_split(gx: int, gy: int, n_a: int, n_b: int, ragged: bool = False
                       ) -> tuple[int, list[list[int]], list[list[int]]] | None:
    """(segment width, ``a`` items and ``b`` items per (row, segment) group) of
    :func:`rows_share_first`, or None where the grid does not split that way (``ragged``:
    a group's ``b`` items need not divide among its segment's clusters)."""
    if gx < 2:
        return None
    seg = gx
    if n_b < gx and gx % n_b == 0 and n_b > 1:
        seg = n_b  # segments of n_b clusters, each a group of its own
    groups = gy * (gx // seg)  # (row, segment) pairs, in row-major order
    if n_a % groups == 0:
        a_of = [list(range(q, n_a, groups)) for q in range(groups)]
        b_of = [list(range(n_b)) for _ in range(groups)]
    elif groups % n_a == 0 and seg == gx:
        share = groups // n_a  # rows per a item: each takes a part of its b items
        a_of = [[q // share] for q in range(groups)]
        b_of = [list(range(q % share, n_b, share)) for q in range(groups)]
    else:
        return None
    if any(not b or len(b) % seg and not ragged for b in b_of):
        return None
    if ragged:  # idle turns must stay few: below 3/4 busy, the clusters' own tiles win
        turns = max(len(a) * -(-len(b) // seg) for a, b in zip(a_of, b_of))
        if 4 * n_a * n_b < 3 * turns * gx * gy:
            return None
    return seg, a_of, b_of


def _share_first_rects(gx: int, gy: int, seg: int) -> list[tuple[int, int, int, int]]:
    return [(sg * seg, y, sg * seg + seg - 1, y) for y in range(gy) for sg in range(gx // seg)]


def fits_rows_share_first(ctx: KernelContext, n_a: int, n_b: int, ragged: bool = False) -> bool:
    """Whether :func:`rows_share_first` would lay out an ``n_a x n_b`` grid."""
    gx, gy = _grid(ctx)
    split = _share_first_split(gx, gy, n_a, n_b, ragged)
    if split is None:
        return False
    seg = split[0]
    rects = _share_first_rects(gx, gy, seg)
    return _fits(ctx, rects, (seg - 1) * len(rects))


def rows_share_first(ctx: KernelContext, n_a: int, n_b: int, operand: str = "a",
                     ragged: bool = False) -> Layout | None:
    """Tiles ``(a, b)`` of an ``n_a x n_b`` grid whose ``a`` operand (named ``operand`` in
    the layout) is shared along fabric
    rows: the ``a`` items go to rows (several per row, or one item shared by several rows,
    which then split its ``b`` items), the ``b`` items to the clusters of a row. With fewer
    ``b`` items than columns, each row is cut into segments of ``n_b`` clusters that take
    different ``a`` items. The cluster of a segment nearest its memory port sends.
    ``ragged``: a segment's clusters deal its ``b`` items out in turns, so with a count that
    does not divide (15 column blocks on 4 clusters) the last turn of each ``a`` item leaves
    the clusters past the remainder idle (``None`` steps) while the others finish; the
    sender takes the first item of every turn, so it never idles while a receiver works."""
    gx, gy = _grid(ctx)
    split = _share_first_split(gx, gy, n_a, n_b, ragged)
    if split is None:
        return None
    seg, a_of, b_of = split
    rects = _share_first_rects(gx, gy, seg)
    if not _fits(ctx, rects, (seg - 1) * len(rects)):
        return None
    tiles: dict[int, list[tuple[int, int] | None]] = {}
    members = []
    for q, (x0, y, x1, _) in enumerate(rects):
        members.append([y * gx + x for x in range(x0, x1 + 1)])
        bs = b_of[q]
        for i, x in enumerate(range(x0, x1 + 1)):
            tiles[y * gx + x] = [(a, bs[t + i]) if t + i < len(bs) else None
                                 for a in a_of[q] for t in range(0, len(bs), seg)]
    steps = max(len(v) for v in tiles.values())
    for v in tiles.values():  # groups with fewer turns sit out the last steps
        v.extend([None] * (steps - len(v)))
    layout = Layout(tiles)
    _groups(ctx, layout, operand, members, rects, [m[0] for m in members])
    return layout


def _row_and_column_rects(gx: int, gy: int) -> tuple[list, list]:
    return [(0, y, gx - 1, y) for y in range(gy)], [(x, 0, x, gy - 1) for x in range(gx)]


def fits_rows_and_columns(ctx: KernelContext, n_a: int, n_b: int) -> bool:
    """Whether :func:`rows_and_columns` would lay out an ``n_a x n_b`` grid (for plans that
    weigh the multicast variant before choosing their tiles)."""
    gx, gy = _grid(ctx)
    if gx < 2 or gy < 2 or n_a % gy or n_b % gx:
        return False
    rows, cols = _row_and_column_rects(gx, gy)
    return _fits(ctx, rows + cols, (gx - 1) * gy + (gy - 1) * gx)


def rows_and_columns(ctx: KernelContext, n_a: int, n_b: int) -> Layout | None:
    """Tiles ``(a, b)`` of an ``n_a x n_b`` grid, block-cyclic over the fabric: cluster
    (x, y) takes ``a = y, y + Y, ...`` and ``b = x, x + X, ...``, so the ``a`` operand is
    shared along each row (sent from x = 0) and the ``b`` operand along each column (sent
    from the row ``x mod Y``: the columns' loads enter through different memory ports)."""
    if not fits_rows_and_columns(ctx, n_a, n_b):
        return None
    gx, gy = _grid(ctx)
    rows, cols = _row_and_column_rects(gx, gy)
    tiles = {y * gx + x: [(a, b) for a in range(y, n_a, gy) for b in range(x, n_b, gx)]
             for y in range(gy) for x in range(gx)}
    layout = Layout(tiles)
    _groups(ctx, layout, "a", [[y * gx + x for x in range(gx)] for y in range(gy)], rows,
            [y * gx for y in range(gy)])
    _groups(ctx, layout, "b", [[y * gx + x for y in range(gy)] for x in range(gx)], cols,
            [(x % gy) * gx + x for x in range(gx)])
    return layout
