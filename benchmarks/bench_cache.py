"""Record cache throughput: build a cache of small synthetic structures, then read it back.

Prints a table: records/s written, and records/s read by random access (`RecordStore[i]` ->
`AtomsRecord`, uniformly random indices) and in order, single process. The structures are
5-30 atoms with energy, forces and two scalar targets, like ANI-1x/QM9-sized molecules.

    .venv/bin/python benchmarks/bench_cache.py [--n 100000] [--reads 50000] [--float32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from openjmp.data.cache import RecordStore
from openjmp.data.cache_writer import StoreWriter
from openjmp.records import AtomsRecord


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        k = int(rng.integers(5, 31))
        yield AtomsRecord(
            atomic_numbers=rng.choice([1, 6, 7, 8], size=k),
            positions=rng.normal(scale=2.0, size=(k, 3)),
            energy=float(rng.normal()),
            forces=rng.normal(size=(k, 3)),
            targets={"gap": float(rng.random()), "dipole": float(rng.random())},
            source="synthetic",
            index=i,
            dataset="bench",
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records in the cache")
    ap.add_argument("--reads", type=int, default=50_000, help="random reads to time")
    ap.add_argument("--float32", action="store_true")
    ap.add_argument("--dir", type=Path, default=None, help="where to build (default: a temp dir)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(dir=args.dir))
    dest = base / "cache"
    records = list(synthetic(args.n))
    t0 = time.perf_counter()
    with StoreWriter(dest, precision="float32" if args.float32 else "float64") as w:
        for r in records:
            w.add(r)
        w.finish()
        w.commit()
    t_write = time.perf_counter() - t0
    del records
    store = RecordStore(dest)
    size = sum(p.stat().st_size for p in dest.iterdir()) / 2**20
    store[0]  # open the memmaps
    idx = np.random.default_rng(1).integers(0, len(store), size=args.reads)
    t0 = time.perf_counter()
    for i in idx:
        store[int(i)]
    t_rand = time.perf_counter() - t0
    m = min(args.reads, len(store))
    t0 = time.perf_counter()
    for i in range(m):
        store[i]
    t_seq = time.perf_counter() - t0
    print(
        f"cache: {len(store)} records, {store.manifest['n_atoms']} atoms, {size:.1f} MiB at {dest}"
    )
    print(f"{'operation':<28}{'records':>10}{'seconds':>10}{'records/s':>12}")
    for name, count, t in [("write (StoreWriter.add)", args.n, t_write), ("read, random access", args.reads, t_rand),
                           ("read, in order", m, t_seq)]:  # fmt: skip
        print(f"{name:<28}{count:>10}{t:>10.2f}{count / t:>12.0f}")
    import shutil

    shutil.rmtree(base)


if __name__ == "__main__":
    main()
