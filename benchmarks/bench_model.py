"""Speed and memory of the GemNet-OC model (JMP-S size, float32, 2 threads) against the authors'.

Cases (each in a fresh subprocess, like the authors' ``bench_ref.json``):
``{molecules,slabs}_{graph,forward,forward_backward}`` on ``../shared/reference/bench_structures.extxyz``
(32 molecules, graph setting ani1x; 8 slabs, setting oc20):

* graph: per-structure graphs + collate + the batch's GemNet-OC indices;
* forward: ``model(batch)`` under ``torch.no_grad()`` (indices built inside, as the authors');
* forward_backward: energies and forces of the 4-task pre-training model, then
  ``energies.sum().backward()`` (parameter gradients), as the authors' case.

Reported: median seconds of 3 runs after 1 warm-up (1 run if the warm-up took > 60 s),
structures/s, peak resident memory (``ru_maxrss`` of the case's process), the FLOPs of one
pass (``torch.utils.flop_counter.FlopCounterMode``: matrix products only) over the time, the
machine's float32 matmul rate, and the authors' figures with our speed-up and memory ratio.

    .venv/bin/python benchmarks/bench_model.py [--cases slabs_forward ...] [--repeats 3]

``run(...) -> list[dict]`` does the same from Python.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("OPENJMP_SHARED", REPO.parent / "shared")) / "reference"
CASES = [
    f"{s}_{k}" for s in ("molecules", "slabs") for k in ("graph", "forward", "forward_backward")
]
TARGETS = {  # our speed-up over the authors' structures/s, and memory ratio
    "molecules_forward": 1.5,
    "slabs_forward": 2.0,
    "molecules_forward_backward": 1.3,
    "slabs_forward_backward": 2.0,
}
MEMORY_TARGET = 1 / 3  # fwd+bwd peak RSS relative to the authors'


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _structures(system: str) -> list:
    import ase.io

    frames = ase.io.read(REFERENCE / "bench_structures.extxyz", index=":")
    setting = "ani1x" if system == "molecules" else "oc20"
    return [a for a in frames if a.info.get("graph") == setting]


def _model(scale_file: Path | None):  # noqa: ANN202
    import torch

    from openjmp.model.gemnet_oc.config import GemNetOCConfig
    from openjmp.model.jmp_model import JMPModel

    torch.manual_seed(0)
    model = JMPModel.pretraining(GemNetOCConfig.jmp_s()).float()
    if scale_file is not None and scale_file.is_file():
        model.backbone.set_scale_factors(json.loads(scale_file.read_text()))
    return model


def _batch(frames: list):  # noqa: ANN202
    import torch

    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.graph.spec import graph_spec
    from openjmp.records import AtomsRecord

    samples = [
        build_graph_sample(
            AtomsRecord.from_ase(a), graph_spec(a.info["graph"]), dtype=torch.float32
        )
        for a in frames
    ]
    return collate(samples)


def _timed(fn, repeats: int) -> tuple[float, list[float], float]:  # noqa: ANN001
    t0 = time.perf_counter()
    fn()
    warm = time.perf_counter() - t0
    if warm > 60.0:
        return warm, [warm], warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, warm


def run_case(case: str, repeats: int = 3, flops: bool = True) -> dict[str, Any]:
    """Run one case in this process (call it in a fresh process for a clean peak RSS)."""
    import torch

    from openjmp.graph.indices import build_indices

    torch.set_num_threads(2)
    system, kind = case.split("_", 1)
    frames = _structures(system)
    rss_before = _peak_rss_mb()
    result: dict[str, Any] = {"case": case, "n_structures": len(frames)}
    result["natoms"] = sum(len(a) for a in frames)

    if kind == "graph":

        def fn() -> None:
            build_indices(_batch(frames))

    else:
        model = _model(REFERENCE / "scale_factors_small.json")
        batch = _batch(frames)
        heads_e = [n for n in model.heads if n.endswith("_energy")]
        if kind == "forward":
            model.eval()

            def fn() -> None:
                with torch.no_grad():
                    model(batch)

        else:
            model.train()

            def fn() -> None:
                model.zero_grad(set_to_none=True)
                out = model(batch)
                torch.stack([out[n] for n in heads_e]).sum().backward()

        idx = build_indices(batch)
        result.update({f"n_{k}": v for k, v in idx.counts().items()})

    rss_ready = _peak_rss_mb()
    median, times, warm = _timed(fn, repeats)
    result.update(
        seconds_median=median,
        seconds_all=times,
        warmup_seconds=warm,
        structures_per_s=len(frames) / median,
        peak_rss_mb=_peak_rss_mb(),
        rss_peak_before_case_mb=rss_before,
        rss_peak_ready_mb=rss_ready,
    )
    if flops and kind != "graph":
        from torch.utils.flop_counter import FlopCounterMode

        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        result["flops"] = counter.get_total_flops()
        result["gflops_per_s"] = result["flops"] / median / 1e9
    return result


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """float32 GFLOP/s of an n x n matrix product on 2 threads."""
    import torch

    torch.set_num_threads(2)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def _subprocess(args: list[str]) -> Any:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(cases: list[str] | None = None, repeats: int = 3, flops: bool = True) -> list[dict]:
    """Every case in a fresh subprocess, plus the machine's matmul rate; rows with the authors'
    figures (``ref_*``) and our speed-up / memory ratio attached."""
    ref_path = REFERENCE / "bench_ref.json"
    ref = json.loads(ref_path.read_text())["cases"] if ref_path.is_file() else {}
    rate = _subprocess(["--matmul-rate"])
    rows = []
    for case in cases or CASES:
        args = ["--case", case, "--repeats", str(repeats)] + ([] if flops else ["--no-flops"])
        row = _subprocess(args)
        row["matmul_gflops_per_s"] = rate
        r = ref.get(case)
        if r:
            row["ref_seconds_median"] = r["seconds_median"]
            row["ref_peak_rss_mb"] = r["peak_rss_mb"]
            row["speedup"] = r["seconds_median"] / row["seconds_median"]
            row["memory_ratio"] = row["peak_rss_mb"] / r["peak_rss_mb"]
            row["speedup_target"] = TARGETS.get(case)
        rows.append(row)
    return rows


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'case':<27}{'s':>8}{'struct/s':>10}{'peak MB':>9}{'GFLOP/s':>9}"
        f"{'ref s':>8}{'ref MB':>9}{'speedup':>9}{'target':>8}{'mem ratio':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        gf = r.get("gflops_per_s")
        tgt = r.get("speedup_target")
        print(
            f"{r['case']:<27}{r['seconds_median']:>8.2f}{r['structures_per_s']:>10.2f}"
            f"{r['peak_rss_mb']:>9.0f}{(f'{gf:.1f}' if gf else '-'):>9}"
            f"{r.get('ref_seconds_median', float('nan')):>8.2f}{r.get('ref_peak_rss_mb', float('nan')):>9.0f}"
            f"{r.get('speedup', float('nan')):>9.2f}{(f'{tgt:.1f}x' if tgt else '-'):>8}"
            f"{r.get('memory_ratio', float('nan')):>10.2f}"
        )
    if rows:
        print(
            f"\nfloat32 matmul rate (2048^2, 2 threads): {rows[0]['matmul_gflops_per_s']:.1f} GFLOP/s; "
            f"memory target for forward_backward: ratio <= {MEMORY_TARGET:.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="*", default=None, choices=CASES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-flops", action="store_true")
    p.add_argument("--json", type=Path, default=None, help="also write the rows to this file")
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # child process
    p.add_argument("--matmul-rate", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.matmul_rate:
        print(json.dumps(matmul_rate()))
        return 0
    if args.case:
        print(json.dumps(run_case(args.case, args.repeats, flops=not args.no_flops)))
        return 0
    rows = run(args.cases, args.repeats, flops=not args.no_flops)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
