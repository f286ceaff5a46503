"""Write a record cache (layout in :mod:`openjmp.data.cache`) atomically, streaming.

`StoreWriter` appends each record's arrays to buffered column files inside a hidden temporary
directory next to the destination and renames the directory into place (`os.replace`) only
when everything, splits and statistics included, is written. A killed conversion leaves no
cache under the destination name; a failed one removes its temporary directory, and the next
writer of the same destination removes those of killed processes (`clean_stale_temporaries`).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openjmp._version import __version__
from openjmp.data.cache import (
    CACHE_VERSION,
    INDEX_INT,
    INDEX_NONE,
    INDEX_STR,
    MANIFEST,
    RecordStore,
)
from openjmp.errors import DataError
from openjmp.io.paths import (
    atomic_write_bytes,
    check_writable_dir,
    clean_stale_temporaries,
    temporary_path,
)
from openjmp.records import AtomsRecord

__all__ = ["StoreWriter", "write_store"]

_FLUSH_EVERY = 4096


class _Column:
    """An append-only binary column: buffers arrays and flushes them to ``<name>.bin``."""

    def __init__(self, directory: Path, name: str, dtype: Any, tail: tuple[int, ...]) -> None:
        self.name, self.dtype, self.tail = name, np.dtype(dtype), tuple(tail)
        self.fh = open(directory / f"{name}.bin", "wb")
        self.buffer: list[np.ndarray] = []
        self.rows = 0

    def append(self, value: Any) -> None:
        arr = np.asarray(value, dtype=self.dtype).reshape((-1, *self.tail))
        self.buffer.append(arr)
        self.rows += arr.shape[0]
        if len(self.buffer) >= _FLUSH_EVERY:
            self.flush()

    def pad(self, rows: int, fill: Any = 0) -> None:
        if rows > 0:
            self.append(np.full((rows, *self.tail), fill, dtype=self.dtype))

    def flush(self) -> None:
        if self.buffer:
            self.fh.write(
                np.concatenate(self.buffer).astype(self.dtype.newbyteorder("<")).tobytes()
            )
            self.buffer = []

    def close(self) -> dict[str, Any]:
        self.flush()
        self.fh.close()
        return {
            "file": f"{self.name}.bin",
            "dtype": self.dtype.str.lstrip("<>|="),
            "shape": [self.rows, *self.tail],
        }


class StoreWriter:
    """Stream `AtomsRecord`s into a new cache at ``dest`` (see module doc).

    Use as a context manager: ``add`` records, ``finish()`` to write the manifest (the store is
    then readable at ``writer.tmp``, e.g. to add splits and statistics), ``commit()`` to move it
    into place. Leaving the block without ``commit`` (or on an exception) deletes the temporary
    directory.
    """

    def __init__(
        self,
        dest: str | Path,
        *,
        precision: Literal["float64", "float32"] = "float64",
        overwrite: bool = False,
    ) -> None:
        self.dest = Path(dest)
        if precision not in ("float64", "float32"):
            raise DataError(dest, None, f"precision must be float64 or float32, not {precision!r}")
        if self.dest.exists() and not overwrite:
            raise DataError(self.dest, None, "destination exists (pass overwrite to replace it)")
        self.overwrite = overwrite
        check_writable_dir(self.dest.parent, "directory of the cache")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_temporaries(self.dest)  # left by a killed conversion
        self.tmp = temporary_path(self.dest)
        self.tmp.mkdir()
        f = precision
        c = lambda name, dtype, tail=(): _Column(self.tmp, name, dtype, tail)  # noqa: E731
        self.atom_cols = {
            "atomic_numbers": c("atomic_numbers", np.uint8),
            "positions": c("positions", f, (3,)),
            "tags": c("tags", np.int8),
            "fixed": c("fixed", np.bool_),
        }
        self.rec_cols = {
            "cell": c("cell", np.float64, (3, 3)),
            "pbc": c("pbc", np.bool_, (3,)),
            "energy": c("energy", np.float64),
            "has_energy": c("has_energy", np.bool_),
            "has_forces": c("has_forces", np.bool_),
            "index_kind": c("index_kind", np.uint8),
            "source_id": c("source_id", np.int32),
            "dataset_id": c("dataset_id", np.int16),
        }
        self.offsets = c("offsets", np.int64)
        self.offsets.append([0])
        self.index_offsets = c("index_offsets", np.int64)
        self.index_offsets.append([0])
        self.index_blob = open(self.tmp / "index_blob.bin", "wb")
        self.precision = precision
        self.optional: dict[str, _Column] = {}  # forces, stress, has_stress
        self.targets: dict[str, tuple[_Column, _Column]] = {}
        self.sources: dict[str, int] = {}
        self.datasets: dict[str, int] = {}
        self.n = self.n_atoms = self.blob_len = 0
        self.finished = self.committed = False

    # -- writing -------------------------------------------------------------------------------
    def add(self, rec: AtomsRecord) -> None:
        """Append one record (its arrays must already be valid; readers validate)."""
        n_at = rec.natoms
        if np.any(rec.atomic_numbers > 255) or np.any(rec.atomic_numbers < 0):
            raise DataError(rec.source, rec.index, "atomic numbers outside 0..255 cannot be cached")
        shapes = {"positions": rec.positions, "forces": rec.forces}
        for name, arr in shapes.items():
            if arr is not None and arr.shape != (n_at, 3):
                raise DataError(rec.source, rec.index, f"{name} shape {arr.shape} != ({n_at}, 3)")
        target_cols = {name: self._target(name, value, rec) for name, value in rec.targets.items()}
        a = self.atom_cols
        a["atomic_numbers"].append(rec.atomic_numbers)
        a["positions"].append(rec.positions)
        a["tags"].append(rec.tags)
        a["fixed"].append(rec.fixed)
        r = self.rec_cols
        r["cell"].append(rec.cell)
        r["pbc"].append(rec.pbc)
        r["energy"].append([np.nan if rec.energy is None else rec.energy])
        r["has_energy"].append([rec.energy is not None])
        r["has_forces"].append([rec.forces is not None])
        if rec.forces is not None:
            self._optional("forces", self.precision, (3,), self.n_atoms).append(rec.forces)
        elif "forces" in self.optional:
            self.optional["forces"].pad(n_at)
        if rec.stress is not None:
            stress = np.asarray(rec.stress)
            if stress.shape == (3, 3):
                stress = stress[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
            self._optional("stress", np.float64, (6,), self.n).append(stress)
            self._optional("has_stress", np.bool_, (), self.n).append([True])
        elif "stress" in self.optional:
            self.optional["stress"].pad(1)
            self.optional["has_stress"].pad(1, False)
        for name, value in rec.targets.items():
            target_cols[name].append(value)
        for name, (col, has) in self.targets.items():
            if name in rec.targets:
                has.append([True])
            else:
                col.pad(1, 0)
                has.append([False])
        self._index(rec.index)
        r["source_id"].append([self.sources.setdefault(rec.source or "", len(self.sources))])
        r["dataset_id"].append([self.datasets.setdefault(rec.dataset, len(self.datasets))])
        self.n += 1
        self.n_atoms += n_at
        self.offsets.append([self.n_atoms])

    def _optional(self, name: str, dtype: Any, tail: tuple[int, ...], backfill: int) -> _Column:
        if name not in self.optional:
            col = _Column(self.tmp, name, dtype, tail)
            col.pad(backfill, False if np.dtype(dtype) == np.bool_ else 0)
            self.optional[name] = col
        return self.optional[name]

    def _target(self, name: str, value: Any, rec: AtomsRecord) -> _Column:
        arr = np.asarray(value)
        if name not in self.targets:
            if arr.dtype.kind not in "biuf":
                raise DataError(
                    rec.source, rec.index, f"target {name!r} is not numeric; cannot cache"
                )
            dtype = np.bool_ if arr.dtype.kind == "b" else np.float64
            k = len(self.targets)
            col = _Column(self.tmp, f"target_{k}", dtype, arr.shape)
            has = _Column(self.tmp, f"target_{k}.has", np.bool_, ())
            col.pad(self.n, 0)
            has.pad(self.n, False)
            self.targets[name] = (col, has)
        col = self.targets[name][0]
        if arr.shape != col.tail or (col.dtype == np.bool_) != (arr.dtype.kind == "b"):
            raise DataError(
                rec.source,
                rec.index,
                f"target {name!r} is {arr.dtype} {arr.shape} here but {col.dtype} {col.tail} before",
            )
        return col

    def _index(self, index: int | str | None) -> None:
        if index is None:
            kind, text = INDEX_NONE, ""
        elif isinstance(index, int | np.integer) and not isinstance(index, bool):
            kind, text = INDEX_INT, str(int(index))
        else:
            kind, text = INDEX_STR, str(index)
        raw = text.encode("utf-8")
        self.index_blob.write(raw)
        self.blob_len += len(raw)
        self.index_offsets.append([self.blob_len])
        self.rec_cols["index_kind"].append([kind])

    # -- finishing -----------------------------------------------------------------------------
    def finish(self, metadata: dict[str, Any] | None = None) -> RecordStore:
        """Flush everything, write the manifest; return the store (still at ``self.tmp``)."""
        columns = {name: col.close() for name, col in {**self.atom_cols, **self.rec_cols}.items()}
        columns |= {name: col.close() for name, col in self.optional.items()}
        columns["offsets"] = self.offsets.close()
        columns["index_offsets"] = self.index_offsets.close()
        self.index_blob.close()
        columns["index_blob"] = {"file": "index_blob.bin", "dtype": "u1", "shape": [self.blob_len]}
        targets = []
        for name, (col, has) in self.targets.items():
            targets.append({"name": name, "values": col.close(), "has": has.close()})
        manifest = {
            "format": "openjmp-record-cache",
            "version": CACHE_VERSION,
            "openjmp": __version__,
            "n_records": self.n,
            "n_atoms": self.n_atoms,
            "precision": self.precision,
            "columns": columns,
            "targets": targets,
            "sources": list(self.sources),
            "datasets": list(self.datasets),
            "metadata": metadata or {},
        }
        atomic_write_bytes(self.tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
        self.finished = True
        return RecordStore(self.tmp)

    def commit(self) -> Path:
        """Move the finished cache to ``dest`` (replacing an old one when ``overwrite``)."""
        if not self.finished:
            self.finish()
        old = None
        if self.dest.exists():
            if not self.overwrite:
                raise DataError(
                    self.dest, None, "destination appeared while converting; not replaced"
                )
            old = temporary_path(self.dest, "old")
            os.replace(self.dest, old)
        try:
            os.replace(self.tmp, self.dest)
        except OSError as exc:  # another writer (a DDP rank) committed the same cache first
            if self.dest.exists():
                raise DataError(
                    self.dest, None, "destination appeared while converting; not replaced"
                ) from None
            raise DataError(self.dest, None, f"cannot move the cache into place ({exc})") from None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.dest

    def abort(self) -> None:
        """Close files and delete the temporary directory."""
        for col in [
            *self.atom_cols.values(),
            *self.rec_cols.values(),
            *self.optional.values(),
            self.offsets,
            self.index_offsets,
        ]:
            if not col.fh.closed:
                col.fh.close()
        for col, has in self.targets.values():
            for c in (col, has):
                if not c.fh.closed:
                    c.fh.close()
        if not self.index_blob.closed:
            self.index_blob.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.committed:
            self.abort()


def write_store(
    records: Iterable[AtomsRecord],
    dest: str | Path,
    *,
    precision: Literal["float64", "float32"] = "float64",
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
) -> RecordStore:
    """Write ``records`` to a new cache at ``dest`` atomically; return it opened."""
    with StoreWriter(dest, precision=precision, overwrite=overwrite) as w:
        for rec in records:
            w.add(rec)
        w.finish(metadata)
        w.commit()
    return RecordStore(dest)
