"""The ACF instruction set, defined once.

Each :class:`Op` row names the mnemonic, opcode, operand fields (kind and width), the unit
whose queue executes it, its timing class, the energy events it causes and a one-line doc.
The encoder, decoder, assembler, disassembler, emulator dispatch and ``docs/isa.md`` are
all derived from :data:`OPS`; numerical semantics live beside it in
:mod:`acf.isa.semantics`, one function per row.

Instructions are 256-bit words. Bits 0-7 hold the opcode. *Queued* instructions (every
unit except the dispatcher, ``ctl``) then carry a common header: the cluster ``cl`` (bits
8-15), two dependency tokens to wait on and two to signal (bits 16-47); their own operands
follow from bit 48. Dispatcher instructions pack their operands from bit 8.

Tokens are counting semaphores in two scopes (:func:`token_counter`): ``t1``-``t127`` are
*local*, every cluster has its own set (and the fabric-level ``dma``/``cfg`` queues share
one more), so a token orders work inside one cluster and a fabric of any size has 127 per
cluster; ``t128``-``t255`` are *shared* by the whole fabric and order work across clusters
(a multicast's arrival, a ``noc.*`` configuration before the transfers that use it).

Assembly::

    .target acf-small
    .tensor W dram 0x1000 f32[16,16] csr      # a named tensor in DRAM (symbols)
    loop 4, end                               # hardware loop over the block up to `end`
        ld  c0, sp[0], dram[W], fmt=csr, rows=16, cols=16 sig(t1)
        mm  c0, acc[0], sp[0], sp[0x400], m=16, n=16, k=16, skip=ab wait(t1) sig(t2)
        addar ar1, 1024
    end:
    halt
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from acf.isa.fields import AREG, CL, MemRef, F32, FMT, FREG, REL, TOK, Field, Kind, enum, mem, s, u

WORD_BYTES = 32
WORD_BITS = WORD_BYTES * 8
QUEUED_HEADER_BITS = 48  # opcode 8 + cl 8 + wait0/wait1/sig0/sig1 8 each
CTL_HEADER_BITS = 8

# Units: per-cluster queues, global queues, and the dispatcher (no queue).
CLUSTER_UNITS = ("ld", "st", "mac", "vec", "codec", "noc")
GLOBAL_UNITS = ("dma", "cfg")
UNITS = CLUSTER_UNITS + GLOBAL_UNITS + ("ctl",)

#: token ids below this are local to the instruction's cluster (or to the global queues)
SHARED_TOKENS = 128


def token_counter(tok: int, cluster: int | None) -> int:
    """The counter that token id ``tok`` names for an instruction of ``cluster`` (``None``
    for the global units ``dma``/``cfg``): a shared id is its own counter; a local id is
    one of its owner's, numbered ``256 * (owner + 2) + tok`` (owner -1: the global units)."""
    if tok >= SHARED_TOKENS:
        return tok
    return 256 * ((-1 if cluster is None else cluster) + 2) + tok


def token_name(counter: int) -> str:
    """``tN`` for a shared counter, ``cK.tN`` for a cluster's local one, ``g.tN`` for the
    global units' (the inverse of :func:`token_counter`, for diagnostics)."""
    owner, tok = divmod(counter, 256)
    if owner == 0:
        return f"t{tok}"
    return f"g.t{tok}" if owner == 1 else f"c{owner - 2}.t{tok}"


SKIP = enum("none", "a", "b", "ab")
VFN = enum(
    "add", "sub", "mul", "div", "max", "min", "copy", "neg", "abs", "exp", "log", "sqrt",
    "rsqrt", "recip", "tanh", "erf", "relu", "relu_bwd", "gelu", "gelu_bwd", "gt", "ge", "eq",
    "square", "sigmoid", "mask",
)
BMODE = enum("tile", "row", "col", "imm", "freg")
RFN = enum("sum", "max", "min", "sumsq", "mean")


