"""Physics of the demo labels: forces are minus the energy gradient, checked by finite
differences on a few stored samples of every labelled set (EMT and GFN2-xTB).

Central differences with h = 1e-3 Å (EMT) / 2e-3 Å (xTB): the truncation error is
O(h² f''') ~ 1e-5 eV/Å, and the xTB SCF noise (~1e-8 Eh) divided by 2h stays below
1e-4 eV/Å, so 2e-3 eV/Å (EMT 1e-3 eV/Å) separates a correct force from a wrong sign, unit or
atom order by orders of magnitude. Sign is also checked explicitly: stepping along the stored
force lowers the energy.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import h5py
import lmdb
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.emt import EMT
from ase.units import Hartree, kcal, mol

from openjmp.data.demo.xtb import xtb_single_point

from helpers.demo_unpickle import loads_pyg


def emt(atoms: Atoms) -> float:
    a = atoms.copy()
    a.calc = EMT()
    return float(a.get_potential_energy())


def xtb(atoms: Atoms) -> float:
    return xtb_single_point(atoms).energy


def check_fd(
    atoms: Atoms,
    forces: np.ndarray,
    energy: Callable[[Atoms], float],
    h: float,
    tol: float,
    n: int = 4,
) -> None:
    """Finite-difference forces on the ``n`` atoms with the largest stored force."""
    forces = np.asarray(forces, dtype=float)
    for i in np.argsort(-np.linalg.norm(forces, axis=1))[:n]:
        for k in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[i, k] += h
            minus.positions[i, k] -= h
            fd = -(energy(plus) - energy(minus)) / (2 * h)
            assert fd == pytest.approx(forces[i, k], abs=tol), f"atom {i}, axis {k}"
    # downhill along the stored force
    step = atoms.copy()
    step.positions += 1e-3 * forces / max(np.abs(forces).max(), 1e-9)
    assert energy(step) < energy(atoms)


def lmdb_entry(path: Path, index: int) -> dict:
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        entry = loads_pyg(txn.get(str(index).encode()))
    env.close()
    return entry


@pytest.mark.parametrize(
    "rel", ["oc20_like/s2ef/train/data.0000.lmdb", "oc22_like/s2ef-total/train/data.0000.lmdb"]
)
def test_emt_forces_are_minus_gradient(demo_corpus: Path, rel: str) -> None:
    for index in (0, 6):
        e = lmdb_entry(demo_corpus / rel, index)
        atoms = Atoms(
            numbers=e["atomic_numbers"].astype(int), positions=e["pos"], cell=e["cell"][0], pbc=True
        )
        check_fd(atoms, e["force"], emt, h=1e-3, tol=1e-3)


def test_ani1x_forces_are_minus_gradient(demo_corpus: Path) -> None:
    with h5py.File(demo_corpus / "ani1x_like" / "ani1x-release.h5", "r") as f:
        g = f[sorted(f)[-1]]
        atoms = Atoms(numbers=g["atomic_numbers"][:], positions=g["coordinates"][0])
        forces = g["wb97x_dz.forces"][0] * Hartree
    check_fd(atoms, forces, xtb, h=2e-3, tol=2e-3)


def test_transition1x_forces_are_minus_gradient(demo_corpus: Path) -> None:
    with h5py.File(demo_corpus / "transition1x_like" / "transition1x.h5", "r") as f:
        formula = sorted(f["data"])[0]
        rxn = f["data"][formula][sorted(f["data"][formula])[0]]
        i = rxn["positions"].shape[0] - 1  # an NEB image of the last recorded iteration
        atoms = Atoms(numbers=rxn["atomic_numbers"][:], positions=rxn["positions"][i])
        forces = rxn["wB97x_6-31G(d).forces"][i]
    check_fd(atoms, forces, xtb, h=2e-3, tol=2e-3)


def test_rmd17_forces_are_minus_gradient(demo_corpus: Path) -> None:
    data = np.load(demo_corpus / "rmd17_like" / "rmd17" / "npz_data" / "rmd17_ethanol.npz")
    atoms = Atoms(numbers=data["nuclear_charges"], positions=data["coords"][-1])
    check_fd(atoms, data["forces"][-1] * (kcal / mol), xtb, h=2e-3, tol=2e-3)


def test_oc20_reference_is_a_constant_shift(demo_corpus: Path) -> None:
    """Adsorption energies keep total-energy differences within a system (forces unaffected)."""
    path = demo_corpus / "oc20_like" / "s2ef" / "train" / "data.0000.lmdb"
    a, b = lmdb_entry(path, 0), lmdb_entry(path, 1)
    assert a["sid"] == b["sid"]
    cell = a["cell"][0]
    z = a["atomic_numbers"].astype(int)
    ea = emt(Atoms(numbers=z, positions=a["pos"], cell=cell, pbc=True))
    eb = emt(Atoms(numbers=z, positions=b["pos"], cell=cell, pbc=True))
    assert a["y"] - b["y"] == pytest.approx(ea - eb, abs=1e-6)
    refs = pickle.loads((demo_corpus / "oc20_like" / "oc20_ref.pkl").read_bytes())
    assert set(refs) >= {f"random{a['sid']}"}
