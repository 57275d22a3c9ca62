"""Adaptive Compute Fabric (ACF) toolchain.

Data flows one way: frontends -> compiler -> isa -> runtime -> emulator.
"""

__version__ = "0.1.0"
