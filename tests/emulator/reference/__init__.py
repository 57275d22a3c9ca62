"""Per-cycle reference timing model of the ACF, written only from ``docs/timing.md``.

It steps every cycle: the dispatcher, the unit queues, the MAC array's PEs, the vector
unit's bank arbiters, the codec counters, the DRAM channels, the global buffer and the NoC
links. It is slow and only meant for the small programs of the equivalence suite. It imports
nothing from ``acf.emulator``.
"""

from .core import Record, RefError, RefResult, simulate

__all__ = ["Record", "RefError", "RefResult", "simulate"]
