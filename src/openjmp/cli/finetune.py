"""``openjmp finetune CONFIG [--set key=value ...] [--out DIR] [--resume] [--frozen ridge|mlp]``.

CONFIG is a YAML file (may start with ``extends: <preset>``) or a preset name: every benchmark
of the paper (``rmd17-aspirin``, ``qm9-u_0``, ``md22-dha``, ``spice-dipeptides``,
``matbench-mp_gap-fold3``, ``qmof``; ``jmp-s-<name>`` for the JMP-S recipe) and your own data
(``user-energy-forces``, ``user-property``). ``--set`` overrides any field by dotted path, e.g.
``--set model.checkpoint=jmp-l.pt --set data.train.path=rmd17_aspirin.npz``;
``--set model.checkpoint=null`` trains the same network from scratch (the baseline).

The run writes into ``--out`` (default ``<trainer.output_dir>/<name>``); ``--resume`` continues
its ``checkpoints/last.ckpt``. ``--residual-references HEAD`` starts the energy (or scalar)
head from that head of an openjmp ``model.checkpoint`` and fits the per-element references to
its residual (label − pre-trained prediction). ``--frozen ridge`` (or ``mlp``) skips end-to-end training: the
pre-trained backbone's pooled features feed a ridge regression (or a small MLP), fitted in
seconds on a CPU, for tiny datasets. Prints the best validation metric and the metrics of the
best checkpoint; ``openjmp evaluate`` then reports them in the paper's units.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP_PRESETS = ("rmd17-aspirin", "qm9-u_0", "md22-dha", "spice-dipeptides",
                "matbench-mp_gap-fold3", "qmof", "user-energy-forces", "user-property")  # fmt: skip
"""Preset names shown in ``--help``, spelled as `openjmp.config.presets.preset_names` lists them."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pre-trained (or fresh) model (the JMP recipe)")
    p.add_argument(
        "config",
        help=f"YAML file or preset name: {', '.join(HELP_PRESETS)}, ... (jmp-s-<name> for the "
        "JMP-S recipe; names are case-insensitive)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted path (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from the run's last.ckpt")
    p.add_argument("--frozen", choices=("ridge", "mlp"), default=None,
                   help="frozen backbone: fit a ridge regression or a small MLP on pooled features")  # fmt: skip
    p.add_argument("--residual-references", metavar="HEAD", default=None,
                   help="start the energy/scalar head from this head of model.checkpoint (an openjmp "
                   "run: a pre-training dataset name or a fine-tuned head name) and fit the "
                   "per-element references to its residual")  # fmt: skip
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (also off when the environment sets CI)")  # fmt: skip
    p.set_defaults(func=run)


def metric_unit(config: object, key: str) -> str | None:
    """The physical unit of a fine-tuning metric (``energy_mae`` -> eV, ``forces_mae`` -> eV/Å,
    a QM9 / MatBench / QMOF target's unit); "" for unitless scores, None when the data's unit
    is not known (your own targets: the unit of your labels)."""
    from openjmp.evaluate import paper_unit

    for suffix in ("_mae", "_rmse"):
        if key.endswith(suffix):
            factor, unit = paper_unit(config, key[: -len(suffix)])  # type: ignore[arg-type]
            if factor == 1000.0 and unit.startswith("m"):
                return unit[1:]  # the paper's meV... is eV... in the data
            return unit if factor == 1.0 and unit else None
    return ""


def _print_metrics(metrics: dict[str, dict[str, float]], config: object) -> None:
    for part, values in metrics.items():
        shown = []
        for k, v in values.items():
            if k.endswith("_rmse"):
                continue
            unit = metric_unit(config, k)
            shown.append(
                f"{k} {v:.5g}" + ("" if unit == "" else f" {unit or '(unit of the labels)'}")
            )
        print(f"  {part:<6}{', '.join(shown)}")


def _named_after_data(config: object, args: argparse.Namespace) -> object:
    """The ``user-*`` presets name a run after its data (``mydata-energy-forces`` for
    ``mydata.extxyz``) unless ``--set name=`` names it."""
    is_user_preset = "user-" in str(args.config) and not str(args.config).endswith(
        (".yaml", ".yml")
    )
    if not is_user_preset or any(o.split("=", 1)[0].strip() == "name" for o in args.overrides):
        return config
    stem = Path(str(config.data.train.path)).name.split(".")[0]  # type: ignore[attr-defined]
    kind = str(config.name).split("user-", 1)[-1]  # type: ignore[attr-defined]
    return config.model_copy(update={"name": f"{stem}-{kind}"})  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    from openjmp import progress

    progress.set_enabled(not args.no_progress)
    from openjmp.config.finetune import FinetuneConfig
    from openjmp.config.load import load_config

    overrides = list(args.overrides)  # the shorthands are config fields (saved in config.yaml)
    if args.frozen is not None:
        overrides.append(f"adaptation={args.frozen}")
    if args.residual_references is not None:
        overrides.append(f"residual_references={args.residual_references}")
    config = load_config(args.config, "finetune", overrides)
    assert isinstance(config, FinetuneConfig)
    config = _named_after_data(config, args)
    out = args.out if args.out is not None else config.trainer.output_dir / config.name
    from openjmp.train.finetune.run import run_finetune

    result = run_finetune(config, out_dir=out, resume=args.resume, progress=not args.no_progress)
    best = "n/a" if result.best_metric is None else f"{result.best_metric:.6g}"
    unit = metric_unit(config, result.monitor)
    if result.best_metric is not None and unit:
        best += f" {unit}"
    print(f"{config.name}: best val {result.monitor} {best} ({result.steps} steps, "
          f"{result.wall_time:.0f} s, stopped by {result.stop_reason})")  # fmt: skip
    _print_metrics(result.metrics, config)
    print(f"best weights: {result.best_checkpoint}")
    return 0
