"""The adaptation ladder: ``frozen`` and ``partial`` train only what they say.

From a tiny 1-block pre-training checkpoint: ``frozen`` ends with the embedding and every
backbone weight bit-identical to the checkpoint's; ``partial`` with
``trainable_blocks: 1`` on a 2-block backbone freezes embedding, bases and block 0 and trains
block 1, the output MLPs and the heads. The run's config.yaml names the adaptation. Bad
combinations are named errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from openjmp.config import FinetuneConfig, load_config
from openjmp.errors import ConfigError
from openjmp.model.checkpoint import load_checkpoint, read_checkpoint
from openjmp.records import AtomsRecord
from openjmp.train.finetune.full import build_task
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import TINY_BACKBONE, molecules, tiny_config, write_molecules

SHORT = [
    "data.graph.pbc=false", "data.graph.cutoff=4.0", "data.graph.max_neighbors=8",
    "schedule.warmup_epochs=null", "schedule.warmup_steps=2", "schedule.max_epochs=null",
    "schedule.max_steps=20", "trainer.max_epochs=null", "trainer.max_time=null",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.accelerator=cpu",
    "loader.batch_size=4", "early_stopping=null", "optimizer.lr=5e-3",
]  # fmt: skip


def test_frozen_trains_the_heads_only(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    ckpt = tiny_pretrained[0]
    data = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    cfg = load_config("user-energy-forces", "finetune",
                      [f"model.checkpoint={ckpt}", f"data.train.path={data}", *SHORT,
                       "adaptation=frozen"])  # fmt: skip
    run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False, evaluate_parts=())
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["adaptation"] == "frozen"
    start = load_checkpoint(ckpt, dtype=torch.float32).state_dict()
    final = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["model_state_dict"]
    body = [k for k in final if k.startswith(("embedding.", "backbone."))]
    assert body
    for k in body:
        assert torch.equal(start[k], final[k]), k
    assert any(k.startswith("heads.energy.") for k in final)


def _trainable(cfg: FinetuneConfig) -> set[str]:
    records = [AtomsRecord.from_ase(a, source="t", index=i) for i, a in enumerate(molecules(6))]
    task = build_task(cfg, records)
    return {n for n, p in task.model.named_parameters() if p.requires_grad}


def test_partial_trains_the_last_blocks(molecules_file: Path) -> None:
    bb = {**TINY_BACKBONE, "num_blocks": 2}
    cfg = tiny_config(molecules_file, ["adaptation=partial", "trainable_blocks=1"], backbone=bb)
    assert cfg.frozen_sets(2) == ["embedding", "bases", "blocks_0"]
    trainable = _trainable(cfg)
    assert not any(n.startswith(("embedding.", "backbone.bases.")) for n in trainable)
    assert not any(n.startswith(("backbone.int_blocks.0.", "backbone.out_blocks.0.",
                                 "backbone.out_blocks.1.")) for n in trainable)  # fmt: skip
    assert any(n.startswith("backbone.int_blocks.1.") for n in trainable)
    assert any(n.startswith("backbone.out_blocks.2.") for n in trainable)
    assert any(n.startswith("heads.") for n in trainable)
    full = _trainable(tiny_config(molecules_file, backbone=bb))
    assert trainable < full
    frozen = _trainable(tiny_config(molecules_file, ["adaptation=frozen"], backbone=bb))
    assert frozen and all(n.startswith("heads.") for n in frozen)


def test_ladder_settings_are_checked(molecules_file: Path) -> None:
    with pytest.raises(ConfigError, match="trainable_blocks"):
        tiny_config(molecules_file, ["adaptation=partial"])
    with pytest.raises(ConfigError, match="trainable_blocks"):
        tiny_config(molecules_file, ["trainable_blocks=1"])
    cfg = tiny_config(molecules_file, ["adaptation=partial", "trainable_blocks=3"])
    with pytest.raises(ConfigError, match="trainable_blocks 3: the backbone has only 1 blocks"):
        _trainable(cfg)
