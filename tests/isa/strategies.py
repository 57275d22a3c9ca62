"""Hypothesis strategies that draw valid instructions for any ISA row."""

from __future__ import annotations

from hypothesis import strategies as st

from acf.isa import spec
from acf.isa.fields import FORMATS, FmtSpec, Kind, MemRef
from acf.isa.program import Instruction, make_op
from acf.isa.spec import HEADER_FIELDS, Op


def value_for(kind: Kind) -> st.SearchStrategy:
    k = kind.name
    if k in ("u", "s", "cl", "tok", "reg", "rel"):
        lo, hi = kind.int_range()
        return st.integers(lo, hi)
    if k == "enum":
        return st.sampled_from(kind.choices)
    if k == "f32":
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
    if k == "mem":
        obits = kind.bits - 6
        return st.builds(MemRef, st.sampled_from(kind.spaces), st.integers(0, (1 << obits) - 1), st.integers(0, 15))
    if k == "fmt":
        simple = st.sampled_from([FmtSpec(f) for f in FORMATS if f not in ("nm", "bcsr")])
        nm = st.integers(1, 255).flatmap(lambda m: st.integers(1, m).map(lambda n: FmtSpec("nm", n, m)))
        bcsr = st.builds(lambda a, b: FmtSpec("bcsr", a, b), st.integers(1, 255), st.integers(1, 255))
        return st.one_of(simple, nm, bcsr)
    raise AssertionError(k)


@st.composite
def instruction_of(draw: st.DrawFn, op: Op) -> Instruction:
    args = {f.name: draw(value_for(f.kind)) for f in op.fields}
    if op.queued:
        for h in HEADER_FIELDS:
            args[h] = draw(st.integers(0, 255))
    return make_op(op, args)


def any_instruction() -> st.SearchStrategy[Instruction]:
    return st.sampled_from(spec.OPS).flatmap(instruction_of)
