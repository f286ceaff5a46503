"""Per-element linear reference files: energies (eV) per element, a table indexed by Z.

Two formats are read, both as (K,) float64 with row Z the reference of element Z (row 0 unused):

* ``.npz`` with key ``coeff``: the authors' ``linref.npz`` files, written by their ANI-1x,
  Transition-1x and OC20/OC22 preprocessing scripts (``coeff`` indexed by atomic number);
  openjmp's own statistics use the same layout.
* ``.json``: ``{"H": -13.6, "C": -1029.4, ...}`` (element symbols or atomic numbers as keys)
  or a list indexed by Z.

Values are eV: the reference of a structure is Σ_atoms table[Z_i].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.records import N_ELEMENTS


def _from_mapping(path: Path, data: dict[str, Any]) -> np.ndarray:
    from ase.data import atomic_numbers

    table = np.zeros(N_ELEMENTS)
    for key, value in data.items():
        z = int(key) if str(key).isdigit() else atomic_numbers.get(str(key))
        if z is None or not 0 < z < N_ELEMENTS:
            raise DataError(path, key, "not an element symbol or atomic number")
        try:
            table[z] = float(value)
        except (TypeError, ValueError):
            raise DataError(path, key, f"reference {value!r} is not a number") from None
    return table


def read_references(path: str | Path) -> np.ndarray:
    """(K,) float64 eV per element, indexed by Z, from ``path`` (module docstring).

    Raises `DataError` naming the file (and the entry) for a missing, unreadable or malformed
    file, non-finite values, or a table too short to be indexed by Z.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, None, "no such reference file")
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                table = _from_mapping(path, data)
            else:
                table = np.asarray(data, dtype=np.float64)
        else:
            with np.load(path, allow_pickle=False) as npz:
                if "coeff" not in npz:
                    raise DataError(path, None, f"no key 'coeff' (keys: {list(npz.keys())})")
                table = np.asarray(npz["coeff"], dtype=np.float64)
    except DataError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(path, None, f"cannot read references: {exc}") from None
    table = table.reshape(-1)
    if table.size < 2:
        raise DataError(path, None, f"a reference table needs one row per Z, got {table.size}")
    if not np.isfinite(table).all():
        raise DataError(
            path,
            None,
            f"references are not finite for Z = {np.flatnonzero(~np.isfinite(table)).tolist()}",
        )
    return table
