"""Random, truncated and corrupted containers give clean errors, never a crash."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib

from acf.isa.asm import assemble
from acf.isa.container import ContainerError, read, write

PROGRAM = """
.target acf-small
.tensor X dram 0x1000 f32[4,4] csr
.loc "m.py" 3 "fc1" 1
loop 2, end
  ld c0, sp[0], dram[X+ar1], csr, rows=4, cols=4 sig(t1)
  mm c0, acc[0], sp[0], sp[64], m=4, n=4, k=4 wait(t1)
  addar ar1, 64
end:
halt
"""


def _recrc(blob: bytearray) -> bytes:
    """Fix the checksum so corruption reaches the deeper checks too."""
    struct.pack_into("<I", blob, 24, zlib.crc32(bytes(blob[32:])))
    return bytes(blob)


def test_fuzz_in_process() -> None:
    rng = random.Random(1234)
    good = write(assemble(PROGRAM))
    assert read(good).instructions  # the seed itself is valid
    cases = 0
    for i in range(12_000):
        mode = i % 4
        if mode == 0:
            blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
        elif mode == 1:
            blob = good[: rng.randrange(0, len(good))]
        elif mode == 2:
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(len(b))
                b[pos] ^= 1 << rng.randrange(8)
            blob = bytes(b)
        else:
            b = bytearray(good)
            for _ in range(rng.randrange(1, 4)):
                pos = rng.randrange(32, len(b))
                b[pos] = rng.randrange(256)
            blob = _recrc(b)
        try:
            read(blob)
        except ContainerError:
            pass
        cases += 1
    assert cases >= 10_000


def test_fuzz_through_the_command(tmp_path) -> None:
    rng = random.Random(7)
    good = write(assemble(PROGRAM))
    for i in range(4):
        b = bytearray(good)
        b[rng.randrange(32, len(b))] ^= 0xFF
        blob = _recrc(b) if i % 2 else bytes(b)
        path = tmp_path / f"bad{i}.acfbin"
        path.write_bytes(blob)
        proc = subprocess.run([sys.executable, "-m", "acf.cli", "disasm", str(path)],
                              capture_output=True, text=True)
        assert "Traceback" not in proc.stderr
        if proc.returncode:
            assert proc.returncode == 1 and f"{path}: error:" in proc.stderr
