"""Graph-construction speed: records -> four GemNet-OC graphs -> batch -> triplet/quadruplet indices.

Times exactly what the authors' ``graph_case`` in ``../shared/reference/bench_ref.json`` times:
the per-structure graph transform (a2a radius graph, k-nearest sub-selection, qint tag mask),
collation, and the index construction of ``get_graphs_and_indices`` (symmetrised main graph,
id_swap, e2e/a2e/e2a triplets, quadruplets), on ``bench_structures.extxyz`` (32 molecules,
setting ani1x; 8 slabs, setting oc20), float32, 2 torch threads, median of ``repeats`` runs
after one warm-up. Reading the file is not timed.

Run: ``.venv/bin/python benchmarks/bench_graph.py [--repeats N] [--threads T]``. The combined
runner imports `run`. Machines are shared and noisy: compare the speed-up column, which is
measured against the authors' figures for this machine class, and re-run alone for reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import ase.io
import torch

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.indices import build_indices
from openjmp.graph.spec import graph_spec
from openjmp.records import AtomsRecord

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("OPENJMP_SHARED", REPO.parent / "shared")) / "reference"
CASES = {"molecules": ("ani1x", "molecules_graph"), "slabs": ("oc20", "slabs_graph")}
COUNT_KEYS = {
    "n_edges_main_sym": "n_edges_main",
    "n_edges_a2a": "n_edges_a2a",
    "n_triplets": "n_triplets",
    "n_quadruplets": "n_quadruplets",
}


def _records(path: Path, setting: str) -> list[AtomsRecord]:
    atoms = ase.io.read(path, index=":")
    return [
        AtomsRecord.from_ase(a, source=str(path), index=i, dataset=setting)
        for i, a in enumerate(atoms)
        if a.info.get("graph") == setting
    ]


def _build(records: list[AtomsRecord], setting: str, dtype: torch.dtype):
    spec = graph_spec(setting)
    batch = collate([build_graph_sample(r, spec, dtype=dtype) for r in records])
    return batch, build_indices(batch)


def run(
    repeats: int = 5,
    threads: int = 2,
    dtype: torch.dtype = torch.float32,
    reference_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Time both cases; one dict per case (seconds, rates, the authors' figures, speed-up)."""
    ref_dir = Path(reference_dir) if reference_dir is not None else REFERENCE
    bench_ref = json.loads((ref_dir / "bench_ref.json").read_text())["cases"]
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    results = []
    try:
        for name, (setting, ref_case) in CASES.items():
            records = _records(ref_dir / "bench_structures.extxyz", setting)
            batch, indices = _build(records, setting, dtype)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                batch, indices = _build(records, setting, dtype)
                times.append(time.perf_counter() - t0)
            seconds = statistics.median(times)
            counts = indices.counts()
            ref = bench_ref[ref_case]
            n_edges = counts["n_edges_a2a"]
            results.append(
                {
                    "case": name,
                    "graph_setting": setting,
                    "n_structures": len(records),
                    "natoms": batch.num_atoms,
                    "n_edges_a2a": n_edges,
                    "counts": counts,
                    "counts_match_reference": all(
                        counts[ours] == ref[theirs] for theirs, ours in COUNT_KEYS.items()
                    ),
                    "seconds_median": seconds,
                    "seconds_all": times,
                    "structures_per_s": len(records) / seconds,
                    "edges_per_s": n_edges / seconds,
                    "ref_seconds": ref["seconds_median"],
                    "ref_structures_per_s": ref["n_structures"] / ref["seconds_median"],
                    "ref_edges_per_s": ref["n_edges_a2a"] / ref["seconds_median"],
                    "speedup": ref["seconds_median"] / seconds,
                    "threads": threads,
                    "dtype": str(dtype).replace("torch.", ""),
                }
            )
    finally:
        torch.set_num_threads(previous_threads)
    return results


def format_table(results: list[dict[str, Any]]) -> str:
    """Plain-text table of `run`'s results."""
    head = (
        f"{'case':<10} {'structs':>7} {'a2a edges':>9} {'ours s':>8} {'struct/s':>9} "
        f"{'edges/s':>10} {'authors s':>9} {'struct/s':>9} {'edges/s':>10} {'speed-up':>8} counts"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r['case']:<10} {r['n_structures']:>7} {r['n_edges_a2a']:>9} "
            f"{r['seconds_median']:>8.4f} {r['structures_per_s']:>9.1f} {r['edges_per_s']:>10.3g} "
            f"{r['ref_seconds']:>9.4f} {r['ref_structures_per_s']:>9.1f} {r['ref_edges_per_s']:>10.3g} "
            f"{r['speedup']:>7.1f}x {'ok' if r['counts_match_reference'] else 'MISMATCH'}"
        )
    t = results[0]
    lines.append(
        f"(graphs + collation + GemNet-OC indices; {t['dtype']}, {t['threads']} torch threads, "
        "median of repeats; edges/s = a2a edges built per second; authors: bench_ref.json)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    results = run(repeats=args.repeats, threads=args.threads)
    print(format_table(results))
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
