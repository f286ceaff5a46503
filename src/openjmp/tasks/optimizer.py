"""The optimizer and learning-rate schedule of every openjmp run, built in one place.

`Optimization` holds the config's ``optimizer`` and ``schedule`` sections as they are (the
training layer builds it, the tasks take it); `configure_optimization` turns parameter groups
and resolved step counts into what Lightning's ``configure_optimizers`` returns: AdamW with a
warm-up + cosine schedule stepped every optimizer step, followed by reduce-on-plateau for a
fine-tuning schedule (``WarmupCosineRLP``), without it for pre-training.

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


MIXED_PRECISION = ("16-mixed", "bf16-mixed")


@dataclass(frozen=True)
class Optimization:
    """How a run optimises: the config's own ``optimizer`` and ``schedule`` sections (no field
    copied), and what the run adds to them.

    ``schedule``: a pre-training schedule (warm-up + cosine to its floor) or a fine-tuning one
    (per-group warm-up + cosine, then reduce-on-plateau on the monitored metric, whose
    direction is ``monitor_mode``). ``fused``: torch's fused AdamW kernel where it applies; off
    under mixed precision, where Lightning clips gradients itself and refuses an optimizer that
    unscales them internally."""

    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: PretrainScheduleConfig | FinetuneScheduleConfig = PretrainScheduleConfig()
    monitor_mode: Literal["min", "max"] = "min"
    fused: bool = True

    @classmethod
    def for_run(
        cls,
        optimizer: OptimizerConfig,
        schedule: PretrainScheduleConfig | FinetuneScheduleConfig,
        *,
        precision: str = "32-true",
        monitor_mode: Literal["min", "max"] = "min",
    ) -> Optimization:
        """The optimisation of a run at ``precision`` (mixed: no fused kernel)."""
        return cls(optimizer, schedule, monitor_mode, fused=precision not in MIXED_PRECISION)

    def warmup_epochs(self) -> float | None:
        """Warm-up in epochs (fine-tuning schedules; used when ``warmup_steps`` is None)."""
        s = self.schedule
        return s.warmup_epochs if isinstance(s, FinetuneScheduleConfig) else None


def configure_optimization(
    params: Iterable[Any],
    optimization: Optimization,
    *,
    warmup_steps: int,
    max_steps: int,
    min_lr_factors: Sequence[float] | None = None,
) -> dict[str, Any]:
    """AdamW over ``params`` (tensors or groups) and its schedule, as Lightning's
    ``configure_optimizers`` returns them (``interval: step``).

    ``warmup_steps`` / ``max_steps``: the resolved lengths in optimizer steps;
    ``min_lr_factors``: a cosine floor per group (LLRD; fine-tuning schedules only), default
    the schedule's ``min_lr_factor``."""
    o, s = optimization.optimizer, optimization.schedule
    b0, b1 = o.betas
    optimizer = adamw(
        list(params), lr=o.lr, betas=(b0, b1), eps=o.eps, weight_decay=o.weight_decay,
        amsgrad=o.amsgrad, allow_fused=optimization.fused,
    )  # fmt: skip
    if isinstance(s, PretrainScheduleConfig):
        if min_lr_factors is not None:
            raise ValueError("per-group floors need a fine-tuning schedule")
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
            rlp_mode=optimization.monitor_mode,
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
