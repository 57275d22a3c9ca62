"""Durations of started instructions (docs/timing.md sections 3-7b), mixed into the engine.

Compute, vector and codec instructions end at a closed-form cycle; memory and NoC ones
become resource requests, events of phase 2, granted by the interconnect in request-cycle
order. An instruction retires once its last part has been granted (``Inflight.parts``).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

import numpy as np
from acf.emulator import timing_compute as tc
from acf.emulator.interconnect import RoutingError
from acf.isa.semantics import SPECIAL, gather_addresses

RETIRE, REQUEST = 0, 2


class Durations:
    """The timing half of :class:`acf.emulator.engine.Engine`."""

    def _time(self, ex: Any, s: int) -> None:
        timer = _TIMERS.get(ex.p.ins.op.timing)
        if timer is not None:
            return timer(self, ex, s)
        return self._t_memory(ex, s)

    # ---- closed forms ----------------------------------------------------------------------
    def _t_mm(self, ex: Any, s: int) -> None:
        ins, info, cfg = ex.p.ins, ex.effect.info, self.cfg
        if ins.op.timing == "matmul":
            cyc, issued, effm = tc.mm_cycles(info["A"], info["B"], ins["skip"], cfg)
        else:
            cyc, issued, effm = tc.sddmm_cycles(info["A"], info["B"], info["S"], ins["skip"], cfg)
        views = info.get("views")
        if views:  # operands read or written through view registers: their bank accesses
            key = ("mm", *views)  # overlap the MACs (docs/timing.md section 3)
            banks = self.gather_cache.get(key)
            if banks is None:
                banks = self.gather_cache[key] = tc.view_bank_cycles(
                    [(buf, gather_addresses(v)) for buf, v in views], cfg)
            cyc = max(cyc, cfg.I + banks)
        rec = ex.record
        rec.issued_macs, rec.effectual_macs = issued, effm
        self._fixed(ex, s + cyc)

    def _t_vec(self, ex: Any, s: int) -> None:
        cfg = self.cfg
        elems, work, ops = self._vec_work(ex)
        key = tuple(ops)  # bank conflicts depend on the operands' placement alone
        banks = self.bank_cache.get(key)
        if banks is None:
            banks = self.bank_cache[key] = tc.bank_cycles(ops, cfg)
        self._fixed(ex, s + cfg.I + max(tc.vec_cycles(elems, work, cfg), banks))

    def _t_one(self, ex: Any, s: int) -> None:
        self._fixed(ex, s + self.cfg.I + 1)

    def _t_recv(self, ex: Any, s: int) -> None:
        self._fixed(ex, s + self.cfg.I)

    def _t_codec(self, ex: Any, s: int) -> None:
        self._fixed(ex, s + self.cfg.I + tc.codec_cycles(*ex.effect.info["codec"], self.cfg))

    def _t_config(self, ex: Any, s: int) -> None:
        self._fixed(ex, s + self.cfg.I + self.reconfig)

    # ---- memory and NoC --------------------------------------------------------------------
    def _gather_banks(self, view: tuple[int, ...], dst: int, n: int) -> int:
        """Bank cycles of an on-chip gather: a function of its addresses alone (not of the
        data), so each distinct (view, destination) is computed once per run."""
        key = (view, dst, n)
        cyc = self.gather_cache.get(key)
        if cyc is None:
            cyc = self.gather_cache[key] = tc.gather_bank_cycles(gather_addresses(view), dst, n, self.cfg)
        return cyc

    def _t_memory(self, ex: Any, s: int) -> None:
        ins, info, cfg = ex.p.ins, ex.effect.info, self.cfg
        cls = ins.op.timing
        s1 = s + cfg.I
        cl = ex.record.cluster
        y = cl // self.X
        ex.record.bytes = int(info.get("nbytes", 0))
        if cls == "gather" and info["space"] == "sp":  # on-chip gather: scratchpad banks only
            return self._fixed(ex, s1 + self._gather_banks(info["view"], ex.p.ea["dst"], info["nbytes"] // 4))
        if cls in ("load", "gather"):
            space, nb = info["space"], info["nbytes"]
            dst = ex.p.ea["dst"]
            tile = ("sp", dst, 1, nb // 4, 0) if cls == "gather" else ("sp", dst, ins["rows"], ins["cols"], 0)
            ex.end = s1 + max(tc.codec_cycles(*info["codec"], cfg), tc.bank_cycles([tile], cfg))
            self._source(ex, s1, space, info["runs"], nb)
            self._request(ex, s1 + self.lat[space], "noc", (("p", y), ("c", cl), nb))
        elif cls == "store":
            codec = tc.codec_cycles(*info["codec"], cfg)
            ex.end = s1 + codec
            self._request(ex, s1 + codec, "noc", (("c", cl), ("p", y), info["nbytes"]),
                          then=lambda end: self._source(ex, end, info["space"], info["runs"], info["nbytes"]))
        elif cls == "dma":
            ex.end = s1
            self._source(ex, s1, "dram", info["runs"], info["nbytes"])
            self._source(ex, s1, "gb", info["runs"], info["nbytes"])
        elif cls == "noc_send":
            ex.end = s1
            self._request(ex, s1, "noc", (("c", cl), ("c", ins["to"]), info["nbytes"]))
        elif cls == "noc_bcast":
            ex.end = s1
            members = [("c", m) for m in info["members"]]
            if info["space"] == "sp":
                self._request(ex, s1, "mcast", (("c", cl), members, info["nbytes"]))
            else:
                self._source(ex, s1, info["space"], info["runs"], info["nbytes"])
                self._request(ex, s1 + self.lat[info["space"]], "mcast", (("p", y), members, info["nbytes"]))
        elif cls == "noc_reduce":
            ex.end = s1
            self._request(ex, s1, "reduce", (("c", cl), [("c", m) for m in info["members"]], info["nbytes"]))
        else:  # pragma: no cover - the completeness test keeps TIMING_CLASSES in sync
            raise AssertionError(f"no timing for class {cls}")

    def _vec_work(self, ex: Any) -> tuple[int, int, list]:
        ins, ea = ex.p.ins, ex.p.ea
        m = ins.mnemonic
        if m == "vop":
            rows, cols, pitch = ins["rows"], ins["cols"], ins["pitch"] or ins["cols"]
            ops = [(ins["dst"].space, ea["dst"], rows, cols, pitch), (ins["a"].space, ea["a"], rows, cols, pitch)]
            bshape = ex.effect.info.get("bshape")
            if bshape is not None:
                ops.append((ins["b"].space, ea["b"], *bshape))
            return rows * cols, 1 + self.cfg.special if ins["fn"] in SPECIAL else 1, ops
        if m == "vred":
            rows, cols = ins["rows"], ins["cols"]
            sh = ex.effect.info["out_shape"]
            ops = [(ins["dst"].space, ea["dst"], sh[0], sh[1], 0),
                   (ins["a"].space, ea["a"], rows, cols, ins["pitch"] or cols)]
            return rows * cols, 1, ops
        n = ins["n"]
        keys = ("w", "g", "mom") if m == "sgd" else ("w", "g", "m1", "m2")
        work = 3 + ins["nesterov"] if m == "sgd" else 6 + self.cfg.special
        return n, work, [("sp", ea[k], 1, n, 0) for k in keys]

    def _fixed(self, ex: Any, end: int) -> None:
        ex.end = end
        self.seq += 1
        heapq.heappush(self.heap, (end, RETIRE, ex.p.q, self.seq, self._retire, ex))

    def _source(self, ex: Any, cycle: int, space: str, runs: np.ndarray, nbytes: int) -> None:
        if space == "dram":
            self._request(ex, cycle, "dram", (runs,))
        else:
            self._request(ex, cycle, "gbuf", (nbytes,))

    def _request(self, ex: Any, cycle: int, kind: str, args: tuple,
                 then: Callable[[int], None] | None = None) -> None:
        ex.parts += 1
        self.push(cycle, REQUEST, ex.p.q, self._grant, (ex, kind, args, then))

    def _grant(self, arg: tuple, t: int) -> None:
        ex, kind, args, then = arg
        q = ex.p.q
        ic = self.ic
        try:
            if kind == "dram":
                end = ic.dram(t, args[0], q)
                free = ic.last_free
            elif kind == "gbuf":
                end = ic.gbuf(t, args[0], q)
                free = t + -(-int(args[0]) // ic.gbuf_bpc) + ic.gbuf_latency
            else:
                if kind == "noc":
                    end = ic.transfer(t, *args, q)
                elif kind == "mcast":
                    end = ic.multicast(t, *args, q)
                else:
                    end = ic.reduce(t, *args, q)
                free = ic.last_free
                hops = ic.last_flit_hops
                counts = ex.counts
                counts["noc_router_flit"] = counts.get("noc_router_flit", 0) + hops["router"]
                counts["noc_link_flit"] = counts.get("noc_link_flit", 0) + hops["link"]
        except RoutingError as exc:
            raise self.trap(exc.reason, t, ex.p.where, "routing") from None
        # a load's source and NoC parts run side by side: the instruction waited as long as
        # its most delayed part did (a sum counted overlapping waits twice, over its busy time)
        ex.record.resource_stall_cycles = max(ex.record.resource_stall_cycles, end - free)
        ex.end = max(ex.end, end)
        if then is not None:
            then(end)
        ex.parts -= 1
        if ex.parts == 0:
            self._fixed(ex, ex.end)


#: Timing classes that end at a closed-form cycle, and the method that times each (plain
#: functions: bound methods kept on the engine would make it a reference cycle, which only
#: the garbage collector can free).
_TIMERS: dict[str, Callable[[Durations, Any, int], None]] = {
    "matmul": Durations._t_mm, "sddmm": Durations._t_mm, "vector": Durations._t_vec,
    "reduce": Durations._t_vec, "optimizer": Durations._t_vec, "scalar": Durations._t_one,
    "sync": Durations._t_one, "noc_recv": Durations._t_recv, "codec": Durations._t_codec,
    "noc_config": Durations._t_config}
