"""What the GemNet-OC backbone consumes: the four graphs with their geometry and the
triplet / quadruplet index sets, all batch-global.

Conventions (see `openjmp.graph.batch`): ``edge_index = [source s, target t]``; ``vector`` is the
unit vector from s to t, ``r_t - (r_s + offset @ cell)`` over its length ``distance`` (Å).
Index names follow the authors (``in``/``out`` become ``in_``/``out``): for e2e triplets b->a<-c,
``in_`` is the edge b->a and ``out`` the edge c->a.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from openjmp.graph.batch import Batch, EdgeSet
from openjmp.graph.geometry import edge_vectors
from openjmp.graph.indices import GemNetIndices, build_indices


@dataclass(frozen=True, slots=True)
class GraphGeometry:
    """One graph: edge_index (2, E) int64, distance (E,) Å, vector (E, 3) unit s -> t."""

    edge_index: Tensor
    distance: Tensor
    vector: Tensor

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])


@dataclass(frozen=True, slots=True)
class Triplets:
    """(T,) int64 each: ``in_`` input edge, ``out`` output edge of every triplet (authors' names)."""

    in_: Tensor
    out: Tensor


@dataclass(frozen=True, slots=True)
class Quadruplets:
    """Quadruplets d->b->a<-c (authors' ``get_quadruplets``), (·,) int64 each.

    triplet_in_in / triplet_in_out: main edge d->b / qint edge b->a of the input triplets (T_in,).
    triplet_out_in / triplet_out_out: qint edge b->a / main edge c->a of the output triplets (T_out,).
    trip_in_to_quad / trip_out_to_quad: input / output triplet of every quadruplet (Q,).
    """

    triplet_in_in: Tensor
    triplet_in_out: Tensor
    triplet_out_in: Tensor
    triplet_out_out: Tensor
    trip_in_to_quad: Tensor
    trip_out_to_quad: Tensor

    @property
    def num_quadruplets(self) -> int:
        return int(self.trip_in_to_quad.shape[0])


@dataclass(frozen=True, slots=True)
class GemNetGraph:
    """Everything the backbone needs about one batch besides atom features.

    main is the *symmetrised* main graph; id_swap (E_main,) maps every main edge to its reverse.
    batch (N,) is the structure index of every atom; num_graphs the number of structures.
    """

    num_atoms: int
    num_graphs: int
    batch: Tensor
    main: GraphGeometry
    a2ee2a: GraphGeometry
    qint: GraphGeometry
    a2a: GraphGeometry
    id_swap: Tensor
    trip_e2e: Triplets
    trip_a2e: Triplets
    trip_e2a: Triplets
    quad: Quadruplets


def gemnet_graph(
    batch: Batch,
    pos: Tensor | None = None,
    indices: GemNetIndices | None = None,
    cell: Tensor | None = None,
) -> GemNetGraph:
    """The `GemNetGraph` of a collated batch.

    ``pos`` (N, 3) Å replaces ``batch.pos`` and ``cell`` (B, 3, 3) Å ``batch.cell`` (pass
    tensors that require grad for gradient forces and stress); distances and vectors are
    differentiable functions of both. ``indices`` may be given when already built
    (`openjmp.graph.indices.build_indices`).
    """
    if indices is None:
        indices = build_indices(batch)
    if pos is None:
        pos = batch.pos
    cell = (batch.cell if cell is None else cell).to(pos.dtype)

    def geo(edges: EdgeSet) -> GraphGeometry:
        d, v = edge_vectors(pos, cell, batch.batch, edges)
        return GraphGeometry(edges.index, d, v)

    q = indices.quad
    return GemNetGraph(
        num_atoms=indices.num_atoms,
        num_graphs=batch.num_graphs,
        batch=batch.batch,
        main=geo(indices.main),
        a2ee2a=geo(indices.a2ee2a),
        qint=geo(indices.qint),
        a2a=geo(indices.a2a),
        id_swap=indices.id_swap,
        trip_e2e=Triplets(indices.trip_e2e.in_, indices.trip_e2e.out),
        trip_a2e=Triplets(indices.trip_a2e.in_, indices.trip_a2e.out),
        trip_e2a=Triplets(indices.trip_e2a.in_, indices.trip_e2a.out),
        quad=Quadruplets(
            triplet_in_in=q.triplet_in.in_,
            triplet_in_out=q.triplet_in.out,
            triplet_out_in=q.triplet_out.in_,
            triplet_out_out=q.triplet_out.out,
            trip_in_to_quad=q.trip_in_to_quad,
            trip_out_to_quad=q.trip_out_to_quad,
        ),
    )
