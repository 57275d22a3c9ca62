"""DRAM channels and the global buffer, stepped cycle by cycle (docs/timing.md section 6).

Each server has a first-come-first-served queue of jobs (the order requests arrive in: by
request cycle, ties by queue id). Every cycle the head job is served ``bytes_per_cycle``
bytes; a job whose last bytes move in cycle ``c`` frees the server at ``c + 1``. A job
never shares a cycle with the next one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class Job:
    def __init__(self, nbytes: int, on_done: Callable[[int], None]):
        self.left = nbytes
        self.on_done = on_done
        self.start: int | None = None


class Server:
    def __init__(self, name: str, bytes_per_cycle: int):
        self.name = name
        self.bpc = bytes_per_cycle
        self.queue: deque[Job] = deque()
        self.bytes_served = 0

    def submit(self, job: Job) -> None:
        self.queue.append(job)

    def _retire_empty(self, t: int) -> None:
        while self.queue and self.queue[0].left <= 0:
            job = self.queue.popleft()
            job.on_done(t)

    def tick(self, t: int) -> None:
        """Serve cycle ``t``."""
        self._retire_empty(t)
        if not self.queue:
            return
        job = self.queue[0]
        if job.start is None:
            job.start = t
        n = min(self.bpc, job.left)
        job.left -= n
        self.bytes_served += n
        if job.left <= 0:
            self.queue.popleft()
            job.on_done(t + 1)

    @property
    def idle(self) -> bool:
        return not self.queue


class Transfer:
    """One request spread over several servers; done when the last part is, plus latency."""

    def __init__(self, parts: int, latency: int, on_done: Callable[[int], None]):
        self.left = parts
        self.latest = 0
        self.latency = latency
        self.on_done = on_done

    def part_done(self, t: int) -> None:
        self.latest = max(self.latest, t)
        self.left -= 1
        if self.left == 0:
            self.on_done(self.latest + self.latency)


class MemorySystem:
    def __init__(self, target):
        d = target.dram
        self.channels = [Server(f"dram{c}", d.bytes_per_cycle) for c in range(d.channels)]
        self.burst = d.burst_bytes
        self.interleave = d.interleave_bytes
        self.dram_latency = d.latency_cycles
        g = target.gbuf
        self.gbuf = Server("gbuf", g.banks * g.bank_bytes)
        self.gbuf_latency = g.latency_cycles

    def dram(self, request: int, runs: list[tuple[int, int]], on_done: Callable[[int], None]) -> None:
        """Request DRAM runs ``(address, length)`` at cycle ``request`` (now); ``on_done(end)``
        when they are served."""
        bursts: dict[int, int] = {}
        for addr, length in runs:
            a, end = addr, addr + length
            while a < end:
                stop = min(end, (a // self.interleave + 1) * self.interleave)
                ch = (a // self.interleave) % len(self.channels)
                bursts[ch] = bursts.get(ch, 0) + -(-(stop - a) // self.burst)
                a = stop
        if not bursts:  # no channel touched: nothing to wait for, not even the latency
            on_done(request)
            return
        tr = Transfer(len(bursts), self.dram_latency, on_done)
        for ch in sorted(bursts):
            self.channels[ch].submit(Job(bursts[ch] * self.burst, tr.part_done))

    def gb(self, nbytes: int, on_done: Callable[[int], None]) -> None:
        """Request ``nbytes`` from the global buffer now; an empty request still waits for its
        turn and pays the latency."""
        tr = Transfer(1, self.gbuf_latency, on_done)
        self.gbuf.submit(Job(nbytes, tr.part_done))

    def source(self, space: str, request: int, runs, on_done) -> None:
        if space == "dram":
            self.dram(request, runs, on_done)
        else:
            self.gb(sum(n for _, n in runs), on_done)

    def latency(self, space: str) -> int:
        return self.dram_latency if space == "dram" else self.gbuf_latency

    def tick(self, t: int) -> None:
        for ch in self.channels:
            ch.tick(t)
        self.gbuf.tick(t)

    @property
    def idle(self) -> bool:
        return all(c.idle for c in self.channels) and self.gbuf.idle
