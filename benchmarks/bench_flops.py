"""Arithmetic of one pass, ours and the authors', counted the same way.

For every case ``{molecules,slabs}_{forward,forward_backward,train_step}`` of
`bench_model` (same structures, model size and loss), this counts the floating-point
operations of one pass with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products:
mm, addmm, bmm, oneDNN's fused linear), in total, by operation and (forward cases) per part of
the model, for openjmp and for the authors' GemNet-OC, each side in a process of its own (the
authors' in their own environment, their modules
imported through ``../shared/authors-bench/jmpref.py``; see that folder's README for the
set-up), and prints both side by side. Counts do not depend on the machine or its load.

    .venv/bin/python benchmarks/bench_flops.py [--cases molecules_train_step ...]
    # the authors' side needs JMP_SRC and AUTHORS_PY (as side_by_side.sh); without them
    # only ours is counted.

The authors' side is run as ``$AUTHORS_PY benchmarks/bench_flops.py --authors-case CASE``,
which imports nothing from openjmp.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = [
    f"{s}_{k}"
    for s in ("molecules", "slabs")
    for k in ("forward", "forward_backward", "train_step")
]
GROUPS = (
    "bases",
    "int_blocks.trip_interaction",
    "int_blocks.quad_interaction",
    "int_blocks.atom_edge_interaction",
    "int_blocks.edge_atom_interaction",
    "int_blocks.atom_interaction",
    "int_blocks.other",
    "out_blocks",
    "out_mlp_E",
    "out_mlp_F",
    "heads",
    "rest",
)


def group_flops(counts: dict[str, dict]) -> dict[str, int]:
    """FlopCounterMode's per-module counts -> totals of `GROUPS` ("rest": everything else).

    FlopCounterMode charges an operation to every module on the call stack when it runs (a
    module's fully qualified name, not its ancestors'), so a group's count is the arithmetic
    done while that group's module runs, whatever it calls (shared basis layers included);
    no two groups are ever on the stack together, and "rest" is the total minus the groups.
    """
    totals = {n: sum(ops.values()) for n, ops in counts.items()}
    out: dict[str, int] = defaultdict(int)
    for name, flops in totals.items():
        p = name.split(".")[1:]  # drop the root module's class name
        if p[:1] in (["heads"], ["output"]) and len(p) == 2:
            out["heads"] += flops
        elif p == ["backbone", "bases"]:
            out["bases"] += flops
        elif p in (["backbone", "out_mlp_E"], ["backbone", "out_mlp_F"]):
            out[p[1]] += flops
        elif p[:2] == ["backbone", "out_blocks"] and len(p) == 3:
            out["out_blocks"] += flops
        elif p[:2] == ["backbone", "int_blocks"] and len(p) == 4:
            key = f"int_blocks.{p[3]}"
            out[key if key in GROUPS else "int_blocks.other"] += flops
    out["rest"] = totals.get("Global", 0) - sum(out.values())
    return dict(out)


def _count(fn) -> dict:  # noqa: ANN001
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def linear_pointwise(x, w, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        # oneDNN's fused linear (openjmp.model.gemnet_oc.fused): rows x in x out multiply-adds
        rows = 1
        for n in x[:-1]:
            rows *= n
        return 2 * rows * x[-1] * w[0]

    def addmm_inplace(c, a, b, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        # FlopCounterMode counts addmm but not its in-place form (the aggregations' weight
        # gradient accumulates with it): 2 x n x k x m
        return 2 * a[0] * a[1] * b[1]

    mapping = {torch.ops.aten.addmm_: addmm_inplace}
    if hasattr(torch.ops, "mkldnn") and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        mapping[torch.ops.mkldnn._linear_pointwise] = linear_pointwise
    counter = FlopCounterMode(display=False, depth=6, custom_mapping=mapping)
    with counter:
        fn()
    counts = counter.get_flop_counts()
    return {
        "flops": counter.get_total_flops(),
        "by_op": {str(k): int(v) for k, v in counts.get("Global", {}).items()},
        "by_part": group_flops(counts),
    }


def ours(case: str) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    import bench_model as bm

    torch.set_num_threads(2)
    system, kind = case.split("_", 1)
    model = bm.build_model()
    batch = bm.build_batch(bm._structures(system))
    fn = bm.pass_fn(model, batch, kind)
    fn()  # index caches etc. as in a timed pass
    return _count(fn)


def authors(case: str) -> dict:
    """The authors' model and pass, as ``../shared/authors-bench/make_bench.py case``."""
    import torch

    sys.path.insert(0, str(HERE))
    import bench_model as bm

    torch.set_num_threads(2)
    system, kind = case.split("_", 1)
    return _count(bm.authors_pass(system, kind))


def _subprocess(case: str, side: str) -> dict | None:
    """One side's count in a process of its own (each pass of JMP-S on these batches holds
    9-21 GB at its peak; two in one process, or one beside the other, would not fit)."""
    if side == "ours":
        py = sys.executable
    else:
        py = os.environ.get("AUTHORS_PY")
        if not py or not os.environ.get("JMP_SRC"):
            return None
    proc = subprocess.run(
        [py, str(Path(__file__).resolve()), f"--{side}-case", case],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
        cwd=os.environ.get("TMPDIR", "/tmp"),  # the authors' code writes lightning_logs/ here
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"{side}' count of {case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    return json.loads(lines[-1])


def _g(x: int | None) -> str:
    return "-" if x is None else f"{x / 1e9:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="*", default=CASES, choices=CASES)
    p.add_argument("--json", type=Path, default=None, help="also write the counts here")
    p.add_argument("--authors-case", default=None, help=argparse.SUPPRESS)
    p.add_argument("--ours-case", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.authors_case:
        print(json.dumps(authors(args.authors_case)))
        return 0
    if args.ours_case:
        print(json.dumps(ours(args.ours_case)))
        return 0
    rows = {}
    for case in args.cases:
        rows[case] = {"ours": _subprocess(case, "ours"), "authors": _subprocess(case, "authors")}
        o, a = rows[case]["ours"], rows[case]["authors"]
        ratio = f"{a['flops'] / o['flops']:.2f}" if a else "-"
        print(
            f"\n{case}: GFLOP ours {_g(o['flops'])}, authors {_g(a and a['flops'])}, "
            f"authors / ours {ratio}"
        )
        print(f"  {'part':<36}{'ours':>10}{'authors':>10}")
        # module attribution holds for forward passes only: in backward, torch's module
        # tracker charges gradients to whichever modules' hooks are open (sums go negative)
        for part in GROUPS if case.endswith("_forward") else ():
            print(
                f"  {part:<36}{_g(o['by_part'].get(part)):>10}"
                f"{_g(a['by_part'].get(part) if a else None):>10}"
            )
        ops = sorted(set(o["by_op"]) | set(a["by_op"] if a else ()))
        for op in ops:
            print(
                f"  {'op ' + re.sub(r'^aten.', '', op):<36}{_g(o['by_op'].get(op)):>10}"
                f"{_g(a['by_op'].get(op) if a else None):>10}"
            )
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
