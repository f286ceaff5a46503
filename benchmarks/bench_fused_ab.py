"""Same-process A/B of the fused GemNet-OC kernels: the plain autograd path (A, ``backbone.
fused_kernels = False``) against the fused one (B, the default), on one `bench_model` case.

Both run on one model and one batch in one process, alternating A B / B A for ``--rounds``
rounds after a warm-up of each, so a machine shared with other work slows both alike: the
ratio A/B per round (and its median) is meaningful on a loaded machine where absolute seconds
are not. Also reported: the bytes autograd saves for backward on each path (counted through
``torch.autograd.graph.saved_tensors_hooks``; custom kernels' ``save_for_backward`` included),
the part of peak memory the fused kernels cut.

    .venv/bin/python benchmarks/bench_fused_ab.py molecules_train_step --rounds 3
    .venv/bin/python benchmarks/bench_fused_ab.py demo_train_step --rounds 15

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_model as bm  # noqa: E402


def saved_bytes(fn) -> int:  # noqa: ANN001
    """Bytes of the tensors autograd keeps for backward during ``fn()``."""
    import torch

    total = 0

    def pack(t):  # noqa: ANN001, ANN202
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def run_ab(case: str, rounds: int) -> dict:
    import torch

    torch.set_num_threads(bm.THREADS)
    system, kind = case.split("_", 1)
    model = bm.build_demo_model() if system == "demo" else bm.build_model()
    batch = bm.build_batch(bm._structures(system), demo=system == "demo")
    fn = bm.pass_fn(model, batch, kind)
    result: dict = {"case": case, "threads": torch.get_num_threads(), "rounds": rounds}
    for fused in (False, True):
        model.backbone.fused_kernels = fused
        fn()  # warm-up (index caches, allocator)
        if kind != "forward":
            result[f"saved_mb_{'fused' if fused else 'plain'}"] = saved_bytes(fn) / 2**20
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for fused in (False, True) if r % 2 == 0 else (True, False):
            model.backbone.fused_kernels = fused
            t0 = time.perf_counter()
            fn()
            times[fused].append(time.perf_counter() - t0)
    ratios = [a / b for a, b in zip(times[False], times[True])]
    result.update(
        plain_s=times[False],
        fused_s=times[True],
        ratios_plain_over_fused=ratios,
        median_ratio_plain_over_fused=statistics.median(ratios),
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", choices=[c for c in bm.CASES if not c.endswith("_graph")])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    print(json.dumps(run_ab(args.case, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