@dataclass(frozen=True)
class Op:
    """One row of the ISA table."""

    mnemonic: str
    opcode: int
    group: str
    unit: str  # a UNITS name, or "field:NAME" when an operand names the unit
    fields: tuple[Field, ...]
    timing: str
    energy: tuple[str, ...]
    doc: str

    @property
    def queued(self) -> bool:
        return self.unit != "ctl"

    @property
    def header_bits(self) -> int:
        return QUEUED_HEADER_BITS if self.queued else CTL_HEADER_BITS

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.mnemonic} has no field {name!r}")

    def layout(self) -> list[tuple[Field, int]]:
        """(field, bit offset) pairs of the operand fields."""
        out, pos = [], self.header_bits
        for f in self.fields:
            out.append((f, pos))
            pos += f.kind.bits
        return out

    @property
    def bits_used(self) -> int:
        return self.header_bits + sum(f.kind.bits for f in self.fields)


def F(name: str, kind: Kind, doc: str = "", default: object = None) -> Field:
    return Field(name, kind, doc, default)


_DIMS = (F("rows", u(16), "tile rows"), F("cols", u(16), "tile columns"))
_MATMUL = (
    F("m", u(16), "rows of A and C"),
    F("n", u(16), "columns of B and C"),
    F("k", u(16), "reduction length"),
    F("accum", u(1), "1: C += A.B, 0: C = A.B", 0),
    F("ta", u(1), "A is stored k x m (transposed)", 0),
    F("tb", u(1), "B is stored n x k (transposed)", 0),
    F("skip", SKIP, "operands whose zeros are skipped (limited by the target's skip hardware)", "ab"),
    F("va", u(3), "view register through which A is read (0: a contiguous tile)", 0),
    F("vb", u(3), "view register through which B is read (0: a contiguous tile)", 0),
    F("vd", u(3), "view register through which C is written, and read when accumulating "
                  "(0: a contiguous tile)", 0),
)
MAC_EVENTS = ("mac", "mac_skipped", "spad_read_byte", "spad_write_byte", "acc_access_byte")

