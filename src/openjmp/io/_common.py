"""Helpers every reader shares: error reporting, validation of yielded records, scalar coercion.

Readers follow one contract (see :mod:`openjmp.io`): ``read(path, *, validate=True,
on_error=None, **options)`` returns an iterator of `AtomsRecord` in eV, Å, eV/Å. A problem with
one record or one group raises `DataError(file, record, problem)`, unless the caller passed
``on_error``: then the error is handed to it and the reader goes on with the next record, so a
checker can collect every problem in one pass. Nothing is ever skipped without being reported.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.records import AtomsRecord
from openjmp.validate import validate_record

OnError = Callable[[DataError], None] | None
"""Callback that receives a `DataError` instead of it being raised (``None``: raise)."""


def report(err: DataError, on_error: OnError) -> None:
    """Raise ``err``, or hand it to ``on_error`` when one is given."""
    if on_error is None:
        raise err
    on_error(err)


def finish(rec: AtomsRecord, *, validate: bool, on_error: OnError) -> AtomsRecord | None:
    """Validate ``rec`` (when asked) and return it; ``None`` if it failed and was reported."""
    if not validate:
        return rec
    try:
        return validate_record(rec)
    except DataError as err:
        report(err, on_error)
        return None


def existing(path: str | Path, what: str = "file") -> Path:
    """``path`` as a `Path`; raise `DataError` if nothing is there."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, f"{what} not found")
    return p


def scalar(value: Any, source: object, index: object, name: str) -> float:
    """A python float from a float, int, 0-d or one-element array; `DataError` otherwise."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "biuf":
        raise DataError(source, index, f"{name} must be one number, got {_describe(value)}")
    return float(arr.reshape(()))


def integer(value: Any, source: object, index: object, name: str) -> int:
    """A python int from a whole number (int, or integral float / one-element array)."""
    v = scalar(value, source, index, name)
    if not np.isfinite(v) or v != round(v):
        raise DataError(source, index, f"{name} must be a whole number, got {value!r:.40}")
    return int(v)


def array(
    value: Any, shape: tuple[int | None, ...], source: object, index: object, name: str
) -> np.ndarray:
    """``value`` as a float64/int array of the given shape (``None`` = any length)."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise DataError(source, index, f"{name} is not an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise DataError(source, index, f"{name} must be numeric, got dtype {arr.dtype}")
    ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape))
    if not ok:
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise DataError(source, index, f"{name} has shape {arr.shape}, expected {want}")
    return arr


def atomic_numbers(value: Any, source: object, index: object, name: str = "atomic_numbers"):
    """Atomic numbers as int64 from any integer or integer-valued float array of shape (N,)."""
    arr = np.asarray(value).reshape(-1) if np.ndim(value) <= 1 else np.asarray(value)
    arr = array(arr, (None,), source, index, name)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError(source, index, f"{name} are not whole numbers: {arr[:8].tolist()}")
    return arr.astype(np.int64)


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"[:80]
