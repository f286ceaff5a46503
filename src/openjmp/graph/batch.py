"""Graph samples and batches: the data structure between graph construction and the model.

Conventions, written once here:

* An edge ``(s, t, offset)`` connects source (neighbour) atom ``s`` to target (centre) atom
  ``t``. ``edge_index = [source, target]`` with shape (2, E), int64.
* ``cell_offset`` (E, 3) int64 is the integer image of the *source*: the edge vector is
  ``r_t - (r_s + cell_offset @ cell)``, pointing from source to target; its length is the
  distance. Reversing an edge negates its offset; the distance stays.
* Unit vectors ``V_st`` used by the model are that edge vector divided by the distance.
* Within every graph, edges are sorted by target atom (stable: ties keep the order of
  construction), as GemNet-OC's inner indices require.
* Graph names are the authors': ``main``, ``a2a`` (atom-to-atom, the interaction graph built
  first), ``a2ee2a`` (atom-to-edge / edge-to-atom) and ``qint`` (quadruplet interaction).
  ``main`` in a `GraphSample` / `Batch` is the *directed*, not yet symmetrised, nearest-k graph;
  symmetrisation happens in :mod:`openjmp.graph.indices`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

GRAPH_NAMES: tuple[str, ...] = ("main", "a2ee2a", "qint", "a2a")
"""The four GemNet-OC graphs, in the order of the authors' max-neighbour tuples."""


@dataclass(frozen=True, slots=True)
class EdgeSet:
    """Directed edges of one graph.

    Attributes:
        index: (2, E) int64, ``[source, target]``, sorted by target.
        cell_offset: (E, 3) int64, image of the source atom (see module docstring).
    """

    index: Tensor
    cell_offset: Tensor

    @property
    def num_edges(self) -> int:
        return int(self.index.shape[1])


@dataclass(frozen=True, slots=True)
class GraphSample:
    """One structure with its four graphs, ready to collate.

    Attributes:
        atomic_numbers: (N,) int64.
        pos: (N, 3) float, Å.
        cell: (3, 3) float, Å (the 1000 Å dummy cell for molecules in mixed batches; zeros
            allowed for molecules whose batches never mix with periodic data).
        tags: (N,) int64.
        fixed: (N,) bool.
        edges: graph name -> `EdgeSet`, local atom indices 0..N-1.
        energy: () float eV or None; forces: (N, 3) eV/Å or None.
        targets: other per-structure targets, name -> (k,) or () tensor.
        dataset: dataset / task name.
        stress: (6,) eV/Å³ Voigt (xx, yy, zz, yz, xz, xy) or None.
    """

    atomic_numbers: Tensor
    pos: Tensor
    cell: Tensor
    tags: Tensor
    fixed: Tensor
    edges: dict[str, EdgeSet]
    energy: Tensor | None = None
    forces: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    dataset: str = ""
    stress: Tensor | None = None

    @property
    def natoms(self) -> int:
        return int(self.atomic_numbers.shape[0])


@dataclass(frozen=True, slots=True)
class Batch:
    """Many structures as one disconnected graph.

    Attributes:
        atomic_numbers: (N,) int64, all atoms of the batch.
        pos: (N, 3) float, Å.
        cell: (B, 3, 3) float, Å, one per structure.
        batch: (N,) int64, structure index of every atom.
        natoms: (B,) int64, atoms per structure.
        tags: (N,) int64; fixed: (N,) bool.
        edges: graph name -> `EdgeSet` with batch-global atom indices (offset per structure).
        energy: (B,) eV or None (None if any sample lacks it); forces: (N, 3) eV/Å or None.
        targets: name -> (B, ...) tensors present in every sample.
        datasets: dataset name of every structure.
        stress: (B, 6) eV/Å³ Voigt or None (None if any sample lacks it).
    """

    atomic_numbers: Tensor
    pos: Tensor
    cell: Tensor
    batch: Tensor
    natoms: Tensor
    tags: Tensor
    fixed: Tensor
    edges: dict[str, EdgeSet]
    energy: Tensor | None = None
    forces: Tensor | None = None
    targets: dict[str, Tensor] = field(default_factory=dict)
    datasets: tuple[str, ...] = ()
    stress: Tensor | None = None

    @property
    def num_graphs(self) -> int:
        return int(self.natoms.shape[0])

    @property
    def num_atoms(self) -> int:
        return int(self.atomic_numbers.shape[0])

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """Move to a device; floating tensors (positions, cell, labels) optionally to ``dtype``."""

        def mv(t: Tensor) -> Tensor:
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device)

        def mv_label(t: Tensor | None) -> Tensor | None:
            return None if t is None else mv(t)

        return Batch(
            atomic_numbers=mv(self.atomic_numbers),
            pos=mv(self.pos),
            cell=mv(self.cell),
            batch=mv(self.batch),
            natoms=mv(self.natoms),
            tags=mv(self.tags),
            fixed=mv(self.fixed),
            edges={k: EdgeSet(mv(e.index), mv(e.cell_offset)) for k, e in self.edges.items()},
            energy=mv_label(self.energy),
            forces=mv_label(self.forces),
            targets={k: mv(v) for k, v in self.targets.items()},
            datasets=self.datasets,
            stress=mv_label(self.stress),
        )
