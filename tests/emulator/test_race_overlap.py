"""The race detector's byte-overlap test of two accesses (rows of bytes at a pitch) against
the sets of bytes they touch: the closed forms for one pitch and for a run against a
strided tile, and the interval lists otherwise."""

from __future__ import annotations

from acf.emulator.races import _overlap
from acf.isa.semantics import Access
from hypothesis import given, settings
from hypothesis import strategies as st


def _bytes(a: Access) -> set[int]:
    return {a.addr + r * a.pitch + i for r in range(a.rows) for i in range(a.rowbytes)}


ACCESS = st.builds(lambda addr, rows, rowbytes, pitch: Access("dram", 0, addr, rows, rowbytes,
                                                              pitch, True),
                   st.integers(0, 300), st.integers(1, 6), st.integers(0, 40), st.integers(1, 60))


@settings(max_examples=3000, deadline=None)
@given(ACCESS, ACCESS, st.booleans())
def test_overlap_equals_the_bytes_touched(a: Access, b: Access, same_pitch: bool) -> None:
    if same_pitch:
        b = b._replace(pitch=a.pitch)
    assert _overlap(a, b) == bool(_bytes(a) & _bytes(b))
    assert _overlap(b, a) == _overlap(a, b)
