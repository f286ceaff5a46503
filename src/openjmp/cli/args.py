"""Argument types shared by the subcommands: sizes and counts that must be positive.

``type=positive_int`` makes argparse reject ``--max-atoms-per-batch 0`` (or ``-3``, or ``abc``)
with a usage error naming the option, before any work starts, instead of a run that silently
does something else (every structure alone, or nothing at all).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


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
