"""Kill a fine-tuning run midway, resume it, and get the uninterrupted run's numbers back.

Gradient forces (autograd in validation), EMA on, 16 training structures in batches of 3
(5 batches per epoch, the last incomplete one dropped), validation and ``last.ckpt`` every 2
steps. The run is stopped by an exception after step 5 (as a kill would: nothing saved after
the checkpoint of step 4, which lies inside the first epoch); ``run_finetune(resume=True)``
continues to step 8 across the epoch boundary. Every training loss, every validation value, and
the final raw and EMA weights must equal the uninterrupted run's exactly: the same float32
operations run in the same order on the same batches (optimizer, LR schedule, EMA, sampler
position and the next epoch's shuffle all restored).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from openjmp.model.checkpoint import read_checkpoint
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import tiny_config


class Crash(Exception):
    pass


class CrashAt(pl.Callback):
    """Raise after optimizer step ``step`` (a kill, without saving anything)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            raise Crash(f"killed at step {self.step}")


def test_resume_reproduces_uninterrupted_run(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file, [
        "loader.batch_size=3", "trainer.max_steps=8", "trainer.val_check_interval=2",
        "ema_decay=0.9", "optimizer.lr=5e-3", "early_stopping=null",
    ])  # fmt: skip
    kw = {"progress": False, "logger": False, "evaluate_parts": ()}
    full = run_finetune(cfg, out_dir=tmp_path / "full", **kw)
    assert full.steps == 8

    with pytest.raises(Crash):
        run_finetune(cfg, out_dir=tmp_path / "cut", callbacks=[CrashAt(5)], **kw)
    saved = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 4
    # the time of the killed launch is in the checkpoint and counts in the resumed run's time
    # (set to 1e6 s here so that the total shows it was carried over)
    ck_path = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    ck = torch.load(ck_path, weights_only=False)
    ck["callbacks"]["ElapsedTime"]["elapsed"] = 1e6
    torch.save(ck, ck_path)
    resumed = run_finetune(cfg, out_dir=tmp_path / "cut", resume=True, **kw)

    assert 1e6 <= resumed.wall_time < 1e6 + 600
    assert resumed.steps == 8
    assert [s for s, _ in resumed.train_losses] == list(range(8))
    assert resumed.train_losses == full.train_losses  # exact: steps 4-7 recomputed after resume
    assert [s for s, _ in resumed.history] == [0, 2, 4, 6, 8]
    assert resumed.history == full.history
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    for key in ("state_dict", "current_model_state"):  # EMA and raw weights
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
