"""Stock Lightning callbacks and plugins as openjmp runs use them.

* `ema_callback`: Lightning's `EMAWeightAveraging` (the weights' exponential moving average,
  updated after every optimizer step, swapped in for validation, written into checkpoints as
  ``state_dict`` with the raw weights under ``current_model_state``). Only the parameters are
  averaged (``use_buffers=False``): every buffer of a JMP model is a constant, and averaging a
  constant would only add rounding. The average lives on the training device.
* `checkpoint_callback`: ``last.ckpt`` and the best checkpoint by a monitored metric.
* `AtomicCheckpointIO`: every checkpoint goes to a temporary file in the target directory,
  is flushed to disk, then renamed over the target (`os.replace`), so a kill never leaves a
  truncated ``last.ckpt``.
* `lr_monitor`: the learning rate in the logs, per optimizer step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

LAST = "last"


class EMA(EMAWeightAveraging):
    """`EMAWeightAveraging` whose average is kept on the device the model trains on.

    The stock callback copies the model in ``setup``, before the strategy moves it to the GPU,
    so without an explicit device the average would stay on the CPU and every update would copy
    the whole model across. Nothing else differs.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)


def ema_callback(decay: float) -> EMA:
    """EMA of the parameters, ema ← decay · ema + (1 − decay) · θ after every optimizer step."""
    return EMA(decay=decay, use_buffers=False)


def checkpoint_callback(
    dirpath: Path, *, monitor: str | None = "val/loss", every_n_train_steps: int | None = None
) -> ModelCheckpoint:
    """``last.ckpt`` after every validation (or every N steps) and ``best-step=….ckpt``."""
    return ModelCheckpoint(
        dirpath=dirpath,
        filename="best-{step:07d}" if monitor else "step-{step:07d}",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        save_last=True,
        every_n_train_steps=every_n_train_steps,
        auto_insert_metric_name=True,
    )


def lr_monitor() -> LearningRateMonitor:
    return LearningRateMonitor(logging_interval="step")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` that writes through a temporary file + `os.replace` (module doc)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
