"""Fine-tune your own pre-trained checkpoint in one command, as the README shows it.

A tiny pre-training run (1 block, 8-16 features, cutoff 4 Å) writes ``model.pt``; then

    openjmp finetune user-energy-forces --set model.checkpoint=RUN/model.pt \\
        --set data.train.path=mols.extxyz  (+ a short schedule and a molecular graph)

must run without copying any backbone setting: the architecture comes from the checkpoint
(``model.architecture: checkpoint`` in the user presets), the layer-wise LR profile of the
6-block recipe is resampled to the checkpoint's 1 block, the run is named after the data, the
resolved settings are in the run's ``config.yaml`` (the run reproduces from its own files), and
the result predicts in eV with no graph= and no head=. A backbone field set to something else
than the checkpoint's is a named error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

import openjmp
from openjmp.cli.main import main
from openjmp.train.pretrain import run_pretrain

from helpers.ft_helpers import molecules, write_molecules
from helpers.tiny_data import TINY_BACKBONE, write_tiny_data
from helpers.tiny_data import tiny_config as pretrain_config

SHORT = [
    "data.graph.pbc=false", "data.graph.cutoff=4.0", "data.graph.max_neighbors=8",
    "schedule.warmup_epochs=null", "schedule.warmup_steps=2", "schedule.max_epochs=null",
    "schedule.max_steps=8", "trainer.max_epochs=null", "trainer.max_time=null",
    "trainer.max_steps=8", "trainer.val_check_interval=4", "trainer.accelerator=cpu",
    "loader.batch_size=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:  # noqa: ANN001
    root = tmp_path_factory.mktemp("pre")
    write_tiny_data(root / "data")
    cfg = pretrain_config(root / "data", precision="32-true")
    return run_pretrain(cfg, out_dir=root / "run", progress=False, logger=False).checkpoint


def test_one_command_from_your_own_checkpoint(pretrained: Path, tmp_path: Path) -> None:
    data = write_molecules(tmp_path / "mine.extxyz")
    sets = [f"model.checkpoint={pretrained}", f"data.train.path={data}", *SHORT]
    args = ["finetune", "user-energy-forces", *[x for s in sets for x in ("--set", s)]]
    args += ["--no-progress", "--set", f"trainer.output_dir={tmp_path / 'runs'}"]
    assert main(args) == 0
    run = tmp_path / "runs" / "mine-energy-forces"  # named after the data
    saved = yaml.safe_load((run / "config.yaml").read_text())
    backbone = saved["model"]["backbone"]
    for key in ("num_blocks", "emb_size_atom", "emb_size_edge", "absolute_rbf_cutoff"):
        assert backbone[key] == TINY_BACKBONE[key], key
    assert sorted(saved["llrd"]) == ["blocks_0", "embedding"]  # resampled to 1 block
    best = next((run / "checkpoints").glob("best*.ckpt"))
    model = openjmp.load_model(best)
    assert model.config.num_blocks == 1
    frames = molecules(3, seed=50)
    pred = openjmp.predict(model, frames)
    labels = np.array([a.get_potential_energy() for a in frames])
    assert pred.units["energy"] == "eV"
    assert np.abs(pred.energies - labels).max() < 5.0  # eV, after 8 steps


def test_a_conflicting_backbone_field_is_named(pretrained: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    data = write_molecules(tmp_path / "mine.extxyz")
    sets = [f"model.checkpoint={pretrained}", f"data.train.path={data}", *SHORT]
    sets += ["model.backbone.num_blocks=4", f"trainer.output_dir={tmp_path / 'runs'}"]
    assert main(["finetune", "user-energy-forces", *[x for s in sets for x in ("--set", s)]]) == 2
    err = capsys.readouterr().err
    assert "num_blocks: checkpoint 1, config 4" in err
