"""`run_finetune`: what ``openjmp finetune`` runs, by the config's ``adaptation``.

* ``full`` (default): end-to-end training with the JMP recipe (`openjmp.train.finetune.full`),
  optionally starting a head from the checkpoint's with residual references
  (``residual_references``, `openjmp.train.finetune.residual`);
* ``ridge`` / ``mlp``: a frozen backbone and a head fitted on its pooled features in seconds
  (`openjmp.train.finetune.frozen`).

Every mode is a field of the config, so the run's ``config.yaml`` says how it was made and the
run reproduces from its own files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openjmp.config.finetune import FinetuneConfig
from openjmp.errors import ConfigError
from openjmp.train.finetune.frozen import run_frozen
from openjmp.train.finetune.full import run_full
from openjmp.train.finetune.result import EVAL_PARTS, FinetuneResult


def run_finetune(
    config: FinetuneConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    progress: bool = True,
    callbacks: Sequence[Any] = (),
    logger: bool = True,
    evaluate_parts: Sequence[str] = EVAL_PARTS,
    cache_dir: Path | None = None,
) -> FinetuneResult:
    """Fine-tune as ``config`` says (module docstring), writing into ``out_dir``; ``resume``
    continues ``out_dir/checkpoints/last.ckpt`` (end-to-end training only)."""
    if config.adaptation == "full":
        return run_full(
            config,
            out_dir=out_dir,
            resume=resume,
            progress=progress,
            callbacks=callbacks,
            logger=logger,
            evaluate_parts=evaluate_parts,
            cache_dir=cache_dir,
        )
    if resume:
        raise ConfigError(
            f"adaptation {config.adaptation!r} fits its head in one go: there is nothing to resume"
        )
    return run_frozen(config, out_dir=out_dir, progress=progress)
