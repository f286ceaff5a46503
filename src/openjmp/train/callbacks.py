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
  bookkeeping expects it, and when training stops anywhere else (early stopping, a time
  limit), before the EMA replaces the weights; so a killed run resumes, and a finished one
  continues exactly. Pre-training and fine-tuning use the same one.
* `lr_monitor`: the learning rate in the logs, per optimizer step.
* `ElapsedTime`: the run's wall time over all its launches, stored in every checkpoint, so a
  resumed run reports its whole time (`elapsed_time`).

Checkpoints are saved with ``weights_only=False`` said explicitly (what Lightning defaults to,
with an info message at every save) and loaded by `AtomicCheckpointIO` through openjmp's
allow-listed unpickler (`openjmp.io.safe_pickle.safe_torch_load`): a checkpoint never runs
code when it is read, whatever torch's own ``weights_only`` default.
"""

from __future__ import annotations

import os
import time
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

from openjmp.io.paths import clean_stale_temporaries, temporary_path

LAST = "last"


class EMA(EMAWeightAveraging):
    """`EMAWeightAveraging` whose average is kept on the device the model trains on, updated
    by one multi-tensor lerp.

    The stock callback copies the model in ``setup``, before the strategy moves it to the GPU,
    so without an explicit device the average would stay on the CPU and every update would copy
    the whole model across. Its update is a Python loop over parameters (22 ms per step on the
    ~250 tensors of the demo model on 2 CPU cores, where a training step takes ~230 ms);
    torch's ``get_ema_multi_avg_fn`` computes the same ema + (1 - decay) (θ - ema) over all
    tensors at once. Even so, `AveragedModel.update_parameters` walks both module trees and
    detaches every tensor at every step (18 ms per step on the demo model): the step update
    here keeps the two parameter lists from the first update and runs the same
    ``torch._foreach_lerp_`` on them (the first update copies, as the stock one).
    """

    def __init__(self, decay: float, **kwargs: Any) -> None:
        super().__init__(decay=decay, **kwargs)
        # AveragedModel takes one of avg_fn (set by EMAWeightAveraging) and multi_avg_fn
        self._kwargs.pop("avg_fn", None)
        self._kwargs["multi_avg_fn"] = get_ema_multi_avg_fn(decay)
        self._decay = float(decay)
        # the (average, model) parameter lists of the cached update; () where the layout needs
        # the stock update; None until the first update of a fit
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | tuple[()] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit" and self._device is None:
            self._device = trainer.strategy.root_device
        self._pairs = None
        super().setup(trainer, pl_module, stage)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any, **kwargs: Any
    ) -> None:
        # the stock condition (`WeightAveraging.on_train_batch_end`), the cached update
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self._update(pl_module)
            self._latest_update_step = trainer.global_step

    @torch.no_grad()
    def _update(self, pl_module: pl.LightningModule) -> None:
        average = self._average_model
        assert average is not None
        if self._pairs is None:
            ema, model = list(average.module.parameters()), list(pl_module.parameters())
            same = len(ema) == len(model) and all(
                a.shape == b.shape and a.device == b.device and a.dtype == b.dtype
                and a.is_floating_point()
                for a, b in zip(ema, model, strict=True)
            )  # fmt: skip
            self._pairs = (ema, model) if same else ()
        if not self._pairs:  # not the layout this shortcut is for: the stock update
            average.update_parameters(pl_module)
            return
        ema, model = self._pairs
        if bool(average.n_averaged == 0):
            torch._foreach_copy_(ema, model)
        else:
            torch._foreach_lerp_(ema, model, 1.0 - self._decay)
        average.n_averaged += 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # last.ckpt must hold the raw weights of the final step: write it before the stock
        # callback copies the average into the model
        for cb in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(cb, LastCheckpoint):
                cb.save_if_behind(trainer)
        super().on_train_end(trainer, pl_module)


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
    where Lightning's resume bookkeeping expects checkpoints; and at the end of training when
    it stopped elsewhere (early stopping, ``max_time``), before the `EMA` callback copies the
    average into the model (it calls `save_if_behind` first). (Lightning's own ``save_last``
    only follows saves of the best checkpoint, so it lags when the monitored loss stops
    improving; it is switched off for the best-checkpoint callbacks of the same directory,
    which are brought up to date before each save here.) Must come after the EMA callback in
    the Trainer's list, so the saved average includes the step.
    """

    def __init__(self, path: Path, every_n_steps: int | None = None) -> None:
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step = -1

    def _best(self, trainer: pl.Trainer) -> list[ModelCheckpoint]:
        return [
            cb
            for cb in trainer.checkpoint_callbacks
            if isinstance(cb, ModelCheckpoint) and Path(cb.dirpath or "") == self.path.parent
        ]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for cb in self._best(trainer):
            cb.save_last = False  # this callback writes last.ckpt

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def save_if_behind(self, trainer: pl.Trainer) -> None:
        """Write ``last.ckpt`` unless it already holds this step."""
        if trainer.state.fn == "fit" and trainer.global_step != self._saved_step:
            self._save(trainer)

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
            for cb in self._best(trainer):  # the best file first (idempotent within a step)
                cb.on_validation_end(trainer, pl_module)
            self._save(trainer)  # also after a save at this step: adds the validation record

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save_if_behind(trainer)  # runs without EMA (with it, the EMA's hook came first)


def lr_monitor() -> LearningRateMonitor:
    return LearningRateMonitor(logging_interval="step")


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` that writes through a temporary file + `os.replace` and reads with
    openjmp's allow-listed unpickler (module doc). Temporary files of killed runs are removed at
    the next save of the same checkpoint."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(path)
        tmp = temporary_path(path)
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        from openjmp.errors import CheckpointError
        from openjmp.io.safe_pickle import safe_torch_load

        try:
            return safe_torch_load(
                path, map_location="cpu" if map_location is None else map_location
            )
        except FileNotFoundError:
            raise CheckpointError(f"{path}: checkpoint not found") from None
        except Exception as exc:  # noqa: BLE001 - unpickling, zip and EOF errors on a bad file
            raise CheckpointError(f"{path}: cannot load the checkpoint ({exc})") from None


class ElapsedTime(Callback):
    """Wall time of a run over all its launches (module doc).

    ``started``: when this launch began (``time.perf_counter()``, default: now). The total at
    each checkpoint save is stored in it; a resumed launch adds its own time to that.
    """

    def __init__(self, started: float | None = None) -> None:
        self.started = time.perf_counter() if started is None else started
        self.before = 0.0  # seconds of earlier launches, up to their last checkpoint

    def total(self) -> float:
        """Seconds of the whole run so far."""
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict[str, float]:
        return {"elapsed": self.total()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict.get("elapsed", 0.0))


def elapsed_time(trainer: pl.Trainer, started: float) -> float:
    """The run's whole wall time: the trainer's `ElapsedTime`, or the time since ``started``."""
    for cb in trainer.callbacks:
        if isinstance(cb, ElapsedTime):
            return cb.total()
    return time.perf_counter() - started
