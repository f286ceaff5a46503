"""ANI-1x, Transition-1x and SPICE HDF5 readers on files written in the published layouts.

Labels are EMT energies and forces written in each file's own units and conventions (ANI-1x:
Hartree and Ha/Å forces; Transition-1x: eV; SPICE: bohr, Hartree and the energy *gradient* in
Ha/bohr). After reading, ΔE along consecutive conformers must equal −½(F₁+F₂)·Δx in eV and Å
(ratio 1 within 2 %): a missed Hartree factor gives 27, a missed bohr factor 0.53 or 1.9, a
missed gradient sign −1. NaNs at the chosen level of theory, malformed groups and non-HDF5
files must each give a `DataError` naming file, group/record and problem.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from openjmp.errors import DataError
from openjmp.io import detect_format, read_records

from helpers.writers import (
    HARTREE,
    emt_label,
    molecule_frames,
    work_ratio,
    write_ani1x,
    write_spice,
    write_t1x,
)


@pytest.fixture(scope="module")
def ethanol():
    return molecule_frames("CH3CH2OH", 5)


def test_ani1x_units_sign_and_ids(tmp_path, ethanol) -> None:
    path = write_ani1x(
        tmp_path / "ani1x-release.h5", {"C2H6O": ethanol, "H2O": molecule_frames("H2O", 2)}
    )
    assert detect_format(path) == "ani1x"
    recs = list(read_records(path))
    eth = [r for r in recs if r.index.startswith("C2H6O/")]
    assert [r.index for r in eth] == [f"C2H6O/{i}" for i in range(5)]
    assert all(r.dataset == "ani1x" and not r.pbc.any() and (r.tags == 2).all() for r in recs)
    e0, f0 = emt_label(ethanol[0])
    assert eth[0].energy == pytest.approx(e0, rel=1e-12)  # Ha written, eV back
    np.testing.assert_allclose(eth[0].forces, f0, rtol=1e-5, atol=1e-6)  # float32 Ha/Å in file
    assert work_ratio(eth) == pytest.approx(1.0, abs=0.02)
    # a sparse level as an optional target: present only where it is not NaN
    recs = list(read_records(path, extra=["ccsd(t)_cbs.energy"]))
    assert "ccsd(t)_cbs.energy" in recs[0].targets and "ccsd(t)_cbs.energy" not in recs[1].targets
    assert recs[0].targets["ccsd(t)_cbs.energy"] == pytest.approx(recs[0].energy - 0.01 * HARTREE)


def test_ani1x_missing_level_is_reported_not_used(tmp_path, ethanol) -> None:
    path = write_ani1x(tmp_path / "a.h5", {"C2H6O": ethanol}, nan={"C2H6O": [2]})
    with pytest.raises(DataError, match=r"a.h5, record C2H6O/2: wb97x_dz.energy missing \(NaN\)"):
        list(read_records(path))
    problems: list[DataError] = []
    recs = list(read_records(path, on_error=problems.append))
    assert [r.index for r in recs] == ["C2H6O/0", "C2H6O/1", "C2H6O/3", "C2H6O/4"]
    assert [p.index for p in problems] == ["C2H6O/2"]
    with pytest.raises(DataError, match="record C2H6O: missing dataset 'wb97x_tz.energy'"):
        list(read_records(path, level="wb97x_tz"))


def test_ani1x_malformed_groups(tmp_path, ethanol) -> None:
    path = write_ani1x(tmp_path / "a.h5", {"C2H6O": ethanol})
    with h5py.File(path, "a") as f:
        g = f.create_group("CH4")
        g["atomic_numbers"] = np.array([6, 1, 1, 1, 1], np.uint8)
        g["coordinates"] = np.zeros((2, 4, 3), np.float32)  # wrong atom count
        g["wb97x_dz.energy"] = np.zeros(2)
        g["wb97x_dz.forces"] = np.zeros((2, 5, 3), np.float32)
    with pytest.raises(
        DataError, match=r"record CH4: coordinates has shape \(2, 4, 3\), expected \(C, 5, 3\)"
    ):
        list(read_records(path))
    bad = tmp_path / "not.h5"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="not.h5: not a readable HDF5 file"):
        list(read_records(bad, "ani1x"))


def test_transition1x_groups_and_units(tmp_path, ethanol) -> None:
    water = molecule_frames("H2O", 3, seed=1)
    path = write_t1x(
        tmp_path / "Transition1x.h5",
        {"C2H6O": {"rxn0001": ethanol}, "H2O": {"rxn0002": water}},
        {"train": [("C2H6O", "rxn0001")], "test": [("H2O", "rxn0002")], "val": []},
    )
    assert detect_format(path) == "transition1x"
    recs = list(read_records(path))  # train, val, test in that order; subgroups ignored
    assert [r.index for r in recs] == [f"train/C2H6O/rxn0001/{i}" for i in range(5)] + [
        f"test/H2O/rxn0002/{i}" for i in range(3)
    ]
    assert recs[0].energy == pytest.approx(emt_label(ethanol[0])[0])  # eV, no Hartree factor
    assert work_ratio(recs[:5]) == pytest.approx(1.0, abs=0.02)
    assert len(list(read_records(path, split="test"))) == 3
    assert len(list(read_records(path, split="data"))) == 8
    with pytest.raises(DataError, match="unknown split 'dev'"):
        read_records(path, split="dev")


def test_transition1x_broken_reaction(tmp_path, ethanol) -> None:
    path = write_t1x(
        tmp_path / "t.h5", {"C2H6O": {"rxn0001": ethanol}}, {"train": [("C2H6O", "rxn0001")]}
    )
    with h5py.File(path, "a") as f:
        del f["data/C2H6O/rxn0001/wB97x_6-31G(d).forces"]
    with pytest.raises(
        DataError, match=r"record train/C2H6O/rxn0001: missing dataset 'wB97x_6-31G\(d\).forces'"
    ):
        list(read_records(path))


def test_spice_bohr_hartree_and_gradient_sign(tmp_path, ethanol) -> None:
    path = write_spice(tmp_path / "dipeptides.h5", {"ACE-ALA-NME": ethanol})
    assert detect_format(path) == "spice"
    recs = list(read_records(path))
    assert [r.index for r in recs] == [f"ACE-ALA-NME__{i}" for i in range(5)]
    e0, f0 = emt_label(ethanol[0])
    np.testing.assert_allclose(recs[0].positions, ethanol[0].positions, atol=1e-5)
    assert recs[0].energy == pytest.approx(e0, rel=1e-9)
    np.testing.assert_allclose(recs[0].forces, f0, rtol=1e-5, atol=1e-5)  # −gradient, eV/Å
    assert recs[0].targets["formation_energy"] == pytest.approx(e0 - 1.0 / 0.0367493, rel=1e-9)
    assert work_ratio(recs) == pytest.approx(1.0, abs=0.02)
    # no units attributes: the documented SPICE units are assumed
    bare = write_spice(tmp_path / "bare.h5", {"m": ethanol}, units=False)
    np.testing.assert_allclose(next(read_records(bare, "spice")).forces, recs[0].forces)


def test_spice_unknown_units_and_missing_gradient(tmp_path, ethanol) -> None:
    path = write_spice(tmp_path / "s.h5", {"m": ethanol})
    with h5py.File(path, "a") as f:
        f["m/conformations"].attrs["units"] = "nanometer"
    with pytest.raises(
        DataError, match="record m: conformations has unsupported units 'nanometer'"
    ):
        list(read_records(path))
    path = write_spice(tmp_path / "t.h5", {"m": ethanol})
    with h5py.File(path, "a") as f:
        del f["m/dft_total_gradient"]
    with pytest.raises(DataError, match="record m: missing dataset 'dft_total_gradient'"):
        list(read_records(path))
