"""What one generated set is: how to plan its jobs, run one job, and write the native files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WrittenSet:
    """What a set's writer produced: the files (under the set directory) and its counts."""

    files: list[Path]
    counts: dict[str, int]
    notes: dict[str, Any]


@dataclass(frozen=True)
class DemoSet:
    """One demo set.

    ``plan(scale, seed)`` lists picklable jobs (each carrying its own seed); ``run(job)`` is a
    module-level function executed in a worker; ``write(results, directory, seed)`` writes the
    native files into an empty ``directory`` from the results in job order.
    """

    name: str
    role: str  # "pretrain" or "finetune"
    stands_in_for: str
    file_format: str
    units: str
    level_of_theory: Callable[[], str]
    plan: Callable[[float, int], list[Any]]
    run: Callable[[Any], Any]
    write: Callable[[Sequence[Any], Path, int], WrittenSet]


def scaled(n: int, scale: float, minimum: int) -> int:
    """``round(n * scale)``, never below ``minimum``."""
    return max(int(minimum), int(round(n * scale)))


def emt_level() -> str:
    """Provenance string of the EMT labels, e.g. ``"EMT (ase 3.29.0)"``."""
    import ase

    return f"EMT (ase {ase.__version__})"
