"""Any file ASE reads (extxyz, traj, ASE SQLite/JSON db, ...), labels included.

Energy, forces and stress come from the single-point results ASE attaches on reading (forces
unconstrained: `FixAtoms` does not zero them), or from ``energy_key`` / ``forces_key`` when a
file stores its labels under other names (e.g. ``REF_energy``). Numeric ``info`` entries (and
ASE db key-value pairs) become per-structure targets: all of them, or only those named in
``targets``. Units are taken to be ASE's (eV, Å, eV/Å, eV/Å³); nothing is converted.
Records: tags from the file (2 when absent), fixed atoms from `FixAtoms` (extxyz ``move_mask``),
index = position in the file (the row id for a database).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.records import AtomsRecord

__all__ = ["read", "record_from_atoms"]

DB_SUFFIXES = (".db", ".aselmdb")


def record_from_atoms(
    atoms: Any,
    *,
    source: str,
    index: int | str,
    dataset: str = "",
    energy_key: str | None = None,
    forces_key: str | None = None,
    targets: Sequence[str] | None = None,
) -> AtomsRecord:
    """An `AtomsRecord` from an `ase.Atoms` with the key choices described in the module doc."""
    rec = AtomsRecord.from_ase(atoms, source=source, index=index, dataset=dataset)
    changes: dict[str, Any] = {}
    if energy_key is not None:
        if energy_key not in atoms.info:
            raise DataError(source, index, f"no info key {energy_key!r} (energy_key)")
        changes["energy"] = float(atoms.info[energy_key])
    if forces_key is not None:
        if forces_key not in atoms.arrays:
            raise DataError(source, index, f"no per-atom array {forces_key!r} (forces_key)")
        changes["forces"] = np.asarray(atoms.arrays[forces_key], dtype=np.float64)
    kept = dict(rec.targets)
    if targets is not None:
        missing = [k for k in targets if k not in atoms.info]
        if missing:
            raise DataError(source, index, f"target keys {missing} not in the structure's info")
        kept = {k: _target(atoms.info[k], source, index, k) for k in targets}
    kept.pop(energy_key, None)
    changes["targets"] = kept
    return rec.replace(**changes)


def _target(value: Any, source: str, index: object, name: str) -> Any:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise DataError(source, index, f"target {name!r} is not numeric: {value!r:.40}")
    if arr.dtype.kind == "b":
        return bool(arr) if arr.ndim == 0 else arr
    return float(arr) if arr.ndim == 0 else arr.astype(np.float64)


def read(
    path: str | Path,
    *,
    format: str | None = None,
    dataset: str = "",
    energy_key: str | None = None,
    forces_key: str | None = None,
    targets: Sequence[str] | None = None,
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Every structure of an ASE-readable file, in file order (see module doc)."""
    path = existing(path)
    opts = dict(dataset=dataset, energy_key=energy_key, forces_key=forces_key, targets=targets)
    if path.suffix in DB_SUFFIXES and format is None:
        return _iterate_db(path, opts, validate, on_error)
    return _iterate_file(path, format, opts, validate, on_error)


def _iterate_file(path: Path, format: str | None, opts, validate, on_error):
    import ase.io

    frames = ase.io.iread(str(path), index=":", format=format)
    i = 0
    while True:
        try:
            atoms = next(frames)
        except StopIteration:
            return
        except Exception as exc:  # ASE raises many kinds on malformed or unknown files
            raise DataError(path, i, f"ASE cannot read this structure: {exc}") from None
        yield from _emit(atoms, str(path), i, opts, validate, on_error)
        i += 1


def _iterate_db(path: Path, opts, validate, on_error):
    import ase.db

    try:
        db = ase.db.connect(str(path))
        rows = list(db.select())
    except Exception as exc:  # noqa: BLE001 - sqlite3, json, ASE: many kinds on a bad file
        raise DataError(path, None, f"not a readable ASE database ({exc})") from None
    for k, row in enumerate(rows):
        index = row.get("id", k)
        try:
            atoms = row.toatoms()
            for key, v in row.key_value_pairs.items():
                if isinstance(v, int | float | np.number) and not isinstance(v, bool):
                    atoms.info.setdefault(key, v)
        except Exception as exc:  # noqa: BLE001 - a damaged row makes ASE raise many kinds
            report(DataError(path, index, f"ASE cannot rebuild this row: {exc!r:.200}"), on_error)
            continue
        yield from _emit(atoms, str(path), index, opts, validate, on_error)


def _emit(atoms, source: str, index: int, opts, validate, on_error) -> Iterator[AtomsRecord]:
    try:
        rec = record_from_atoms(atoms, source=source, index=index, **opts)
    except DataError as err:
        report(err, on_error)
        return
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        # values of the wrong type or shape (a text energy, a short forces array, ...)
        problem = f"unusable values in the structure ({type(exc).__name__}: {exc})"
        report(DataError(source, index, problem), on_error)
        return
    rec = finish(rec, validate=validate, on_error=on_error)
    if rec is not None:
        yield rec
