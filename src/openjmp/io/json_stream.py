"""Stream the elements of a top-level JSON array without loading the whole file.

QMOF's ``qmof_structure_data.json`` is a multi-GB list; :func:`iter_json_array` decodes one
element at a time with `json.JSONDecoder.raw_decode` over a growing text buffer (plain or
gzipped files). Errors name the file and the element number.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openjmp.errors import DataError

__all__ = ["iter_json_array"]

_WS = " \t\r\n"


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_array(path: str | Path, chunk: int = 1 << 20) -> Iterator[Any]:
    """Yield each element of the JSON array stored in ``path``."""
    path = Path(path)
    decoder = json.JSONDecoder()
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise DataError(path, None, f"cannot open ({exc})") from None
    with fh:
        buf, pos, eof, count = "", 0, False, 0

        def more(size: int) -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            try:
                data = fh.read(size)
            except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
                raise DataError(path, count, f"cannot read ({exc})") from None
            if not data:
                eof = True
                return False
            buf, pos = buf[pos:] + data, 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in _WS:
                    pos += 1
                if pos < len(buf) or not more(chunk):
                    return

        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise DataError(path, None, "not a JSON array (expected '[' at the start)")
        pos += 1
        skip_ws()
        if pos < len(buf) and buf[pos] == "]":
            return
        while True:
            skip_ws()
            try:
                obj, end = decoder.raw_decode(buf, pos)
            except RecursionError:
                raise DataError(path, count, "JSON nested too deeply") from None
            except json.JSONDecodeError as exc:
                # An element cut by the buffer end: read as much again (no quadratic re-parsing).
                if more(max(chunk, len(buf) - pos)):
                    continue
                raise DataError(path, count, f"invalid JSON ({exc.msg})") from None
            if end == len(buf) and more(chunk):  # a number at the end may go on
                continue
            yield obj
            count += 1
            pos = end
            skip_ws()
            if pos >= len(buf):
                raise DataError(path, count, "file ends inside the array (no closing ']')")
            if buf[pos] == "]":
                return
            if buf[pos] != ",":
                raise DataError(
                    path, count, f"expected ',' or ']' after element, found {buf[pos]!r}"
                )
            pos += 1
