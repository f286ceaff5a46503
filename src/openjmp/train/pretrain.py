"""`run_pretrain`: one JMP pre-training run from a `PretrainConfig` (what ``openjmp pretrain`` does).

Layout of ``out_dir``::

    config.yaml              the resolved configuration of the run
    cache/                   record caches of every source, normalisation JSON per dataset
    checkpoints/last.ckpt    Lightning checkpoint of the last validation and of the final step
    checkpoints/best-*.ckpt  best by the mean validation loss
    logs/csv/version_*/      every logged value, one version per launch (TensorBoard in
                             logs/tensorboard when installed)
    model.pt                 final EMA weights as an openjmp model file (fine-tuning starts here)

Both ``last.ckpt`` and ``model.pt`` load with `openjmp.model.checkpoint.load_checkpoint` (EMA
weights by default). ``resume=True`` continues ``checkpoints/last.ckpt``: same step, optimizer
and scheduler state, EMA, sampler position and edge-dropout draws.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import yaml
from lightning.pytorch.callbacks import Callback

from openjmp.config.pretrain import PretrainConfig
from openjmp.errors import CheckpointError
from openjmp.io.paths import check_writable_dir
from openjmp.model.checkpoint import save_model
from openjmp.progress import enabled_as as progress_on
from openjmp.tasks.optimizer import optimization_settings
from openjmp.tasks.pretrain import (
    DatasetTask,
    PretrainTask,
    disable_dropout_boost,
)
from openjmp.train.backbone import build_backbone
from openjmp.train.callbacks import elapsed_time
from openjmp.train.datamodule import MultiDatasetDataModule
from openjmp.train.trainer import build_trainer, model_dtype

ValHistory = list[tuple[int, dict[str, dict[str, float]]]]


@dataclass
class PretrainResult:
    """What a pre-training run produced.

    Attributes:
        checkpoint: ``model.pt``, the final EMA weights (openjmp model file).
        last_checkpoint: ``checkpoints/last.ckpt`` (Lightning; resumable).
        val_history: (optimizer step, {dataset: {energy_mae eV, force_mae eV/Å, loss}}) per
            validation, the first at step 0 (before training).
        train_history: (optimizer step, training loss) per step.
        wall_time: seconds of the whole run, every launch of a resumed run included (each
            launch's time up to its last checkpoint, then this call's).
        structures_seen: training structures drawn, summed over ranks.
        steps: optimizer steps done.
    """

    checkpoint: Path
    last_checkpoint: Path
    val_history: ValHistory = field(default_factory=list)
    train_history: list[tuple[int, float]] = field(default_factory=list)
    wall_time: float = 0.0
    structures_seen: int = 0
    steps: int = 0


def build_datamodule(config: PretrainConfig, out_dir: Path) -> MultiDatasetDataModule:
    return MultiDatasetDataModule(
        config.resolved_datasets(),
        config.loader,
        Path(out_dir) / "cache",
        sampling=config.sampling,
        edge_dropout=config.edge_dropout,
        seed=config.trainer.seed,
    )


def build_task(config: PretrainConfig, dm: MultiDatasetDataModule) -> PretrainTask:
    norms = dm.normalizations
    tasks = [
        DatasetTask(
            name=d.name,
            references=norms[d.name].references,
            energy_mean=norms[d.name].energy_mean,
            energy_std=norms[d.name].energy_std,
            force_std=norms[d.name].force_std,
            energy_coefficient=d.energy_coefficient,
            force_coefficient=d.force_coefficient,
            graph=d.graph.spec(),
            elements=norms[d.name].elements or None,
        )
        for d in config.datasets
    ]
    opt = optimization_settings(config.optimizer, config.schedule, precision=config.precision)
    if config.model.checkpoint is not None or config.model.scale_file is not None:
        raise CheckpointError(
            "pre-training from a checkpoint or with a scale file is not supported yet: set "
            "model.checkpoint and model.scale_file to null (the authors pre-train from scratch "
            "with unfitted scale factors)"
        )
    return PretrainTask(
        build_backbone(config.model, direct_forces=True, edge_dropout=config.edge_dropout)[0],
        tasks,
        opt,
        shared_gradient_scaling=config.shared_gradient_scaling,
        activation_checkpointing=config.model.activation_checkpointing,
        dtype=model_dtype(config.precision),
    )


def _write_config(config: PretrainConfig, out_dir: Path) -> None:
    from openjmp.io.paths import atomic_write_bytes

    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_bytes(out_dir / "config.yaml", text.encode())


def run_pretrain(
    config: PretrainConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    checkpoint_every_n_steps: int | None = None,
    logger: bool = True,
) -> PretrainResult:
    """Pre-train as ``config`` says, writing into ``out_dir`` (module docstring).

    ``resume``: continue ``out_dir/checkpoints/last.ckpt`` (`CheckpointError` if missing).
    ``callbacks`` are added to the Trainer's (tests use them to stop a run at a given step).
    """
    t0 = time.perf_counter()
    out_dir = check_writable_dir(out_dir, "run directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    last = out_dir / "checkpoints" / "last.ckpt"
    if resume and not last.is_file():
        raise CheckpointError(f"{last}: nothing to resume (no last checkpoint in {out_dir})")
    if int(os.environ.get("LOCAL_RANK", "0")) == 0 and not resume:
        _write_config(config, out_dir)
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)
    with progress_on(progress):  # reading the sources into caches shows a bar
        dm = build_datamodule(config, out_dir)
    task = build_task(config, dm)
    trainer = build_trainer(
        config.trainer,
        out_dir=out_dir,
        precision=config.precision,
        clipping=config.clipping,
        ema_decay=config.ema_decay,
        progress=progress,
        resume=resume,
        last_checkpoint=True,
        checkpoint_every_n_steps=checkpoint_every_n_steps,
        callbacks=callbacks,
        logger=logger,
        started=t0,
    )
    trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resume else None)
    if task.val_history and task.val_history[-1][0] != trainer.global_step:
        trainer.validate(task, datamodule=dm, verbose=False)  # the end point of every curve
    final = out_dir / "model.pt"
    if trainer.is_global_zero:
        # at the end of fit, Lightning's weight averaging copied the EMA into the model; the
        # saved model carries no edge-dropout boost (fine-tuning drops no edges)
        disable_dropout_boost(task.model)
        meta = {**task.metadata(), "step": int(trainer.global_step), "ema": config.ema_decay}
        save_model(task.model, final, metadata=meta)
    return PretrainResult(
        checkpoint=final,
        last_checkpoint=last,
        val_history=list(task.val_history),
        train_history=list(task.train_history),
        wall_time=elapsed_time(trainer, t0),
        structures_seen=int(task.structures_seen),
        steps=int(trainer.global_step),
    )
