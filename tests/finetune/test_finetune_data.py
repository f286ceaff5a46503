"""Fine-tuning data and statistics: splits, label checks, refitted references and normalisation.

* The split of one source reproduces the authors' cut of one RandomState(42) shuffle
  (`openjmp.data.splits.fraction_split`); separate val / test sources replace those parts.
* A missing label is a `DataError` naming the file and the record.
* Statistics are refitted on the *training* part only: references equal numpy's least squares
  on element counts (no intercept), mean / std are those of the referenced labels, the force
  std is the RMS force component; values given in the config pass through unchanged; a zero
  spread is an error that says what to set. Residual references absorb exactly a per-element
  error of a model's predictions. Comparisons at 1e-10 (float64 least squares).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.io import read, write

from openjmp.config.finetune import ScalarHead
from openjmp.data.splits import fraction_split
from openjmp.errors import ConfigError, DataError
from openjmp.records import AtomsRecord
from openjmp.tasks.finetune_stats import (
    element_counts,
    reference_offsets,
    residual_statistics,
    resolve_statistics,
)
from openjmp.train.finetune.data import check_labels, load_finetune_splits

from helpers.ft_helpers import tiny_config


def test_split_reproduces_the_authors_cut(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file)
    splits = load_finetune_splits(cfg.data, tmp_path / "cache")
    ref = fraction_split(20, seed=42, train=0.8, test=0.1)
    for part in ("train", "val", "test"):
        assert np.array_equal(splits.part(part).indices, ref[part])
    # reading through the record cache keeps the file's order and labels
    frames = read(molecules_file, ":")
    rec = splits.train.records[0]
    assert rec.energy == pytest.approx(
        frames[int(ref["train"][0])].get_potential_energy(), rel=1e-12
    )


def test_separate_val_and_test_sources(tmp_path: Path, molecules_file: Path) -> None:
    frames = read(molecules_file, ":")
    write(tmp_path / "val.extxyz", frames[:3])
    write(tmp_path / "test.extxyz", frames[3:8])
    cfg = tiny_config(molecules_file, [f"data.val={{path: {tmp_path / 'val.extxyz'}}}",
                                       f"data.test={{path: {tmp_path / 'test.extxyz'}}}", "data.split=null"])  # fmt: skip
    splits = load_finetune_splits(cfg.data, tmp_path / "cache")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 3, 5)


def test_missing_label_names_file_and_record(tmp_path: Path, molecules_file: Path) -> None:
    cfg = tiny_config(molecules_file, ["heads.0.target=nope"], preset="user-property")
    splits = load_finetune_splits(cfg.data, tmp_path / "cache")
    with pytest.raises(
        DataError, match=r"mols\.extxyz, record \d+: train structure has no label 'nope'"
    ):
        check_labels(splits.train.records, list(cfg.heads), "train")


def records_from(path: Path) -> list[AtomsRecord]:
    return [
        AtomsRecord.from_ase(a, source=str(path), index=i) for i, a in enumerate(read(path, ":"))
    ]


def test_statistics_are_refitted_on_the_training_records(molecules_file: Path) -> None:
    train = records_from(molecules_file)[:14]
    cfg = tiny_config(molecules_file)  # energy_forces, references fit, normalisation from data
    stats = resolve_statistics(list(cfg.heads), train)["energy"]
    counts = element_counts(train)
    e = np.array([r.energy for r in train])
    present = counts.sum(0) > 0
    coeff = np.zeros(120)
    coeff[present] = np.linalg.lstsq(counts[:, present].astype(float), e, rcond=None)[0]
    assert np.allclose(stats["references"], coeff, rtol=1e-10, atol=1e-10)
    resid = e - counts @ coeff
    assert stats["mean"] == pytest.approx(resid.mean(), abs=1e-10)
    assert stats["std"] == pytest.approx(resid.std(), rel=1e-10)
    f = np.concatenate([r.forces for r in train])
    assert stats["force_std"] == pytest.approx(np.sqrt((f**2).mean()), rel=1e-12)


def test_given_statistics_pass_through_and_zero_spread_is_an_error(molecules_file: Path) -> None:
    train = records_from(molecules_file)[:8]
    head = ScalarHead(
        target="gap",
        normalization={"mean": 2.0, "std": 0.5},
        atom_references={"values": [0.0, 1.0]},
    )
    with pytest.raises(ConfigError, match="cover Z < 2 but the data has Z = 6"):
        resolve_statistics([head], train)
    head = ScalarHead(target="gap", normalization={"mean": 2.0, "std": 0.5})
    assert resolve_statistics([head], train)["gap"] == {
        "references": None,
        "mean": 2.0,
        "std": 0.5,
        "unit": "",  # an ase-file target: the unit of its labels
        "elements": sorted({int(z) for r in train for z in r.atomic_numbers}),
    }
    const = [r.replace(targets={"c": 1.0}) for r in train]
    with pytest.raises(ConfigError, match="std must be > 0.*set the normalisation"):
        resolve_statistics([ScalarHead(target="c")], const)


def test_residual_references_absorb_a_per_element_error(molecules_file: Path) -> None:
    train = records_from(molecules_file)
    cfg = tiny_config(molecules_file)
    stats = resolve_statistics(list(cfg.heads), train)
    shift = np.zeros(120)
    shift[[1, 6, 7, 8]] = [0.3, -1.2, 0.7, 2.0]  # what a pre-trained model gets wrong per element
    rng = np.random.default_rng(0)
    truth = np.array([r.energy for r in train])
    noise = rng.normal(scale=1e-5, size=len(train))
    predictions = truth - reference_offsets(train, shift) + noise
    new = residual_statistics(stats, "energy", train, "energy", predictions)
    assert np.allclose(
        np.asarray(new["energy"]["references"])[[1, 6, 7, 8]], shift[[1, 6, 7, 8]], atol=1e-3
    )
    assert new["energy"]["std"] < 1e-4
    assert new["energy"]["force_std"] == stats["energy"]["force_std"]