OPS: tuple[Op, ...] = (
    # ---- DMA / memory ----------------------------------------------------------------
    Op("dma.ld", 0x01, "memory", "dma",
       (F("dst", mem("gb")), F("src", mem("dram")), F("rows", u(16)), F("rowbytes", u(24)),
        F("stride", u(32), "source row pitch in bytes (0: rowbytes)", 0)),
       "dma", ("dram_byte", "gbuf_write_byte"),
       "Copy rows x rowbytes bytes from DRAM to the global buffer (raw bytes, any format)."),
    Op("dma.st", 0x02, "memory", "dma",
       (F("dst", mem("dram")), F("src", mem("gb")), F("rows", u(16)), F("rowbytes", u(24)),
        F("stride", u(32), "destination row pitch in bytes (0: rowbytes)", 0)),
       "dma", ("gbuf_read_byte", "dram_byte"),
       "Copy rows x rowbytes bytes from the global buffer to DRAM."),
    Op("ld", 0x03, "memory", "ld",
       (F("dst", mem("sp")), F("src", mem("dram", "gb")), F("fmt", FMT, "format of the source tile"),
        *_DIMS, F("stride", u(32), "dense source row pitch in elements (0: cols)", 0)),
       "load", ("dram_byte", "gbuf_read_byte", "noc_router_flit", "noc_link_flit", "codec_value",
                "codec_index", "spad_write_byte"),
       "Load a rows x cols fp32 tile into the scratchpad, decoding its format on the way."),
    Op("ldg", 0x04, "memory", "ld",
       (F("dst", mem("sp")), F("src", mem("dram", "gb", "sp")),
        F("d0", u(16)), F("d1", u(16)), F("d2", u(16)),
        F("s0", u(32), "element stride of dim 0"), F("s1", u(24), "element stride of dim 1"),
        F("s2", u(16), "element stride of dim 2")),
       "gather", ("dram_byte", "gbuf_read_byte", "spad_read_byte", "noc_router_flit", "noc_link_flit",
                  "spad_write_byte"),
       "Gather a d0 x d1 x d2 strided fp32 block (e.g. a shifted conv window) into a dense tile; "
       "from sp it is an on-chip gather (im2col of a resident input slab) that uses no NoC."),
    Op("st", 0x05, "memory", "st",
       (F("dst", mem("dram", "gb")), F("src", mem("sp", "acc")), F("fmt", FMT, "format to encode"),
        *_DIMS, F("stride", u(32), "dense destination row pitch in elements (0: cols)", 0),
        F("cap", u(32), "bytes reserved at dst for an encoded tile (0: dense size)", 0)),
       "store", ("spad_read_byte", "acc_access_byte", "codec_value", "codec_index", "noc_router_flit", "noc_link_flit",
                 "gbuf_write_byte", "dram_byte"),
       "Store a tile, encoding it in the given format; traps if the encoding exceeds cap."),
    # ---- compute -----------------------------------------------------------------------
    Op("mm", 0x10, "compute", "mac",
       (F("dst", mem("acc", "sp")), F("a", mem("sp")), F("b", mem("sp")), *_MATMUL),
       "matmul", MAC_EVENTS,
       "Tile matmul C[m,n] (+)= A[m,k] B[k,n] skipping multiply-accumulates with a zero operand."),
    Op("sddmm", 0x11, "compute", "mac",
       (F("dst", mem("acc", "sp")), F("a", mem("sp")), F("b", mem("sp")),
        F("s", mem("sp"), "sampling tile m x n: outputs are computed where it is non-zero"),
        *_MATMUL),
       "sddmm", MAC_EVENTS,
       "Sampled matmul: C = (A B) at the non-zeros of S (zero elsewhere); masked weight gradients."),
    Op("mview", 0x12, "compute", "mac",
       (F("vr", u(3), "view register (1-7)"), F("d2", u(16), "elements per run"),
        F("s0", u(32), "element stride between rows"), F("s1", u(24), "element stride between runs"),
        F("s2", u(16), "element stride within a run"),
        F("d1", u(16), "runs per block (0: one block of every run)", 0),
        F("s3", u(32), "element stride between blocks", 0)),
       "scalar", (),
       "Set a view register of the cluster's MAC unit: an mm/sddmm operand read through it is "
       "a strided block (e.g. conv windows of resident input slabs: im2col on the fly), its "
       "element (r, c) at byte base + 4*(r*s0 + b*s3 + u*s1 + (c mod d2)*s2), u the run in its block b."),
    # ---- vector ------------------------------------------------------------------------
    Op("vop", 0x20, "vector", "vec",
       (F("fn", VFN), F("dst", mem("sp", "acc")), F("a", mem("sp", "acc")),
        F("b", mem("sp", "acc"), "second operand (ignored by unary functions)", MemRef("sp", 0)), *_DIMS,
        F("bmode", BMODE, "b is a tile, a 1 x cols row, a rows x 1 column, imm, or float register imm", "tile"),
        F("imm", F32, "immediate (bmode=imm) or float register index (bmode=freg)", 0.0),
        F("pitch", u(16), "row pitch of dst, a and tile b in elements (0: cols)", 0)),
       "vector", ("vec_op", "vec_special_op", "spad_read_byte", "spad_write_byte", "acc_access_byte"),
       "Elementwise dst = fn(a, b) over a rows x cols tile (relu_bwd: b where a > 0; mask: a where b != 0)."),
    Op("vred", 0x21, "vector", "vec",
       (F("fn", RFN), F("dst", mem("sp", "acc")), F("a", mem("sp", "acc")), *_DIMS,
        F("axis", u(1), "0: reduce rows to 1 x cols, 1: reduce columns to rows x 1"),
        F("accum", u(1), "1: combine with the value already at dst (an empty tile reduces to "
          "the identity: 0, or -inf for max and +inf for min, so dst keeps its values)", 0),
        F("pitch", u(16), "row pitch of a in elements (0: cols)", 0)),
       "reduce", ("vec_op", "spad_read_byte", "spad_write_byte", "acc_access_byte"),
       "Reduce a tile along one axis (sum, max, min, sum of squares, mean)."),
    Op("sgd", 0x22, "vector", "vec",
       (F("w", mem("sp")), F("g", mem("sp")), F("mom", mem("sp"), "momentum buffer"),
        F("n", u(24), "elements"), F("fr", FREG, "first of fr: lr, momentum, dampening, weight decay"),
        F("nesterov", u(1), "1: Nesterov momentum, the step is d + momentum*buf (one more FMA per element)", 0)),
       "optimizer", ("vec_op", "spad_read_byte", "spad_write_byte"),
       "SGD step with momentum, weight decay and optionally Nesterov momentum, as torch.optim.SGD (hyperparameters in fr..fr+3)."),
    Op("adam", 0x23, "vector", "vec",
       (F("w", mem("sp")), F("g", mem("sp")), F("m1", mem("sp")), F("m2", mem("sp")),
        F("n", u(24), "elements"),
        F("fr", FREG, "first of fr: lr, 1 - beta1, 1 - beta2, eps, weight decay, bias corr. 1, bias corr. 2")),
       "optimizer", ("vec_op", "vec_special_op", "spad_read_byte", "spad_write_byte"),
       "Adam step as torch.optim.Adam (hyperparameters and bias corrections in fr..fr+6)."),
    Op("fset", 0x24, "vector", "vec",
       (F("fd", FREG), F("imm", F32)),
       "scalar", (), "Set float register fd to an immediate."),
    Op("fld", 0x25, "vector", "vec",
       (F("fd", FREG), F("src", mem("sp"))),
       "scalar", ("spad_read_byte",), "Load float register fd from the scratchpad (runtime-set scalars)."),
    # ---- format conversion -------------------------------------------------------------
    Op("enc", 0x30, "format", "codec",
       (F("dst", mem("sp")), F("src", mem("sp", "acc")), F("fmt", FMT), *_DIMS,
        F("cap", u(24), "bytes reserved at dst")),
       "codec", ("spad_read_byte", "acc_access_byte", "codec_value", "codec_index", "spad_write_byte"),
       "Encode a dense tile into a packed sparse tile in the scratchpad (e.g. ReLU outputs)."),
    Op("dec", 0x31, "format", "codec",
       (F("dst", mem("sp")), F("src", mem("sp")), F("fmt", FMT), *_DIMS),
       "codec", ("spad_read_byte", "codec_value", "codec_index", "spad_write_byte"),
       "Decode a packed sparse tile in the scratchpad into a dense tile."),
    # ---- NoC configuration -------------------------------------------------------------
    Op("noc.topo", 0x40, "noc-config", "cfg", (F("topology", enum("mesh", "torus")),),
       "noc_config", ("reconfig",), "Switch torus wrap links on or off (torus needs dateline VCs)."),
    Op("noc.route", 0x41, "noc-config", "cfg", (F("routing", enum("xy", "yx")),),
       "noc_config", ("reconfig",), "Set the default dimension-order routing for later transfers."),
    Op("noc.mcast", 0x42, "noc-config", "cfg",
       (F("grp", u(4), "multicast group id"), F("x0", u(8)), F("y0", u(8)), F("x1", u(8)), F("y1", u(8))),
       "noc_config", ("reconfig",), "Define multicast group grp as the cluster rectangle [x0..x1] x [y0..y1]."),
    Op("noc.pin", 0x43, "noc-config", "cfg",
       (F("src", CL), F("dst", CL), F("via", CL, "route src -> via -> dst, each leg in the default order")),
       "noc_config", ("reconfig",), "Pin the route between two clusters through a waypoint; cyclic pins are rejected."),
    Op("noc.clear", 0x44, "noc-config", "cfg", (), "noc_config", ("reconfig",),
       "Remove every pinned route."),
    # ---- NoC transfers -----------------------------------------------------------------
    Op("send", 0x50, "noc", "noc",
       (F("to", CL, "destination cluster"), F("dst", mem("sp")), F("src", mem("sp", "acc")),
        F("bytes", u(24))),
       "noc_send", ("spad_read_byte", "acc_access_byte", "noc_router_flit", "noc_link_flit", "spad_write_byte"),
       "Send bytes from this cluster's buffer to another cluster's scratchpad."),
    Op("recv", 0x51, "noc", "noc", (F("frm", CL, "sending cluster"),),
       "noc_recv", (), "Wait until the next send from cluster frm to this cluster has landed."),
    Op("bcast", 0x52, "noc", "noc",
       (F("grp", u(4), "multicast group"), F("dst", mem("sp")), F("src", mem("sp", "gb", "dram")),
        F("bytes", u(24))),
       "noc_bcast", ("spad_read_byte", "gbuf_read_byte", "dram_byte", "noc_router_flit", "noc_link_flit",
                     "spad_write_byte"),
       "Multicast bytes to the scratchpads of a group (from this cluster, or from GB/DRAM via its port); "
       "a sending member whose dst is its src keeps that copy unwritten."),
    Op("reduce", 0x53, "noc", "noc",
       (F("grp", u(4), "multicast group"), F("dst", mem("sp")), F("src", mem("sp", "acc")),
        F("n", u(24), "fp32 elements")),
       "noc_reduce", ("spad_read_byte", "acc_access_byte", "noc_router_flit", "noc_link_flit", "vec_op",
                      "spad_write_byte"),
       "Sum n elements at src over every group member into dst on this cluster (reverse tree)."),
    # ---- control -----------------------------------------------------------------------
    Op("sync", 0x60, "control", "field:unit",
       (F("unit", enum(*CLUSTER_UNITS, *GLOBAL_UNITS)),),
       "sync", (), "Do nothing on a unit's queue but wait for and signal tokens."),
    Op("loop", 0x61, "control", "ctl",
       (F("count", u(24), "iterations"), F("end", REL, "label after the loop body")),
       "ctl", (), "Dispatch the block up to the end label count times (loops nest 4 deep)."),
    Op("setar", 0x62, "control", "ctl", (F("ar", AREG), F("value", s(48))),
       "ctl", (), "Set address register ar (ar0 always reads 0)."),
    Op("addar", 0x63, "control", "ctl", (F("ar", AREG), F("value", s(48))),
       "ctl", (), "Add to address register ar."),
    Op("barrier", 0x64, "control", "ctl", (), "ctl", (),
       "Stop dispatching until every queue has drained and every unit is idle."),
    Op("halt", 0x65, "control", "ctl", (), "ctl", (), "End of program."),
)

