"""A fine-tuned checkpoint is a ready potential: everything that reads it gives physical units.

* `openjmp.predict` on the test structures of a run gives the energies and forces that the run's
  own evaluation (de-normalised by the fine-tuning targets) gives, to float32 rounding, with the
  graph the run trained with and no graph= or head= (gradient and direct forces, and scalars);
* a model fine-tuned on energies with a large per-element offset (total energies of DFT size,
  ~ -10^3 eV per atom) predicts energies of that size (the references travel with the heads);
* a checkpoint written before heads carried their transforms (the same file with the per-head
  entries removed) still loads and gives the same eV, from the statistics in its metadata.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

import openjmp
from openjmp.model.checkpoint import read_checkpoint
from openjmp.model.outputs import INFO_KEYS
from openjmp.train.finetune.data import load_finetune_splits
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import molecules, tiny_config

# float32 predictions of energies ~10-10^4 eV: relative rounding of a float32 sum
F32 = dict(rtol=2e-6, atol=2e-5)


def _test_structures(cfg, out: Path) -> list:
    splits = load_finetune_splits(cfg.data, out / "cache")
    return [r.to_ase() for r in splits.test.records]


@pytest.mark.parametrize("forces", ["gradient", "direct"])
def test_predict_equals_evaluation(molecules_file: Path, tmp_path: Path, forces: str) -> None:
    cfg = tiny_config(molecules_file, [f"heads.0.forces={forces}"])
    out = tmp_path / "run"
    result = run_finetune(cfg, out_dir=out, progress=False, logger=False)
    frames = _test_structures(cfg, out)
    model = openjmp.load_model(result.best_checkpoint)
    pred = openjmp.predict(model, frames)  # no graph=, no head=: the model knows both
    assert pred.graph == cfg.data.graph.spec()
    assert pred.units["energy"] == "eV" and pred.units["forces"] == "eV/Å"
    np.testing.assert_allclose(pred.energies, result.test_predictions["energy"], **F32)
    np.testing.assert_allclose(
        np.concatenate(pred.forces), result.test_predictions["forces"], rtol=1e-4, atol=1e-6
    )
    # the calculator agrees, from the checkpoint path
    atoms = frames[0].copy()
    atoms.calc = openjmp.JMPCalculator(result.best_checkpoint)
    assert atoms.get_potential_energy() == pytest.approx(pred.energies[0], rel=1e-6)
    np.testing.assert_allclose(atoms.get_forces(), pred.forces[0], rtol=1e-5, atol=1e-6)


def test_scalar_head_predicts_in_its_unit(molecules_file: Path, tmp_path: Path) -> None:
    cfg = tiny_config(
        molecules_file,
        ["heads=[{kind: scalar, target: gap}]", "monitor.metric=gap_mae"],
        preset="user-property",
    )
    out = tmp_path / "run"
    result = run_finetune(cfg, out_dir=out, progress=False, logger=False)
    model = openjmp.load_model(result.best_checkpoint)
    pred = openjmp.predict(model, _test_structures(cfg, out))
    assert pred.energies is None and pred.forces is None
    np.testing.assert_allclose(pred.properties["gap"], result.test_predictions["gap"], **F32)
    assert pred.units["gap"] == ""  # an extxyz column: the unit of its labels


def test_large_per_element_offsets_come_back(tmp_path: Path) -> None:
    offsets = {1: -13.6, 6: -1029.4, 7: -1484.9, 8: -2041.8}  # ~ DFT atomic energies, eV
    frames = molecules(24, seed=3)
    for a in frames:
        e = a.get_potential_energy() + sum(offsets[int(z)] for z in a.numbers)
        a.calc.results["energy"] = e
    data = tmp_path / "dft_size.extxyz"
    ase.io.write(data, frames, format="extxyz")
    cfg = tiny_config(data)
    out = tmp_path / "run"
    result = run_finetune(cfg, out_dir=out, progress=False, logger=False)
    test = _test_structures(cfg, out)
    labels = np.array([a.get_potential_energy() for a in test])
    pred = openjmp.predict(openjmp.load_model(result.best_checkpoint), test)
    assert labels.max() < -1000  # DFT-size totals
    np.testing.assert_allclose(pred.energies, labels, atol=2.0)  # a few eV after 8 steps
    # and the raw outputs are nothing like it (what predict used to return as "eV")
    raw = openjmp.predict(openjmp.load_model(result.best_checkpoint), test, units="raw")
    assert np.abs(raw.energies).max() < 100


def test_checkpoints_written_before_head_transforms_still_give_ev(
    molecules_file: Path, tmp_path: Path
) -> None:
    cfg = tiny_config(molecules_file, ["heads.0.forces=direct"])
    out = tmp_path / "run"
    result = run_finetune(cfg, out_dir=out, progress=False, logger=False)
    frames = _test_structures(cfg, out)
    new = openjmp.predict(openjmp.load_model(result.best_checkpoint), frames)

    ck = read_checkpoint(result.best_checkpoint)
    ck["heads"] = {
        n: {k: v for k, v in s.items() if k not in INFO_KEYS} for n, s in ck["heads"].items()
    }
    old_file = tmp_path / "old.ckpt"
    torch.save(ck, old_file)
    old_model = openjmp.load_model(old_file)
    old = openjmp.predict(old_model, frames)  # graph from the run's hyper-parameters
    np.testing.assert_allclose(old.energies, new.energies, rtol=1e-12)
    np.testing.assert_allclose(np.concatenate(old.forces), np.concatenate(new.forces), rtol=1e-12)
