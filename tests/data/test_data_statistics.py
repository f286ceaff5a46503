"""Linear references and normalisation statistics against direct numpy computations.

The reference fit must equal ``np.linalg.lstsq(X, E)`` on the element-count matrix without
intercept (the authors' ``ani1x_linear_ref.py``), including rank-deficient data (one
composition, as rMD17) and for the memory-bounded normal-equation path used on large data; it
must recover known per-element energies. Means and stds are population statistics
(``np.std``), the force figure is ``sqrt(mean(F²))`` over components, and a cache gives the
same numbers as the records it holds.
"""

from __future__ import annotations

import numpy as np
import pytest

import openjmp.data.statistics as st
from openjmp.data.cache_writer import write_store
from openjmp.data.statistics import compute_statistics, fit_linear_references, referenced_energies
from openjmp.records import AtomsRecord

TRUE_REFS = {1: -13.6, 6: -1029.4, 7: -1484.9, 8: -2041.8}


def _records(n: int = 60, seed: int = 0, noise: float = 0.05) -> list[AtomsRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        z = rng.choice([1, 6, 7, 8], size=int(rng.integers(3, 12)))
        e = sum(TRUE_REFS[int(x)] for x in z) + rng.normal(scale=noise)
        pos = np.arange(len(z))[:, None] * np.array([1.1, 0.0, 0.0])
        f = rng.normal(size=(len(z), 3))
        out.append(AtomsRecord(atomic_numbers=z, positions=pos, energy=e, forces=f,
                               targets={"gap": float(i), "flag": i % 4 == 0}, index=i))  # fmt: skip
    return out


def _authors_fit(recs) -> np.ndarray:
    x = np.stack([np.bincount(r.atomic_numbers, minlength=120) for r in recs])
    return np.linalg.lstsq(x, [r.energy for r in recs], rcond=None)[0]


def test_fit_equals_lstsq_and_recovers_references() -> None:
    recs = _records()
    coeff = fit_linear_references(recs)
    assert coeff.shape == (120,)
    np.testing.assert_allclose(coeff, _authors_fit(recs), rtol=1e-10, atol=1e-8)
    for z, ref in TRUE_REFS.items():
        assert coeff[z] == pytest.approx(ref, abs=0.05)
    assert np.count_nonzero(coeff) == 4


def test_normal_equations_match_exact_fit(monkeypatch) -> None:
    recs = _records(200, seed=1)
    exact = fit_linear_references(recs)
    monkeypatch.setattr(st, "_EXACT_ROWS", 0)
    np.testing.assert_allclose(fit_linear_references(recs), exact, rtol=1e-9, atol=1e-7)


def test_rank_deficient_single_composition(monkeypatch) -> None:
    z = np.array([6, 6, 8, 1, 1, 1, 1, 1, 1])  # ethanol only: X has rank 1
    recs = [AtomsRecord(atomic_numbers=z, positions=np.arange(9)[:, None] * [1.0, 0, 0], energy=-4209.5 + 0.1 * i)
            for i in range(10)]  # fmt: skip
    expected = _authors_fit(recs)  # minimum-norm solution
    np.testing.assert_allclose(fit_linear_references(recs), expected, rtol=1e-10, atol=1e-9)
    monkeypatch.setattr(st, "_EXACT_ROWS", 0)
    np.testing.assert_allclose(fit_linear_references(recs), expected, rtol=1e-8, atol=1e-9)
    ref = referenced_energies(z, np.array([9]), np.array([recs[0].energy]), expected)
    assert abs(ref[0]) < 1.0


def test_statistics_values_and_store_equivalence(tmp_path) -> None:
    recs = _records(80)
    train = np.arange(0, 80, 2)
    stats = compute_statistics(recs, indices=train)
    sub = [recs[i] for i in train]
    coeff = _authors_fit(sub)
    ref = np.array([r.energy - coeff[r.atomic_numbers].sum() for r in sub])
    e = stats["energy"]
    assert e["referenced"]["mean"] == pytest.approx(ref.mean(), abs=1e-9)
    assert e["referenced"]["std"] == pytest.approx(np.std(ref), rel=1e-6)
    assert e["mean"] == pytest.approx(np.mean([r.energy for r in sub]))
    assert e["std"] == pytest.approx(np.std([r.energy for r in sub]), rel=1e-9)
    forces = np.concatenate([r.forces for r in sub])
    assert stats["forces"]["rms"] == pytest.approx(np.sqrt(np.mean(forces**2)))
    assert stats["forces"]["mean_norm"] == pytest.approx(np.linalg.norm(forces, axis=1).mean())
    assert stats["natoms"]["mean"] == pytest.approx(np.mean([r.natoms for r in sub]))
    assert stats["n_structures"] == 40 and stats["elements"] == [1, 6, 7, 8]
    assert stats["targets"]["gap"]["mean"] == pytest.approx(np.mean(train))
    assert stats["targets"]["flag"]["fraction_true"] == pytest.approx(np.mean(train % 4 == 0))
    store = write_store(recs, tmp_path / "c")
    from_store = compute_statistics(store, indices=train)
    assert from_store["energy"]["referenced"]["std"] == pytest.approx(
        e["referenced"]["std"], rel=1e-9
    )
    np.testing.assert_allclose(
        from_store["energy"]["linear_reference"], e["linear_reference"], rtol=1e-10, atol=1e-8
    )
    assert from_store["forces"] == pytest.approx(stats["forces"])
    assert from_store["targets"]["gap"] == pytest.approx(stats["targets"]["gap"])
    assert from_store["targets"]["flag"] == pytest.approx(stats["targets"]["flag"])


def test_no_energies() -> None:
    recs = [r.replace(energy=None, forces=None) for r in _records(5)]
    stats = compute_statistics(recs)
    assert (
        stats["energy"] is None
        and stats["forces"] is None
        and stats["targets"]["gap"]["count"] == 5
    )
    from openjmp.errors import DataError

    with pytest.raises(DataError, match="no structure has an energy"):
        fit_linear_references(recs)
