"""``openjmp data convert``: any supported source -> record cache + splits + statistics.

The records are streamed into a temporary directory beside ``dest``; the split set
(``splits.npz``, :mod:`openjmp.data.splits`, with identical structures kept in one part:
:mod:`openjmp.data.duplicates`; counts in the manifest's ``metadata.duplicates``) and the
statistics of each split's training part
(``statistics.json``, :mod:`openjmp.data.statistics`) are written into it; only then is it
renamed to ``dest``. A kill at any point leaves either no cache or the complete one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from openjmp.data.cache import RecordStore
from openjmp.data.cache_writer import StoreWriter
from openjmp.data.duplicates import duplicate_groups, keep_together, structure_key
from openjmp.data.splits import fixed_parts, make_splits, save_splits
from openjmp.data.statistics import compute_statistics
from openjmp.errors import DataError
from openjmp.io.paths import atomic_write_bytes, check_writable_dir
from openjmp.progress import bar
from openjmp.progress import enabled_as as progress_on

__all__ = ["convert", "infer_dataset"]


def infer_dataset(store: RecordStore) -> str:
    """The dataset name the records carry ("user" when they carry none or several)."""
    names = {d for d in store.datasets if d}
    return names.pop() if len(names) == 1 else "user"


def _labels(store: RecordStore) -> np.ndarray | None:
    """The first target of every record (MatBench folds are stratified on booleans)."""
    if not store.manifest["targets"]:
        return None
    return np.asarray(store.column("target_0"))


def convert(
    src: str | Path,
    dest: str | Path,
    *,
    fmt: str | None = None,
    dataset: str | None = None,
    reader_options: dict[str, Any] | None = None,
    split_options: dict[str, Any] | None = None,
    seed: int = 42,
    precision: Literal["float64", "float32"] = "float64",
    overwrite: bool = False,
    skip_invalid: bool = False,
    progress: bool = True,
) -> RecordStore:
    """Convert ``src`` into a cache at ``dest``; return the opened `RecordStore`.

    ``dataset`` picks the split protocol (default: the name the reader gives the records);
    ``skip_invalid`` leaves out records that fail validation, listing each in the manifest
    (otherwise the first one stops the conversion with its `DataError`). ``progress``: a bar
    over the records read (also off under ``CI``, :mod:`openjmp.progress`).
    """
    from openjmp.io import detect_format, read_records

    src = Path(src)
    check_writable_dir(Path(dest).parent, "directory of the cache")
    fmt = fmt or detect_format(src)
    skipped: list[DataError] = []
    on_error = skipped.append if skip_invalid else None
    records = read_records(src, fmt, on_error=on_error, **(reader_options or {}))
    keys: list[bytes] = []
    with (
        StoreWriter(dest, precision=precision, overwrite=overwrite) as writer,
        progress_on(progress),
    ):
        for rec in bar(records, f"converting {src.name}", unit=" records", leave=True):
            writer.add(rec)
            keys.append(structure_key(rec))
        if writer.n == 0:
            raise DataError(
                src,
                None,
                "no records to convert" + (f" ({len(skipped)} invalid)" if skipped else ""),
            )
        meta = {
            "source": str(src.resolve()),
            "format": fmt,
            "reader_options": {k: str(v) for k, v in (reader_options or {}).items()},
            "skipped": [str(e) for e in skipped],
        }
        store = writer.finish(meta)
        name = dataset or infer_dataset(store)
        try:
            splits = make_splits(
                name,
                store.ids,
                store.natoms,
                seed=seed,
                source=src,
                labels=_labels(store),
                **(split_options or {}),
            )
        except DataError as err:
            raise DataError(err.source or src, err.index, err.problem) from None
        splits, dups = keep_together(
            splits, duplicate_groups(keys), fixed=fixed_parts(name, split_options or {})
        )
        save_splits(writer.tmp / "splits.npz", splits)
        stats = {"dataset": name, "seed": seed, "splits": {}}
        for split, parts in splits.items():
            train = parts.get("train")
            if train is not None and len(train) == 0:
                stats["splits"][split] = None  # nothing to fit on (a tiny file)
                continue
            stats["splits"][split] = {
                "part": "all" if train is None else "train",
                **compute_statistics(store, indices=train),
            }
        atomic_write_bytes(writer.tmp / "statistics.json", json.dumps(stats, indent=1).encode())
        metadata = dict(store.manifest["metadata"], duplicates=dups.__dict__)
        manifest = dict(store.manifest, dataset=name, metadata=metadata)
        atomic_write_bytes(writer.tmp / "manifest.json", json.dumps(manifest, indent=1).encode())
        writer.commit()
    return RecordStore(dest)
