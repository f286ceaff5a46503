"""How big a structure's graph will be, estimated before anything is built; which atoms it leaves
without neighbours.

The neighbour search returns every (source, target, image) pair within the cutoff; its memory
and time grow with that count, and a structure with atoms crowded into a small cell (a wrong
unit, a cell 10x too small) makes it explode: 300 atoms in a 5 Å box at 12 Å is ~5 million pairs,
gigabytes of memory before the a2a cap (``max_neighbors``) thins them. `estimate_edges` predicts
the pair count from the atom count, the space the atoms occupy and the cutoff, in O(N);
`check_graph_size` stops such a structure with a `DataError` that says the estimate and how to
raise the limit.

Estimate: pairs ≈ N · ρ · V_nb, with ρ the atom density and V_nb the part of the cutoff sphere
that holds atoms. Along periodic axes space is filled (ρ uses the cell's volume, area or
length); along the others the atoms occupy their extent L (plus 1 Å), and the sphere is cut to
a slab, rod or box of that thickness: each such direction multiplies the sphere's volume by
min(1, ¾ (L + 1 Å) / r_c) (exact for thin slabs, within 1.8x for small clusters). A molecule
has at most N (N − 1) pairs. Real structures come out within a factor of 2 (tests compare the
estimate with the pairs the search finds).

The limit (`DEFAULT_MAX_EDGES`, 3 million directed pairs, ~0.5 GB in the search) is far above
what JMP's data sets need: OC20/OC22 slabs of ~200 atoms at 12 Å have ~7e4, MatBench crystals
of ~400 atoms at 12 Å ~3e5, the densest ~500-atom QMOF frameworks at 19 Å ~1.5e6.
Raise it per call (``max_edges=``), per graph setting (``GraphSpec.max_edges``, config
``graph.max_edges``) or for the whole process with the environment variable
``OPENJMP_MAX_EDGES``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from openjmp.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_MAX_EDGES",
    "MAX_EDGES_ENV",
    "EdgeEstimate",
    "check_graph_size",
    "default_max_edges",
    "estimate_edges",
    "neighbour_counts",
]

DEFAULT_MAX_EDGES = 3_000_000
"""Candidate pairs (directed) above which a graph is refused unless the limit is raised."""
MAX_EDGES_ENV = "OPENJMP_MAX_EDGES"
"""Environment variable that sets the limit for the whole process (a positive integer)."""
_PAD = 1.0  # Å added to every non-periodic extent (a planar molecule still has thickness)


@dataclass(frozen=True)
class EdgeEstimate:
    """``edges``: estimated directed pairs within the cutoff; ``per_atom``: neighbours per atom;
    ``volume``: Å³ the atoms occupy (per cell along periodic axes); ``natoms``, ``cutoff``."""

    edges: float
    per_atom: float
    volume: float
    natoms: int
    cutoff: float

    def describe(self) -> str:
        return (
            f"about {self.edges:,.0f} edges within the {self.cutoff:g} Å cutoff ({self.natoms} "
            f"atoms in {self.volume:,.0f} Å³, ~{self.per_atom:,.0f} neighbours per atom)"
        )


def _orthonormal_complement(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors orthogonal to the rows of ``vectors`` (and to each other)."""
    if len(vectors) == 0:
        return np.eye(3)
    if len(vectors) == 3:
        return np.zeros((0, 3))
    _, _, vt = np.linalg.svd(vectors)
    return vt[len(vectors) :]


def estimate_edges(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> EdgeEstimate:
    """Estimated size of the neighbour list of one structure (see the module docstring).

    ``positions`` (N, 3) Å, ``cell`` (3, 3) Å (rows), ``pbc`` (3,) bool, ``cutoff`` Å.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    n = len(pos)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
    vecs = cell[pbc]
    if len(vecs) == 3:
        spanned = abs(float(np.linalg.det(vecs)))
    elif len(vecs) == 2:
        spanned = float(np.linalg.norm(np.cross(vecs[0], vecs[1])))
    elif len(vecs) == 1:
        spanned = float(np.linalg.norm(vecs[0]))
    else:
        spanned = 1.0
    free = _orthonormal_complement(vecs) if len(vecs) else np.eye(3)
    extents = np.ptp(pos @ free.T, axis=0) + _PAD if n else np.full(len(free), _PAD)
    volume = max(spanned, 1e-12) * float(np.prod(extents))
    sphere = 4.0 / 3.0 * math.pi * cutoff**3
    cut = float(np.prod(np.minimum(1.0, 0.75 * extents / cutoff)))
    per_atom = n / volume * sphere * cut
    if not pbc.any():
        per_atom = min(per_atom, max(n - 1, 0))
    return EdgeEstimate(
        edges=n * per_atom, per_atom=per_atom, volume=volume, natoms=n, cutoff=float(cutoff)
    )


def default_max_edges() -> int:
    """The process-wide limit: ``$OPENJMP_MAX_EDGES`` when set, else `DEFAULT_MAX_EDGES`."""
    raw = os.environ.get(MAX_EDGES_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_EDGES
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_EDGES_ENV}={raw!r}: give a positive number of edges")
    return value


def check_graph_size(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    max_edges: int | None = None,
    source: object = None,
    index: object = None,
) -> EdgeEstimate:
    """Return the estimate; `DataError` naming the structure when it exceeds ``max_edges``
    (None: `default_max_edges`)."""
    limit = default_max_edges() if max_edges is None else int(max_edges)
    est = estimate_edges(positions, cell, pbc, cutoff)
    if est.edges > limit:
        raise DataError(
            source,
            index,
            f"graph too large: {est.describe()}, over the limit of {limit:,}. Atoms this "
            "crowded usually mean a wrong cell or length unit (bohr read as Å?). To build it "
            f"anyway, raise the limit: max_edges= (GraphSpec.max_edges, config graph.max_edges) "
            f"or the environment variable {MAX_EDGES_ENV}",
        )
    return est


def neighbour_counts(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
    *,
    cap: int = 2,
    near: float = 3.0,
) -> np.ndarray:
    """(N,) neighbours of each atom within ``cutoff`` Å (periodic images included), counted up
    to ``cap``: 0 marks an isolated atom (it gets no messages; its force is always 0), and a
    structure whose counts never reach 2 has no triplets (GemNet-OC's triplet interaction is
    empty: a diatomic, or atoms far apart).

    Searches ``min(cutoff, near)`` first (cheap: bonded neighbours) and the full cutoff only
    when that leaves an atom without neighbours or no atom with two.
    """
    from openjmp.graph.neighbors import candidate_pairs

    n = len(np.asarray(positions).reshape(-1, 3))
    counts = np.zeros(n, dtype=np.int64)
    for radius in dict.fromkeys((min(cutoff, near), cutoff)):
        pairs = candidate_pairs(positions, cell, pbc, radius)
        counts = np.minimum(np.bincount(pairs.target.numpy(), minlength=n), cap)
        if n == 0 or (counts.min() > 0 and counts.max() >= min(cap, 2)):
            break
    return counts
