"""Stock Lightning callbacks and plugins as openjmp runs use them.

* `ema_callback`: Lightning's `EMAWeightAveraging` (the weights' exponential moving average,
  updated after every optimizer step, swapped in for validation, written into checkpoints as
  ``state_dict`` with the raw weights under ``current_model_state``). Only the parameters are
  averaged (``use_buffers=False``): every buffer of a JMP model is a constant, and averaging a
  constant would only add rounding. The average lives on the training device. As the stock
  callback, it copies the average into the model when training ends (after `LastCheckpoint`
  has saved the final step with the raw weights).
* `checkpoint_callback`: the best checkpoint by a monitored metric (Lightning's).
* `AtomicCheckpointIO`: every checkpoint goes to a temporary file in the target directory,
  is flushed to disk, then renamed over the target (`os.replace`), so a kill never leaves a
  truncated ``last.ckpt``.
* `LastCheckpoint`: ``last.ckpt`` after every validation, every N steps and at the final step
  or epoch, written inside the training loop (after the EMA update) where Lightning's resume
  bookkeeping expects it; so a killed run resumes, and a finished one continues exactly.
* `lr_monitor`: the learning rate in the logs, per optimizer step.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import (
    Callback,
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
)
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch.optim.swa_utils import get_ema_multi_avg_fn

LAST = "last"


class EMA(EMAWeightAveraging):
    """`EMAWeightAveraging` whose average is kept on the device the model trains on, updated
    by one multi-tensor lerp.

    The stock callback copies the model in ``setup``, before the strategy moves it to the GPU,
    so without an explicit device the average would stay on the CPU and every update would copy
    the whole model across. Its update is a Python loop over parameters (22 ms per step on the
    ~250 tensors of the demo model on 2 CPU cores, where a training step takes ~230 ms);
    torch's ``get_ema_multi_avg_fn`` computes the same ema + (1 - decay) (θ - ema) over all
    tensors at once.
    """

    def __init__(self, decay: float, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        # AveragedModel takes one of avg_fn (set by EMAWeightAveraging) and multi_avg_fn
        self._kwargs.pop("avg_fn", None)
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._device is None:
            self._device = trainer.strategy.root_device
        super().setup(trainer, pl_module, stage)


def ema_callback(decay: float) -> EMA:
    """EMA of the parameters, ema ← decay · ema + (1 − decay) · θ after every optimizer step."""
    return EMA(decay=decay, use_buffers=False)


def checkpoint_callback(dirpath: Path, *, monitor: str = "val/loss") -> ModelCheckpoint:
    """``best-step=….ckpt``: the checkpoint with the lowest ``monitor`` so far."""
    return ModelCheckpoint(
        dirpath=dirpath,
        filename="best-{step:07d}",
        monitor=monitor,
        mode="min",
        save_top_k=1,
        save_last=False,  # see LastCheckpoint
        auto_insert_metric_name=True,
    )


class LastCheckpoint(Callback):
    """Keep ``path`` (``last.ckpt``) at the latest resumable state of the run.

    Written after every validation of the fit, every ``every_n_steps`` optimizer steps when set,
    and after the run's final step (``max_steps``) or epoch, always inside the training loop,
    where Lightning's resume bookkeeping expects checkpoints. (Lightning's own ``save_last``
    only follows saves of the best checkpoint, so it lags when the monitored loss stops
    improving.) Must come after the EMA callback in the Trainer's list, so the saved average
    includes the step.
    """

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        step = trainer.global_step
        if step == self._saved_step:
            return
        final = 0 < trainer.max_steps <= step
        periodic = bool(self.every_n_steps) and step % self.every_n_steps == 0  # type: ignore[operator]
        if final or periodic:
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        max_epochs = trainer.max_epochs
        last_epoch = max_epochs is not None and 0 < max_epochs <= trainer.current_epoch + 1
        if last_epoch and trainer.global_step != self._saved_step:
            self._save(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._save(trainer)  # also after a save at this step: adds the validation record


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
