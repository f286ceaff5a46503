"""QM9-like set: small molecules with GFN2-xTB scalar targets, as QM9 ``dsgdb9nsd`` xyz files.

Molecules are the H/C/N/O g2 molecules (ethanol included: this is a fine-tuning set), each
conformer a small Gaussian rattle (sigma in [0.01, 0.04] Å, near the g2 equilibrium geometry)
drawn with its own seed, so no geometry or label is shared with the pre-training sets. What
the 15 header properties hold (QM9's units):

- ``homo``, ``lumo``, ``gap`` (Hartree), ``mu`` (Debye): GFN2-xTB orbital energies and dipole.
- ``alpha`` (bohr³): isotropic GFN2-xTB polarizability, central differences of the dipole in
  a +-0.001 au electric field.
- ``A``, ``B``, ``C`` (GHz): rotational constants from the moments of inertia.
- ``U0``, ``U``, ``H``, ``G`` (Hartree): all the GFN2-xTB electronic energy. No vibrational
  analysis is done, so ``zpve`` and ``Cv`` are 0 and there are no thermal corrections; the
  frequency line is empty.
- ``atomref.txt``: GFN2-xTB free-atom energies (spin-polarised ground-state multiplicity), so
  readers' atomisation energies (``U_0_ATOM`` ...) are xTB atomisation energies.
- ``r2`` (bohr²): an estimate of the electronic spatial extent from Mulliken populations on
  atom centres, sum_A N_A |R_A - R_c|^2 (no atomic extent; R_c the centre of electronic charge).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed
from ase.units import Bohr

from openjmp.data.demo.molecules import g2_chno_names, load_molecule, rattled, snap_float32
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, scaled
from openjmp.data.demo.writers.qm9_xyz import QM9Molecule, write_qm9
from openjmp.data.demo.xtb import level_of_theory, xtb_single_point

NAME = "qm9_like"
MOLECULES_AT_SCALE_1 = 500
FIELD_AU = 1e-3
_TRIES = 5
_HARTREE_EV = 27.211386245988  # only to convert eV energies back to QM9's Hartree


@dataclass(frozen=True)
class Job:
    """Molecule job; ``molecule=None`` asks for the free-atom table (run in a worker too)."""

    seed: int
    index: int
    molecule: str | None


def rotational_constants_ghz(atoms: Atoms) -> tuple[float, float, float]:
    """A >= B >= C in GHz from the principal moments of inertia (amu Å²)."""
    h, amu, angstrom = 6.62607015e-34, 1.66053906660e-27, 1e-10
    moments = np.sort(atoms.get_moments_of_inertia())  # ascending, amu Å²
    consts = [h / (8 * np.pi**2 * m * amu * angstrom**2) / 1e9 for m in moments]
    return float(consts[0]), float(consts[1]), float(consts[2])


def polarizability_bohr3(atoms: Atoms) -> float:
    """Isotropic GFN2-xTB polarizability (bohr³): trace of d(dipole)/d(field) / 3."""
    from tblite.interface import Calculator
    from tblite.library import ffi

    from openjmp.data.demo.xtb import MAX_ITERATIONS, METHOD

    def dipole(field: np.ndarray) -> np.ndarray:
        calc = Calculator(METHOD, atoms.numbers, atoms.positions / Bohr)
        calc.set("verbosity", 0)
        calc.set("max-iter", MAX_ITERATIONS)
        calc.add("electric-field", ffi.from_buffer("double[]", np.ascontiguousarray(field, float)))
        try:
            return np.asarray(calc.singlepoint()["dipole"])  # e·bohr
        except RuntimeError as exc:
            raise CalculationFailed(str(exc)) from exc

    trace = 0.0
    for k in range(3):
        f = np.zeros(3)
        f[k] = FIELD_AU
        trace += (dipole(f)[k] - dipole(-f)[k]) / (2 * FIELD_AU)
    return trace / 3


def spatial_extent_bohr2(atoms: Atoms, charges: np.ndarray) -> float:
    """sum_A N_A |R_A - R_c|² (bohr²) with N_A = Z_A - q_A electrons on atom A."""
    pop = atoms.numbers - charges
    r = atoms.positions / Bohr
    rc = (pop[:, None] * r).sum(0) / pop.sum()
    return float((pop * ((r - rc) ** 2).sum(1)).sum())


_UNPAIRED = {1: 1, 6: 2, 7: 3, 8: 2, 9: 1}


def free_atom_energies() -> dict[int, float]:
    """GFN2-xTB energies (Hartree) of the free atoms H, C, N, O, F in their high-spin state."""
    from tblite.interface import Calculator

    from openjmp.data.demo.xtb import METHOD

    out = {}
    for z, uhf in _UNPAIRED.items():
        calc = Calculator(METHOD, np.array([z]), np.zeros((1, 3)), uhf=uhf)
        calc.set("verbosity", 0)
        out[z] = float(calc.singlepoint()["energy"])
    return out


def run(job: Job) -> QM9Molecule | dict[int, float]:
    """One rattled molecule with its QM9 header properties (or the free-atom energies)."""
    if job.molecule is None:
        return free_atom_energies()
    rng = job_rng(job.seed, NAME, job.index)
    base = load_molecule(job.molecule)
    for _ in range(_TRIES):
        atoms = snap_float32(rattled(base, float(rng.uniform(0.01, 0.04)), rng))
        try:
            p = xtb_single_point(atoms)
            alpha = polarizability_bohr3(atoms)
        except CalculationFailed:
            continue
        a, b, c = rotational_constants_ghz(atoms)
        e_ha = p.energy / _HARTREE_EV
        props = {
            "A": a,
            "B": b,
            "C": c,
            "mu": float(np.linalg.norm(p.dipole)),
            "alpha": alpha,
            "homo": p.homo,
            "lumo": p.lumo,
            "gap": p.gap,
            "r2": spatial_extent_bohr2(atoms, p.charges),
            "zpve": 0.0,
            "U0": e_ha,
            "U": e_ha,
            "H": e_ha,
            "G": e_ha,
            "Cv": 0.0,
        }
        return QM9Molecule(
            atomic_numbers=atoms.numbers.copy(),
            positions=atoms.positions.copy(),
            charges=p.charges,
            properties=props,
            smiles=f"g2:{job.molecule}",
            inchi=f"g2:{job.molecule}",
        )
    raise RuntimeError(f"{NAME}: no converged xTB result for {job.molecule} in {_TRIES} draws")


def plan(scale: float, seed: int) -> list[Job]:
    names = g2_chno_names()
    n = scaled(MOLECULES_AT_SCALE_1, scale, 8)
    order = job_rng(seed, f"{NAME}/order", 0).permutation(n)
    jobs = [Job(seed, -1, None)]
    return jobs + [Job(seed, i, names[int(order[i]) % len(names)]) for i in range(n)]


def write(
    results: Sequence[QM9Molecule | dict[int, float]], directory: Path, seed: int
) -> WrittenSet:
    atom_energies, molecules = results[0], list(results[1:])
    if not isinstance(atom_energies, dict) or any(isinstance(m, dict) for m in molecules):
        raise RuntimeError(f"{NAME}: the free-atom job must come first, and only once")
    files = write_qm9(directory, molecules, atom_energies)
    return WrittenSet(
        files=files,
        counts={"structures": len(molecules), "molecules": len({m.smiles for m in molecules})},
        notes={
            "computed": "homo, lumo, gap, mu, alpha (finite field), A, B, C, U0=U=H=G (xTB energy)",
            "placeholders": "zpve=0 and Cv=0 (no vibrational analysis); r2 from Mulliken populations",
        },
    )


SET = DemoSet(
    name=NAME,
    role="finetune",
    stands_in_for="QM9",
    file_format="qm9-xyz-tar",
    units="Hartree, Debye, bohr³, bohr², GHz, Å",
    level_of_theory=level_of_theory,
    plan=plan,
    run=run,
    write=write,
)
