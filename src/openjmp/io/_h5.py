"""Small h5py helpers that turn h5py's errors into `DataError`s naming the file and group.

A corrupt HDF5 file makes h5py raise `OSError`, `RuntimeError`, `KeyError`, `ValueError` or
`TypeError` from wherever it first touches the damage (listing a group, opening a link, reading
an attribute or a dataset). Readers go through these helpers for every access, so each such
failure becomes one `DataError(file, group, problem)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError

H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)
"""What h5py raises on a damaged file (`DataError`, a `ValueError`, is re-raised as it is)."""


@contextmanager
def guard(path: Path, where: object, doing: str) -> Iterator[None]:
    """Turn an h5py failure inside the block into `DataError(path, where, ...)`."""
    try:
        yield
    except DataError:
        raise
    except H5_ERRORS as exc:
        raise DataError(
            path, where, f"corrupt or unreadable HDF5 file: {doing} failed ({exc})"
        ) from None


@contextmanager
def open_h5(path: Path) -> Iterator[Any]:
    """Open an HDF5 file read-only; `DataError` if it is not one."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise DataError(path, None, f"not a readable HDF5 file ({exc})") from None
    try:
        yield f
    finally:
        try:
            f.close()
        except H5_ERRORS:
            pass


def names(group: Any, path: Path, where: object) -> list[str]:
    """The member names of ``group`` in the file's order."""
    with guard(path, where, "listing the group"):
        return [str(k) for k in group.keys()]


def member(group: Any, name: str, path: Path, where: object) -> Any:
    """``group[name]`` (a group or dataset), or None if it has no such member."""
    with guard(path, where, f"opening {name!r}"):
        return group.get(name)


def is_group(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Group)


def dataset(group: Any, name: str, path: Path, where: str) -> np.ndarray:
    """Read dataset ``name`` of ``group`` fully; `DataError` naming ``where`` if absent or unreadable."""
    import h5py

    obj = member(group, name, path, where)
    if not isinstance(obj, h5py.Dataset):
        found = sorted(names(group, path, where))[:12]
        raise DataError(path, where, f"missing dataset {name!r} (found {found})")
    try:
        return np.asarray(obj[()])
    except MemoryError:
        raise DataError(
            path, where, f"dataset {name!r} claims shape {obj.shape}: too large to read"
        ) from None
    except H5_ERRORS as exc:
        raise DataError(path, where, f"cannot read dataset {name!r}: {exc}") from None


def numeric(group: Any, name: str, path: Path, where: str, kind: str = "f") -> np.ndarray:
    """Dataset ``name`` as float64 (``kind="f"``) or int64 atomic numbers (``kind="z"``):
    `DataError` for a non-numeric dtype, or atomic numbers that are not whole numbers."""
    arr = dataset(group, name, path, where)
    if arr.dtype.kind not in "biuf":
        raise DataError(path, where, f"dataset {name!r} must be numeric, has dtype {arr.dtype}")
    if kind == "z":
        if arr.dtype.kind == "f" and (not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
            raise DataError(path, where, f"{name} are not whole numbers")
        return arr.astype(np.int64)
    return arr.astype(np.float64)


def unit_attr(group: Any, name: str, path: Path, where: object) -> str | None:
    """The ``units`` attribute of dataset ``name`` (lower case), or None."""
    obj = member(group, name, path, where)
    if obj is None:
        return None
    with guard(path, where, f"reading the units of {name!r}"):
        value = obj.attrs.get("units")
    if value is None:
        return None
    arr = np.asarray(value).reshape(-1)
    if arr.size != 1 or arr.dtype.kind not in "USO":
        raise DataError(path, where, f"units attribute of {name!r} is not a string: {value!r:.40}")
    value = arr[0]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).strip().lower()


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
