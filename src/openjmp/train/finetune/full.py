"""`run_full`: end-to-end fine-tuning (``adaptation: full``, the JMP recipe) from a
`FinetuneConfig`; `openjmp.train.finetune.run.run_finetune` dispatches here.

Layout of ``out_dir``::

    config.yaml               the resolved configuration
    stats.json                references / normalisation refitted on the training split
    cache/                    record caches of the sources
    checkpoints/last.ckpt     after the last validation (``resume=True`` continues it)
    checkpoints/best-*.ckpt   best by ``monitor`` (early stopping watches the same metric)
    logs/csv/metrics.csv      every logged value
    history.json              validation metric per step, training loss per step
    metrics.json              the best checkpoint's metrics on train / val / test (physical units)
    test_predictions.npz      its test predictions and labels (parity plots)

The run: seed, read and split the data, refit the statistics on the training part, build the
model (pre-trained embedding + backbone from ``model.checkpoint``, EMA weights by default, or
random for the from-scratch baseline) with new heads, train with the recipe of
`openjmp.tasks.finetune.FinetuneTask` (validation every ``trainer.val_check_interval`` steps or
once per epoch, early stopping, ``max_steps`` / ``max_time`` / ``max_epochs``), then evaluate
the best checkpoint on every part. Checkpoints are also openjmp model files
(`openjmp.model.checkpoint.load_checkpoint` reads their energy/force/scalar heads).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from openjmp.config.finetune import FinetuneConfig
from openjmp.errors import CheckpointError, ConfigError
from openjmp.io.paths import atomic_write_bytes, check_writable_dir
from openjmp.records import AtomsRecord
from openjmp.tasks.finetune import MONITOR_KEY, FinetuneTask
from openjmp.tasks.finetune_metrics import MetricAccumulator
from openjmp.tasks.finetune_stats import resolve_statistics
from openjmp.train.backbone import (
    apply_scale_file,
    build_backbone,
    load_pretrained,
    resolve_architecture,
    uses_direct_forces,
)
from openjmp.train.callbacks import elapsed_time
from openjmp.train.finetune.callbacks import early_stopping, stop_reason
from openjmp.train.finetune.data import (
    FinetuneDataModule,
    check_labels,
    iterate_batches,
    load_finetune_splits,
)
from openjmp.train.finetune.residual import residual_start
from openjmp.train.finetune.result import EVAL_PARTS, FinetuneResult
from openjmp.train.graph_dataset import GraphDataset
from openjmp.train.trainer import build_trainer, model_dtype


def evaluation_device(config: FinetuneConfig) -> torch.device:
    acc = config.trainer.accelerator
    if acc in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def predict_dataset(
    task: FinetuneTask,
    dataset: GraphDataset,
    batch_size: int,
    *,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(metrics, predictions, labels) of ``task`` over ``dataset``, in order, physical units."""
    acc = MetricAccumulator(task.targets, collect=True)
    task.eval()
    task.to(device)
    for batch in iterate_batches(dataset, batch_size):
        batch = batch.to(device)
        with torch.set_grad_enabled(task.gradient_forces):  # gradient forces need autograd
            preds = task(batch)
        acc.update(preds, task.labels(batch), batch)
    preds, labels = acc.arrays()
    return acc.compute(), preds, labels


def load_task(path: Path | str) -> FinetuneTask:
    """A `FinetuneTask` with the weights of a fine-tuning checkpoint (hyper-parameters inside)."""
    from openjmp.model.checkpoint import read_checkpoint

    path = Path(path)
    ck = read_checkpoint(path)  # safe unpickling; CheckpointError for missing or corrupt files
    hp = ck.get("hyper_parameters") if isinstance(ck, dict) else None
    if not hp or "stats" not in hp or "backbone" not in hp:
        raise CheckpointError(
            f"{path}: not an openjmp fine-tuning checkpoint (no fine-tuning hyper-parameters)"
        )
    task = FinetuneTask(hp["config"], hp["backbone"], hp["stats"], head_specs=hp.get("head_specs"))
    sd = ck["state_dict"]
    task.set_dtype(sd["model.embedding.atom_embedding.weight"].dtype)
    task.load_state_dict(sd)
    task.on_load_checkpoint(ck)
    return task


