"""The small H/C/N/O molecules the molecular demo sets are drawn from (ASE's g2 collection).

Closed-shell molecules only (open-shell and triplet ground states would need a spin setting
the demo does not carry), with at least 3 atoms. Ethanol is reserved for the rMD17-like
fine-tuning set and kept out of every pre-training set, as JMP keeps its fine-tuning
molecules out of pre-training.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from ase import Atoms

RMD17_MOLECULE = "CH3CH2OH"
"""g2 name of the molecule of the rMD17-like set (ethanol; rMD17's own name ``ethanol``)."""

_ELEMENTS = {1, 6, 7, 8}
# Triplet or hard-to-converge ground states among the even-electron g2 molecules.
_EXCLUDED = {"O2", "CH2_s3B1d", "CH2_s1A1d", "NH", "O3"}


@cache
def g2_chno_names() -> tuple[str, ...]:
    """Sorted g2 names of closed-shell H/C/N/O molecules with >= 3 atoms (ethanol included)."""
    from ase.collections import g2

    names = []
    for name in g2.names:
        atoms = g2[name]
        z = set(atoms.numbers.tolist())
        if not z <= _ELEMENTS or len(atoms) < 3 or name in _EXCLUDED:
            continue
        if int(atoms.numbers.sum()) % 2:
            continue
        names.append(name)
    return tuple(sorted(names))


def pretraining_molecules() -> tuple[str, ...]:
    """The g2 names usable in pre-training sets (the rMD17 molecule removed)."""
    return tuple(n for n in g2_chno_names() if n != RMD17_MOLECULE)


def load_molecule(name: str) -> Atoms:
    """The g2 geometry of ``name`` (Å), atoms sorted by atomic number (stable), no pbc."""
    from ase.build import molecule

    atoms = molecule(name)
    order = np.argsort(atoms.numbers, kind="stable")
    return Atoms(numbers=atoms.numbers[order], positions=atoms.positions[order])


def snap_float32(atoms: Atoms) -> Atoms:
    """Round positions (and cell) to float32 so that labels belong to the stored geometry."""
    atoms.positions = atoms.positions.astype(np.float32).astype(np.float64)
    atoms.cell = atoms.cell.array.astype(np.float32).astype(np.float64)
    return atoms


def rattled(atoms: Atoms, sigma: float, rng: np.random.Generator) -> Atoms:
    """A copy with Gaussian displacements of ``sigma`` Å on every coordinate."""
    out = atoms.copy()
    out.positions = out.positions + rng.normal(0.0, sigma, size=out.positions.shape)
    return out


def min_distance(atoms: Atoms) -> float:
    """Smallest interatomic distance (Å), no periodic images."""
    d = atoms.get_all_distances()
    return float(d[np.triu_indices(len(atoms), 1)].min())
