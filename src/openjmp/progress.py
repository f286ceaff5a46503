"""Progress bars for steps that take more than a few seconds (tqdm, on stderr), one switch.

Shown for: reading a source into a record cache (`openjmp.train.sources`), ``openjmp data
convert``, evaluation batches; training shows Lightning's bar. Off when the command got
``--no-progress`` (`set_enabled(False)`, or the `enabled_as` context) and when the
environment variable ``CI`` is set to a true value (``1``, ``true``, ``yes``), so CI logs stay
readable.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["bar", "enabled", "enabled_as", "set_enabled"]

T = TypeVar("T")
_ENABLED = [True]


def in_ci() -> bool:
    """Whether ``$CI`` says this runs in continuous integration."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on")


def enabled() -> bool:
    """Whether progress bars are shown now (the switch, and not in CI)."""
    return _ENABLED[-1] and not in_ci()


def set_enabled(value: bool) -> None:
    """Turn progress bars on or off for the rest of the process (``--no-progress``)."""
    _ENABLED[-1] = bool(value)


@contextlib.contextmanager
def enabled_as(value: bool) -> Iterator[None]:
    """Progress bars on or off inside the block (a run's ``progress=`` argument)."""
    _ENABLED.append(bool(value) and _ENABLED[-1])
    try:
        yield
    finally:
        _ENABLED.pop()


def bar(
    iterable: Iterable[T],
    desc: str,
    *,
    total: int | None = None,
    unit: str = "it",
    leave: bool = False,
    **kwargs: Any,
) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when progress is `enabled`, else unchanged
    (``leave``: keep the final line, e.g. the record count of a conversion)."""
    if not enabled():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, **kwargs)
