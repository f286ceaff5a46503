"""The study's replay arm: what fine-tuning costs outside the target, and what replay keeps.

On the force task (``REPLAY_TASKS``), one more arm, seed 0 only (the 15-minute budget): the
pre-trained backbone fine-tuned with ``adaptation: replay``, the four pre-training datasets
replayed through their kept heads (ratio ``REPLAY_RATIO``, the pre-training loss weights),
same data, head, budget and early stopping as the other arms. Then, for scratch, full
fine-tuning ("pretrained") and replay, seed 0:

* the target's test error (from the runs);
* the energy (meV/atom) and force (meV/Å) MAE on every pre-training dataset's validation part
  (its first `FORGETTING_STRUCTURES`)
  through the pre-training heads: kept ones for replay, the pre-trained heads grafted onto the
  fully fine-tuned backbone, none for scratch (it never had them); beside them the
  pre-trained model's own (`openjmp.train.finetune.forgetting`);
* dimer curves (short-range repulsion) of the three models' target energy heads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from openjmp.config.finetune import FinetuneConfig
from openjmp.config.pretrain import PretrainConfig
from openjmp.study.tasks import Budget, DemoTask, finetune_config

REPLAY_TASKS = ("md_forces",)
REPLAY_RATIO = 0.5
"""Replayed structures per target structure: a third of every batch on average."""
FORGETTING_STRUCTURES = 200
"""Validation structures per pre-training set in the forgetting table (the time budget)."""
DIMER_PAIRS = ((6, 1), (8, 1), (1, 1))
"""C-H, O-H, H-H: the bonds of the force task's molecule (ethanol)."""


def replay_config(
    task: DemoTask, pretrain: PretrainConfig, budget: Budget, checkpoint: Path, seed: int
) -> FinetuneConfig:
    """The replay arm of ``task``: the pre-trained arm's config with ``adaptation: replay``
    and the pre-training datasets (their sources, split, graph and loss weights)."""
    from openjmp.train.finetune.forgetting import replay_from_pretrain_config

    data = finetune_config(task, pretrain, budget, checkpoint=checkpoint, seed=seed).model_dump(
        mode="json"
    )
    section = replay_from_pretrain_config(pretrain).model_dump(mode="json")
    data["name"] = f"{task.name}-replay-seed{seed}"
    data["adaptation"] = "replay"
    data["replay"] = {**section, "ratio": REPLAY_RATIO}
    return FinetuneConfig.model_validate(data)


def forgetting_table(
    pretrain: PretrainConfig,
    pretrained: Path,
    checkpoints: dict[str, Path | None],
    cache_dir: Path,
    batch_size: int,
    limit: int = FORGETTING_STRUCTURES,
) -> dict[str, dict[str, Any]]:
    """{dataset: {arm: errors or None, "pre-trained": errors}} on the first ``limit``
    structures of the pre-training sets' validation parts (module docstring);
    ``checkpoints``: arm -> its best checkpoint."""
    from openjmp.model.checkpoint import load_checkpoint
    from openjmp.train.finetune.data import Part
    from openjmp.train.finetune.forgetting import (
        dataset_errors,
        replay_from_pretrain_config,
        with_pretraining_heads,
    )
    from openjmp.train.finetune.replay import ReplaySource, load_replay_sources

    replay = replay_from_pretrain_config(pretrain)
    sources = [
        ReplaySource(s.spec, s.train, Part(s.val.store, s.val.indices[:limit]))
        for s in load_replay_sources(replay, cache_dir)
    ]
    names = [s.spec.name for s in sources]
    base = load_checkpoint(pretrained)
    models: dict[str, Any] = {}
    for arm, path in checkpoints.items():
        if arm == "scratch" or path is None:
            models[arm] = None  # never had the pre-training heads
            continue
        models[arm] = with_pretraining_heads(load_checkpoint(path), base, names)[0]
    table: dict[str, dict[str, Any]] = {}
    for s in sources:
        row: dict[str, Any] = {"pre-trained": dataset_errors(base, s, batch_size)}
        for arm, model in models.items():
            row[arm] = None if model is None else dataset_errors(model, s, batch_size)
        table[s.spec.name] = row
    return table


def dimer_energies(checkpoints: dict[str, Path | None], cutoff: float) -> dict[str, Any]:
    """{arm: {pair: (r, E(r) − E(r_max))}} from each model's target energy head (eV)."""
    from ase import Atoms
    from ase.data import chemical_symbols

    from openjmp.api import Predictor, load_model

    r = np.arange(0.4, cutoff - 0.05, 0.05)
    out: dict[str, Any] = {}
    for arm, path in checkpoints.items():
        if path is None:
            continue
        model = load_model(path)
        predictor = Predictor(model, head="energy", forces="none", unknown_elements="ignore")
        curves = {}
        for z1, z2 in DIMER_PAIRS:
            frames = [Atoms(numbers=[z1, z2], positions=[[0, 0, 0], [0, 0, d]]) for d in r]
            e = np.asarray(predictor(frames).energies, dtype=np.float64)
            curves[f"{chemical_symbols[z1]}-{chemical_symbols[z2]}"] = (
                r.tolist(),
                (e - e[-1]).tolist(),
            )
        out[arm] = curves
    return out
