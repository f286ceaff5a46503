"""Small h5py helpers that turn h5py's errors into `DataError`s naming the file and group."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError


@contextmanager
def open_h5(path: Path) -> Iterator[Any]:
    """Open an HDF5 file read-only; `DataError` if it is not one."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(path, None, f"not a readable HDF5 file ({exc})") from None
    try:
        yield f
    finally:
        f.close()


def dataset(group: Any, name: str, path: Path, where: str) -> np.ndarray:
    """Read dataset ``name`` of ``group`` fully; `DataError` naming ``where`` if absent or unreadable."""
    import h5py

    obj = group.get(name)
    if not isinstance(obj, h5py.Dataset):
        found = sorted(group.keys())[:12]
        raise DataError(path, where, f"missing dataset {name!r} (found {found})")
    try:
        return np.asarray(obj[()])
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(path, where, f"cannot read dataset {name!r}: {exc}") from None


def unit_attr(group: Any, name: str) -> str | None:
    """The ``units`` attribute of dataset ``name`` (lower case), or None."""
    obj = group.get(name)
    if obj is None:
        return None
    value = obj.attrs.get("units")
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode()
    return str(np.asarray(value).reshape(-1)[0] if np.ndim(value) else value).strip().lower()


def check_frames(
    path: Path,
    where: str,
    n_atoms: int,
    per_atom: dict[str, np.ndarray],
    per_frame: dict[str, np.ndarray],
) -> int:
    """Check ``per_atom`` arrays are (C, N, 3) and ``per_frame`` ones (C,) with one C; return C."""
    counts = {}
    for name, arr in [*per_atom.items(), *per_frame.items()]:
        atomwise = name in per_atom
        ok = arr.shape[1:] == (n_atoms, 3) if atomwise else arr.ndim == 1
        if not ok:
            want = f"(C, {n_atoms}, 3)" if atomwise else "(C,)"
            raise DataError(path, where, f"{name} has shape {arr.shape}, expected {want}")
        counts[name] = arr.shape[0]
    if len(set(counts.values())) > 1:
        raise DataError(path, where, f"frame counts disagree between datasets: {counts}")
    return next(iter(counts.values()), 0)
