"""The optimizer and learning-rate schedule of every openjmp run, built in one place.

`OptimizationSettings` holds AdamW's settings and the schedule's shape (plain dataclass: the
training layer fills it from the config); `configure_optimization` turns parameter groups and
resolved step counts into what Lightning's ``configure_optimizers`` returns: AdamW with a
warm-up + cosine schedule stepped every optimizer step, followed by reduce-on-plateau when
``plateau`` is set (fine-tuning; ``WarmupCosineRLP``), without it for pre-training.

AdamW as the authors configure it, with torch's fused kernel where the parameters allow.

The fused implementation runs one kernel over every parameter instead of a Python loop per
tensor: on the 0.7 M-parameter demo model (~250 tensors) a step takes 1.4 ms instead of 7.7 ms
on 2 CPU cores. It is the same algorithm (decoupled weight decay, bias correction), so results
agree with the per-tensor loop to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from openjmp.config.common import OptimizerConfig
from openjmp.config.finetune import FinetuneScheduleConfig
from openjmp.config.pretrain import PretrainScheduleConfig
from openjmp.tasks.schedules import WarmupCosineRLP, pretrain_scheduler

_FUSED_DEVICES = ("cpu", "cuda")


def _params(groups: list[Any]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for g in groups:
        out.extend(g["params"] if isinstance(g, dict) else [g])
    return out


def adamw(
    params: Iterable[Any],
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    weight_decay: float,
    amsgrad: bool = False,
    allow_fused: bool = True,
) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` over ``params`` (tensors or param-group dicts), fused when every
    parameter is a floating-point tensor on CPU or CUDA and ``allow_fused``."""
    groups = list(params)
    tensors = _params(groups)
    fused = (
        allow_fused
        and bool(tensors)
        and all(p.device.type in _FUSED_DEVICES and p.dtype.is_floating_point for p in tensors)
    )
    return torch.optim.AdamW(
        groups,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        fused=fused or None,
    )


@dataclass(frozen=True)
class PlateauSettings:
    """Reduce-on-plateau after the cosine (fine-tuning), on the monitored metric."""

    mode: Literal["min", "max"] = "min"
    factor: float = 0.8
    patience: int = 3
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    min_lr: float = 0.0
    eps: float = 1e-8
    cooldown: int = 0


@dataclass(frozen=True)
class OptimizationSettings:
    """AdamW and the warm-up + cosine schedule (per optimizer step); the schedule's length is
    ``max_steps``, or ``max_epochs`` × optimizer steps per epoch (resolved by the task)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    amsgrad: bool = False
    warmup_steps: int | None = 2000
    warmup_epochs: float | None = None
    """Warm-up in epochs when ``warmup_steps`` is None (fine-tuning's default)."""
    warmup_start_factor: float = 0.2
    min_lr_factor: float = 0.1
    max_steps: int | None = None
    """Schedule length; None: ``max_epochs`` × optimizer steps per epoch."""
    max_epochs: float | None = 2.0
    plateau: PlateauSettings | None = None
    """None: the cosine ends at its floor (pre-training); else reduce-on-plateau follows."""
    fused: bool = True
    """torch's fused AdamW kernel where it applies; off under mixed precision, where Lightning
    clips gradients itself and refuses an optimizer that unscales them internally."""


def configure_optimization(
    params: Iterable[Any],
    settings: OptimizationSettings,
    *,
    warmup_steps: int,
    max_steps: int,
    min_lr_factors: Sequence[float] | None = None,
) -> dict[str, Any]:
    """AdamW over ``params`` (tensors or groups) and its schedule, as Lightning's
    ``configure_optimizers`` returns them (``interval: step``).

    ``warmup_steps`` / ``max_steps``: the resolved lengths in optimizer steps;
    ``min_lr_factors``: a cosine floor per group (LLRD), default ``settings.min_lr_factor``."""
    s = settings
    groups = list(params)
    optimizer = adamw(
        groups, lr=s.lr, betas=s.betas, eps=s.eps, weight_decay=s.weight_decay,
        amsgrad=s.amsgrad, allow_fused=s.fused,
    )  # fmt: skip
    if s.plateau is None:
        if min_lr_factors is not None:
            raise ValueError("per-group floors need the plateau schedule")
        scheduler: Any = pretrain_scheduler(
            optimizer,
            warmup_steps=warmup_steps,
            max_steps=max_steps,
            warmup_start_factor=s.warmup_start_factor,
            min_factor=s.min_lr_factor,
        )
    else:
        p = s.plateau
        scheduler = WarmupCosineRLP(
            optimizer,
            warmup_steps=warmup_steps,
            max_steps=max_steps,
            warmup_start_factor=s.warmup_start_factor,
            min_lr_factors=s.min_lr_factor if min_lr_factors is None else list(min_lr_factors),
            rlp_mode=p.mode,
            rlp_factor=p.factor,
            rlp_patience=p.patience,
            rlp_threshold=p.threshold,
            rlp_threshold_mode=p.threshold_mode,
            rlp_min_lr=p.min_lr,
            rlp_eps=p.eps,
            rlp_cooldown=p.cooldown,
        )
    return {
        "optimizer": optimizer,
        "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
    }


def optimization_settings(
    optimizer: OptimizerConfig,
    schedule: PretrainScheduleConfig | FinetuneScheduleConfig,
    *,
    monitor_mode: Literal["min", "max"] = "min",
    precision: str = "32-true",
) -> OptimizationSettings:
    """The settings of a config's ``optimizer`` and ``schedule`` sections (a fine-tuning
    schedule brings its plateau stage, on the monitored metric's ``monitor_mode``; a mixed
    ``precision`` turns the fused kernel off)."""
    plateau = None
    warmup_epochs = None
    if isinstance(schedule, FinetuneScheduleConfig):
        p = schedule.plateau
        plateau = PlateauSettings(
            mode=monitor_mode, factor=p.factor, patience=p.patience, threshold=p.threshold,
            threshold_mode=p.threshold_mode, min_lr=p.min_lr, eps=p.eps, cooldown=p.cooldown,
        )  # fmt: skip
        warmup_epochs = schedule.warmup_epochs
    b0, b1 = optimizer.betas
    return OptimizationSettings(
        lr=optimizer.lr,
        betas=(b0, b1),
        eps=optimizer.eps,
        weight_decay=optimizer.weight_decay,
        amsgrad=optimizer.amsgrad,
        warmup_steps=schedule.warmup_steps,
        warmup_epochs=warmup_epochs,
        warmup_start_factor=schedule.warmup_start_factor,
        min_lr_factor=schedule.min_lr_factor,
        max_steps=schedule.max_steps,
        max_epochs=schedule.max_epochs,
        plateau=plateau,
        fused=precision not in ("16-mixed", "bf16-mixed"),
    )
