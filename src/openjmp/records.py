"""`AtomsRecord`: one labelled structure, the unit every reader yields.

Units are openjmp's internal ones: positions and cell in Å, energy in eV, forces in eV/Å,
stress in eV/Å³ (Voigt order xx, yy, zz, yz, xz, xy, ASE's sign convention). Arrays are
read-only numpy arrays so a record can be shared between workers without copies or surprises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

# OC20 tag convention: 0 subsurface, 1 surface, 2 adsorbate. Molecules and bulk use 2 everywhere.
TAG_SUBSURFACE = 0
TAG_SURFACE = 1
TAG_ADSORBATE = 2

N_ELEMENTS = 120
"""Length of a per-element table indexed by Z (0..119, index 0 unused): linear references,
element counts, the model's embedding rows (JMP's size)."""


def _frozen(a: Any, dtype: Any) -> np.ndarray:
    arr = np.array(a, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, slots=True, eq=False)
class AtomsRecord:
    """One structure with optional labels.

    Attributes:
        atomic_numbers: (N,) int64, Z in 1..118.
        positions: (N, 3) float64, Å.
        cell: (3, 3) float64, Å, rows are lattice vectors (zeros along non-periodic axes allowed).
        pbc: (3,) bool, periodicity per axis.
        tags: (N,) int64, OC20 tags (0 subsurface, 1 surface, 2 adsorbate); 2 for molecules/bulk.
        fixed: (N,) bool, atoms held fixed in the DFT relaxation (excluded from force metrics).
        energy: total energy in eV, or None.
        forces: (N, 3) float64 eV/Å, or None.
        stress: (6,) float64 eV/Å³ Voigt, or None.
        targets: other per-structure targets by name (floats or small arrays), units as the
            reader documents for its dataset.
        source: file path (or description) the record came from.
        index: position or key of the record inside its source.
        dataset: name of the dataset the record belongs to (e.g. "oc20"), may be empty.
    """

    atomic_numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    pbc: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=bool))
    tags: np.ndarray | None = None
    fixed: np.ndarray | None = None
    energy: float | None = None
    forces: np.ndarray | None = None
    stress: np.ndarray | None = None
    targets: Mapping[str, Any] = field(default_factory=dict)
    source: str | None = None
    index: int | str | None = None
    dataset: str = ""

    def __post_init__(self) -> None:
        z = _frozen(self.atomic_numbers, np.int64).reshape(-1)
        n = len(z)
        set_ = object.__setattr__
        set_(self, "atomic_numbers", z)
        set_(self, "positions", _frozen(self.positions, np.float64))
        set_(self, "cell", _frozen(self.cell, np.float64))
        pbc = np.asarray(self.pbc, dtype=bool)
        set_(self, "pbc", _frozen(np.broadcast_to(pbc, (3,)) if pbc.ndim == 0 else pbc, bool))
        tags = np.full(n, TAG_ADSORBATE) if self.tags is None else self.tags
        set_(self, "tags", _frozen(tags, np.int64))
        fixed = np.zeros(n, dtype=bool) if self.fixed is None else self.fixed
        set_(self, "fixed", _frozen(fixed, bool))
        if self.energy is not None:
            set_(self, "energy", float(self.energy))
        if self.forces is not None:
            set_(self, "forces", _frozen(self.forces, np.float64))
        if self.stress is not None:
            set_(self, "stress", _frozen(self.stress, np.float64))
        set_(self, "targets", MappingProxyType(dict(self.targets)))
        if self.source is not None:
            set_(self, "source", str(self.source))

    @property
    def natoms(self) -> int:
        """Number of atoms."""
        return int(self.atomic_numbers.shape[0])

    def replace(self, **changes: Any) -> AtomsRecord:
        """A copy with some fields changed (records are immutable)."""
        return replace(self, **changes)

    @classmethod
    def from_ase(
        cls,
        atoms: Any,
        *,
        source: str | None = None,
        index: int | str | None = None,
        dataset: str = "",
        read_labels: bool = True,
    ) -> AtomsRecord:
        """Build a record from an `ase.Atoms`.

        Energy, forces and stress come from an attached single-point calculator when present
        (``read_labels``); tags from ``atoms.get_tags()`` (all zero in ASE means "unset" and
        becomes 2, JMP's value for molecules and bulk), fixed atoms from `FixAtoms` constraints.
        Other scalar entries of ``atoms.info`` become targets.
        """
        from ase.constraints import FixAtoms

        n = len(atoms)
        tags = np.asarray(atoms.get_tags(), dtype=np.int64)
        if "tags" not in atoms.arrays:
            tags = np.full(n, TAG_ADSORBATE, dtype=np.int64)
        fixed = np.zeros(n, dtype=bool)
        for c in atoms.constraints:
            if isinstance(c, FixAtoms):
                fixed[c.get_indices()] = True
        energy = forces = stress = None
        calc = atoms.calc if read_labels else None
        if calc is not None:
            results = getattr(calc, "results", {})
            energy = results.get("energy")
            forces = results.get("forces")
            stress = results.get("stress")
            if stress is not None and np.shape(stress) == (3, 3):
                s = np.asarray(stress)
                stress = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
        targets = {
            k: v
            for k, v in atoms.info.items()
            if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
        }
        return cls(
            atomic_numbers=atoms.numbers,
            positions=atoms.positions,
            cell=np.asarray(atoms.cell[:]),
            pbc=atoms.pbc,
            tags=tags,
            fixed=fixed,
            energy=energy,
            forces=forces,
            stress=stress,
            targets=targets,
            source=source,
            index=index,
            dataset=dataset,
        )

    def to_ase(self) -> Any:
        """Convert to `ase.Atoms`, attaching labels through a single-point calculator."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator
        from ase.constraints import FixAtoms

        atoms = Atoms(
            numbers=self.atomic_numbers,
            positions=self.positions,
            cell=self.cell,
            pbc=self.pbc,
            tags=self.tags,
        )
        if self.fixed is not None and self.fixed.any():
            atoms.set_constraint(FixAtoms(indices=np.flatnonzero(self.fixed)))
        atoms.info.update(self.targets)
        labels: dict[str, Any] = {}
        if self.energy is not None:
            labels["energy"] = self.energy
        if self.forces is not None:
            labels["forces"] = np.array(self.forces)
        if self.stress is not None:
            labels["stress"] = np.array(self.stress)
        if labels:
            atoms.calc = SinglePointCalculator(atoms, **labels)
        return atoms
