"""``openjmp finetune`` / ``openjmp evaluate`` as a user runs them, killed and resumed for real.

The fine-tune runs in a subprocess (single-threaded, so its arithmetic is the in-process
run's): it is killed with SIGKILL as soon as its first ``last.ckpt`` exists (after the
validation of step 4 of 24), then ``--resume`` finishes it. Its validation history must equal,
to float64-printing precision, that of the same config run in this process without
interruption, and its files must be complete. ``openjmp evaluate`` then writes the JSON and the
parity plot, and ``--frozen ridge`` fits a frozen-backbone head. Slow for a unit test (three
interpreter starts, ~15 s): it is the end-to-end check of the command line and of a real kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openjmp.cli.main import main
from openjmp.config import load_config
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import backbone_overrides, llrd_override, write_molecules


def overrides(data: Path) -> list[str]:
    return [
        *backbone_overrides(), "model.checkpoint=null", llrd_override(1),
        f"data.train.path={data}", "data.graph.pbc=false", "data.graph.cutoff=5.0",
        "data.graph.max_neighbors=12", "heads.0.target=gap", "heads.0.pooling=sum",
        "loader.batch_size=4", "precision=32-true", "optimizer.lr=3e-3",
        "schedule.warmup_epochs=null", "schedule.warmup_steps=2", "schedule.max_epochs=null",
        "schedule.max_steps=24", "trainer.max_epochs=null", "trainer.max_time=null",
        "trainer.max_steps=24", "trainer.val_check_interval=4", "trainer.accelerator=cpu",
        "early_stopping=null",
    ]  # fmt: skip


def cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "openjmp.cli.main", *args]


def test_finetune_kill_resume_evaluate(tmp_path: Path) -> None:
    data = write_molecules(tmp_path / "data" / "mols.extxyz")
    sets = [x for o in overrides(data) for x in ("--set", o)]
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.Popen(cli(["finetune", "user-property", *sets, "--out", str(run), "--no-progress"]),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    assert not (run / "metrics.json").exists()  # it did not finish

    done = subprocess.run(cli(["finetune", "user-property", *sets, "--out", str(run), "--resume",
                               "--no-progress"]), env=env, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best val y_mae" in done.stdout
    hist = json.loads((run / "history.json").read_text())

    cfg = load_config("user-property", "finetune", overrides(data))
    ref = run_finetune(
        cfg, out_dir=tmp_path / "ref", progress=False, logger=False, evaluate_parts=()
    )
    assert [s for s, _ in hist["val"]] == [s for s, _ in ref.history] == list(range(0, 25, 4))
    assert [v for _, v in hist["val"]] == pytest.approx([v for _, v in ref.history], rel=1e-9)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 24 and set(metrics["metrics"]) == {"train", "val", "test"}

    best = metrics["checkpoint"]
    ev = subprocess.run(
        cli(["evaluate", best, "--split", "test"]), env=env, capture_output=True, text=True
    )
    assert ev.returncode == 0, ev.stderr[-2000:]
    report = json.loads((run / "evaluation" / "evaluation_test.json").read_text())
    assert report["metrics"]["y_mae"] == pytest.approx(
        metrics["metrics"]["test"]["y_mae"], rel=1e-6
    )
    assert (run / "evaluation" / "parity_test_y.png").is_file()

    assert main(["finetune", "user-property", *sets, "--out", str(tmp_path / "frozen"), "--frozen",
                 "ridge", "--no-progress"]) == 0  # fmt: skip
    assert json.loads((tmp_path / "frozen" / "metrics.json").read_text())["mode"] == "frozen-ridge"
