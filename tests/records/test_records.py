"""AtomsRecord round trips with ase.Atoms and validation errors that name record and problem."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms

from openjmp import AtomsRecord, DataError, validate_record


def test_round_trip_keeps_everything() -> None:
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.set_tags([0] * 4 + [1] * 8)
    slab.set_constraint(FixAtoms(indices=range(4)))
    slab.calc = EMT()
    e, f = slab.get_potential_energy(), slab.get_forces(apply_constraint=False)
    slab.info["gap"] = 1.5
    rec = AtomsRecord.from_ase(slab, source="mem", index=3)
    assert rec.natoms == 12 and rec.energy == pytest.approx(e)
    np.testing.assert_allclose(rec.forces, f)
    assert rec.fixed[:4].all() and not rec.fixed[4:].any()
    assert list(rec.tags) == [0] * 4 + [1] * 8
    assert rec.targets["gap"] == 1.5
    back = rec.to_ase()
    np.testing.assert_allclose(back.positions, slab.positions)
    np.testing.assert_allclose(back.cell[:], slab.cell[:])
    assert back.get_potential_energy() == pytest.approx(e)
    np.testing.assert_allclose(back.get_forces(apply_constraint=False), f)
    assert list(back.get_tags()) == list(rec.tags)
    assert isinstance(back.constraints[0], FixAtoms)


def test_record_is_immutable() -> None:
    rec = AtomsRecord.from_ase(molecule("H2O"))
    with pytest.raises(ValueError):
        rec.positions[0, 0] = 1.0
    with pytest.raises(AttributeError):
        rec.energy = 1.0  # type: ignore[misc]
    assert list(rec.tags) == [2, 2, 2], "untagged structures get JMP's tag 2"


def _rec(**kw) -> AtomsRecord:
    base = dict(atomic_numbers=[1, 8], positions=[[0, 0, 0], [0, 0, 1.0]], source="f.xyz", index=7)
    base.update(kw)
    return AtomsRecord(**base)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (dict(atomic_numbers=[], positions=np.zeros((0, 3))), "empty structure"),
        (dict(positions=[[0, 0, 0]]), "positions have shape"),
        (dict(forces=np.zeros((3, 3))), "forces have shape"),
        (dict(positions=[[0, 0, 0], [0, np.nan, 1]]), "positions contain NaN"),
        (dict(energy=float("nan")), "energy label is nan"),
        (dict(forces=[[0, 0, 0], [np.inf, 0, 0]]), "forces label contains NaN or inf"),
        (dict(targets={"gap": float("nan")}), "target 'gap' is NaN"),
        (dict(atomic_numbers=[1, 0]), "unknown element: atomic number 0"),
        (dict(atomic_numbers=[1, 119]), "unknown element: atomic number 119"),
        (dict(positions=[[0, 0, 0], [0, 0, 0.01]]), "overlapping atoms: atoms 0 and 1"),
        (dict(pbc=[True, True, True], cell=np.zeros((3, 3))), "zero cell vector"),
        (dict(pbc=[True, True, False], cell=[[2, 0, 0], [4, 0, 0], [0, 0, 0]]), "singular"),
        # past 1e18 Å the neighbour search's integer grid overflows and SIGFPE kills the process
        (dict(positions=[[0, 0, 0], [0, 0, 1e30]]), "position coordinate 1e+30 Å is beyond"),
        (dict(pbc=True, cell=np.eye(3) * 1e20), "cell coordinate 1e+20 Å is beyond"),
    ],
)
def test_validation_errors_name_source_record_and_problem(kwargs, needle) -> None:
    with pytest.raises(DataError) as info:
        validate_record(_rec(**kwargs))
    msg = str(info.value)
    assert needle in msg
    assert msg.startswith("f.xyz, record 7: ")


def test_overlap_found_across_periodic_boundary() -> None:
    rec = AtomsRecord(
        atomic_numbers=[1, 1],
        positions=[[0.01, 1, 1], [2.97, 1, 1]],
        cell=np.eye(3) * 3.0,
        pbc=[True, False, False],
    )
    with pytest.raises(DataError, match="overlapping atoms"):
        validate_record(rec)
    validate_record(rec.replace(pbc=np.array([False, False, False])))


def test_overlap_threshold_is_min_distance_not_search_radius() -> None:
    """The overlap check searches a wider radius than ``min_distance`` and filters: pairs
    between the two pass, and a ``min_distance`` above the search radius still applies."""
    rec = _rec(positions=[[0, 0, 0], [0, 0, 0.5]])
    validate_record(rec)  # 0.5 Å > 0.1 Å default
    with pytest.raises(DataError, match="0.5000 Å apart"):
        validate_record(rec, min_distance=0.6)
    far = _rec(positions=[[0, 0, 0], [0, 0, 1.4]])
    validate_record(far)
    with pytest.raises(DataError, match="1.4000 Å apart"):
        validate_record(far, min_distance=1.5)


def test_valid_structures_pass() -> None:
    for atoms in (bulk("Cu", "fcc", a=3.6), molecule("CH4"), fcc111("Pt", (2, 2, 3), vacuum=5)):
        atoms.calc = SinglePointCalculator(atoms, energy=1.0, forces=np.zeros((len(atoms), 3)))
        validate_record(AtomsRecord.from_ase(atoms))
    one = Atoms("Cu", cell=[[2.5, 0, 0], [1.2, 2.2, 0], [0.3, 0.4, 2.1]], pbc=True)
    validate_record(AtomsRecord.from_ase(one))
