"""ANI-1x and Transition-1x HDF5 files (datasets.md sections 3 and 4).

ANI-1x: one group per formula, ``atomic_numbers`` (N,) uint8, ``coordinates`` (C, N, 3) float32 Å,
``wb97x_dz.energy`` (C,) float64 Hartree, ``wb97x_dz.forces`` (C, N, 3) float32 Hartree/Å.
Transition-1x: ``/data/<formula>/<rxnNNNN>/`` with ``atomic_numbers``, ``positions`` (C, N, 3)
float32 Å, ``wB97x_6-31G(d).energy`` (C,) eV and ``wB97x_6-31G(d).forces`` (C, N, 3) eV/Å, the
one-frame subgroups ``reactant``, ``product`` and ``transition_state``, and the split groups
``/train``, ``/val``, ``/test`` holding hard links to ``/data`` reactions. The official key
names are kept although the labels are not at that level of theory: the file's
``level_of_theory`` attribute says what they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from ase.units import Hartree

ANI_ENERGY_KEY = "wb97x_dz.energy"
ANI_FORCES_KEY = "wb97x_dz.forces"
T1X_ENERGY_KEY = "wB97x_6-31G(d).energy"
T1X_FORCES_KEY = "wB97x_6-31G(d).forces"


def _dataset(group: h5py.Group, name: str, data: np.ndarray) -> None:
    group.create_dataset(name, data=data, track_times=False)


def write_ani1x(
    path: Path,
    groups: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    attrs: Mapping[str, str],
) -> None:
    """Write an ANI-1x file; ``groups[formula] = (Z (N,), pos (C,N,3) Å, E (C,) eV, F (C,N,3) eV/Å)``.

    Energies and forces are converted to Hartree and Hartree/Å, the units of the real file.
    """
    with h5py.File(path, "w", track_order=True) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        for formula in sorted(groups):
            z, pos, energy, forces = groups[formula]
            g = f.create_group(formula, track_order=True)
            _dataset(g, "atomic_numbers", np.asarray(z, dtype=np.uint8))
            _dataset(g, "coordinates", np.asarray(pos, dtype=np.float32))
            _dataset(g, ANI_ENERGY_KEY, np.asarray(energy, dtype=np.float64) / Hartree)
            _dataset(g, ANI_FORCES_KEY, (np.asarray(forces) / Hartree).astype(np.float32))


@dataclass(frozen=True)
class Reaction:
    """One reaction path of the Transition-1x-like set (units: Å, eV, eV/Å).

    ``frames`` index into positions/energy/forces: the reactant, product and transition-state
    frame of the path.
    """

    formula: str
    name: str
    atomic_numbers: np.ndarray  # (N,)
    positions: np.ndarray  # (C, N, 3)
    energy: np.ndarray  # (C,)
    forces: np.ndarray  # (C, N, 3)
    reactant: int
    product: int
    transition_state: int


def _write_frames(g: h5py.Group, r: Reaction, idx: slice | list[int]) -> None:
    _dataset(g, "atomic_numbers", np.asarray(r.atomic_numbers, dtype=np.int64))
    _dataset(g, "positions", np.asarray(r.positions[idx], dtype=np.float32))
    _dataset(g, T1X_ENERGY_KEY, np.asarray(r.energy[idx], dtype=np.float64))
    _dataset(g, T1X_FORCES_KEY, np.asarray(r.forces[idx], dtype=np.float32))


def write_transition1x(
    path: Path,
    reactions: Sequence[Reaction],
    splits: Mapping[str, Sequence[str]],
    attrs: Mapping[str, str],
) -> None:
    """Write a Transition-1x file; ``splits`` maps train/val/test to the formulas they hold."""
    with h5py.File(path, "w", track_order=True) as f:
        for key, value in attrs.items():
            f.attrs[key] = value
        data = f.create_group("data", track_order=True)
        for r in reactions:
            g = data.require_group(r.formula).create_group(r.name, track_order=True)
            _write_frames(g, r, slice(None))
            for sub, i in (
                ("reactant", r.reactant),
                ("product", r.product),
                ("transition_state", r.transition_state),
            ):
                _write_frames(g.create_group(sub), r, [i])
        for split in ("train", "val", "test"):
            sg = f.create_group(split, track_order=True)
            for formula in splits.get(split, ()):
                sg[formula] = data[formula]  # hard link, as in the published file
