"""Configured data sources -> memory-mapped record caches, made once and reused.

A `SourceConfig` (path + reader options) in a given format is read once with
`openjmp.io.read_records` and written to a `RecordStore` (`openjmp.data.cache.write_store`,
atomic: a kill leaves no half-written cache) under ``cache_dir``. The cache directory name
carries a fingerprint of the format, the resolved path, the reader options and the size and
modification time of every file under the path, so an edited source is read again and an
unchanged one is opened at once (also by every DDP rank and on ``--resume``).

Random access to records then costs a memmap read, which is what DataLoader workers need.
Reading shows a progress bar (`openjmp.progress`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from openjmp import progress
from openjmp.config.common import SourceConfig
from openjmp.data.cache import RecordStore
from openjmp.data.cache_writer import write_store
from openjmp.errors import DataError


def _file_signature(path: Path) -> list[tuple[str, int, int]]:
    if path.is_file():
        st = path.stat()
        return [(path.name, st.st_size, st.st_mtime_ns)]
    if not path.exists():
        raise DataError(path, None, "no such file or directory")
    out = []
    for root, _dirs, files in sorted(os.walk(path)):
        for name in sorted(files):
            p = Path(root) / name
            st = p.stat()
            out.append((str(p.relative_to(path)), st.st_size, st.st_mtime_ns))
    return out


def source_fingerprint(fmt: str, source: SourceConfig) -> str:
    """16 hex digits identifying (format, resolved path, reader options, file sizes and mtimes)."""
    path = Path(source.path).expanduser().resolve()
    payload = {
        "format": fmt,
        "path": str(path),
        "options": {k: source.options[k] for k in sorted(source.options)},
        "files": _file_signature(path),
    }
    return hashlib.sha256(json.dumps(payload, default=str).encode()).hexdigest()[:16]


def open_source(fmt: str, source: SourceConfig, cache_dir: Path, *, label: str) -> RecordStore:
    """The records of ``source`` as a `RecordStore` under ``cache_dir`` (built on first use).

    ``label`` (e.g. ``"oc20-train"``) names the cache directory and error messages. Raises
    `DataError` (file, record, problem) for unreadable or invalid records, and when the source
    holds no records at all.
    """
    from openjmp.io import read_records

    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", label)
    dest = Path(cache_dir) / f"{safe}-{source_fingerprint(fmt, source)}"
    if (dest / "manifest.json").is_file():
        return RecordStore(dest)
    records = read_records(Path(source.path).expanduser(), fmt, **dict(source.options))
    records = progress.bar(records, f"reading {label}", unit=" records")
    try:
        store = write_store(records, dest, metadata={"label": label, "format": fmt})
    except DataError:
        if (dest / "manifest.json").is_file():  # another process (node, rank) finished it first
            return RecordStore(dest)
        raise
    if len(store) == 0:
        raise DataError(source.path, None, f"{label}: the source holds no records")
    return store
