"""A memory-mapped record cache: flat arrays + offsets on disk, random access by index.

Layout of a cache directory (all arrays raw little-endian binaries read with `numpy.memmap`;
their dtype and shape are in ``manifest.json``)::

    manifest.json          version, counts, column table, target table, sources, datasets
    offsets.bin            (n + 1,) int64   atom offset of each record (natoms = diff)
    atomic_numbers.bin     (A,) uint8
    positions.bin          (A, 3) float64 | float32, Å
    tags.bin, fixed.bin    (A,) int8, (A,) bool
    forces.bin             (A, 3) eV/Å, with has_forces.bin (n,) bool (zeros where absent)
    cell.bin, pbc.bin      (n, 3, 3) float64 Å, (n, 3) bool
    energy.bin             (n,) float64 eV, with has_energy.bin (n,) bool
    stress.bin             (n, 6) eV/Å³ Voigt, with has_stress.bin (n,) bool
    target_<k>.bin         (n, *shape) float64 | bool, with target_<k>.has.bin (n,) bool
    index_blob.bin         utf-8 of every record's index, cut by index_offsets.bin (n + 1,)
    index_kind.bin         (n,) uint8: 0 none, 1 int, 2 str
    source_id.bin, dataset_id.bin   (n,) int32 / int16 into the manifest's lists
    splits.npz, statistics.json     written beside the records by ``openjmp data convert``

`StoreWriter` streams records into a hidden temporary directory next to the destination and
renames it into place only when complete (`os.replace`), so a killed conversion never leaves a
half-written cache under the destination name. `RecordStore` opens its memmaps lazily and again
in each process (DataLoader workers), so it is safe to pickle and share.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openjmp._version import __version__
from openjmp.errors import DataError
from openjmp.records import AtomsRecord

__all__ = ["CACHE_VERSION", "RecordStore", "StoreWriter", "atomic_write_bytes", "write_store"]

CACHE_VERSION = 1
MANIFEST = "manifest.json"
_FLUSH_EVERY = 4096

_INDEX_NONE, _INDEX_INT, _INDEX_STR = 0, 1, 2


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory + `os.replace`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
            self.fh.write(np.concatenate(self.buffer).astype(self.dtype.newbyteorder("<")).tobytes())
            self.buffer = []

    def close(self) -> dict[str, Any]:
        self.flush()
        self.fh.close()
        return {"file": f"{self.name}.bin", "dtype": self.dtype.str.lstrip("<>|="), "shape": [self.rows, *self.tail]}


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
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.with_name(f".{self.dest.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
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
                raise DataError(rec.source, rec.index, f"target {name!r} is not numeric; cannot cache")
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
            kind, text = _INDEX_NONE, ""
        elif isinstance(index, int | np.integer) and not isinstance(index, bool):
            kind, text = _INDEX_INT, str(int(index))
        else:
            kind, text = _INDEX_STR, str(index)
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
                raise DataError(self.dest, None, "destination appeared while converting; not replaced")
            old = self.dest.with_name(f".{self.dest.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
            os.replace(self.dest, old)
        os.replace(self.tmp, self.dest)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.dest

    def abort(self) -> None:
        """Close files and delete the temporary directory."""
        for col in [*self.atom_cols.values(), *self.rec_cols.values(), *self.optional.values(),
                    self.offsets, self.index_offsets]:  # fmt: skip
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


class RecordStore:
    """Random access to a record cache: ``len(store)``, ``store[i] -> AtomsRecord``.

    Memmaps open on first use in each process. ``natoms`` (n,), ``ids`` (list of indices),
    ``manifest`` and ``column(name)`` (a raw memmap, for vectorised statistics) are cheap.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise DataError(self.path, None, "not an openjmp record cache (no manifest.json)")
        try:
            self.manifest: dict[str, Any] = json.loads(mf.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(mf, None, f"unreadable cache manifest ({exc})") from None
        if self.manifest.get("format") != "openjmp-record-cache":
            raise DataError(mf, None, "not an openjmp record cache manifest")
        if self.manifest.get("version") != CACHE_VERSION:
            raise DataError(mf, None, f"cache version {self.manifest.get('version')} != {CACHE_VERSION}; convert again")
        self._n = int(self.manifest["n_records"])
        self._maps: dict[str, np.ndarray] = {}
        self._pid = -1

    def __len__(self) -> int:
        return self._n

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}, "_pid": -1}

    def column(self, name: str) -> np.ndarray:
        """Memmap of column ``name`` (see module doc), or of a target's ``values``/``has`` by key."""
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        if name not in self._maps:
            spec = self._spec(name)
            shape = tuple(spec["shape"])
            if int(np.prod(shape)) == 0:
                arr = np.zeros(shape, dtype=spec["dtype"])
            else:
                arr = np.memmap(self.path / spec["file"], dtype=np.dtype(spec["dtype"]).newbyteorder("<"),
                                mode="r", shape=shape)
            self._maps[name] = arr
        return self._maps[name]

    def _spec(self, name: str) -> dict[str, Any]:
        if name in self.manifest["columns"]:
            return self.manifest["columns"][name]
        for k, t in enumerate(self.manifest["targets"]):
            if name == f"target_{k}":
                return t["values"]
            if name == f"target_{k}.has":
                return t["has"]
        raise KeyError(name)

    def has_column(self, name: str) -> bool:
        return name in self.manifest["columns"]

    @property
    def target_names(self) -> list[str]:
        return [t["name"] for t in self.manifest["targets"]]

    @property
    def natoms(self) -> np.ndarray:
        """(n,) int64 atoms per record."""
        return np.diff(np.asarray(self.column("offsets")))

    @property
    def sources(self) -> list[str]:
        return list(self.manifest["sources"])

    @property
    def datasets(self) -> list[str]:
        return list(self.manifest["datasets"])

    def index_of(self, i: int) -> int | str | None:
        """The record's index (its key in the original source)."""
        kind = int(self.column("index_kind")[i])
        if kind == _INDEX_NONE:
            return None
        off = self.column("index_offsets")
        text = bytes(self.column("index_blob")[off[i] : off[i + 1]]).decode("utf-8")
        return int(text) if kind == _INDEX_INT else text

    @property
    def ids(self) -> list[int | str | None]:
        """Every record's index, in order."""
        return [self.index_of(i) for i in range(len(self))]

    def __getitem__(self, i: int) -> AtomsRecord:
        n = len(self)
        if not isinstance(i, int | np.integer):
            raise TypeError(f"RecordStore indices must be integers, not {type(i).__name__}")
        i = int(i) + n if i < 0 else int(i)
        if not 0 <= i < n:
            raise IndexError(f"record {i} out of range for a store of {n}")
        col = self.column
        a, b = col("offsets")[i : i + 2]
        forces = col("forces")[a:b] if self.has_column("forces") and col("has_forces")[i] else None
        stress = col("stress")[i] if self.has_column("stress") and col("has_stress")[i] else None
        targets = {}
        for k, t in enumerate(self.manifest["targets"]):
            if col(f"target_{k}.has")[i]:
                v = col(f"target_{k}")[i]
                targets[t["name"]] = v.item() if v.ndim == 0 else np.array(v)
        return AtomsRecord(
            atomic_numbers=col("atomic_numbers")[a:b],
            positions=col("positions")[a:b],
            cell=col("cell")[i],
            pbc=col("pbc")[i],
            tags=col("tags")[a:b],
            fixed=col("fixed")[a:b],
            energy=float(col("energy")[i]) if col("has_energy")[i] else None,
            forces=forces,
            stress=stress,
            targets=targets,
            source=self.manifest["sources"][int(col("source_id")[i])] or None,
            index=self.index_of(i),
            dataset=self.manifest["datasets"][int(col("dataset_id")[i])],
        )

    def __iter__(self) -> Iterator[AtomsRecord]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"RecordStore({str(self.path)!r}, n={len(self)})"
