"""`openjmp demo`: the README's main job, the whole JMP study on embedded data (no downloads)."""

from __future__ import annotations

import argparse
from pathlib import Path

from openjmp.cli.args import positive_float, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the JMP study on embedded data: corpus, pre-training, two-arm fine-tuning, report",
    )
    p.add_argument("--out", type=Path, default=Path("openjmp-demo"), help="output directory")
    p.add_argument(
        "--scale",
        type=positive_float,
        default=1.0,
        help="corpus size and budget (0.05: a ~2 min smoke run)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the corpus and pre-training")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch intra-op threads (default: torch's choice, one per core); use 1 when another "
        "process keeps a core busy: two busy threads on one core slow each step about tenfold",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from openjmp.study.run import run_study

    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    run_study(args.out, scale=args.scale, seed=args.seed)
    return 0
