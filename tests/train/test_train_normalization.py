"""Target normalisation resolved on the training part: fitted references, referenced-energy
mean/std and force RMS checked against numpy on the same numbers; config values win; the
result is cached as JSON and read back; empty / constant data fail with a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openjmp.config.common import ForceNormalization, LinearReferences, Normalization
from openjmp.data.cache_writer import write_store
from openjmp.errors import ConfigError, DataError
from openjmp.records import AtomsRecord
from openjmp.train.normalization import resolve_normalization

from helpers.tiny_data import molecules


@pytest.fixture
def store(tmp_path: Path):
    recs = [AtomsRecord.from_ase(a, source="m", index=i) for i, a in enumerate(molecules(12))]
    return write_store(recs, tmp_path / "store")


def test_statistics_of_the_training_part(store, tmp_path: Path) -> None:
    train = np.arange(0, 12, 2)
    norm = resolve_normalization(
        "mols", store, train, references=LinearReferences(fit=True), energy=Normalization(),
        forces=ForceNormalization(), cache_dir=tmp_path / "cache",
    )  # fmt: skip
    recs = [store[int(i)] for i in train]
    x = np.zeros((len(recs), 120))
    for r, rec in enumerate(recs):
        np.add.at(x[r], rec.atomic_numbers, 1)
    e = np.array([rec.energy for rec in recs])
    cols = np.flatnonzero(x.sum(0))
    coeff = np.zeros(120)
    coeff[cols] = np.linalg.lstsq(x[:, cols], e, rcond=None)[0]
    np.testing.assert_allclose(norm.references, coeff, rtol=1e-9, atol=1e-9)
    referenced = e - x @ coeff
    assert norm.energy_mean == pytest.approx(referenced.mean(), abs=1e-9)
    assert norm.energy_std == pytest.approx(referenced.std(), rel=1e-7)
    f = np.concatenate([rec.forces for rec in recs])
    assert norm.force_std == pytest.approx(np.sqrt(np.mean(f**2)), rel=1e-12)
    assert norm.mean_natoms == pytest.approx(np.mean([r.natoms for r in recs]))
    files = list((tmp_path / "cache").glob("mols-normalization-*.json"))
    assert len(files) == 1
    again = resolve_normalization(
        "mols", store, train, references=LinearReferences(fit=True), energy=Normalization(),
        forces=ForceNormalization(), cache_dir=tmp_path / "cache",
    )  # fmt: skip
    assert again == norm


def test_config_values_win_and_bad_data_fails(store) -> None:
    table = [0.0, -13.6, 0, 0, 0, 0, -1030.0, -1485.0, -2040.0]  # H .. O
    norm = resolve_normalization(
        "mols", store, np.arange(12), references=LinearReferences(values=table),
        energy=Normalization(mean=0.0, std=24.9), forces=ForceNormalization(std=0.5),
    )  # fmt: skip
    assert norm.references == tuple(table)
    assert (norm.energy_mean, norm.energy_std, norm.force_std) == (0.0, 24.9, 0.5)
    with pytest.raises(ConfigError, match=r"covers Z < 2 but the data contain Z = 8"):
        resolve_normalization("mols", store, np.arange(12),
                              references=LinearReferences(values=[0.0, -13.6]),
                              energy=Normalization(), forces=ForceNormalization())  # fmt: skip
    with pytest.raises(DataError, match="training part is empty"):
        resolve_normalization("mols", store, np.arange(0), references=None,
                              energy=Normalization(), forces=ForceNormalization())  # fmt: skip
    with pytest.raises(DataError, match="zero spread"):
        resolve_normalization("mols", store, np.arange(1), references=None,
                              energy=Normalization(), forces=ForceNormalization())  # fmt: skip
