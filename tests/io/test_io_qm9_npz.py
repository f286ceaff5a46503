"""QM9 .xyz files and rMD17 / MD22 .npz trajectories in their published layouts.

QM9: the 19 targets must come out in JMP's units (Hartree quantities × 27.211386246 eV, the
rest unchanged), atomisation energies = energy − Σ free-atom energies, Mathematica ``*^``
exponents parsed, uncharacterised molecules left out and the rest in numeric order whatever
the archive order. rMD17 / MD22: kcal/mol → eV with JMP's 1/23.061, ``E`` of shape (F, 1),
``e_unit``/``r_unit`` honoured, and ΔE = −½(F₁+F₂)·Δx in eV/Å after reading.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule

from openjmp.errors import DataError
from openjmp.io import detect_format, read_records
from openjmp.io.md_npz import molecule_name
from openjmp.io.qm9 import ATOMREF_HARTREE, TARGETS

from helpers.writers import (
    KCAL,
    PYG_HARTREE,
    emt_label,
    molecule_frames,
    qm9_text,
    work_ratio,
    write_md22,
    write_qm9_tar,
    write_rmd17,
    write_uncharacterized,
)


def test_qm9_targets_units_and_order(tmp_path) -> None:
    ch4, nh3, h2o = molecule("CH4"), molecule("NH3"), molecule("H2O")
    texts = {1: qm9_text(1, ch4), 2: qm9_text(2, nh3, mathematica=True), 3: qm9_text(3, h2o)}
    path = write_qm9_tar(tmp_path / "dsgdb9nsd.xyz.tar.bz2", texts, order=[3, 1, 2])
    write_uncharacterized(tmp_path / "uncharacterized.txt", [3])
    assert detect_format(path) == "qm9"
    recs = list(read_records(path))
    assert [r.index for r in recs] == [1, 2]  # numeric order, molecule 3 left out
    r = recs[0]
    assert list(r.targets) == list(TARGETS) and r.energy is None and r.dataset == "qm9"
    t = r.targets
    assert t["A"] == 157.7118 and t["mu"] == 0.0 and t["alpha"] == 13.21 and t["c_v"] == 6.469
    assert t["R_2_Abs"] == 35.3641
    assert t["eps_HOMO"] == pytest.approx(-0.3877 * PYG_HARTREE)
    assert t["delta_eps"] == pytest.approx(0.5048 * PYG_HARTREE)
    assert t["U_0"] == pytest.approx(-40.47893 * PYG_HARTREE)
    atoms_u0 = ATOMREF_HARTREE[6][0] + 4 * ATOMREF_HARTREE[1][0]
    assert t["U_0_ATOM"] == pytest.approx((-40.47893 - atoms_u0) * PYG_HARTREE)
    assert t["G_ATOM"] == pytest.approx(
        (-40.498597 - ATOMREF_HARTREE[6][3] - 4 * ATOMREF_HARTREE[1][3]) * PYG_HARTREE
    )
    assert recs[1].targets["mu"] == pytest.approx(2.1997e-6)  # 2.1997*^-6
    np.testing.assert_allclose(r.positions, ch4.positions, atol=1e-9)
    assert r.atomic_numbers.tolist() == [6, 1, 1, 1, 1]
    # PyG's U0_ATOM for methane (kcal/mol column of MoleculeNet's csv, converted): -17.17 eV
    assert t["U_0_ATOM"] == pytest.approx(-17.1720, abs=2e-3)
    assert len(list(read_records(path, uncharacterized=False))) == 3


def test_qm9_directory_and_errors(tmp_path) -> None:
    (tmp_path / "dsgdb9nsd_000001.xyz").write_text(qm9_text(1, molecule("CH4")))
    (tmp_path / "dsgdb9nsd_000002.xyz").write_text(qm9_text(5, molecule("CH4")))
    with pytest.raises(
        DataError, match="dsgdb9nsd_000002.xyz, record 5: file name says molecule 2"
    ):
        list(read_records(tmp_path))
    bad = tmp_path / "b" / "dsgdb9nsd_000007.xyz"
    bad.parent.mkdir()
    bad.write_text(qm9_text(7, molecule("CH4")).replace("-40.47893", "abc"))
    with pytest.raises(DataError, match="dsgdb9nsd_000007.xyz: bad number in the property line"):
        list(read_records(bad))
    text = qm9_text(8, molecule("CH4")).splitlines()
    bad.write_text("\n".join(text[:4]))
    with pytest.raises(DataError, match="record 8: file ends after 2 of 5 atom lines"):
        list(read_records(bad, "qm9"))
    broken = tmp_path / "dsgdb9nsd.xyz.tar.bz2"
    broken.write_bytes(b"BZh9 this is not a tarball")
    with pytest.raises(DataError, match="not a readable tar archive|corrupt tar archive"):
        list(read_records(broken))


def test_qm9_atom_count_must_match_the_coordinate_lines(tmp_path) -> None:
    """An ``na`` lower than the coordinate lines used to read as a smaller molecule carrying
    the whole one's properties; it is now an error naming the file and molecule, and
    ``openjmp data check`` fails on it."""
    from openjmp.cli.main import main

    lines = qm9_text(4, molecule("CH4")).splitlines()
    path = tmp_path / "dsgdb9nsd_000004.xyz"
    path.write_text("\n".join(["3", *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"record 4: atom count on line 1 is 3 but 5 atom lines"):
        list(read_records(path))
    assert main(["data", "check", str(path)]) == 1
    # one line too few after the atoms, a charge column missing, wrong frequency count
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="expected 3 lines after the 5 atom lines"):
        list(read_records(path))
    path.write_text("\n".join([*lines[:3], lines[3].rsplit("\t", 1)[0], *lines[4:]]))
    with pytest.raises(DataError, match="atom line 4 is not 'element x y z q'"):
        list(read_records(path))
    path.write_text("\n".join([*lines[:7], "1.0\t2.0", *lines[8:]]))
    with pytest.raises(DataError, match="line 8 holds 2 frequencies; 5 atoms have 0 or 9 or 10"):
        list(read_records(path))
    path.write_text("\n".join(lines) + "\n")
    assert len(list(read_records(path))) == 1


def test_rmd17_kcal_to_ev_and_sign(tmp_path) -> None:
    frames = molecule_frames("CH3CH2OH", 6)
    path = write_rmd17(tmp_path / "rmd17_ethanol.npz", frames)
    assert detect_format(path) == "md_npz" and molecule_name(path) == "ethanol"
    recs = list(read_records(path))
    assert [r.index for r in recs] == list(range(6)) and recs[0].dataset == "rmd17"
    e, f = emt_label(frames[3])
    assert recs[3].energy == pytest.approx(e, rel=1e-12)
    np.testing.assert_allclose(recs[3].forces, f, rtol=1e-12, atol=1e-12)
    assert work_ratio(recs) == pytest.approx(1.0, abs=0.02)
    assert molecule_name("rmd17_napthalene.npz") == "naphthalene"


@pytest.mark.parametrize("e_unit,r_unit", [("kcal/mol", "Ang"), ("eV", "Bohr")])
def test_md22_units_and_squeeze(tmp_path, e_unit, r_unit) -> None:
    frames = molecule_frames("CH3CH2OH", 5, seed=3)
    path = write_md22(tmp_path / "md22_AT-AT.npz", frames, e_unit=e_unit, r_unit=r_unit)
    recs = list(read_records(path))
    assert recs[0].dataset == "md22" and len(recs) == 5
    e, f = emt_label(frames[1])
    assert recs[1].energy == pytest.approx(e, rel=1e-10)
    np.testing.assert_allclose(recs[1].positions, frames[1].positions, atol=1e-10)
    np.testing.assert_allclose(recs[1].forces, f, rtol=1e-9, atol=1e-10)
    assert work_ratio(recs) == pytest.approx(1.0, abs=0.02)


def test_npz_errors(tmp_path) -> None:
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(DataError, match=r"x.npz: neither an rMD17 file .* found \['a'\]"):
        read_records(tmp_path / "x.npz")
    frames = molecule_frames("H2O", 3)
    path = write_md22(tmp_path / "md22_w.npz", frames)
    d = dict(np.load(path))
    d["e_unit"] = np.array("furlongs")
    np.savez(path, **d)
    with pytest.raises(DataError, match="e_unit='furlongs' is not a unit"):
        read_records(path)
    d["e_unit"], d["F"] = np.array("kcal/mol"), d["F"][:, :2]
    np.savez(path, **d)
    with pytest.raises(DataError, match=r"forces have shape \(3, 2, 3\), positions \(3, 3, 3\)"):
        read_records(path)
    (tmp_path / "y.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="y.npz: not a readable .npz file"):
        read_records(tmp_path / "y.npz")
    assert KCAL == pytest.approx(1 / 23.061)
