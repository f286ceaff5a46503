"""OC20/OC22-style S2EF split directories: ``data.0000.lmdb`` files plus ``metadata.npz``.

Layout as the Open Catalyst preprocessing writes it (datasets.md section 1 and 11): single-file
LMDBs (``subdir=False``) of at most ``CHUNK`` entries, keys ``b"0" .. b"n-1"`` holding pickled
PyG-1.x ``Data`` objects, and ``b"length"`` holding the pickled entry count; beside them
``metadata.npz`` with ``natoms`` per entry in index order (JMP's size-balanced batching).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lmdb
import numpy as np

from openjmp.data.demo.writers.files import write_npz
from openjmp.data.demo.writers.pyg_pickle import dumps_pyg1_data

CHUNK = 5000
"""Entries per LMDB file, as in the published datasets."""

_MAP_SIZE = 1 << 34  # virtual address space only; the file grows with what is written


def write_s2ef_split(directory: Path, entries: Sequence[dict[str, Any]]) -> list[Path]:
    """Write ``entries`` (dicts of PyG ``Data`` fields) into ``directory``; return the files.

    Each entry must hold ``natoms`` (int). The directory is created; it must not exist yet.
    """
    directory.mkdir(parents=True, exist_ok=False)
    files: list[Path] = []
    for start in range(0, max(len(entries), 1), CHUNK):
        chunk = entries[start : start + CHUNK]
        path = directory / f"data.{len(files):04d}.lmdb"
        env = lmdb.open(
            str(path), subdir=False, map_size=_MAP_SIZE, lock=False, meminit=True, sync=True
        )
        try:
            with env.begin(write=True) as txn:
                for i, fields in enumerate(chunk):
                    txn.put(str(i).encode("ascii"), dumps_pyg1_data(fields))
                txn.put(b"length", pickle.dumps(len(chunk), protocol=4))
        finally:
            env.close()
        files.append(path)
    natoms = np.array([int(e["natoms"]) for e in entries], dtype=np.int64)
    meta = directory / "metadata.npz"
    write_npz(meta, {"natoms": natoms})
    files.append(meta)
    return files
