"""``openjmp evaluate CHECKPOINT [--config CONFIG] [--set key=value ...] [--split test] [--out DIR]``.

Evaluates a fine-tuning checkpoint (``runs/<name>/checkpoints/best-*.ckpt``) on a part of its
data (``--split train|val|test|all``): metrics in physical units and in the paper's units
(meV for QM9 energies, meV/Å for forces, meV/atom for MatBench mp_e_form, ...), the paper's
JMP-S / JMP-L numbers when the run is one of its benchmarks, parity plots (PNG) and
``evaluation_<split>.json`` in ``--out`` (default ``<run>/evaluation``). ``--config`` (a YAML
file or preset, with ``--set``) replaces the configuration saved in the checkpoint, e.g. to
evaluate on other data. ``--forgetting`` (``--pretrained CKPT``, ``--pretrain-config YAML``)
reports the error on the target beside, per pre-training dataset, the error through the
pre-training heads of the fine-tuned and of the pre-trained model (`openjmp.evaluate.
evaluate_forgetting`).
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
        default=None,
        choices=("train", "val", "test", "all"),
        help="data part to evaluate (default: test; val with --forgetting)",
    )
    p.add_argument("--out", type=Path, default=None, help="output directory")
    p.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size")
    p.add_argument("--no-plots", action="store_true", help="skip the parity plots")
    p.add_argument(
        "--forgetting",
        action="store_true",
        help="also evaluate on the pre-training datasets' validation parts through the "
        "pre-training heads, beside the pre-trained model (split: val unless given)",
    )
    p.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="--forgetting: the pre-trained checkpoint (default: the run's model.checkpoint)",
    )
    p.add_argument(
        "--pretrain-config",
        default=None,
        help="--forgetting: pre-training config naming the datasets (default: the run's "
        "replay section)",
    )
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
    if args.forgetting:
        from openjmp.errors import ConfigError
        from openjmp.evaluate import evaluate_forgetting, format_forgetting

        if config is not None or args.split == "all":
            raise ConfigError("--forgetting evaluates one part of the run's own data: no "
                              "--config, --set or --split all")  # fmt: skip
        part = args.split or "val"
        report = evaluate_forgetting(
            args.checkpoint,
            pretrained=args.pretrained,
            pretrain_config=args.pretrain_config,
            part=part,
            out_dir=args.out,
            batch_size=args.batch_size,
        )
        print(format_forgetting(report))
        return 0
    split = args.split or "test"
    parts = ("train", "val", "test") if split == "all" else (split,)
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