def _write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=1, default=float).encode())


def build_task(
    config: FinetuneConfig,
    train: Sequence[AtomsRecord],
    *,
    steps_per_epoch: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> FinetuneTask:
    """A fresh task: statistics refitted on the training records ``train``, the pre-trained
    embedding + backbone of ``model.checkpoint`` (or random ones), new random heads; with
    ``config.residual_references`` the target head starts from that head of the checkpoint and
    the references are fitted to its residual (`openjmp.train.finetune.residual`)."""
    stats = resolve_statistics(list(config.heads), train, fmt=config.data.format)
    backbone, state = build_backbone(
        config.model,
        direct_forces=uses_direct_forces(config),
        edge_dropout=config.edge_dropout,
        dtype=dtype,
    )
    start = None
    if config.residual_references is not None:
        start = residual_start(config, train, stats, config.residual_references, dtype=dtype)
        stats = start.stats
    task = FinetuneTask(
        config,
        backbone.to_dict(),
        stats,
        steps_per_epoch=steps_per_epoch,
        head_specs=None if start is None else start.head_specs,
    )
    task.set_dtype(dtype)
    if state is not None:
        load_pretrained(task.model, state, config.model.checkpoint)
    if start is not None:
        missing, unexpected = task.model.load_state_dict(start.head_state, strict=False)
        if unexpected or any(k in start.head_state for k in missing):
            raise CheckpointError(
                f"{config.model.checkpoint}: the head does not fit: {unexpected[:3]}"
            )
    apply_scale_file(task.model, config.model.scale_file, from_checkpoint=state is not None)
    return task


def world_size(config: FinetuneConfig) -> int:
    """Ranks the Trainer will use (devices × nodes), for the schedule's steps per epoch."""
    t = config.trainer
    if isinstance(t.devices, int):
        devices = t.devices
    elif t.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        devices = torch.cuda.device_count()
    else:
        devices = 1
    return devices * t.num_nodes


def _precision(config: FinetuneConfig) -> str:
    precision = config.precision
    if precision == "16-mixed" and not torch.cuda.is_available():
        warnings.warn(
            "precision 16-mixed (fp16 AMP) needs a GPU; running in 32-true on this machine",
            stacklevel=3,
        )
        return "32-true"
    return precision


def run_full(
    config: FinetuneConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Callback] = (),
    logger: bool = True,
    evaluate_parts: Sequence[str] = EVAL_PARTS,
    cache_dir: Path | None = None,
) -> FinetuneResult:
    """Fine-tune end to end as ``config`` says, writing into ``out_dir`` (module docstring).

    ``cache_dir``: where the record caches live (default ``out_dir/cache``); runs on the same
    sources may share one, caches are keyed by the source's fingerprint.

    ``resume``: continue ``out_dir/checkpoints/last.ckpt`` (`CheckpointError` if missing); the
    statistics and architecture come from that checkpoint, so the run continues exactly.
    ``callbacks`` are added to the Trainer's; ``evaluate_parts`` are the parts the best weights
    are evaluated on at the end. ``config.residual_references``: start the energy (or scalar)
    head from that head of ``model.checkpoint`` and fit the references to its residual
    (`openjmp.train.finetune.residual`).
    """
    t0 = time.perf_counter()
    config = resolve_architecture(config)
    out_dir = check_writable_dir(out_dir, "run directory")
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    if resume and not last.is_file():
        raise CheckpointError(f"{last}: nothing to resume (no last checkpoint in {out_dir})")
    if not resume and ckpt_dir.is_dir() and any(ckpt_dir.iterdir()):
        raise ConfigError(
            f"{out_dir} already holds a run (checkpoints/): resume it or choose another output directory"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
        atomic_write_bytes(out_dir / "config.yaml", text.encode())
    pl.seed_everything(config.trainer.seed, workers=True, verbose=False)

    splits = load_finetune_splits(config.data, Path(cache_dir) if cache_dir else out_dir / "cache")
    for name in EVAL_PARTS:
        part = splits.part(name)
        if part is not None:
            check_labels(part.records, list(config.heads), name)
    dm = FinetuneDataModule(
        splits,
        config.data.graph,
        config.loader,
        seed=config.trainer.seed,
        edge_dropout=config.edge_dropout,
    )
    accum = config.trainer.accumulate_grad_batches
    steps_per_epoch = -(-dm.train_batches_per_epoch(world_size(config)) // accum)
    precision = _precision(config)
    dtype = model_dtype(precision)
    if resume:
        saved = load_task(last)
        hp = saved.hparams
        task = FinetuneTask(
            config, hp["backbone"], hp["stats"], steps_per_epoch, head_specs=hp.get("head_specs")
        )
        task.set_dtype(dtype)
    else:
        task = build_task(
            config,
            splits.train.records,
            steps_per_epoch=steps_per_epoch,
            dtype=dtype,
        )
    _write_json(out_dir / "stats.json", task.hparams["stats"])

    trainer = build_trainer(
        config.trainer,
        out_dir=out_dir,
        precision=precision,
        clipping=config.clipping,
        ema_decay=config.ema_decay,
        monitor=MONITOR_KEY,
        progress=progress,
        resume=resume,
        callbacks=[*callbacks, *early_stopping(config)],
        logger=logger,
        inference_mode=not config.gradient_forces,  # gradient forces need autograd in validation
        started=t0,
    )
    trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resume else None)
    reason = stop_reason(trainer, task)
    if task.history and task.history[-1][0] != trainer.global_step:
        trainer.validate(task, datamodule=dm, verbose=False)  # the end point of the curve
    cb = trainer.checkpoint_callback
    best = Path(cb.best_model_path) if cb is not None and cb.best_model_path else None
    last_path = last if last.is_file() else None

    final = load_task(best) if best is not None else task
    device = evaluation_device(config)
    bs = config.loader.eval_batch_size or config.loader.batch_size
    metrics: dict[str, dict[str, float]] = {}
    test_preds: dict[str, np.ndarray] = {}
    test_labels: dict[str, np.ndarray] = {}
    for part in evaluate_parts:
        ds = dm.dataset(part)
        if ds is None:
            continue
        metrics[part], preds, labels = predict_dataset(final, ds, bs, device=device)
        if part == "test":
            test_preds, test_labels = preds, labels
    wall = elapsed_time(trainer, t0)  # the whole run, earlier launches of a resume included
    monitor, mode = config.monitor.metric, config.monitor.mode
    # the best checkpoint's own history ends with the validation that made it the best
    best_score = final.history[-1][1] if best is not None and final.history else None
    result = FinetuneResult(
        out_dir=out_dir,
        best_checkpoint=best,
        last_checkpoint=last_path,
        monitor=monitor,
        mode=mode,
        best_metric=best_score,
        history=list(task.history),
        train_losses=list(task.train_losses),
        metrics=metrics,
        test_predictions=test_preds,
        test_targets=test_labels,
        wall_time=wall,
        steps=int(trainer.global_step),
        stop_reason=reason,
    )
    if trainer.is_global_zero:
        _write_json(
            out_dir / "history.json",
            {
                "monitor": monitor,
                "mode": mode,
                "val": result.history,
                "train_loss": result.train_losses,
            },
        )
        _write_json(
            out_dir / "metrics.json",
            {
                "checkpoint": str(best) if best else None,
                "best_metric": best_score,
                "steps": result.steps,
                "stop_reason": reason,
                "wall_time": wall,
                "metrics": metrics,
            },  # fmt: skip
        )
        if test_preds:
            arrays = {f"pred_{k}": v for k, v in test_preds.items()}
            arrays |= {f"true_{k}": v for k, v in test_labels.items()}
            buf = __import__("io").BytesIO()
            np.savez(buf, **arrays)
            atomic_write_bytes(out_dir / "test_predictions.npz", buf.getvalue())
    return result
