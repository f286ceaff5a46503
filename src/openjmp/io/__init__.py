"""File formats -> `AtomsRecord`: the only place units and key names are converted.

``read_records(path, fmt=None, **opts)`` yields the records of any supported source in eV, Å,
eV/Å, validated. The format is one of `FORMATS` (the literal dispatch table below) or is
detected from the path (and, for HDF5 and npz files, from the names inside) where that is
unambiguous. Every reader takes ``validate`` (default True) and ``on_error`` (a callback that
receives each `DataError` instead of it being raised) plus its own options, listed in its module.

Errors: by default a reader raises the first `DataError` (file, record, problem), so that
training and ``openjmp data convert`` stop at the first bad record rather than learn from or
store around it. ``openjmp data check`` passes ``on_error`` to collect every bad record in one
pass; a problem after which a reader cannot go on (a corrupt or truncated file, a wrong layout)
is raised in both modes. Readers raise nothing but `DataError` on any input (tests/fuzz).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from openjmp.errors import DataError
from openjmp.io import (
    ani1x,
    ase_files,
    matbench,
    md_npz,
    oc20_extxyz,
    ocp_lmdb,
    qm9,
    qmof,
    spice,
    transition1x,
)
from openjmp.records import AtomsRecord

__all__ = ["FORMATS", "detect_format", "read_records"]

FORMATS: dict[str, Callable[..., Iterator[AtomsRecord]]] = {
    "ocp_lmdb": ocp_lmdb.read,  # OC20 / OC22 S2EF and IS2RE LMDBs (pickled PyG Data)
    "oc20_extxyz": oc20_extxyz.read,  # OC20 raw K.extxyz.xz + K.txt.xz shards
    "ani1x": ani1x.read,  # ani1x-release.h5 (Hartree)
    "transition1x": transition1x.read,  # Transition1x.h5 (eV)
    "qm9": qm9.read,  # dsgdb9nsd.xyz.tar.bz2, a directory of its .xyz files, or one file
    "md_npz": md_npz.read,  # rMD17 and MD22 / sGDML .npz (kcal/mol)
    "rmd17": md_npz.read,
    "md22": md_npz.read,
    "spice": spice.read,  # SPICE HDF5 (Hartree, bohr, gradients)
    "matbench": matbench.read,  # matbench_<task>.json.gz
    "qmof": qmof.read,  # qmof_database/ (qmof.json + qmof_structure_data.json)
    "ase": ase_files.read,  # extxyz, traj, ASE db, any format ase.io reads
}
"""Format name -> reader. Each reader: ``read(path, *, validate, on_error, **options)``."""

_QM9_FILE = re.compile(r"dsgdb9nsd_\d+\.xyz$")


def read_records(path: str | Path, fmt: str | None = None, **opts: Any) -> Iterator[AtomsRecord]:
    """Records of ``path`` in format ``fmt`` (detected when None); options go to the reader."""
    _not_empty(Path(path))
    fmt = detect_format(path) if fmt is None else fmt
    if fmt not in FORMATS:
        raise DataError(path, None, f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    reader = FORMATS[fmt]
    accepted = [p for p in inspect.signature(reader).parameters if p != "path"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise DataError(
            path, None, f"format {fmt!r} has no option {unknown}; its options: {accepted}"
        )
    return reader(path, **opts)


def _h5_kind(path: Path) -> str:
    from openjmp.io._h5 import is_group, member, names, open_h5

    with open_h5(path) as f:
        keys = names(f, path, None)
        if set(keys) & {"train", "val", "test", "data"}:
            return "transition1x"
        for name in sorted(keys)[:1]:
            group = member(f, name, path, name)
            if is_group(group):
                inner = set(names(group, path, name))
                if "coordinates" in inner:
                    return "ani1x"
                if "conformations" in inner:
                    return "spice"
    raise DataError(
        path, None, "HDF5 file is neither ANI-1x, Transition-1x nor SPICE; pass a format"
    )


def _not_empty(p: Path) -> None:
    """`DataError` for an empty file or directory (before any reader or format guess)."""
    try:
        if p.is_file() and p.stat().st_size == 0:
            raise DataError(p, None, "the file is empty (0 bytes)")
        if p.is_dir() and not any(p.iterdir()):
            raise DataError(p, None, "the directory is empty")
    except OSError as exc:
        raise DataError(p, None, f"cannot read ({exc.strerror})") from None


def detect_format(path: str | Path) -> str:
    """The `FORMATS` name for ``path``; `DataError` when it cannot be told unambiguously."""
    p = Path(path)
    if not p.exists():
        raise DataError(p, None, "file or directory not found")
    _not_empty(p)
    name = p.name.lower()
    if p.is_dir():
        if (p / qmof.PROPERTIES).is_file():
            return "qmof"
        if any(p.glob("*.lmdb")):
            return "ocp_lmdb"
        if any(p.glob("dsgdb9nsd_*.xyz")):
            return "qm9"
        if any(p.glob("*.extxyz.xz")) and any(p.glob("*.txt.xz")):
            return "oc20_extxyz"
        raise DataError(p, None, "cannot tell the format of this directory; pass a format")
    if name.endswith(".lmdb"):
        return "ocp_lmdb"
    if name.endswith((".h5", ".hdf5")):
        return _h5_kind(p)
    if name.endswith(".npz"):
        return "md_npz"
    if name in (qmof.PROPERTIES, qmof.STRUCTURES):
        return "qmof"
    if name.startswith("matbench_") and name.endswith((".json", ".json.gz")):
        return "matbench"
    if _QM9_FILE.search(name) or ("dsgdb9nsd" in name and ".tar" in name):
        return "qm9"
    if name.endswith(".extxyz.xz"):
        stem = p.name.split(".")[0]
        if (p.parent / f"{stem}.txt.xz").is_file():
            return "oc20_extxyz"
    from ase.io.formats import filetype, ioformats

    try:
        guess = filetype(str(p), read=True)
    except Exception:
        guess = None
    if guess not in ioformats or not ioformats[guess].can_read:
        raise DataError(p, None, "cannot tell the format of this file; pass a format")
    return "ase"
