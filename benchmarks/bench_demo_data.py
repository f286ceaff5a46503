"""Time the demo corpus generator and print what it makes.

Usage: python benchmarks/bench_demo_data.py [--scales 0.05 1.0] [--workers 2] [--keep DIR]

For each scale: wall time of `make_demo` (fresh directory, default 2 workers), then per set the
structure count, the bytes written and the seconds spent collecting that set (sets overlap in
the pool, so per-set seconds do not add up exactly). Targets (issue): scale 0.05 < 30 s and
scale 1 <= 5 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from openjmp.data.demo import make_demo


def run(scale: float, workers: int, keep: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="openjmp-demo-bench-") as tmp:
        out = (keep / f"scale-{scale:g}") if keep else Path(tmp) / "corpus"
        t0 = time.perf_counter()
        manifest = make_demo(out, scale=scale, seed=0, progress=False, workers=workers)
        wall = time.perf_counter() - t0
        doc = json.loads(manifest.read_text())
        print(f"\nscale {scale:g}, {workers} workers: {wall:.1f} s wall")
        print(f"{'set':<20}{'structures':>11}{'MB':>9}{'s':>8}")
        total_bytes = 0
        for name, s in doc["sets"].items():
            nbytes = sum(f["bytes"] for f in s["files"].values())
            total_bytes += nbytes
            print(
                f"{name:<20}{s['counts']['structures']:>11}{nbytes / 1e6:>9.2f}{s['seconds']:>8.1f}"
            )
        print(f"{'total':<20}{'':>11}{total_bytes / 1e6:>9.2f}{wall:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[0.05, 1.0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the corpora under DIR")
    args = parser.parse_args()
    for scale in args.scales:
        run(scale, args.workers, args.keep)


if __name__ == "__main__":
    main()
