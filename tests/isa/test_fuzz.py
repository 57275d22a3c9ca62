"""Random, truncated and corrupted containers give clean errors, never a crash."""

from __future__ import annotations

import random
import struct
import subprocess
import sys
import zlib

import pytest
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


def _mutant(rng: random.Random, good: bytes, mode: int) -> bytes:
    """One fuzz input: 0 random bytes, 1 a strict prefix of ``good``, 2 one to three bit flips
    (checksum left stale), 3 one to three byte overwrites after the header, checksum fixed."""
    if mode == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
    if mode == 1:
        return good[: rng.randrange(0, len(good))]
    b = bytearray(good)
    if mode == 2:
        for _ in range(rng.randrange(1, 4)):
            pos = rng.randrange(len(b))
            b[pos] ^= 1 << rng.randrange(8)
        return bytes(b)
    for _ in range(rng.randrange(1, 4)):
        pos = rng.randrange(32, len(b))
        b[pos] = rng.randrange(256)
    return _recrc(b)


def test_fuzz_in_process() -> None:
    rng = random.Random(1234)
    good = write(assemble(PROGRAM))
    assert read(good).instructions  # the seed itself is valid
    assert write(read(good)) == good
    n = 12_000
    accepted, rejected = [0] * 4, [0] * 4
    for i in range(n):
        mode = i % 4
        blob = _mutant(rng, good, mode)
        try:
            prog = read(blob)
        except ContainerError:
            rejected[mode] += 1
            continue
        accepted[mode] += 1
        # read accepts only what write lays out: the program it gives writes the same bytes
        assert write(prog) == blob, (mode, blob.hex())
        if mode == 2:
            # flips that cancel out (the same bit twice) give back the seed; any real change
            # is caught by the stale CRC-32 (every 1..3-bit error in < 91607 bits is
            # detected) or by a checked header field
            assert blob == good
    per_mode = n // 4
    assert [a + r for a, r in zip(accepted, rejected)] == [per_mode] * 4
    # random bytes almost never start with the magic "ACFB" and a matching size
    assert accepted[0] == 0
    # a strict prefix always disagrees with the header's total size (or is shorter than it)
    assert accepted[1] == 0 and rejected[1] == per_mode
    # a fixed checksum lets some overwrites through (e.g. an immediate or a JSON digit changed
    # to another valid one) while most are refused by the deeper checks
    assert 0 < accepted[3] < per_mode


def test_every_strict_prefix_is_refused() -> None:
    good = write(assemble(PROGRAM))
    for cut in range(len(good)):
        with pytest.raises(ContainerError):
            read(good[:cut])


def test_fuzz_through_the_command(tmp_path) -> None:
    rng = random.Random(7)
    good = write(assemble(PROGRAM))
    blobs = [good]
    for i in range(4):
        b = bytearray(good)
        b[rng.randrange(32, len(b))] ^= 0xFF
        blobs.append(_recrc(b) if i % 2 else bytes(b))
    # plus the first checksum-fixed overwrite (fuzz mode 3) that the library accepts and that
    # differs from the seed, so the command's success path is exercised on a changed file
    for _ in range(1000):
        blob = _mutant(rng, good, 3)
        try:
            read(blob)
        except ContainerError:
            continue
        if blob != good:
            blobs.append(blob)
            break
    assert len(blobs) == 6
    outcomes = []
    for i, blob in enumerate(blobs):
        path = tmp_path / f"case{i}.acfbin"
        path.write_bytes(blob)
        proc = subprocess.run([sys.executable, "-m", "acf.cli", "disasm", str(path)],
                              capture_output=True, text=True, check=False)
        assert "Traceback" not in proc.stderr
        try:
            read(blob)
            lib_ok = True
        except ContainerError:
            lib_ok = False
        assert (proc.returncode == 0) == lib_ok, (i, proc.returncode, proc.stderr)
        if proc.returncode:
            assert proc.returncode == 1 and f"{path}: error:" in proc.stderr
            assert proc.stdout == ""
        else:
            # the disassembly of an accepted container reassembles to the same bytes
            assert write(assemble(proc.stdout)) == blob
        outcomes.append(proc.returncode)
    assert outcomes[0] == 0 and outcomes[-1] == 0  # the seed and the accepted mutant
    assert 1 in outcomes  # the stale-checksum flips are refused
