"""Byte-reproducible small-file helpers: npz with fixed zip timestamps, gzip/tar with mtime 0.

Archives normally embed the time they were written; these writers pin it so that the same
corpus seed gives the same file checksums.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np

_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest date a zip entry can hold


def write_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool = False) -> None:
    """Write ``arrays`` as an ``.npz`` readable by `numpy.load` (no pickled objects)."""
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def write_gzip_text(path: Path, text: str) -> None:
    """Write UTF-8 ``text`` gzip-compressed, with no name and mtime 0 in the header."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(text.encode("utf-8"))


def write_tar_bz2(path: Path, members: list[tuple[str, bytes]]) -> None:
    """Write a ``.tar.bz2`` of regular files ``(name, content)``, in the order given."""
    with tarfile.open(path, "w:bz2", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
