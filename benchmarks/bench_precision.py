"""Mixed precision against float32, ours and the authors', in one run: speed, memory, error.

For each case (default: the molecule and slab ``train_step`` of `bench_model.py`), each round
runs in fresh processes, alternating: the authors' pass in float32, ours in float32, the
authors' under ``--precision`` (default ``bf16-mixed``: ``torch.autocast`` with bfloat16 on
CPU), ours under it; each the median of ``--repeats`` after a warm-up, however long the warm-up
(`bench_model.run_case`).
Then, once per batch and side, the relative error of one forward pass's energies and forces
under that precision against float32 (norm of the difference over the float32 norm; random
weights, the benchmark's model), and the machine's float32 and bfloat16 matmul rates (2048²,
2 threads) before and after. Prints one table; ``--json FILE`` keeps the rows.

    JMP_SRC=... AUTHORS_PY=... .venv/bin/python benchmarks/bench_precision.py \\
        [--cases molecules_train_step slabs_train_step] [--rounds 2] [--repeats 2]

The authors' side needs their code and environment (../shared/authors-bench/README.md:
JMP_SRC, the checkout; AUTHORS_PY, its python). Run it with nothing else running on the
machine (README, Benchmarks): a speed-up is only meaningful within one such run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_model  # noqa: E402  (this folder's module)


def _rates() -> dict[str, float]:
    return {d: bench_model.matmul_rate(dtype=d) for d in ("float32", "bfloat16")}


def run(cases: list[str], rounds: int, repeats: int, precision: str, authors_py: str) -> dict:
    """Timed rows (``rounds`` x cases x sides x precisions), accuracy rows and matmul rates."""
    ours_py = sys.executable
    rates = [_rates()]
    rows = []
    for r in range(rounds):
        for case in cases:
            for prec in ("32-true", precision):
                for side, py in (("authors", authors_py), ("openjmp", ours_py)):
                    args = ["--case", case, "--repeats", str(repeats), "--no-flops"]
                    args += ["--warmup-limit", "inf"]  # always the median after a warm-up
                    args += ["--precision", prec] + (["--authors"] if side == "authors" else [])
                    row = bench_model._subprocess(args, py)
                    row["round"] = r + 1
                    rows.append(row)
                    print(
                        f"round {r + 1} {case} {side} {prec}: {row['seconds_median']:.2f} s, "
                        f"{row['peak_rss_mb'] / 1024:.2f} GB",
                        file=sys.stderr,
                        flush=True,
                    )
    rates.append(_rates())
    errors = []
    for system in sorted({c.split("_", 1)[0] for c in cases}):
        for side, py in (("authors", authors_py), ("openjmp", ours_py)):
            args = ["--case", f"{system}_forward", "--accuracy", "--precision", precision]
            errors.append(
                bench_model._subprocess(args + (["--authors"] if side == "authors" else []), py)
            )
    return {"rows": rows, "accuracy": errors, "matmul_rates": rates}


def print_table(result: dict, precision: str) -> None:
    rows = result["rows"]
    cases = list(dict.fromkeys(r["case"] for r in rows))
    rounds = sorted({r["round"] for r in rows})

    def cell(case: str, side: str, prec: str, key: str, scale: float = 1.0):  # noqa: ANN202
        vals = [
            r[key] / scale
            for rd in rounds
            for r in rows
            if (r["case"], r["side"], r["precision"], r["round"]) == (case, side, prec, rd)
        ]
        return ", ".join(f"{v:.2f}" for v in vals), vals

    print("| case | precision | authors (s) | openjmp (s) | speed-up | peak GB authors / openjmp |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        for prec in ("32-true", precision):
            a_txt, a = cell(case, "authors", prec, "seconds_median")
            o_txt, o = cell(case, "openjmp", prec, "seconds_median")
            _, am = cell(case, "authors", prec, "peak_rss_mb", 1024)
            _, om = cell(case, "openjmp", prec, "peak_rss_mb", 1024)
            ratio = ", ".join(f"{x / y:.2f}x" for x, y in zip(a, o, strict=True))
            mem = ", ".join(f"{x:.2f} / {y:.2f}" for x, y in zip(am, om, strict=True))
            print(f"| {case} | {prec} | {a_txt} | {o_txt} | {ratio} | {mem} |")
    print()
    for case in cases:
        for side in ("authors", "openjmp"):
            _, t32 = cell(case, side, "32-true", "seconds_median")
            _, tlow = cell(case, side, precision, "seconds_median")
            gain = ", ".join(f"{x / y:.2f}x" for x, y in zip(t32, tlow, strict=True))
            print(f"{case} {side}: {precision} against 32-true: {gain}")
    print()
    for e in result["accuracy"]:
        print(
            f"{e['case'].split('_')[0]} forward, {e['side']}, {e['precision']} vs float32: "
            f"relative error energies {e['rel_energy']:.2e}, forces {e['rel_forces']:.2e}"
        )
    before, after = result["matmul_rates"]
    print(
        f"\nmatmul rate (2048², {bench_model.THREADS} threads), GFLOP/s: float32 "
        f"{before['float32']:.0f} before, {after['float32']:.0f} after; bfloat16 "
        f"{before['bfloat16']:.0f} before, {after['bfloat16']:.0f} after"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", nargs="+", default=["molecules_train_step", "slabs_train_step"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--precision",
        default="bf16-mixed",
        choices=[k for k in bench_model.PRECISIONS if k != "32-true"],
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    authors_py = os.environ.get("AUTHORS_PY")
    if not authors_py or not os.environ.get("JMP_SRC"):
        p.error("set AUTHORS_PY (the authors' environment's python) and JMP_SRC (their code)")
    for case in args.cases:
        system, kind = case.split("_", 1) if "_" in case else (case, "")
        if system not in ("molecules", "slabs") or kind not in bench_model.KINDS[1:]:
            p.error(
                f"{case!r}: the cases are {{molecules,slabs}}_{{forward,forward_backward,train_step}}"
            )
    result = run(args.cases, args.rounds, args.repeats, args.precision, authors_py)
    print_table(result, args.precision)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
