"""Evaluation of a fine-tuned checkpoint: the paper's units, JSON, parity plots, the CLI.

Unit conversions are checked against the paper's conventions (jmp-reference §5): forces and
QM9 energies ×1000 (meV/Å, meV), MatBench mp_e_form ×1000 (meV/atom), other targets unchanged.
Evaluating a run's best checkpoint again must give exactly the metrics the run reported for the
same part (same weights, same batches), and the files must exist (PNG signature checked).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openjmp.cli.main import main
from openjmp.config import load_config
from openjmp.evaluate import PAPER_RESULTS, benchmark_name, evaluate_checkpoint, paper_unit
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import tiny_config


@pytest.mark.parametrize(
    ("preset", "output", "factor", "unit"),
    [
        ("qm9-u_0", "U_0", 1000.0, "meV"),
        ("qm9-eps_homo", "eps_HOMO", 1000.0, "meV"),
        ("qm9-mu", "mu", 1.0, "D"),
        ("qm9-c_v", "c_v", 1.0, "cal/mol/K"),
        ("rmd17-aspirin", "forces", 1000.0, "meV/Å"),
        ("matbench-mp_e_form", "y", 1000.0, "meV/atom"),
        ("matbench-jdft2d", "y", 1.0, "meV/atom"),
        ("matbench-perovskites", "y", 1.0, "eV/unit cell"),
        ("qmof", "y", 1.0, "eV"),
    ],
)
def test_paper_units(preset: str, output: str, factor: float, unit: str) -> None:
    cfg = load_config(preset, "finetune")
    assert paper_unit(cfg, output) == (factor, unit)


def test_benchmark_names_map_to_the_paper_tables() -> None:
    assert benchmark_name(load_config("jmp-s-rmd17-aspirin", "finetune")) == "rmd17-aspirin"
    assert benchmark_name(load_config("qm9-eps_HOMO", "finetune")) == "qm9-eps_homo"
    assert benchmark_name(load_config("matbench-mp_gap-fold3", "finetune")) == "matbench-mp_gap"
    assert benchmark_name(load_config("md22-Ac-Ala3-NHMe", "finetune")) == "md22-ac-ala3-nhme"
    assert benchmark_name(load_config("user-property", "finetune")) is None
    assert PAPER_RESULTS["rmd17-aspirin"] == (6.7, 5.1) and PAPER_RESULTS["qmof"] == (0.18, 0.16)
    assert len(PAPER_RESULTS) == 40  # the paper's 40 tasks


def test_evaluate_checkpoint_and_cli(tmp_path: Path, molecules_file: Path, capsys) -> None:
    cfg = tiny_config(molecules_file, ["trainer.max_steps=4", "trainer.val_check_interval=2"])
    res = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
    reports = evaluate_checkpoint(res.best_checkpoint, parts=("test", "val"))
    rep = reports["test"]
    assert rep["metrics"] == pytest.approx(res.metrics["test"], rel=1e-12)
    assert rep["paper_units"]["forces_mae"] == {
        "value": pytest.approx(1000 * res.metrics["test"]["forces_mae"]),
        "unit": "meV/Å",
    }
    out = tmp_path / "run" / "evaluation"
    saved = json.loads((out / "evaluation_test.json").read_text())
    assert saved["metrics"] == rep["metrics"] and saved["structures"] == 2
    for fig in rep["figures"]:
        assert Path(fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {Path(f).name for f in rep["figures"]} == {
        "parity_test_energy.png",
        "parity_test_forces.png",
    }

    code = main(["evaluate", str(res.best_checkpoint), "--split", "val", "--out", str(tmp_path / "cli"),
                 "--no-plots", "--set", "loader.eval_batch_size=1"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "forces_mae" in text and "meV/Å" in text
    cli = json.loads((tmp_path / "cli" / "evaluation_val.json").read_text())
    assert cli["metrics"]["forces_mae"] == pytest.approx(res.metrics["val"]["forces_mae"], rel=1e-5)
