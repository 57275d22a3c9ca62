"""Pack/unpack/metadata speed of every tile format on a 512x512 tile at 10 % density.

    python benchmarks/formats.py
"""

from __future__ import annotations

import time

import numpy as np

from acf.isa.formats import encoded_size_of, metadata_counts, nm_prune, pack, unpack

SPECS = ["dense", "csr", "csc", "coo", "bitmap", "nm2:4", "bcsr4x4"]


def main() -> None:
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((512, 512)) * (rng.random((512, 512)) < 0.1)).astype(np.float32)
    print(f"{'format':8} {'bytes':>9} {'pack_ms':>8} {'unpack_ms':>9} {'meta_ms':>8}")
    for spec in SPECS:
        t = nm_prune(x, 2, 4) if spec.startswith("nm") else x
        times = []
        for fn in (lambda: pack(t, spec), None, lambda: metadata_counts(t, spec)):
            if fn is None:
                buf = pack(t, spec)
                fn = lambda: unpack(buf)  # noqa: E731
            start = time.perf_counter()
            for _ in range(20):
                fn()
            times.append((time.perf_counter() - start) / 20 * 1e3)
        print(f"{spec:8} {encoded_size_of(t, spec):9d} {times[0]:8.2f} {times[1]:9.2f} {times[2]:8.2f}")


if __name__ == "__main__":
    main()
