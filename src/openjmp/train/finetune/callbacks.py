"""What only fine-tuning adds to the shared callbacks (`openjmp.train.callbacks`: EMA,
``last.ckpt``, best checkpoint), and how a run stopped.

* `early_stopping`: Lightning's `EarlyStopping` on the signed monitored metric.
* `stop_reason`: why ``trainer.fit`` returned.
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import (
    Callback,
    EarlyStopping,
    Timer,
)
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

from openjmp.config.finetune import FinetuneConfig
from openjmp.tasks.finetune import MONITOR_KEY, FinetuneTask


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
