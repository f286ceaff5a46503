"""Checks on `AtomsRecord`s; every failure raises `DataError(source, index, problem)`.

Readers call :func:`validate_record` on what they yield, the calculator on what it is given, so
a bad structure is reported where it enters, never as a traceback from deep inside torch.
"""

from __future__ import annotations

import numpy as np

from openjmp.errors import DataError
from openjmp.records import AtomsRecord

MAX_Z = 118
"""Largest atomic number a record may carry (the model embeds 120 rows, Z-1)."""

DEFAULT_MIN_DISTANCE = 0.1
"""Two atoms closer than this (Å) are treated as overlapping: no real structure has them."""

MAX_COORDINATE = 1e5
"""Å: positions and cell entries beyond ±this are taken to be garbage (no structure spans 10 µm;
the neighbour search overflows its integer cell grid near 1e18 Å and kills the process)."""

_SEARCH_CUTOFF = 1.0  # Å, neighbour search radius of the overlap check (filtered after)


def _finite(a: np.ndarray | None) -> bool:
    return a is None or bool(np.all(np.isfinite(a)))


def check_shapes(rec: AtomsRecord) -> None:
    """Raise if any array has the wrong shape for the record's atom count."""
    n = rec.natoms
    fail = lambda msg: DataError(rec.source, rec.index, msg)  # noqa: E731
    if n == 0:
        raise fail("empty structure (0 atoms)")
    if rec.positions.shape != (n, 3):
        raise fail(f"positions have shape {rec.positions.shape}, expected ({n}, 3)")
    if rec.cell.shape != (3, 3):
        raise fail(f"cell has shape {rec.cell.shape}, expected (3, 3)")
    if rec.pbc.shape != (3,):
        raise fail(f"pbc has shape {rec.pbc.shape}, expected (3,)")
    if rec.tags is not None and rec.tags.shape != (n,):
        raise fail(f"tags have shape {rec.tags.shape}, expected ({n},)")
    if rec.fixed is not None and rec.fixed.shape != (n,):
        raise fail(f"fixed has shape {rec.fixed.shape}, expected ({n},)")
    if rec.forces is not None and rec.forces.shape != (n, 3):
        raise fail(f"forces have shape {rec.forces.shape}, expected ({n}, 3)")
    if rec.stress is not None and rec.stress.shape not in ((6,), (3, 3)):
        raise fail(f"stress has shape {rec.stress.shape}, expected (6,) or (3, 3)")


def check_values(rec: AtomsRecord, max_z: int = MAX_Z) -> None:
    """Raise on NaN/inf positions or labels and on unknown elements."""
    fail = lambda msg: DataError(rec.source, rec.index, msg)  # noqa: E731
    bad = (rec.atomic_numbers < 1) | (rec.atomic_numbers > max_z)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise fail(
            f"unknown element: atomic number {int(rec.atomic_numbers[i])} at atom {i} "
            f"(allowed 1..{max_z})"
        )
    if not _finite(rec.positions):
        raise fail("positions contain NaN or inf")
    if not _finite(rec.cell):
        raise fail("cell contains NaN or inf")
    for name, arr in (("position", rec.positions), ("cell", rec.cell)):
        if arr.size and float(np.abs(arr).max()) > MAX_COORDINATE:
            biggest = float(np.abs(arr).max())
            raise fail(
                f"{name} coordinate {biggest:.3g} Å is beyond ±{MAX_COORDINATE:.0e} Å "
                "(unconverted units or a corrupt value?)"
            )
    if rec.energy is not None and not np.isfinite(rec.energy):
        raise fail(f"energy label is {rec.energy}")
    if not _finite(rec.forces):
        raise fail("forces label contains NaN or inf")
    if not _finite(rec.stress):
        raise fail("stress label contains NaN or inf")
    for name, value in rec.targets.items():
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise fail(f"target {name!r} is NaN or inf")


def coordinates_usable(rec: AtomsRecord) -> bool:
    """Whether positions and cell are finite and within ±`MAX_COORDINATE` (what a neighbour
    search needs; `check_values` reports the problem otherwise)."""
    return all(
        bool(np.all(np.isfinite(a))) and (a.size == 0 or float(np.abs(a).max()) <= MAX_COORDINATE)
        for a in (rec.positions, rec.cell)
    )


def check_cell(rec: AtomsRecord) -> None:
    """Raise if a periodic axis has a zero lattice vector or the periodic cell is singular."""
    fail = lambda msg: DataError(rec.source, rec.index, msg)  # noqa: E731
    if not rec.pbc.any():
        return
    axes = np.flatnonzero(rec.pbc)
    lengths = np.linalg.norm(rec.cell, axis=1)
    for ax in axes:
        if lengths[ax] < 1e-8:
            raise fail(f"periodic axis {'abc'[ax]} has a zero cell vector")
    vecs = rec.cell[axes]
    # Volume (3 axes), area (2) or length (1) spanned by the periodic vectors.
    gram = np.linalg.det(vecs @ vecs.T)
    scale = float(np.prod(lengths[axes] ** 2))
    if gram <= 1e-10 * scale:
        raise fail(f"cell is singular along its periodic axes (cell={rec.cell.tolist()})")


def check_distances(rec: AtomsRecord, min_distance: float = DEFAULT_MIN_DISTANCE) -> None:
    """Raise if two atoms (periodic images included) are closer than ``min_distance`` Å."""
    if rec.natoms < 2 and not rec.pbc.any():
        return
    from vesin import NeighborList

    # vesin bins space by its cutoff: a 0.1 Å search over a slab with vacuum allocates ~10^5
    # bins (7 ms per record); searching 1 Å and filtering costs ~0.1 ms.
    nl = NeighborList(cutoff=max(min_distance, _SEARCH_CUTOFF), full_list=False)
    pbc = rec.pbc
    cell = rec.cell if pbc.any() else np.zeros((3, 3))
    i, j, d = nl.compute(points=rec.positions, box=cell, periodic=pbc, quantities="ijd")
    close = d < min_distance
    i, j, d = i[close], j[close], d[close]
    if len(d):
        k = int(np.argmin(d))
        raise DataError(
            rec.source,
            rec.index,
            f"overlapping atoms: atoms {int(i[k])} and {int(j[k])} are {float(d[k]):.4f} Å apart "
            f"(minimum {min_distance} Å)",
        )


def validate_record(
    rec: AtomsRecord,
    *,
    max_z: int = MAX_Z,
    min_distance: float | None = DEFAULT_MIN_DISTANCE,
) -> AtomsRecord:
    """Run every check on ``rec`` and return it unchanged; raise `DataError` on the first problem.

    ``min_distance=None`` skips the (neighbour-list) overlap check.
    """
    check_shapes(rec)
    check_values(rec, max_z=max_z)
    check_cell(rec)
    if min_distance is not None:
        check_distances(rec, min_distance)
    return rec
