"""`openjmp demo --scale 0.05` end to end as a user runs it (subprocess, no network).

Checks the whole study ran: the report and every figure exist, the headline numbers in
study.json are finite, both arms and both seeds of every task were run, and the report
prints the paper's 59 % beside our average.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_small_scale_writes_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "openjmp.cli.main",
            "demo",
            "--out",
            str(out),
            "--scale",
            "0.05",
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # one status line per stage and run, not Lightning's per-run banners
    assert "stage 5/5" in proc.stdout
    assert "GPU available" not in proc.stdout + proc.stderr
    report = (out / "report.md").read_text()
    assert "| task |" in report and "paper reports 59 %" in report
    figures = out / "figures"
    for name in (
        "pretrain_energy_mae.png",
        "pretrain_force_mae.png",
        "embeddings_tsne.png",
        *(
            f"finetune_{t}.png"
            for t in ("md_forces", "alloy_energy", "molecule_energy", "homo_lumo_gap")
        ),
        *(
            f"parity_{t}.png"
            for t in ("md_forces", "alloy_energy", "molecule_energy", "homo_lumo_gap")
        ),
    ):
        png = figures / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"figures/{name}" in report, f"{name} not linked from the report"
    study = json.loads((out / "study.json").read_text())
    runs = study["runs"]
    assert {(r["task"], r["arm"], r["seed"]) for r in runs} == {
        (t, a, s)
        for t in ("md_forces", "alloy_energy", "molecule_energy", "homo_lumo_gap")
        for a in ("pretrained", "scratch")
        for s in (0, 1)
    }
    for r in runs:
        assert math.isfinite(r["test_metric"]) and r["test_metric"] > 0, r
        assert r["steps"] > 0 and r["history"], r
    # the replay arm on the force task: one run, a forgetting table with finite errors for the
    # pre-trained, fully fine-tuned and replay models (scratch has no pre-training heads)
    assert [(r["task"], r["arm"], r["seed"]) for r in study["replay_runs"]] == [
        ("md_forces", "replay", 0)
    ]
    table = study["forgetting"]["md_forces"]
    assert set(table["target"]) == {"scratch", "pretrained", "replay"}
    assert len(table["datasets"]) == 4
    for row in table["datasets"].values():
        assert row["scratch"] is None
        for arm in ("pre-trained", "pretrained", "replay"):
            assert row[arm]["structures"] > 0
            assert math.isfinite(row[arm]["energy_mae"]) and math.isfinite(row[arm]["forces_mae"])
    assert "## Fine-tuning that does not forget: replay" in report
    png = figures / "dimers_md_forces.png"
    assert png.is_file() and "figures/dimers_md_forces.png" in report
    for _, per_set in study["pretrain"]["val_history"]:
        for metrics in per_set.values():
            assert all(math.isfinite(v) for v in metrics.values())
    assert "headline" in proc.stdout.lower() or "| task |" in proc.stdout
