"""JMP's learning-rate schedules, stepped once per optimizer step (jmp-reference §2.6, §3.1).

Pre-training: ``pretrain_scheduler(optimizer, warmup_steps=2000, max_steps=...)`` is a stock
``LambdaLR`` (checkpointable) with the factor

    s < W:       f0 + s (1 − f0) / (W − 1)           (f0 = 0.2; reaches 1 at s = W − 1)
    W ≤ s ≤ M:   fmin + ½ (1 − fmin)(1 + cos(π (s − W)/(M − W)))   (fmin = 0.1)
    s > M:       fmin

The authors' recursive form restarts the cosine after M; training stops at M there, so we hold
the floor instead.

Fine-tuning: `WarmupCosineRLP` gives every parameter group (layer-wise LR decay) the same shape
around its own initial lr: warm-up from 0.1× with the (W − 1) increment, cosine to the group's
eta_min = min_lr_factor_g × lr_g until step M, where the group's
min_lr_factor_g = clamp(0.1 / scale_g, 0.01, 0.99) (`llrd_min_lr_factor`) so all groups end at
0.1 × the base lr; from M on, ReduceLROnPlateau (factor 0.8, patience, threshold 1e-4 rel)
drives every group, stepped once per validation with the monitored metric. In Lightning::

    sched = WarmupCosineRLP(opt, warmup_steps=W, max_steps=M, min_lr_factors=[...], ...)
    # configure_optimizers: {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
    # on_validation_epoch_end: sched.on_validation(metric_value)

W and M come from epochs with `epochs_to_steps` (steps per epoch = ceil(batches / accumulate)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, ReduceLROnPlateau


def epochs_to_steps(epochs: float, batches_per_epoch: int, accumulate_grad_batches: int = 1) -> int:
    """Optimizer steps in ``epochs`` epochs: epochs × ceil(batches / accumulate), as the authors."""
    return int(epochs * math.ceil(batches_per_epoch / accumulate_grad_batches))


def warmup_cosine_factor(
    step: int, warmup_steps: int, max_steps: int, warmup_start_factor: float, min_factor: float
) -> float:
    """LR multiplier at optimizer step ``step`` (see module docstring); 1 at s = W."""
    if step < warmup_steps:
        if warmup_steps == 1:
            return warmup_start_factor
        return warmup_start_factor + step * (1.0 - warmup_start_factor) / (warmup_steps - 1)
    if step >= max_steps:
        return min_factor
    progress = (step - warmup_steps) / (max_steps - warmup_steps)
    return min_factor + 0.5 * (1.0 - min_factor) * (1.0 + math.cos(math.pi * progress))


def _check_steps(warmup_steps: int, max_steps: int) -> None:
    if warmup_steps < 0 or max_steps <= warmup_steps:
        raise ValueError(f"need 0 <= warmup_steps < max_steps, got {warmup_steps}, {max_steps}")


@dataclass
class WarmupCosineFactor:
    """Picklable LambdaLR factor (its fields are saved in the scheduler's state_dict)."""

    warmup_steps: int
    max_steps: int
    warmup_start_factor: float = 0.2
    min_factor: float = 0.1

    def __call__(self, step: int) -> float:
        return warmup_cosine_factor(
            step, self.warmup_steps, self.max_steps, self.warmup_start_factor, self.min_factor
        )


def pretrain_scheduler(
    optimizer: Optimizer,
    *,
    warmup_steps: int = 2000,
    max_steps: int,
    warmup_start_factor: float = 0.2,
    min_factor: float = 0.1,
) -> LambdaLR:
    """JMP pre-training schedule: warm-up 0.2× → 1× over W steps, cosine to 0.1× at M steps."""
    _check_steps(warmup_steps, max_steps)
    return LambdaLR(
        optimizer, WarmupCosineFactor(warmup_steps, max_steps, warmup_start_factor, min_factor)
    )


def llrd_min_lr_factor(scale: float, base_min_factor: float = 0.1) -> float:
    """A group's cosine floor factor so it ends at base_min_factor × base lr: clamp(0.1/scale, 0.01, 0.99)."""
    return max(0.01, min(0.99, base_min_factor / scale))


class WarmupCosineRLP(LRScheduler):
    """Per-group linear warm-up + cosine to step M, then ReduceLROnPlateau (authors' WarmupCosRLP).

    Args:
        optimizer: its groups' current ``lr`` are the peak lrs (base × LLRD scale).
        warmup_steps: W; max_steps: M (optimizer steps, M > W).
        warmup_start_factor: warm-up starts at this × the group's lr (0.1).
        min_lr_factors: cosine floor factor per group (or one for all); see `llrd_min_lr_factor`.
        rlp_*: ReduceLROnPlateau settings (mode, factor 0.8, patience 3 / rMD17 10, threshold
            1e-4 relative, min_lr 0, eps 1e-8, cooldown 0).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        warmup_steps: int,
        max_steps: int,
        warmup_start_factor: float = 0.1,
        min_lr_factors: float | Sequence[float] = 0.1,
        rlp_mode: Literal["min", "max"] = "min",
        rlp_factor: float = 0.8,
        rlp_patience: int = 3,
        rlp_threshold: float = 1e-4,
        rlp_threshold_mode: Literal["rel", "abs"] = "rel",
        rlp_min_lr: float = 0.0,
        rlp_eps: float = 1e-8,
        rlp_cooldown: int = 0,
        last_epoch: int = -1,
    ) -> None:
        _check_steps(warmup_steps, max_steps)
        n = len(optimizer.param_groups)
        factors = (
            [min_lr_factors] * n
            if isinstance(min_lr_factors, float | int)
            else list(min_lr_factors)
        )
        if len(factors) != n:
            raise ValueError(f"{len(factors)} min_lr_factors for {n} parameter groups")
        if not all(0 < f <= 1 for f in factors) or not 0 < warmup_start_factor <= 1:
            raise ValueError("min_lr_factors and warmup_start_factor must lie in (0, 1]")
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps
        self.warmup_start_factor = warmup_start_factor
        self.min_lr_factors = [float(f) for f in factors]
        self.rlp = ReduceLROnPlateau(
            optimizer,
            mode=rlp_mode,
            factor=rlp_factor,
            patience=rlp_patience,
            threshold=rlp_threshold,
            threshold_mode=rlp_threshold_mode,
            cooldown=rlp_cooldown,
            min_lr=rlp_min_lr,
            eps=rlp_eps,
        )
        super().__init__(optimizer, last_epoch)

    @property
    def in_plateau_stage(self) -> bool:
        """True once M optimizer steps are done: the cosine is over, RLP governs."""
        return self.last_epoch >= self.max_steps

    def get_lr(self) -> list[float]:  # type: ignore[override]
        s, w, m = self.last_epoch, self.warmup_steps, self.max_steps
        out = []
        for group, base, fmin in zip(
            self.optimizer.param_groups, self.base_lrs, self.min_lr_factors
        ):
            base = float(base)
            if s > m:  # ReduceLROnPlateau owns the lr now
                out.append(float(group["lr"]))
                continue
            start, eta_min = self.warmup_start_factor * base, fmin * base
            if s == 0 and w > 0:
                out.append(start)
            elif s < w:
                out.append(start + s * (base - start) / (w - 1))
            elif s == m:
                out.append(eta_min)
            else:
                cos = math.cos(math.pi * (s - w) / (m - w))
                out.append(eta_min + 0.5 * (base - eta_min) * (1.0 + cos))
        return out

    def on_validation(self, metric: float) -> bool:
        """Feed the monitored validation metric; acts (and returns True) only after step M."""
        if not self.in_plateau_stage:
            return False
        self.rlp.step(float(metric))
        self._last_lr = [float(g["lr"]) for g in self.optimizer.param_groups]
        return True

    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "rlp")}
        state["rlp"] = self.rlp.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.rlp.load_state_dict(state.pop("rlp"))
        self.__dict__.update(state)
