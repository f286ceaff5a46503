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

import io
import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.records import AtomsRecord

__all__ = ["XyzScan", "read", "record_from_atoms", "scan_xyz_counts"]

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


@dataclass(frozen=True)
class XyzScan:
    """What `scan_xyz_counts` found: ``frames`` well-formed frames in the first ``lines`` lines,
    then ``error`` (None when the whole text is well formed)."""

    frames: int
    lines: int
    error: DataError | None


def scan_xyz_counts(lines: Iterable[str], source: object) -> XyzScan:
    """Check the frame layout of an (ext)xyz text.

    Each frame is an atom-count line, a comment line and that many atom lines (then up to three
    ``VEC`` lines). The first problem is returned as a `DataError` naming the frame and line: a
    count that is not a number, fewer lines than a count says, a frame with more atom lines
    than its count (the next count line is an atom line), or data after a blank line (ASE stops
    at the first blank line: the frames after it would be silently dropped). ASE itself loops
    for ever on a huge count line; this scan is bounded by the file.
    """
    it = iter(lines)
    frame = lineno = good_lines = last_start = 0

    def fail(problem: str, at: int, suspect_previous: bool = False) -> XyzScan:
        if suspect_previous:  # the previous frame is not well formed either
            return XyzScan(frame - 1, last_start, DataError(source, at, problem))
        return XyzScan(frame, good_lines, DataError(source, at, problem))

    for line in it:
        lineno += 1
        text = line.strip()
        if not text:
            for rest in it:
                lineno += 1
                if rest.strip():
                    return fail(
                        f"line {lineno}: data after the blank line that ends the file for ASE "
                        "(the frames after it would be dropped); remove the blank line",
                        frame,
                    )
            break
        if frame and text.startswith("VEC"):
            good_lines = lineno
            continue
        try:
            natoms = int(text)
        except ValueError:
            hint = f" (frame {frame - 1} has more atom lines than its count?)" if frame else ""
            return fail(
                f"line {lineno}: expected the atom count of frame {frame}, got {text[:40]!r}{hint}",
                max(frame - 1, 0),
                suspect_previous=frame > 0,
            )
        if natoms < 0:
            return fail(f"line {lineno}: negative atom count {natoms}", frame)
        start, last_start = lineno, good_lines
        for k in range(natoms + 1):  # the comment line, then the atom lines
            if next(it, None) is None:
                return fail(
                    f"frame {frame} says {natoms} atoms (line {start}) but the file ends after "
                    f"{max(k - 1, 0)} atom lines",
                    frame,
                )
            lineno += 1
        frame += 1
        good_lines = lineno
    return XyzScan(frame, good_lines, None)


def _text_lines(path: Path) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as fh:
            yield from fh
    except UnicodeDecodeError as exc:
        raise DataError(path, None, f"not a text file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(path, None, f"cannot read ({exc.strerror})") from None


def _iterate_file(path: Path, format: str | None, opts, validate, on_error):
    from ase.io.formats import filetype

    if format is None:
        try:
            format = filetype(str(path), read=True)
        except Exception:  # noqa: BLE001 - unknown: ASE reports it below
            format = None
    scan = scan_xyz_counts(_text_lines(path), path) if format in ("xyz", "extxyz") else None
    if scan is not None and scan.error is not None:
        # read the well-formed frames before the problem, then report it
        prefix = "".join(itertools.islice(_text_lines(path), scan.lines))
        yield from _read_frames(io.StringIO(prefix), path, format, opts, validate, on_error)
        raise scan.error
    yield from _read_frames(str(path), path, format, opts, validate, on_error)


def _read_frames(source, path: Path, format, opts, validate, on_error):
    import ase.io

    frames = ase.io.iread(source, index=":", format=format)
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
