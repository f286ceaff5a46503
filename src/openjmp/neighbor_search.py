"""Half neighbour lists from vesin, safe for any finite input: the one place openjmp calls vesin.

vesin (0.6) caps the number of cells of its cell list; for a non-periodic point set whose
bounding box is thin along one axis and wide along the others (one atom a few hundred Å away
from a molecule, found by the reader fuzzer), the capped grid gets zero cells along the thin
axis and the process dies of SIGFPE inside vesin. When the grid would be that large, two ghost
points make the bounding box a cube (every axis then keeps at least one cell) and the pairs
they form are dropped: the result is the same list, only the search grid differs.
"""

from __future__ import annotations

import numpy as np

_CELLS_WITHOUT_GHOSTS = 50_000
"""Below this many cutoff-sized cells in the bounding box vesin's grid is not capped (it failed
only from ~1e5 on, with a thin axis)."""


def half_neighbor_list(
    points: np.ndarray,
    box: np.ndarray,
    periodic: np.ndarray | list[bool],
    cutoff: float,
    quantities: str = "ijSd",
    *,
    n_threads: int = 1,
) -> tuple[np.ndarray, ...]:
    """Each pair within ``cutoff`` once: vesin's ``compute(points, box, periodic,
    quantities)`` (Å, rows of ``box`` are lattice vectors; zero box when nothing is periodic)."""
    from vesin import NeighborList

    pts = np.ascontiguousarray(points, dtype=np.float64)
    n = len(pts)
    pbc = [bool(p) for p in np.asarray(periodic, dtype=bool).reshape(3)]
    if not any(pbc) and n:
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        extent = hi - lo
        cells = np.prod(np.maximum(1.0, np.ceil(extent / cutoff)))
        if cells > _CELLS_WITHOUT_GHOSTS:
            mid, half = (lo + hi) / 2, float(extent.max()) / 2 + cutoff
            pts = np.concatenate([pts, [mid - half, mid + half]])
    nl = NeighborList(cutoff=float(cutoff), full_list=False, n_threads=n_threads)
    out = nl.compute(points=pts, box=np.asarray(box, np.float64), periodic=pbc,
                     quantities=quantities)  # fmt: skip
    if len(pts) == n:
        return tuple(out)
    i, j = out[quantities.index("i")], out[quantities.index("j")]
    real = (i < n) & (j < n)
    return tuple(q[real] for q in out)
