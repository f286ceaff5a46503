"""Identical structures in one data set: find them, and keep each group in one part of a split.

Two records are identical when their atomic numbers, positions and cell (rounded to 1e-5 Å)
and periodicity are (`structure_key`). A random split would put copies of one structure in
train and test, so the test metric would measure memory. `keep_together` moves every copy to
the part holding the group's first record (lowest index); data without duplicates keeps its
split exactly (the authors' RandomState(42) indices). Parts a benchmark fixes (MatBench's
official test folds, Transition-1x's own groups, rMD17's official index files) are not changed:
groups across them are counted and reported instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from openjmp.records import AtomsRecord

__all__ = ["DuplicateReport", "duplicate_groups", "keep_together", "structure_key"]


def structure_key(rec: AtomsRecord) -> bytes:
    """A 16-byte digest of Z, positions and cell (rounded to 1e-5 Å) and pbc."""
    h = hashlib.blake2b(digest_size=16)
    h.update(rec.atomic_numbers.tobytes())
    h.update(np.round(rec.positions, 5).tobytes())
    h.update(np.round(rec.cell, 5).tobytes())
    h.update(rec.pbc.tobytes())
    return h.digest()


def duplicate_groups(keys: Sequence[bytes]) -> list[np.ndarray]:
    """Record indices sharing a key, one int64 array (sorted) per key held by several records."""
    where: dict[bytes, list[int]] = {}
    for i, k in enumerate(keys):
        where.setdefault(k, []).append(i)
    return [np.asarray(v, dtype=np.int64) for v in where.values() if len(v) > 1]


@dataclass
class DuplicateReport:
    """``groups``: groups of identical structures; ``records``: records in them; ``moved``:
    records moved to their group's part; ``across_fixed``: groups left across parts a
    benchmark fixes."""

    groups: int = 0
    records: int = 0
    moved: int = 0
    across_fixed: int = 0

    def describe(self) -> str:
        if not self.groups:
            return "no identical structures"
        text = (
            f"{self.records} records are copies in {self.groups} groups of identical structures; "
            f"{self.moved} moved so that each group lies in one part"
        )
        if self.across_fixed:
            text += (
                f"; {self.across_fixed} groups span parts the benchmark fixes (left as they are)"
            )
        return text


def keep_together(
    splits: dict[str, dict[str, np.ndarray]],
    groups: Iterable[np.ndarray],
    fixed: Iterable[str] = (),
) -> tuple[dict[str, dict[str, np.ndarray]], DuplicateReport]:
    """``splits`` with the copies of each group moved to the part of the group's first member
    (in every split of the set); parts named in ``fixed`` are never changed. Returns the new
    split set and what was done. Order within parts is kept; moved records go to the end."""
    groups = list(groups)
    fixed = set(fixed)
    report = DuplicateReport(groups=len(groups), records=int(sum(len(g) for g in groups)))
    across_fixed: set[int] = set()
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, parts in splits.items():
        part_of: dict[int, str] = {}
        for part, idx in parts.items():
            for i in idx.tolist():
                part_of[i] = part
        removed: dict[str, set[int]] = {p: set() for p in parts}
        added: dict[str, list[int]] = {p: [] for p in parts}
        for g, members in enumerate(groups):
            placed = [(int(i), part_of[int(i)]) for i in members if int(i) in part_of]
            involved = {p for _, p in placed}
            if len(involved) <= 1:
                continue
            if involved & fixed:
                across_fixed.add(g)
                continue
            target = placed[0][1]  # the part of the first (lowest-index) placed member
            for i, p in placed:
                if p != target:
                    removed[p].add(i)
                    added[target].append(i)
                    report.moved += 1
        out[name] = {
            p: np.concatenate(
                [idx[~np.isin(idx, list(removed[p]))], np.asarray(added[p], dtype=np.int64)]
            ).astype(np.int64)
            for p, idx in parts.items()
        }
    report.across_fixed = len(across_fixed)
    return out, report
