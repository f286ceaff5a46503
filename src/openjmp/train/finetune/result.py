"""What a fine-tuning run returns, whatever its adaptation (`openjmp.train.finetune.run`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

EVAL_PARTS = ("train", "val", "test")


@dataclass
class FinetuneResult:
    """What a fine-tuning run produced.

    Attributes:
        out_dir: the run directory.
        best_checkpoint: best validation checkpoint (None if no validation ran).
        last_checkpoint: ``checkpoints/last.ckpt`` (None if no checkpoint was written).
        monitor: monitored metric name (``<output>_mae`` ...), mode "min" or "max".
        best_metric: its best validation value (physical units), or None.
        history: (optimizer step, monitored validation value), the first at step 0 (before
            training) for a fresh run, over the whole run including resumed parts.
        train_losses: (optimizer step, training loss in normalised units).
        metrics: part ("train", "val", "test") -> metric name -> value, for the best weights.
        test_predictions / test_targets: output name -> array ((B,) per structure, (N, 3)
            forces in eV/Å, (B, C) class logits / (B,) labels), for the best weights.
        wall_time: seconds of the whole run (earlier launches of a resumed run included);
            steps: optimizer steps done in total.
        stop_reason: early_stopping, non_finite_metric, min_lr, max_steps, max_time or
            max_epochs.
    """

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    monitor: str
    mode: str
    best_metric: float | None
    history: list[tuple[int, float]] = field(default_factory=list)
    train_losses: list[tuple[int, float]] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    test_predictions: dict[str, np.ndarray] = field(default_factory=dict)
    test_targets: dict[str, np.ndarray] = field(default_factory=dict)
    wall_time: float = 0.0
    steps: int = 0
    stop_reason: str = ""
