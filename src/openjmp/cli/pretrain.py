"""``openjmp pretrain CONFIG [--set key=value ...] [--out DIR] [--resume]``: JMP pre-training.

CONFIG is a YAML file or a preset name (``jmp-s``, ``jmp-l``, ``demo``; see
``openjmp/config/presets/pretrain``). ``--set`` overrides any field by its dotted path
(``--set trainer.max_steps=100``, ``--set datasets.0.train.path=/data/oc20/train``);
``--set data_root=DIR`` moves every relative source path at once (the demo preset reads
``demo-corpus/``, made by ``openjmp data make-demo demo-corpus``). Setting one of
``trainer.max_steps`` / ``schedule.max_steps`` sets the other when the schedule counts steps.
Missing sources are reported before anything starts. The run
writes into ``--out`` (default: ``<trainer.output_dir>/<name>``); ``--resume`` continues its
``checkpoints/last.ckpt``. Prints the validation curve ends and where the model was saved.
``--prepare-only`` reads every source into the run's record cache and resolves the
normalisation, then stops: run it once before a multi-process launch, so the ranks do not all
convert the same sources at the same time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openjmp.cli.args import add_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="multi-dataset pre-training (the JMP recipe)")
    p.add_argument("config", help="YAML file or preset name (jmp-s, jmp-l, demo)")
    add_overrides(p, "override a config field by dotted path (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's last.ckpt")
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (also off when the environment sets CI)",
    )
    p.add_argument(
        "--prepare-only",
        action="store_true",
        help="build the data caches and normalisation, then stop",
    )
    p.set_defaults(func=run)


def check_sources(config, name: str) -> None:
    """`ConfigError` naming every source path that does not exist, before any work; for the
    demo preset, the command that makes its corpus."""
    from openjmp.errors import ConfigError

    missing = []
    for i, d in enumerate(config.resolved_datasets()):
        for part in ("train", "val"):
            src = getattr(d, part)
            if src is not None and not Path(src.path).exists():
                missing.append(f"datasets.{i}.{part}.path: {src.path} not found")
    if not missing:
        return
    root = f"data_root={config.data_root}" if config.data_root is not None else "no data_root"
    text = f"{name}: {len(missing)} data source(s) missing ({root}):\n  " + "\n  ".join(missing)
    if str(name).lower() == "demo":
        corpus = config.data_root or Path("demo-corpus")
        text += (
            f"\nMake the demo corpus with:  openjmp data make-demo {corpus}\n"
            "or point the preset at a copy made elsewhere:  --set data_root=DIR"
        )
    else:
        text += "\nRelative paths are read from data_root (--set data_root=DIR)."
    raise ConfigError(text)


def run(args: argparse.Namespace) -> int:
    from openjmp import progress

    progress.set_enabled(not args.no_progress)
    from openjmp.config.load import load_config
    from openjmp.config.pretrain import PretrainConfig
    from openjmp.train.pretrain import build_datamodule, run_pretrain

    config = load_config(args.config, "pretrain", args.overrides)
    assert isinstance(config, PretrainConfig)
    check_sources(config, args.config)
    out = args.out if args.out is not None else config.trainer.output_dir / config.name
    if args.prepare_only:
        dm = build_datamodule(config, out)
        print(f"{'dataset':<20}{'train':>8}{'val':>6}{'E std (eV)':>12}{'F std (eV/Å)':>14}")
        for p in dm.prepared:
            n = p.normalization
            print(
                f"{p.spec.name:<20}{len(p.train_indices):>8}{len(p.val_indices):>6}"
                f"{n.energy_std:>12.4g}{n.force_std:>14.4g}"
            )
        print(f"expanded epoch: {dm.plan.epoch_size} structures; caches in {out / 'cache'}")
        return 0
    result = run_pretrain(config, out_dir=out, resume=args.resume, progress=not args.no_progress)
    if result.val_history:
        (s0, first), (s1, last) = result.val_history[0], result.val_history[-1]
        print(f"validation, step {s0} -> step {s1}:")
        print(f"  {'dataset':<20}{'loss':>18}{'energy MAE (eV)':>24}{'force MAE (eV/Å)':>24}")
        for name, end in last.items():
            start = first.get(name, {})

            def pair(key: str, start=start, end=end) -> str:
                return f"{start.get(key, float('nan')):.4g} -> {end[key]:.4g}"

            print(f"  {name:<20}{pair('loss'):>18}{pair('energy_mae'):>24}{pair('force_mae'):>24}")
    print(
        f"{result.steps} steps, {result.structures_seen} structures, {result.wall_time:.0f} s; "
        f"model (EMA weights): {result.checkpoint}"
    )
    return 0
