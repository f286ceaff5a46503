"""Callbacks of a fine-tuning run and how it stopped.

* `SaveLast`: ``last.ckpt`` after every validation and at the end of training (Lightning's own
  ``save_last`` writes it only when the monitored metric improved).
* `FinetuneEMA`: the shared EMA callback with an update that is exact for frozen parameters.
* `early_stopping`: Lightning's `EarlyStopping` on the signed monitored metric.
* `stop_reason`: why ``trainer.fit`` returned.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    Timer,
    WeightAveraging,
)
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from openjmp.config.finetune import FinetuneConfig
from openjmp.tasks.finetune import MONITOR_KEY, FinetuneTask
from openjmp.train.callbacks import EMA


class SaveLast(Callback):
    """Own ``last.ckpt``: write it after every validation of a fit and at the end of training.

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` writes ``last.ckpt`` only when it also
    writes a top-k checkpoint (the monitored metric improved), so a killed run would resume from
    its last *improvement*, and at the end of training it writes it after the EMA callback has
    copied the average into the model. Here the best-checkpoint callback keeps only the best
    file: it is brought up to date first (its hook is idempotent within a step), then
    ``last.ckpt`` is written with every callback's state current. Place this callback after
    early stopping.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._saved_step = -1

    def _checkpoints(self, trainer: pl.Trainer) -> list[ModelCheckpoint]:
        return [
            cb
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and Path(cb.dirpath or "") == self.path.parent
        ]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for cb in self._checkpoints(trainer):
            cb.save_last = False  # this callback writes last.ckpt

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        for cb in self._checkpoints(trainer):
            cb.on_validation_end(trainer, pl_module)
        self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step != self._saved_step:  # runs before the EMA callback's copy
            self._save(trainer)


def lerp_ema(decay: float) -> Any:
    """EMA update ema + (1 − decay)(θ − ema) (``torch.lerp``): the same average as
    decay · ema + (1 − decay) · θ, but exactly ema when θ == ema, so frozen parameters stay
    bit-identical in the averaged weights too."""

    @torch.no_grad()
    def update(ema: torch.Tensor, current: torch.Tensor, num_averaged: Any) -> torch.Tensor:
        return torch.lerp(ema, current, 1.0 - decay)

    return update


class FinetuneEMA(EMA):
    """The shared `EMA` callback (average on the training device, parameters only) with the
    exact-for-frozen-parameters update `lerp_ema`."""

    def __init__(self, decay: float) -> None:
        WeightAveraging.__init__(self, use_buffers=False, avg_fn=lerp_ema(decay))
        self.update_every_n_steps = 1
        self.update_starting_at_step = None
        self.update_starting_at_epoch = None


def early_stopping(config: FinetuneConfig) -> list[Callback]:
    es = config.early_stopping
    if es is None:
        return []
    return [
        EarlyStopping(
            monitor=MONITOR_KEY,
            mode="min",  # MONITOR_KEY is the metric with the sign that makes smaller better
            patience=es.patience,
            min_delta=es.min_delta,
            check_on_train_epoch_end=False,
            strict=True,
        )
    ]


def stop_reason(trainer: pl.Trainer, task: FinetuneTask) -> str:
    if getattr(task, "stopped_by_min_lr", False):
        return "min_lr"
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, EarlyStopping) and cb.stopping_reason != EarlyStoppingReason.NOT_STOPPED:
            if cb.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
                return "non_finite_metric"
            return "early_stopping"
        if isinstance(cb, Timer) and cb.time_remaining() is not None and cb.time_remaining() <= 0:
            return "max_time"
    if trainer.max_steps not in (-1, None) and trainer.global_step >= trainer.max_steps:
        return "max_steps"
    return "max_epochs"
