"""Kill a pre-training run midway, resume it, and get the uninterrupted run's numbers back.

A run on two tiny EMT datasets (float64, CPU, edge dropout on, EMA on, temperature sampling
over a 5-batch expanded epoch) is stopped by an exception at step 5, after the checkpoint that
the validation at step 4 wrote; `run_pretrain(resume=True)` continues it to step 8. Every
training loss of the resumed run (steps 5-8), every validation record (EMA weights), the final
raw and EMA weights must equal those of the run that was never stopped: exactly, since the same
float64 operations run in the same order on the same data. That covers the optimizer, the LR
schedule, the EMA, the sampler position across an epoch boundary and the edge-dropout draws.
The second case caps batches by atoms and loads with 2 workers: the dropout draws must not
depend on the worker that builds a sample. The last test stops a run at its ``max_steps`` (5,
not a validation step) and continues it with ``max_steps: 8``: the final checkpoint must hold
the raw weights and the exact state of step 5 (the EMA goes into ``model.pt`` only).
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from openjmp.model.checkpoint import read_checkpoint
from openjmp.train.pretrain import run_pretrain

from helpers.tiny_data import tiny_config, write_tiny_data


class Crash(Exception):
    pass


class CrashAt(pl.Callback):
    """Raise after optimizer step ``step`` (as a kill would, without saving anything)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Crash(f"killed at step {self.step}")


@pytest.mark.parametrize(
    "loader",
    [
        {"batch_size": 3, "num_workers": 0},
        {"batch_size": 4, "max_atoms_per_batch": 30, "num_workers": 2},
    ],
    ids=["fixed-batches", "atom-capped-2-workers"],
)
def test_resume_reproduces_uninterrupted_run(tmp_path: Path, loader: dict) -> None:
    write_tiny_data(tmp_path / "data")
    cfg = tiny_config(
        tmp_path / "data",
        loader=loader,
        trainer={"max_steps": 8, "val_check_interval": 2},
    )
    full = run_pretrain(cfg, out_dir=tmp_path / "full", progress=False, logger=False)
    assert full.steps == 8

    with pytest.raises(Crash):
        run_pretrain(cfg, out_dir=tmp_path / "cut", progress=False, logger=False,
                     callbacks=[CrashAt(5)])  # fmt: skip
    saved = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    assert saved["global_step"] == 4
    resumed = run_pretrain(cfg, out_dir=tmp_path / "cut", resume=True, progress=False, logger=False)

    assert resumed.steps == 8
    assert [s for s, _ in resumed.train_history] == list(range(1, 9))
    assert resumed.train_history == full.train_history  # exact, steps 5-8 recomputed
    assert resumed.val_history == full.val_history
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    for key in ("ema_state_dict", "model_state_dict"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    assert torch.equal(
        a["optimizer_states"][0]["state"][0]["exp_avg_sq"],
        b["optimizer_states"][0]["state"][0]["exp_avg_sq"],
    )


def test_continue_a_finished_run_with_more_steps(tmp_path: Path) -> None:
    write_tiny_data(tmp_path / "data")
    loader = {"batch_size": 3, "num_workers": 0}
    cfg8 = tiny_config(
        tmp_path / "data", loader=loader, trainer={"max_steps": 8, "val_check_interval": 2}
    )
    cfg5 = tiny_config(
        tmp_path / "data", loader=loader, trainer={"max_steps": 5, "val_check_interval": 2}
    )
    full = run_pretrain(cfg8, out_dir=tmp_path / "full", progress=False, logger=False)
    short = run_pretrain(cfg5, out_dir=tmp_path / "more", progress=False, logger=False)
    assert read_checkpoint(tmp_path / "more" / "checkpoints" / "last.ckpt")["global_step"] == 5
    assert short.train_history == full.train_history[:5]
    more = run_pretrain(cfg8, out_dir=tmp_path / "more", resume=True, progress=False, logger=False)
    assert more.train_history == full.train_history
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(tmp_path / "more" / "checkpoints" / "last.ckpt")
    for key in ("ema_state_dict", "model_state_dict"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
