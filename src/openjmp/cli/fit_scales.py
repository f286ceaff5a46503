"""`openjmp fit-scales STRUCTURES -o SCALES.json`: fit GemNet-OC scale factors for a configuration.

The model is a fresh JMP-S / JMP-L preset, a backbone config JSON (the authors' key names), or
a checkpoint (``--checkpoint``); the factors are fitted on the first ``--num-batches`` batches of
the structures (the authors' procedure, `openjmp.model.scale_fit`) and written as JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from openjmp.cli.args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fit-scales",
        help="fit the GemNet-OC scale factors of a model configuration",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("structures", type=Path, help="any file ase.io.read can read")
    p.add_argument("-o", "--output", type=Path, required=True, help="scale file (.json) to write")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", choices=["jmp-s", "jmp-l"], default="jmp-s")
    src.add_argument("--config", type=Path, help="backbone config JSON (authors' key names)")
    src.add_argument("--checkpoint", type=Path, help="start from this checkpoint's model")
    p.add_argument("--graph", default="oc20", help="graph setting of the structures")
    p.add_argument("--batch-size", type=positive_int, default=8, help="structures per batch")
    p.add_argument("--num-batches", type=positive_int, default=16)
    p.add_argument("--seed", type=int, default=0, help="initialisation seed of a fresh model")
    p.add_argument(
        "--fitted",
        choices=["replace", "ignore", "error"],
        default="replace",
        help="what to do with factors that already have values",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import ase.io
    import torch

    from openjmp.errors import ConfigError, DataError
    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.graph.spec import graph_spec
    from openjmp.model.checkpoint import load_checkpoint
    from openjmp.model.gemnet_oc.config import GemNetOCConfig
    from openjmp.model.jmp_model import JMPModel
    from openjmp.model.scale_fit import fit_scale_factors, save_scale_file
    from openjmp.records import AtomsRecord

    if args.checkpoint is not None:
        model = load_checkpoint(args.checkpoint)
    else:
        if args.config is not None:
            try:
                cfg = json.loads(args.config.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{args.config}: cannot read config JSON: {exc}") from None
            config = GemNetOCConfig.from_dict(cfg.get("backbone", cfg), source=str(args.config))
        else:
            config = GemNetOCConfig.jmp_s() if args.preset == "jmp-s" else GemNetOCConfig.jmp_l()
        torch.manual_seed(args.seed)
        model = JMPModel.pretraining(config, tasks=("fit",))
    try:
        frames = ase.io.read(str(args.structures), index=":")
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise DataError(args.structures, None, f"ASE cannot read it: {exc}") from None
    frames = frames[: args.batch_size * args.num_batches]
    if not frames:
        raise DataError(args.structures, None, "no structures in the file")
    samples = [
        build_graph_sample(
            AtomsRecord.from_ase(a, source=str(args.structures), index=i, read_labels=False),
            graph_spec(args.graph, len(a)),
            dtype=model.dtype,
        )
        for i, a in enumerate(frames)
    ]
    batches = [
        collate(samples[i : i + args.batch_size]) for i in range(0, len(samples), args.batch_size)
    ]
    values = fit_scale_factors(model, batches, fitted=args.fitted, log=print)
    save_scale_file(values, args.output)
    print(f"wrote {len(values)} scale factors to {args.output}")
    return 0
