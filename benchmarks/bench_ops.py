"""Where one pass's time goes, operator by operator: a `bench_model` case timed per ATen call.

Every ATen operator the pass runs, forward and backward (autograd's own kernels and those of
the fused autograd Functions alike), is timed with the wall clock around the call through a
``TorchDispatchMode``: a few microseconds of Python per call, so on the JMP-S cases (tens of
milliseconds per product) the timed pass takes about as long as a plain one, which is printed
beside it (the two differ by less than this machine's own run-to-run variation); on the small
demo model, with thousands of small operators, the timed pass is about 10 % longer.
torch.profiler gave another picture of the same pass: its per-call times of the element-wise
operators on (edges x 512) tensors were 4-5x what a timer like this one and a standalone loop
measure (silu of (15800, 512): 10 ms per call under the profiler, 2.4-2.9 ms timed in the
pass, 1.9 ms alone), which made silu and its gradient look like a sixth of the molecule
train_step; they are about 4 % of it.

Prints a table: per operator, calls, seconds, share of the pass and, for matrix products
(mm, addmm, bmm, oneDNN's linear), the GFLOP/s they ran at; then the shares of products,
element-wise and index operators. The pass runs twice plain (warm-up and malloc's heap, then
the plain time), once under the timer (discarded: the mode's first use of each operator
costs ~1 s in all), then once under the timer for the table.

    .venv/bin/python benchmarks/bench_ops.py molecules_train_step [--top 25] [--json FILE]

``--authors``: the same pass of the authors' GemNet-OC (``../shared/authors-bench/make_bench.py``'s
model and batch, through its ``jmpref.py``), run with the authors' environment set up as that
README says (``JMP_SRC`` set; nothing of openjmp is imported):

    JMP_SRC=$HOME/jmp_src $AUTHORS_PY benchmarks/bench_ops.py molecules_train_step --authors

Run it with nothing else running (see the README's Benchmarks section).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_model as bm  # noqa: E402

PRODUCTS = ("aten.mm", "aten.addmm", "aten.addmm_", "aten.bmm", "mkldnn._linear_pointwise")
ELEMENTWISE = (
    "aten.silu",
    "aten.silu_",
    "aten.silu_backward",
    "aten.mul",
    "aten.mul_",
    "aten.add",
    "aten.add_",
    "aten.sub",
    "aten.div",
    "aten.div_",
    "aten.exp",
    "aten.sigmoid",
    "aten.pow",
    "aten.neg",
    "aten.clone",
    "aten.copy_",
    "aten.fill_",
    "aten.zero_",
)
INDEX = (
    "aten.index_select",
    "aten.index_add_",
    "aten.index_add",
    "aten.index_copy_",
    "aten.index",
    "aten.index_put",
    "aten.index_put_",
    "aten._index_put_impl_",
    "aten.scatter_add_",
    "aten.scatter_add",
    "aten.scatter_reduce",
    "aten.gather",
    "aten.take",
)


def product_flops(name: str, args: tuple) -> int:
    """Floating-point operations (2 per multiply-add) of one matrix-product call."""
    import torch

    ts = [a for a in args if isinstance(a, torch.Tensor)]
    if name == "aten.mm":
        (n, k), m = ts[0].shape, ts[1].shape[1]
    elif name in ("aten.addmm", "aten.addmm_"):
        (n, k), m = ts[1].shape, ts[2].shape[1]
    elif name == "aten.bmm":
        (b, n, k), m = ts[0].shape, ts[1].shape[2]
        return 2 * b * n * k * m
    elif name == "mkldnn._linear_pointwise":  # x (..., k) @ w.T, w (m, k)
        x, w = ts[0], ts[1]
        n, k, m = x.numel() // x.shape[-1], x.shape[-1], w.shape[0]
    else:
        return 0
    return 2 * n * k * m


def profile(
    case: str, checkpointing: str = "auto", authors: bool = False, precision: str = "32-true"
) -> dict[str, Any]:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    torch.set_num_threads(bm.THREADS)
    system, _, kind = case.partition("_")
    if system not in bm.SYSTEMS or kind not in bm.KINDS or kind == "graph":
        raise SystemExit(f"bench_ops: unknown case {case!r} (a forward, forward_backward or "
                         "train_step case of bench_model.py)")  # fmt: skip
    if authors:  # (bm.authors_pass refuses the demo batch)
        if checkpointing != "auto":
            raise SystemExit("bench_ops: --activation-checkpointing is openjmp's, not the authors'")
        fn = bm.authors_pass(system, kind)
    else:
        frames = bm._structures(system)
        model = bm.build_demo_model() if system == "demo" else bm.build_model()
        model.set_activation_checkpointing(bm.CHECKPOINTING[checkpointing])
        batch = bm.build_batch(frames, demo=system == "demo")
        fn = bm.pass_fn(model, batch, kind)
    plain_fn = fn

    def fn() -> None:
        with bm.autocast("cpu", precision):
            plain_fn()

    fn()
    t0 = time.perf_counter()
    fn()
    plain = time.perf_counter() - t0

    ops: dict[str, list] = collections.defaultdict(lambda: [0, 0.0, 0])

    class Timer(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            t = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            dt = time.perf_counter() - t
            name = str(func.overloadpacket)
            row = ops[name]
            row[0] += 1
            row[1] += dt
            if name in PRODUCTS:
                row[2] += product_flops(name, args)
            return out

    with Timer():  # the dispatch mode's first use of each operator costs ~1 s in all: not timed
        fn()
    ops.clear()
    t0 = time.perf_counter()
    with Timer():
        fn()
    timed = time.perf_counter() - t0
    return {
        "case": f"authors' {case}" if authors else case,
        "threads": torch.get_num_threads(),
        "activation_checkpointing": "-" if authors else checkpointing,
        "precision": precision,
        "seconds_plain": plain,
        "seconds_timed": timed,
        "ops": {k: {"calls": v[0], "seconds": v[1], "flops": v[2]} for k, v in ops.items()},
    }


def print_table(result: dict[str, Any], top: int = 25) -> None:
    ops = result["ops"]
    timed = result["seconds_timed"]
    print(
        f"{result['case']}: {result['seconds_plain']:.3f} s plain, {timed:.3f} s timed per "
        f"operator ({result['threads']} threads, precision {result.get('precision', '32-true')}, "
        f"activation checkpointing {result['activation_checkpointing']})"
    )
    head = f"{'operator':<34}{'calls':>7}{'s':>9}{'%':>7}{'GFLOP/s':>9}"
    print(head)
    print("-" * len(head))
    for name, r in sorted(ops.items(), key=lambda kv: -kv[1]["seconds"])[:top]:
        rate = f"{r['flops'] / r['seconds'] / 1e9:.0f}" if r["flops"] and r["seconds"] else "-"
        print(
            f"{name:<34}{r['calls']:>7}{r['seconds']:>9.3f}{100 * r['seconds'] / timed:>7.1f}"
            f"{rate:>9}"
        )
    groups = {"matrix products": PRODUCTS, "element-wise": ELEMENTWISE, "index": INDEX}
    in_ops = sum(r["seconds"] for r in ops.values())
    parts = []
    for label, names in groups.items():
        s = sum(r["seconds"] for n, r in ops.items() if n in names)
        parts.append(f"{label} {s:.2f} s ({100 * s / timed:.0f} %)")
    rest = in_ops - sum(
        r["seconds"] for n, r in ops.items() if any(n in g for g in groups.values())
    )
    parts.append(f"other operators {rest:.2f} s ({100 * rest / timed:.0f} %)")
    parts.append(
        f"outside operators {timed - in_ops:.2f} s ({100 * (timed - in_ops) / timed:.0f} %)"
    )
    flops = sum(r["flops"] for r in ops.values())
    prod = sum(r["seconds"] for n, r in ops.items() if n in PRODUCTS)
    print("\n" + "; ".join(parts))
    if prod:
        print(f"matrix products: {flops / 1e9:.0f} GFLOP at {flops / prod / 1e9:.0f} GFLOP/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", help="a bench_model.py case, e.g. molecules_train_step")
    p.add_argument("--top", type=int, default=25, help="operators listed (default 25)")
    p.add_argument(
        "--activation-checkpointing",
        choices=tuple(bm.CHECKPOINTING),
        default="auto",
        help="as bench_model.py's option",
    )
    p.add_argument(
        "--authors",
        action="store_true",
        help="the authors' GemNet-OC instead (../shared/authors-bench; JMP_SRC set, their venv)",
    )
    p.add_argument(
        "--precision",
        choices=tuple(bm.PRECISIONS),
        default="32-true",
        help="as bench_model.py's option (the pass under that autocast)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the result to this file")
    args = p.parse_args(argv)
    result = profile(args.case, args.activation_checkpointing, args.authors, args.precision)
    print_table(result, args.top)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
