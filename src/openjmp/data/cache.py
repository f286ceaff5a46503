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

`openjmp.data.cache_writer.StoreWriter` streams records into a hidden temporary directory
next to the destination and renames it into place only when complete (`os.replace`), so a
killed conversion never leaves a half-written cache under the destination name. `RecordStore`
opens its memmaps lazily and again in each process (DataLoader workers), so it is safe to
pickle and share.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.records import AtomsRecord

__all__ = ["CACHE_VERSION", "MANIFEST", "RecordStore"]

CACHE_VERSION = 1
MANIFEST = "manifest.json"
INDEX_NONE, INDEX_INT, INDEX_STR = 0, 1, 2
"""Codes of ``index_kind.bin``: the record had no index, an int index, a str index."""


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
            raise DataError(
                mf,
                None,
                f"cache version {self.manifest.get('version')} != {CACHE_VERSION}; convert again",
            )
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
                mm = np.memmap(
                    self.path / spec["file"],
                    dtype=np.dtype(spec["dtype"]).newbyteorder("<"),
                    mode="r",
                    shape=shape,
                )
                arr = np.asarray(mm)  # plain ndarray over the mapping: much cheaper to index
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
        if kind == INDEX_NONE:
            return None
        off = self.column("index_offsets")
        text = bytes(self.column("index_blob")[off[i] : off[i + 1]]).decode("utf-8")
        return int(text) if kind == INDEX_INT else text

    @property
    def ids(self) -> list[int | str | None]:
        """Every record's index, in order."""
        return [self.index_of(i) for i in range(len(self))]

    def _columns(self) -> dict[str, Any]:
        """Every column this process needs for ``__getitem__``, opened once per process."""
        if self._pid != os.getpid() or "_all" not in self._maps:
            names = [
                "offsets",
                "atomic_numbers",
                "positions",
                "cell",
                "pbc",
                "tags",
                "fixed",
                "energy",
                "has_energy",
                "source_id",
                "dataset_id",
                "index_kind",
                "index_offsets",
                "index_blob",
            ]
            cols: dict[str, Any] = {n: self.column(n) for n in names}
            for opt, has in (("forces", "has_forces"), ("stress", "has_stress")):
                cols[opt] = (self.column(opt), self.column(has)) if self.has_column(opt) else None
            cols["targets"] = [
                (t["name"], self.column(f"target_{k}"), self.column(f"target_{k}.has"))
                for k, t in enumerate(self.manifest["targets"])
            ]
            self._maps["_all"] = cols
        return self._maps["_all"]

    def __getitem__(self, i: int) -> AtomsRecord:
        n = len(self)
        if not isinstance(i, int | np.integer):
            raise TypeError(f"RecordStore indices must be integers, not {type(i).__name__}")
        i = int(i) + n if i < 0 else int(i)
        if not 0 <= i < n:
            raise IndexError(f"record {i} out of range for a store of {n}")
        c = self._columns()
        a, b = c["offsets"][i : i + 2]
        forces = stress = None
        if c["forces"] is not None and c["forces"][1][i]:
            forces = c["forces"][0][a:b]
        if c["stress"] is not None and c["stress"][1][i]:
            stress = c["stress"][0][i]
        targets = {}
        for name, values, has in c["targets"]:
            if has[i]:
                v = values[i]
                targets[name] = v.item() if v.ndim == 0 else np.array(v)
        kind = c["index_kind"][i]
        index: int | str | None = None
        if kind != INDEX_NONE:
            lo, hi = c["index_offsets"][i : i + 2]
            text = c["index_blob"][lo:hi].tobytes().decode("utf-8")
            index = int(text) if kind == INDEX_INT else text
        return AtomsRecord(
            atomic_numbers=c["atomic_numbers"][a:b],
            positions=c["positions"][a:b],
            cell=c["cell"][i],
            pbc=c["pbc"][i],
            tags=c["tags"][a:b],
            fixed=c["fixed"][a:b],
            energy=float(c["energy"][i]) if c["has_energy"][i] else None,
            forces=forces,
            stress=stress,
            targets=targets,
            source=self.manifest["sources"][c["source_id"][i]] or None,
            index=index,
            dataset=self.manifest["datasets"][c["dataset_id"][i]],
        )

    def __iter__(self) -> Iterator[AtomsRecord]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"RecordStore({str(self.path)!r}, n={len(self)})"
