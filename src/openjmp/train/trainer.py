"""`build_trainer`: a stock `lightning.pytorch.Trainer` from a `TrainerConfig` and run settings.

What it sets, and why:

* loggers: CSV always (``<out>/logs/csv/version_<k>``), TensorBoard too when ``tensorboard`` is installed;
* callbacks: EMA of the weights (when a decay is given), ``last.ckpt`` after every validation
  and at the final step (`LastCheckpoint`, on request), `ModelCheckpoint` for the best by ``monitor``,
  learning-rate monitor, a progress bar (per-dataset losses) unless ``progress=False``;
* ``AtomicCheckpointIO``: checkpoints written through a temporary file + rename, read with
  openjmp's allow-listed unpickler;
* `ElapsedTime`: the run's time over all launches, kept in the checkpoints;
* ``use_distributed_sampler=False``: openjmp's samplers shard by rank themselves and carry
  their own resumable state (`openjmp.train.loader`);
* gradient clipping (norm or value), accumulation, max steps / epochs / time, validation interval;
* precision: "16-mixed" / "bf16-mixed" are Lightning's AMP (GPU); "32-true" is plain float32;
  "64-true" runs Lightning's "32-true" over a model built in float64 by the task (Lightning's
  double plugin converts inputs with ``apply_to_collection``, which refuses our frozen
  `Batch`; the model casts positions to its own dtype anyway);
* DDP: ``strategy: ddp`` with ``devices`` and ``num_nodes``; Lightning picks NCCL on GPUs and gloo
  on CPUs, and detects SLURM (``srun``) and torchrun launches from their environment variables.

``num_sanity_val_steps`` is -1 for a fresh run (a full validation before the first step: the
start of every validation curve) and 0 on resume (Lightning skips it then anyway).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, Logger

from openjmp.config.common import ClippingConfig, TrainerConfig
from openjmp.errors import ConfigError
from openjmp.progress import enabled as progress_enabled
from openjmp.train.callbacks import (
    AtomicCheckpointIO,
    ElapsedTime,
    LastCheckpoint,
    checkpoint_callback,
    ema_callback,
    lr_monitor,
)

_LIGHTNING_PRECISION = {
    "32-true": "32-true",
    "64-true": "32-true",  # see the module docstring: the task builds the model in float64
    "16-mixed": "16-mixed",
    "bf16-mixed": "bf16-mixed",
}


def model_dtype(precision: str) -> torch.dtype:
    """Parameter dtype for a config precision (float64 for "64-true", else float32)."""
    return torch.float64 if precision == "64-true" else torch.float32


def loggers(out_dir: Path) -> list[Logger]:
    """CSV logger, plus TensorBoard when the ``tensorboard`` package is installed.

    CSV files go to ``logs/csv/version_<k>/metrics.csv``, a new version per (resumed) launch:
    Lightning's CSV logger would otherwise delete the earlier part's file. TensorBoard appends
    to one directory, so its curves run on across resumes.
    """
    out: list[Logger] = [CSVLogger(out_dir / "logs", name="csv")]
    if importlib.util.find_spec("tensorboard") is not None:
        from lightning.pytorch.loggers import TensorBoardLogger

        out.append(TensorBoardLogger(out_dir / "logs", name="tensorboard", version=""))
    return out


def _check_precision(cfg: TrainerConfig, precision: str) -> None:
    if precision in ("16-mixed", "bf16-mixed") and cfg.accelerator == "cpu":
        if precision == "16-mixed":
            raise ConfigError(
                "precision: 16-mixed (fp16 AMP) needs a GPU; on CPU use --set precision=32-true"
            )


def build_trainer(
    cfg: TrainerConfig,
    *,
    out_dir: Path,
    precision: str = "32-true",
    clipping: ClippingConfig | None = None,
    ema_decay: float | None = None,
    monitor: str | None = "val/loss",
    progress: bool = True,
    resume: bool = False,
    last_checkpoint: bool = False,
    checkpoint_every_n_steps: int | None = None,
    callbacks: Sequence[Callback] = (),
    logger: bool = True,
    started: float | None = None,
    **overrides: Any,
) -> pl.Trainer:
    """A Lightning Trainer for an openjmp run writing under ``out_dir`` (module docstring).

    Args:
        cfg: the run's trainer section (limits, devices, strategy, seed is applied elsewhere).
        out_dir: run directory: ``checkpoints/`` and ``logs/`` go there.
        precision: config precision ("32-true", "64-true", "16-mixed", "bf16-mixed").
        clipping: gradient clipping (algorithm norm or value); None: off.
        ema_decay: EMA of the weights; None: off.
        monitor: metric picking the best checkpoint (None: only last).
        progress: show the progress bar (never when ``CI`` is set, `openjmp.progress`).
        resume: this run continues a checkpoint (no sanity validation).
        last_checkpoint: keep ``checkpoints/last.ckpt`` current (`LastCheckpoint`); off, the
            caller writes it (Lightning's ``save_last`` is off: it lags, see `LastCheckpoint`).
        checkpoint_every_n_steps: with ``last_checkpoint``, also every N optimizer steps.
        callbacks: extra callbacks (run before the stock ones).
        logger: False disables logging (tests).
        started: ``time.perf_counter()`` when the run's launch began (default: now): the
            `ElapsedTime` callback reports the whole run's time from it, resumes included.
        overrides: further ``pl.Trainer`` keyword arguments (they win).
    """
    if precision not in _LIGHTNING_PRECISION:
        raise ConfigError(f"unknown precision {precision!r}; use {', '.join(_LIGHTNING_PRECISION)}")
    _check_precision(cfg, precision)
    progress = progress and progress_enabled()  # off under --no-progress and in CI
    torch.set_float32_matmul_precision(cfg.matmul_precision)
    # openjmp tasks move their frozen `Batch` themselves; Lightning warns when a data module is
    # also given, which is the normal case here
    warnings.filterwarnings("ignore", message="You have overridden `transfer_batch_to_device`")
    out_dir = Path(out_dir)
    cbs: list[Callback] = [*callbacks, ElapsedTime(started)]
    if ema_decay is not None:
        cbs.append(ema_callback(ema_decay))
    cbs.append(  # after the EMA, so the saved average includes the step
        LastCheckpoint(
            out_dir / "checkpoints" / "last.ckpt", every_n_steps=checkpoint_every_n_steps
        )
    )
    if monitor is not None:
        cbs.append(checkpoint_callback(out_dir / "checkpoints", monitor=monitor))
    if logger:
        cbs.append(lr_monitor())
    if progress:
        cbs.append(TQDMProgressBar(refresh_rate=1))
    kwargs: dict[str, Any] = dict(
        default_root_dir=out_dir,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=_LIGHTNING_PRECISION[precision],
        max_steps=cfg.max_steps if cfg.max_steps is not None else -1,
        max_epochs=cfg.max_epochs if cfg.max_epochs is not None else -1,
        max_time=cfg.max_time,
        val_check_interval=cfg.val_check_interval,
        check_val_every_n_epoch=None if cfg.val_check_interval else cfg.check_val_every_n_epoch,
        log_every_n_steps=cfg.log_every_n_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=None if clipping is None else clipping.value,
        gradient_clip_algorithm=None if clipping is None else clipping.algorithm,
        deterministic=cfg.deterministic,
        use_distributed_sampler=False,
        num_sanity_val_steps=0 if resume else -1,
        enable_progress_bar=progress,
        enable_model_summary=progress,
        logger=loggers(out_dir) if logger else False,
        callbacks=cbs,
        plugins=[AtomicCheckpointIO()],
    )
    kwargs.update(overrides)
    return pl.Trainer(**kwargs)
