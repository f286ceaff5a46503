"""Arguments shared by the subcommands: sizes and counts that must be positive, config
overrides (`add_overrides`), and the structure files that ``predict`` and ``validate`` read
(`read_structures`).

``type=positive_int`` makes argparse reject ``--max-atoms-per-batch 0`` (or ``-3``, or ``abc``)
with a usage error naming the option, before any work starts, instead of a run that silently
does something else (every structure alone, or nothing at all).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _int_at_least(lowest: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < lowest:
            raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
        return value

    parse.__name__ = what
    return parse


positive_int = _int_at_least(1, "a positive whole number")
"""An integer >= 1."""
non_negative_int = _int_at_least(0, "a whole number >= 0")
"""An integer >= 0."""


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_overrides(p: argparse.ArgumentParser, help: str) -> None:
    """``--set KEY=VALUE`` (repeatable) into ``args.overrides``: config fields by dotted path."""
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def read_structures(path: Path) -> list[Any]:
    """Every frame of an ASE-readable file, or a `DataError` naming the file (missing,
    unreadable, or without structures) instead of one of ASE's many exceptions."""
    import ase.io

    from openjmp.errors import DataError

    try:
        frames = ase.io.read(str(path), index=":")
    except FileNotFoundError:
        raise DataError(path, None, "file not found") from None
    except Exception as exc:  # noqa: BLE001 - ASE raises many types for unreadable files
        raise DataError(path, None, f"ASE cannot read it: {exc}") from None
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise DataError(path, None, "no structures in the file")
    return frames
