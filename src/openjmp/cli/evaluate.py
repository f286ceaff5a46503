"""``openjmp evaluate CHECKPOINT [--config CONFIG] [--set key=value ...] [--split test] [--out DIR]``.

Evaluates a fine-tuning checkpoint (``runs/<name>/checkpoints/best-*.ckpt``) on a part of its
data (``--split train|val|test|all``): metrics in physical units and in the paper's units
(meV for QM9 energies, meV/Å for forces, meV/atom for MatBench mp_e_form, ...), the paper's
JMP-S / JMP-L numbers when the run is one of its benchmarks, parity plots (PNG) and
``evaluation_<split>.json`` in ``--out`` (default ``<run>/evaluation``). ``--config`` (a YAML
file or preset, with ``--set``) replaces the configuration saved in the checkpoint, e.g. to
evaluate on other data.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openjmp.cli.args import add_overrides, positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="metrics, parity plots and JSON for a fine-tuned checkpoint"
    )
    p.add_argument(
        "checkpoint", type=Path, help="fine-tuning checkpoint (best-*.ckpt or last.ckpt)"
    )
    p.add_argument("--config", default=None, help="YAML file or preset replacing the saved config")
    add_overrides(p, "override a field of the config (saved one or --config)")
    p.add_argument(
        "--split",
        default="test",
        choices=("train", "val", "test", "all"),
        help="data part to evaluate (default: test)",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size")
    p.add_argument("--no-plots", action="store_true", help="skip the parity plots")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (also off when the environment sets CI)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openjmp import progress

    progress.set_enabled(not args.no_progress)
    from openjmp.config.finetune import FinetuneConfig
    from openjmp.config.load import load_config
    from openjmp.evaluate import evaluate_checkpoint, format_report

    config = None
    if args.config is not None:
        config = load_config(args.config, "finetune", args.overrides)
    elif args.overrides:
        from openjmp.config.load import apply_override, parse_override
        from openjmp.train.finetune.full import load_task

        data = load_task(args.checkpoint).config.model_dump(mode="json")
        for text in args.overrides:
            key, value = parse_override(text)
            apply_override(data, key, value, text)
        config = FinetuneConfig.model_validate(data)
    parts = ("train", "val", "test") if args.split == "all" else (args.split,)
    reports = evaluate_checkpoint(
        args.checkpoint,
        config=config,
        parts=parts,
        out_dir=args.out,
        batch_size=args.batch_size,
        plots=not args.no_plots,
    )
    for report in reports.values():
        print(format_report(report))
        for fig in report["figures"]:
            print(f"  parity plot: {fig}")
    return 0
