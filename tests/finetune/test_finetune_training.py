"""Short fine-tuning runs on tiny EMT data (CPU, tiny model): learning, stopping rules, outputs.

* 24 optimizer steps with gradient forces lower the validation force MAE well below its value
  before training (step 0); the best checkpoint, evaluated again at the end, gives exactly the
  best validation value (same weights, same batches: 1e-6 relative for float32 summation);
* the run writes its history, metrics, statistics and test predictions;
* early stopping (patience counted in validations), the minimum-lr rule and ``max_time`` each
  stop a run and are reported as the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from openjmp.errors import CheckpointError, ConfigError
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import tiny_config


def test_short_finetune_lowers_validation_error(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(
        molecules_file,
        ["optimizer.lr=3e-3", "trainer.max_steps=24", "trainer.val_check_interval=6", "early_stopping=null",
         "heads.0.target=gap", "heads.0.pooling=sum", "monitor.metric=y_mae"],
        preset="user-property",
    )  # fmt: skip
    res = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
    assert [s for s, _ in res.history] == [0, 6, 12, 18, 24]
    first = res.history[0][1]
    assert res.best_metric is not None and res.best_metric < 0.5 * first
    assert res.best_metric == min(v for s, v in res.history if s > 0)
    assert res.steps == 24 and res.stop_reason == "max_steps"
    assert [s for s, _ in res.train_losses] == list(range(24))
    assert res.best_checkpoint is not None and res.best_checkpoint.is_file()
    # the best checkpoint evaluated again at the end gives the best validation value
    assert res.metrics["val"]["y_mae"] == pytest.approx(res.best_metric, rel=1e-6)
    assert set(res.metrics) == {"train", "val", "test"}
    # 20 structures, fractions 0.8 / rest / 0.1: 16 train, 2 val, 2 test
    assert res.test_predictions["y"].shape == res.test_targets["y"].shape == (2,)
    mae = np.abs(res.test_predictions["y"] - res.test_targets["y"]).mean()
    assert res.metrics["test"]["y_mae"] == pytest.approx(mae, rel=1e-9)
    for name in (
        "config.yaml",
        "stats.json",
        "history.json",
        "metrics.json",
        "test_predictions.npz",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist["monitor"] == "y_mae" and len(hist["val"]) == 5


def test_gradient_force_finetune_lowers_force_error(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(
        molecules_file,
        [
            "optimizer.lr=1e-2",
            "trainer.max_steps=24",
            "trainer.val_check_interval=12",
            "early_stopping=null",
        ],
    )
    res = run_finetune(
        cfg, out_dir=tmp_path / "run", progress=False, logger=False, evaluate_parts=("test",)
    )
    assert [s for s, _ in res.history] == [0, 12, 24]
    assert res.best_metric is not None and res.best_metric < 0.95 * res.history[0][1]
    n_atoms = res.test_targets["forces"].shape[0]
    assert res.test_predictions["forces"].shape == (n_atoms, 3)
    assert res.test_predictions["energy"].shape == (2,)
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["energy"]["force_std"] > 0 and len(stats["energy"]["references"]) == 120


def test_early_stopping_counts_validations(tmp_path: Path, molecules_file: Path) -> None:
    # no improvement can exceed min_delta: the first validation sets the best, the next stops
    cfg = tiny_config(molecules_file, [
        "trainer.max_steps=40", "trainer.val_check_interval=2",
        "early_stopping={patience: 1, min_delta: 1000.0, min_lr: null}",
    ])  # fmt: skip
    res = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
    assert res.stop_reason == "early_stopping"
    assert res.steps == 4


def test_min_lr_rule_stops(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file, [
        "trainer.max_steps=40", "trainer.val_check_interval=2",
        "early_stopping={patience: 50, min_delta: 0.0, min_lr: 1.0}",
    ])  # fmt: skip
    res = run_finetune(
        cfg, out_dir=tmp_path / "run", progress=False, logger=False, evaluate_parts=()
    )
    assert res.stop_reason == "min_lr"
    assert res.steps == 2
    assert res.metrics == {}


def test_max_time_stops(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file, [
        "trainer.max_steps=100000", "trainer.val_check_interval=4", "trainer.max_time='00:00:00:02'",
        "early_stopping=null",
    ])  # fmt: skip
    res = run_finetune(
        cfg, out_dir=tmp_path / "run", progress=False, logger=False, evaluate_parts=()
    )
    assert res.stop_reason == "max_time"
    assert 0 < res.steps < 100000


def test_existing_run_is_not_overwritten(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file, ["trainer.max_steps=2", "trainer.val_check_interval=2"])
    with pytest.raises(CheckpointError, match="nothing to resume"):
        run_finetune(cfg, out_dir=tmp_path / "run", resume=True, progress=False, logger=False)
    run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False, evaluate_parts=())
    with pytest.raises(ConfigError, match="already holds a run"):
        run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
