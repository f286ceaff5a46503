"""Residual references: start from a pre-trained head, fit references to what it gets wrong.

A tiny model is fine-tuned on EMT energies (run A). Its best checkpoint (an openjmp fine-tuned
checkpoint, statistics inside) starts run B on the same molecules with every energy shifted by
a per-element amount (a change of reference energies). With ``residual_references: energy``:

* B's backbone and energy head are A's, bit for bit;
* the new references are A's plus the least-squares fit of (shifted label − A's prediction) on
  element counts, so B's predictions before training are A's plus Σ Δ[Z] exactly (float64);
* the training-set MAE of those predictions on the shifted labels is far below A's raw MAE on
  them (the shift, several eV, is absorbed).

The authors' checkpoints are refused: their heads' outputs have no published meaning in eV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from openjmp.errors import ConfigError
from openjmp.records import AtomsRecord
from openjmp.tasks.finetune_stats import element_counts
from openjmp.train.finetune.full import build_task, load_task
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import batch_of, tiny_config

SHIFT = {1: 0.5, 6: 3.0, 7: -2.5, 8: 4.0}


def shifted(path: Path, out: Path) -> Path:
    frames = read(path, ":")
    for a in frames:
        e = a.get_potential_energy() + sum(SHIFT[z] for z in a.numbers)
        a.calc = SinglePointCalculator(a, energy=e, forces=a.get_forces())
    write(out, frames)
    return out


def test_residual_references_start_from_the_pretrained_head(
    tmp_path: Path, molecules_file: Path
) -> None:
    cfg_a = tiny_config(
        molecules_file, ["precision=64-true", "trainer.max_steps=4", "trainer.val_check_interval=2"]
    )
    a = run_finetune(cfg_a, out_dir=tmp_path / "a", progress=False, logger=False, evaluate_parts=())
    data_b = shifted(molecules_file, tmp_path / "shifted.extxyz")
    cfg_b = tiny_config(data_b, ["precision=64-true", f"model.checkpoint={a.best_checkpoint}",
                                 "model.backbone.preset=jmp-s", "residual_references=energy"])  # fmt: skip
    frames = read(data_b, ":")
    train = [AtomsRecord.from_ase(x, source="b", index=i) for i, x in enumerate(frames)]
    task_b = build_task(cfg_b, train, steps_per_epoch=4, dtype=torch.float64)
    task_a = load_task(a.best_checkpoint)
    sa, sb = task_a.model.state_dict(), task_b.model.state_dict()
    shared = [k for k in sa if k.startswith(("embedding.", "backbone.", "heads.energy."))]
    assert all(torch.equal(sa[k], sb[k]) for k in shared)

    batch = batch_of(frames)
    e_a = task_a.eval()(batch)["energy"].detach().numpy()
    e_b = task_b.eval()(batch)["energy"].detach().numpy()
    delta = np.asarray(task_b.hparams["stats"]["energy"]["references"]) - np.asarray(
        task_a.hparams["stats"]["energy"]["references"]
    )
    counts = element_counts(train)
    assert np.allclose(e_b, e_a + counts @ delta, rtol=1e-12, atol=1e-9)
    labels = np.array([x.get_potential_energy() for x in frames])
    raw, fixed = np.abs(labels - e_a).mean(), np.abs(labels - e_b).mean()
    assert raw > 3.0 and fixed < 0.2 * raw
    assert np.allclose(delta[[1, 6, 7, 8]], [SHIFT[z] for z in (1, 6, 7, 8)], atol=0.5)


def test_authors_checkpoints_are_refused(reference_dir: Path, molecules_file: Path) -> None:
    from openjmp.train.finetune.residual import residual_start

    cfg = tiny_config(
        molecules_file, [f"model.checkpoint={reference_dir / 'tiny' / 'lightning_checkpoint.ckpt'}"]
    )
    train = [AtomsRecord.from_ase(x) for x in read(molecules_file, ":4")]
    with pytest.raises(ConfigError, match="linear references that are not in the checkpoint"):
        residual_start(cfg, train, {"energy": {}}, "oc20", dtype=torch.float64)
