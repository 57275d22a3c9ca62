"""The ``tiled`` level: graph ops carrying lowering decisions as discardable attributes.

No new ops: ``tile``, ``place`` and ``schedule`` annotate the graph ops that produce code
with ``acf_*`` attributes (the verifier lets ``acf_`` attributes through on every op), so
the level prints and parses with the graph dialect's own syntax, and ``lower-to-acf``
consumes them::

    %y = graph.linear %x, %w {acf_tile = [52, 52, 52], acf_place = "round-robin", acf_sync = "none"} : ...
    %z = graph.relu %y {acf_tile = [52, 52, 52], acf_place = "round-robin", acf_sync = "barrier"} : ...

``acf_tile = [m, n, k]``: the GEMM tile (vector kernels use tiles of at most ``m * n``
elements); ``acf_place``: the policy that maps the op's output tiles to clusters;
``acf_sync``: how the op is ordered after the previous op (``barrier``: every earlier
instruction ends first; ``none``: nothing precedes it). Inside an op, clusters are
synchronized by tokens only.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..codegen.errors import error_at
from ..codegen.lower import NO_CODE
from ..dialect import PLACE_POLICIES, SYNC_MODES
from ..ir import Attribute, FuncOp, Operation

TILE = "acf_tile"
PLACE = "acf_place"
SYNC = "acf_sync"
POLICIES = PLACE_POLICIES
SYNCS = SYNC_MODES
PRODUCER = {TILE: "tile", PLACE: "place", SYNC: "schedule"}


def is_lowered(func: FuncOp) -> bool:
    """Whether ``func`` is already an acf-level program (``lower-to-acf`` ran on it)."""
    return any(op.name.startswith("acf.") for op in func.body.ops)


def code_ops(func: FuncOp) -> Iterator[tuple[int, Operation]]:
    """(op id, op) of every op that lowers to instructions; the id is the op's index in the
    function body, as codegen numbers ops for ``.loc`` and scratch buffers. None in a
    function already lowered to the acf level: the tiled passes leave it as it is."""
    if is_lowered(func):
        return
    for op_id, op in enumerate(func.body.ops):
        if op.name not in NO_CODE:
            yield op_id, op


def _get(op: Operation, key: str) -> Attribute:
    if key not in op.attributes:
        raise error_at(op, f"has no '{key}' attribute; run '{PRODUCER[key]}' before lowering")
    return op.attributes[key]


def tile_of(op: Operation) -> tuple[int, int, int]:
    """``acf_tile = [m, n, k]`` (positive ints), or a located error."""
    value = _get(op, TILE)
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise error_at(op, f"'{TILE}' must be three positive integers [m, n, k]")
    return value[0], value[1], value[2]


def _choice(op: Operation, key: str, choices: tuple[str, ...]) -> str:
    value = _get(op, key)
    if value not in choices:
        raise error_at(op, f"'{key}' must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


def place_of(op: Operation) -> str:
    return _choice(op, PLACE, POLICIES)


def sync_of(op: Operation) -> str:
    return _choice(op, SYNC, SYNCS)
