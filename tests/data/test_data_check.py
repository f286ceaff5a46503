"""``check_records`` / ``check_path``: every problem is found, named and collected in one pass.

A clean EMT trajectory must pass with ΔE / (−F·Δx) ≈ 1. A set seeded with one problem of
each kind (NaN label, overlapping atoms, unknown element, wrong shape, missing label, periodic
axis without a cell vector, duplicate, implausible force) must report each one, with its
source and record, all in the same report. Forces stored as gradients, or left in Hartree,
must be caught from the energy differences along a trajectory; a malformed group in a file
must be reported while the rest of the file is still checked.
"""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from openjmp.data.check import check_path, check_records
from openjmp.records import AtomsRecord

from helpers.writers import HARTREE, emt_label, molecule_frames, write_ani1x


def _trajectory(n: int = 8, scale: float = 1.0) -> list[AtomsRecord]:
    out = []
    for i, a in enumerate(molecule_frames("CH3CH2OH", n, seed=2)):
        e, f = emt_label(a)
        out.append(AtomsRecord(atomic_numbers=a.numbers, positions=a.positions, energy=e,
                               forces=f * scale, source="traj.xyz", index=i))  # fmt: skip
    return out


def _write_extxyz(path, n: int) -> None:
    """``n`` EMT-labelled ethanol frames as extxyz."""
    frames = []
    for a in molecule_frames("CH3CH2OH", n):
        e, f = emt_label(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    ase.io.write(path, frames)


def test_clean_trajectory_passes() -> None:
    rep = check_records(_trajectory())
    assert rep.ok and rep.problems == []
    assert rep.energy_force_ratio == pytest.approx(1.0, abs=0.02)
    assert rep.n_records == 8 and rep.elements == {1: 8, 6: 8, 8: 8}


@pytest.mark.parametrize(
    "scale,message",
    [
        (-1.0, "forces have the wrong sign"),
        (1.0 / HARTREE, "energies and forces disagree in units"),
    ],
)
def test_sign_and_unit_errors_from_energy_differences(scale, message) -> None:
    rep = check_records(_trajectory(scale=scale))
    assert not rep.ok
    assert [p.message for p in rep.errors if message in p.message]


def test_every_problem_is_collected() -> None:
    good = _trajectory(3)
    base = good[0]
    bad = [
        base.replace(index="nan", energy=float("nan")),
        base.replace(
            index="overlap",
            positions=np.vstack(
                [base.positions[:1], base.positions[:1] + 0.01, base.positions[2:]]
            ),
        ),
        base.replace(index="unknown", atomic_numbers=np.r_[0, base.atomic_numbers[1:]]),
        base.replace(index="shape", forces=np.zeros((2, 3))),
        base.replace(index="nolabel", energy=None),
        base.replace(index="cell", pbc=True),
        base.replace(index="big", forces=base.forces * 100),
        good[1].replace(index="dup"),
    ]
    rep = check_records(good + bad)
    found: dict = {}
    for p in rep.problems:
        found[(p.index, p.severity)] = found.get((p.index, p.severity), "") + p.message + "; "
    assert "energy label is nan" in found[("nan", "error")]
    assert "overlapping atoms: atoms 0 and 1" in found[("overlap", "error")]
    assert "unknown element: atomic number 0" in found[("unknown", "error")]
    assert "forces have shape (2, 3)" in found[("shape", "error")]
    assert "missing energy label" in found[("nolabel", "error")]
    assert "periodic axis a has a zero cell vector" in found[("cell", "error")]
    assert "implausible in eV/Å" in found[("big", "warning")]
    assert "duplicate of traj.xyz, record 1" in found[("dup", "warning")]
    assert "duplicate of traj.xyz, record 0" in found[("nolabel", "warning")]
    assert all(p.source == "traj.xyz" for p in rep.problems)
    assert "traj.xyz, record nan: energy label is nan" in rep.format()


def test_typical_forces_in_wrong_units() -> None:
    rep = check_records(_trajectory(scale=23.061)[::2])  # kcal/mol/Å left unconverted, no pairs
    assert any("typical force RMS" in p.message for p in rep.errors)


def test_check_path_collects_reader_errors_and_goes_on(tmp_path) -> None:
    path = write_ani1x(tmp_path / "ani.h5", {"C2H6O": molecule_frames("CH3CH2OH", 4), "CH4": molecule_frames("CH4", 4)},
                       nan={"CH4": [1]})  # fmt: skip
    import h5py

    with h5py.File(path, "a") as f:
        g = f.create_group("NH3")
        g["atomic_numbers"] = np.array([7, 1, 1, 1], np.uint8)
    rep = check_path(path)
    msgs = [str(p) for p in rep.errors]
    assert any("record CH4/1: wb97x_dz.energy missing (NaN)" in m for m in msgs)
    assert any("record NH3: missing dataset 'coordinates'" in m for m in msgs)
    assert rep.n_records == 7 and not rep.ok
    assert rep.splits is not None and set(rep.splits["default"]) == {"train", "val", "test"}


def test_check_path_on_clean_extxyz(tmp_path) -> None:
    _write_extxyz(tmp_path / "t.extxyz", 6)
    rep = check_path(tmp_path / "t.extxyz")
    assert rep.ok, rep.format()
    assert rep.splits == {"default": {"train": 4, "val": 2, "test": 0}}


def _user_records() -> list[AtomsRecord]:
    """A molecule, then one of each structure training trips on."""
    rng = np.random.default_rng(0)
    good = _trajectory(1)[0].replace(energy=None, forces=None)
    lone = AtomsRecord(atomic_numbers=[29], positions=[[0, 0, 0]], source="u.xyz", index=1)
    far = AtomsRecord(atomic_numbers=[8, 1, 1, 6], source="u.xyz", index=2,
                      positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0], [50, 0, 0]])  # fmt: skip
    h2 = AtomsRecord(atomic_numbers=[1, 1], positions=[[0, 0, 0], [0, 0, 0.74]], source="u.xyz",
                     index=3)  # fmt: skip
    crowded = AtomsRecord(atomic_numbers=np.full(300, 6), positions=rng.uniform(0, 5, (300, 3)),
                          cell=np.eye(3) * 5, pbc=True, source="u.xyz", index=4)  # fmt: skip
    cu = AtomsRecord(atomic_numbers=[29], positions=[[0, 0, 0]], cell=np.eye(3) * 3.6 / 2**0.5,
                     pbc=True, source="u.xyz", index=5)  # fmt: skip
    return [good, lone, far, h2, crowded, cu]


