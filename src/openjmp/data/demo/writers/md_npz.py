"""rMD17 ``rmd17/npz_data/rmd17_<molecule>.npz`` plus ``rmd17/splits`` (datasets.md section 6).

Keys: ``nuclear_charges`` (N,) int64, ``coords`` (F, N, 3) float64 Å, ``energies`` (F,) kcal/mol,
``forces`` (F, N, 3) kcal/mol/Å (forces, not gradients), ``old_indices`` (F,) int64 (here: the
MD step of each frame) and ``theory`` (a provenance string). Inputs are in eV and eV/Å and
converted with ASE's (CODATA) kcal/mol.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase.units import kcal, mol

from openjmp.data.demo.writers.files import write_npz

EV_TO_KCAL_PER_MOL = 1.0 / (kcal / mol)


def write_rmd17(
    root: Path,
    molecule: str,
    atomic_numbers: np.ndarray,
    coords: np.ndarray,
    energies_ev: np.ndarray,
    forces_ev: np.ndarray,
    md_steps: np.ndarray,
    theory: str,
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> list[Path]:
    """Write ``root/rmd17/npz_data/rmd17_<molecule>.npz`` and the split CSVs; return the files."""
    npz_dir = root / "rmd17" / "npz_data"
    split_dir = root / "rmd17" / "splits"
    npz_dir.mkdir(parents=True)
    split_dir.mkdir(parents=True)
    path = npz_dir / f"rmd17_{molecule}.npz"
    write_npz(
        path,
        {
            "nuclear_charges": np.asarray(atomic_numbers, dtype=np.int64),
            "coords": np.asarray(coords, dtype=np.float64),
            "energies": np.asarray(energies_ev, dtype=np.float64) * EV_TO_KCAL_PER_MOL,
            "forces": np.asarray(forces_ev, dtype=np.float64) * EV_TO_KCAL_PER_MOL,
            "old_indices": np.asarray(md_steps, dtype=np.int64),
            "theory": np.array(theory),
        },
    )
    files = [path]
    for k, (train, test) in enumerate(splits, start=1):
        for name, idx in (("train", train), ("test", test)):
            p = split_dir / f"index_{name}_{k:02d}.csv"
            p.write_text("".join(f"{int(i)}\n" for i in idx), encoding="ascii")
            files.append(p)
    return files
