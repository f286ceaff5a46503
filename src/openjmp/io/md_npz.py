"""rMD17 and MD22 (sGDML) trajectories in NumPy ``.npz``, energies in kcal/mol.

rMD17 (datasets.md §6), ``rmd17_<molecule>.npz``: ``nuclear_charges`` (N,), ``coords``
(F, N, 3) Å, ``energies`` (F,) kcal/mol, ``forces`` (F, N, 3) kcal/mol/Å (forces, not
gradients); ``old_*`` keys (the original MD17 values) are ignored.

MD22 and other sGDML files (§7), ``md22_<name>.npz``: ``z`` (N,), ``R`` (F, N, 3), ``E``
(F, 1) or (F,), ``F`` (F, N, 3), with 0-d string metadata ``e_unit`` and ``r_unit`` (honoured;
kcal/mol and Å when absent). Files are opened with ``allow_pickle=False``.

kcal/mol is converted as the JMP authors do (÷ 23.061, `openjmp.units.KCAL_PER_MOL_TO_EV`).
Records: no cell, tags 2, index = frame number (int), dataset ``"rmd17"`` or ``"md22"`` (from
the keys and file name; ``"sgdml"`` for other sGDML files).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import OnError, atomic_numbers, existing, finish
from openjmp.records import AtomsRecord
from openjmp.units import BOHR_TO_ANGSTROM, HARTREE_TO_EV, KCAL_PER_MOL_TO_EV

__all__ = ["RMD17_ALIASES", "molecule_name", "read"]

RMD17_KEYS = ("nuclear_charges", "coords", "energies", "forces")
SGDML_KEYS = ("z", "R", "E", "F")
RMD17_ALIASES = {
    "napthalene": "naphthalene",
    "salicylic acid": "salicylic",
    "salicylic-acid": "salicylic",
    "salicylic_acid": "salicylic",
}
_ENERGY = {"kcal/mol": KCAL_PER_MOL_TO_EV, "ev": 1.0, "hartree": HARTREE_TO_EV, "ha": HARTREE_TO_EV}
_LENGTH = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "bohr": BOHR_TO_ANGSTROM}


def molecule_name(path: str | Path) -> str:
    """The molecule a file holds, from its name: ``rmd17_aspirin.npz`` -> ``aspirin``."""
    stem = Path(path).name.removesuffix(".npz")
    for prefix in ("rmd17_", "md22_", "md17_"):
        if stem.startswith(prefix):
            stem = stem[len(prefix) :]
            break
    return RMD17_ALIASES.get(stem, stem)


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except MemoryError:
        raise DataError(
            path, None, "an array in the .npz file claims more memory than there is"
        ) from None
    except Exception as exc:  # noqa: BLE001 - numpy, zipfile and zlib raise many kinds on bad files
        raise DataError(
            path, None, f"not a readable .npz file ({type(exc).__name__}: {exc})"
        ) from None


def _unit(data: dict[str, np.ndarray], key: str, default: str, table, path: Path) -> float:
    if key in data:
        arr = np.asarray(data[key])
        if arr.size != 1 or arr.dtype.kind not in "US":
            raise DataError(path, None, f"{key} must be one string, got {arr.dtype} {arr.shape}")
        value = arr.reshape(()).item()
        unit = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    else:
        unit = default
    unit = unit.strip().lower()
    if unit not in table:
        raise DataError(
            path, None, f"{key}={unit!r} is not a unit openjmp converts ({sorted(table)})"
        )
    return table[unit]


def read(
    path: str | Path, *, validate: bool = True, on_error: OnError = None
) -> Iterator[AtomsRecord]:
    """Frames of an rMD17 or sGDML (MD22) ``.npz`` file, in stored order."""
    path = existing(path)
    data = _load(path)
    if all(k in data for k in RMD17_KEYS):
        z, pos, energy, forces = (data[k] for k in RMD17_KEYS)
        e_f, l_f = KCAL_PER_MOL_TO_EV, 1.0
        f_f = e_f
        dataset = "rmd17"
    elif all(k in data for k in SGDML_KEYS):
        z, pos, energy, forces = (data[k] for k in SGDML_KEYS)
        e_f = _unit(data, "e_unit", "kcal/mol", _ENERGY, path)
        l_f = _unit(data, "r_unit", "ang", _LENGTH, path)
        f_f = e_f / l_f
        dataset = "md22" if path.name.startswith("md22_") else "sgdml"
    else:
        raise DataError(
            path,
            None,
            f"neither an rMD17 file (keys {list(RMD17_KEYS)}) nor an sGDML/MD22 file "
            f"(keys {list(SGDML_KEYS)}); found {sorted(data)}",
        )
    z_key, pos_key, e_key, f_key = RMD17_KEYS if dataset == "rmd17" else SGDML_KEYS
    z = atomic_numbers(np.asarray(z).reshape(-1), path, None, z_key)
    pos = _numeric(pos, path, pos_key)
    energy = _numeric(energy, path, e_key)
    forces = _numeric(forces, path, f_key)
    if energy.ndim == 2 and energy.shape[1] == 1:
        energy = energy[:, 0]
    n = len(z)
    if pos.ndim != 3 or pos.shape[1:] != (n, 3):
        raise DataError(path, None, f"positions have shape {pos.shape}, expected (F, {n}, 3)")
    if forces.shape != pos.shape:
        raise DataError(path, None, f"forces have shape {forces.shape}, positions {pos.shape}")
    if energy.shape != (len(pos),):
        raise DataError(path, None, f"energies have shape {energy.shape}, expected ({len(pos)},)")
    return _iterate(path, z, pos * l_f, energy * e_f, forces * f_f, dataset, validate, on_error)


def _numeric(value: np.ndarray, path: Path, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DataError(path, None, f"{name} must be numeric, got dtype {arr.dtype}")
    return arr.astype(np.float64)


def _iterate(path, z, pos, energy, forces, dataset, validate, on_error):
    for i in range(len(pos)):
        rec = AtomsRecord(
            atomic_numbers=z,
            positions=pos[i],
            energy=float(energy[i]),
            forces=forces[i],
            source=str(path),
            index=i,
            dataset=dataset,
        )
        rec = finish(rec, validate=validate, on_error=on_error)
        if rec is not None:
            yield rec
