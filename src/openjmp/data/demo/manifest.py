"""The corpus manifest (``manifest.json``): what was made, with which tools, and file checksums.

Written last, atomically, once every set is in place: its presence means the corpus is
complete. Paths inside are relative to the corpus directory, with ``/`` separators.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from openjmp.errors import DataError

MANIFEST_NAME = "manifest.json"
FORMAT = "openjmp-demo-corpus"
FORMAT_VERSION = 1
"""Bumped whenever a generator changes what a given (scale, seed) produces."""


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entries(root: Path, files: list[Path]) -> dict[str, dict[str, Any]]:
    """``{relative path: {"bytes": n, "sha256": hex}}`` for ``files`` under ``root``, sorted."""
    out = {}
    for p in sorted(files):
        rel = p.relative_to(root).as_posix()
        out[rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
    return out


def generator_versions() -> dict[str, str]:
    """Versions of the tools that produce the labels and files."""
    out = {"python": platform.python_version()}
    for pkg in ("openjmp", "ase", "tblite", "numpy", "h5py", "lmdb"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file in the same directory and `os.replace` (mode 644)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def read_manifest(path: Path) -> dict[str, Any]:
    """Load a manifest; `DataError` if it is not one."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(path, None, f"cannot read the demo manifest: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise DataError(path, None, f"not an openjmp demo manifest (format != {FORMAT!r})")
    return doc


def verify_manifest(path: Path, checksums: bool = True) -> list[str]:
    """Problems found with the files a manifest lists (missing, size or checksum); [] if none."""
    doc = read_manifest(path)
    root = path.parent
    problems = []
    for name, entry in doc.get("sets", {}).items():
        for rel, info in entry.get("files", {}).items():
            p = root / rel
            if not p.is_file():
                problems.append(f"{name}: {rel} is missing")
            elif p.stat().st_size != info["bytes"]:
                problems.append(
                    f"{name}: {rel} has {p.stat().st_size} bytes, expected {info['bytes']}"
                )
            elif checksums and sha256(p) != info["sha256"]:
                problems.append(f"{name}: {rel} checksum differs")
    return problems