def test_finds_what_training_trips_on() -> None:
    """A lone atom (no edge: training stops), a diatomic (no triplets: a warning), an isolated atom 50 Å
    away (a warning), 300 atoms in a 5 Å box (the graph-size limit, before any graph is built);
    a one-atom periodic crystal is fine (it has edges to its images)."""
    rep = check_records(_user_records(), min_distance=0.0)
    by_record = {p.index: str(p) for p in rep.problems}
    assert (
        "error: u.xyz, record 1: no pair of atoms within the 12 Å graph cutoff (1 atom, not periodic)"
        in by_record[1]
    )
    assert by_record[2].startswith(
        "warning: u.xyz, record 2: 1 isolated atom(s) (3): no neighbour within the 12 Å"
    )
    assert by_record[3].startswith(
        "warning: u.xyz, record 3: no atom has two neighbours within the 12 Å graph cutoff"
    )
    assert (
        "record 4: graph too large: about 5,2" in by_record[4]
        and "OPENJMP_MAX_EDGES" in by_record[4]
    )
    assert 0 not in by_record and 5 not in by_record
    assert len(rep.errors) == 2 and rep.graph_cutoffs == {12.0: 6}
    assert "graph checked at cutoff: 12 Å (6)" in rep.format()
    rep = check_records(_user_records()[2:3], cutoff=60.0)  # the cutoff is an option
    assert rep.problems == []


def test_check_path_reports_empty_files_and_unnamed_data(tmp_path) -> None:
    from openjmp.cli.main import main

    (tmp_path / "empty.extxyz").write_bytes(b"")
    rep = check_path(tmp_path / "empty.extxyz")
    assert [str(p) for p in rep.problems] == [
        f"error: {tmp_path / 'empty.extxyz'}: the file is empty (0 bytes)"
    ]
    assert main(["data", "check", str(tmp_path / "empty.extxyz")]) == 1
    _write_extxyz(tmp_path / "t.extxyz", 3)
    assert "datasets: unnamed (user data) (3)" in check_path(tmp_path / "t.extxyz").format()


def test_check_path_lists_records_read_before_a_fatal_problem(tmp_path) -> None:
    _write_extxyz(tmp_path / "t.extxyz", 3)
    text = (tmp_path / "t.extxyz").read_text().splitlines()
    (tmp_path / "t.extxyz").write_text("\n".join(text[:-3]) + "\n")  # the last frame cut short
    rep = check_path(tmp_path / "t.extxyz")
    assert rep.n_records == 2 and not rep.ok
    assert "record 2: reading stopped here: frame 2 says 9 atoms" in str(rep.errors[-1])