BY_MNEMONIC: dict[str, Op] = {op.mnemonic: op for op in OPS}
BY_OPCODE: dict[int, Op] = {op.opcode: op for op in OPS}
HEADER_FIELDS = ("cl", "wait0", "wait1", "sig0", "sig1")
HEADER_KINDS = {"cl": CL, "wait0": TOK, "wait1": TOK, "sig0": TOK, "sig1": TOK}
REGISTER_PREFIX = {"ar": "ar", "fd": "fr", "fr": "fr"}


def check_table(ops: tuple[Op, ...] = OPS) -> None:
    """Internal consistency of the table: unique names/opcodes, widths, units."""
    seen_m, seen_o = set(), set()
    for op in ops:
        assert op.mnemonic not in seen_m, f"duplicate mnemonic {op.mnemonic}"
        assert op.opcode not in seen_o, f"duplicate opcode {op.opcode:#x}"
        assert 0 < op.opcode < 256, op.mnemonic
        seen_m.add(op.mnemonic)
        seen_o.add(op.opcode)
        assert op.bits_used <= WORD_BITS, f"{op.mnemonic}: {op.bits_used} bits > {WORD_BITS}"
        assert op.unit in UNITS or op.unit.startswith("field:"), op.mnemonic
        assert op.doc and op.timing, op.mnemonic
        names = [f.name for f in op.fields]
        assert len(set(names)) == len(names), op.mnemonic
        assert not set(names) & set(HEADER_FIELDS), op.mnemonic


@contextmanager
def extended(*extra: Op) -> Iterator[None]:
    """Temporarily add rows to the table (tests: a made-up instruction needs only a row)."""
    global OPS
    saved = OPS
    check_table(saved + extra)
    OPS = saved + extra
    for op in extra:
        BY_MNEMONIC[op.mnemonic] = op
        BY_OPCODE[op.opcode] = op
    try:
        yield
    finally:
        OPS = saved
        for op in extra:
            del BY_MNEMONIC[op.mnemonic]
            del BY_OPCODE[op.opcode]


def unit_of(op: Op, args: dict[str, object]) -> str:
    """The unit whose queue executes this instruction."""
    if op.unit.startswith("field:"):
        return str(args[op.unit[6:]])
    return op.unit


check_table()
