"""GemNet-OC interaction indices of a batch: what the authors' ``get_graphs_and_indices`` returns.

`build_indices` (batch -> `GemNetIndices`) does, in the authors' order
(``models/gemnet/backbone.py GemNetOCBackbone.get_graphs_and_indices``):

1. symmetrises the directed ``main`` graph and pairs every edge with its reverse (``id_swap``;
   :mod:`openjmp.graph.symmetrize`);
2. ``trip_e2e = get_triplets(main)``: edge-to-edge triplets ``b->a<-c`` of the main graph;
3. ``quad = get_quadruplets(main, qint)``: quadruplets ``d->b->a<-c``;
4. ``trip_a2e = get_mixed_triplets(a2ee2a, main, to_outedge=False, return_agg_idx=True)``: for
   each main edge ``c->a`` the a2ee2a edges ``b->a`` (atom-to-edge interaction);
5. ``trip_e2a = get_mixed_triplets(main, a2ee2a, to_outedge=False, return_agg_idx=True)``: for
   each a2ee2a edge ``c->a`` the main edges ``b->a`` (edge-to-atom interaction);
6. ``target_neighbor_idx = get_inner_idx(edge_index[1])`` for a2ee2a and a2a.

(Both mixed triplet calls use the authors' default ``to_outedge=False``; only the quadruplets'
input triplets use ``to_outedge=True``.)

Conventions: an edge ``c->a`` has source c and target a, ``EdgeSet.index = [source, target]``;
edge vectors point from source to target (`openjmp.graph.geometry.edge_vectors`). Edge numbers
index the graph named in the field's comment. Every "out"-indexed array is sorted by out. The
``*.out_agg`` / ``*_target_neighbor_idx`` fields give each entry's slot in a padded
(num_out, Kmax) layout, as the authors' efficient bilinear layers need. Index dataclasses
support ``x["in"]`` / ``x["out"]`` ... access so code written against the authors' dicts reads
the same (``in`` is a keyword, hence the attribute ``in_``).

Shapes: E = main edges (symmetrised), E_a2a, E_ae, E_q the other graphs' edges, T / T_ae / T_ea
the e2e / a2e / e2a triplets, Tq_in / Tq_out the quadruplets' input / output triplets, Q the
quadruplets, N the atoms. All index tensors are int64 on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from openjmp.graph.batch import Batch, EdgeSet
from openjmp.graph.ragged import inner_index
from openjmp.graph.symmetrize import symmetrize_edges
from openjmp.graph.triplets import mixed_triplets, quadruplets, triplets


class _ByName:
    """``obj["in"]`` -> ``obj.in_``, ``obj["out"]`` -> ``obj.out``: the authors' dict access."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Tensor:
        return getattr(self, "in_" if key == "in" else key)


@dataclass(frozen=True, slots=True)
class TripletIndices(_ByName):
    """Triplets: pairs (input edge, output edge) sharing an atom, with padded slots.

    Attributes:
        in_: (T,) input edge of each triplet (``b->a``; which graph: see `GemNetIndices`).
        out: (T,) output edge of each triplet (``c->a``), sorted.
        out_agg: (T,) slot of the triplet among the triplets of its output edge (0, 1, ...).
    """

    in_: Tensor
    out: Tensor
    out_agg: Tensor


@dataclass(frozen=True, slots=True)
class TripletPair(_ByName):
    """Triplets of a quadruplet, without slots.

    Attributes:
        in_: (Tq,) input edge of each triplet. out: (Tq,) output edge, sorted.
    """

    in_: Tensor
    out: Tensor


@dataclass(frozen=True, slots=True)
class QuadrupletIndices(_ByName):
    """Quadruplets ``d->b->a<-c`` (c->a, d->b main edges; b->a a qint edge; c != d as images).

    Attributes:
        triplet_in: input triplets ``d->b->a``: ``in_`` (Tq_in,) main edge d->b,
            ``out`` (Tq_in,) qint edge b->a (sorted).
        triplet_out: output triplets ``c->a<-b``: ``in_`` (Tq_out,) qint edge b->a,
            ``out`` (Tq_out,) main edge c->a (sorted).
        out: (Q,) main edge c->a of each quadruplet, sorted.
        trip_in_to_quad: (Q,) input triplet (row of ``triplet_in``) of each quadruplet.
        trip_out_to_quad: (Q,) output triplet (row of ``triplet_out``) of each quadruplet.
        out_agg: (Q,) slot of the quadruplet among the quadruplets of its output edge.
    """

    triplet_in: TripletPair
    triplet_out: TripletPair
    out: Tensor
    trip_in_to_quad: Tensor
    trip_out_to_quad: Tensor
    out_agg: Tensor


@dataclass(frozen=True, slots=True)
class GemNetIndices:
    """Everything GemNet-OC's interaction blocks index with, for one batch.

    Attributes:
        main: symmetrised main graph (E edges), sorted by (target, source, offset).
        id_swap: (E,) index of each main edge's reverse (``id_swap[id_swap] == arange(E)``).
        a2a: atom-to-atom graph (E_a2a), sorted by target, as in the batch.
        a2ee2a: atom-to-edge / edge-to-atom graph (E_ae), sorted by target, as in the batch.
        qint: quadruplet-interaction graph (E_q), sorted by target, as in the batch.
        trip_e2e: e2e triplets of main: ``in_`` main edge b->a, ``out`` main edge c->a (T).
        trip_a2e: a2e triplets: ``in_`` a2ee2a edge b->a, ``out`` main edge c->a (T_ae).
        trip_e2a: e2a triplets: ``in_`` main edge b->a, ``out`` a2ee2a edge c->a (T_ea).
        quad: quadruplet indices (`QuadrupletIndices`).
        a2ee2a_target_neighbor_idx: (E_ae,) slot of each a2ee2a edge among its target's edges.
        a2a_target_neighbor_idx: (E_a2a,) slot of each a2a edge among its target's edges.
        num_atoms: N.
    """

    main: EdgeSet
    id_swap: Tensor
    a2a: EdgeSet
    a2ee2a: EdgeSet
    qint: EdgeSet
    trip_e2e: TripletIndices
    trip_a2e: TripletIndices
    trip_e2a: TripletIndices
    quad: QuadrupletIndices
    a2ee2a_target_neighbor_idx: Tensor
    a2a_target_neighbor_idx: Tensor
    num_atoms: int

    def counts(self) -> dict[str, int]:
        """Edge, triplet and quadruplet counts, named as the reference fixtures' ``n_*`` entries."""
        return {
            "n_edges_main": self.main.num_edges,
            "n_edges_a2ee2a": self.a2ee2a.num_edges,
            "n_edges_qint": self.qint.num_edges,
            "n_edges_a2a": self.a2a.num_edges,
            "n_triplets": int(self.trip_e2e.out.shape[0]),
            "n_quadruplets": int(self.quad.out.shape[0]),
            "n_triplets_a2e": int(self.trip_a2e.out.shape[0]),
            "n_triplets_e2a": int(self.trip_e2a.out.shape[0]),
        }


def _trip(d: dict[str, Tensor]) -> TripletIndices:
    return TripletIndices(in_=d["in"], out=d["out"], out_agg=d["out_agg"])


def _check_sorted(name: str, edges: EdgeSet) -> None:
    t = edges.index[1]
    if t.shape[0] > 1 and bool((t[1:] < t[:-1]).any()):
        raise ValueError(
            f"graph {name!r} must be sorted by target atom (as build_graph_sample makes it)"
        )


def build_indices(batch: Batch) -> GemNetIndices:
    """Symmetrise ``batch``'s main graph and build every GemNet-OC index (see the module docstring).

    ``batch.edges`` must hold ``main`` (directed), ``a2a``, ``a2ee2a`` and ``qint``, the last
    three sorted by target (as `build_graph_sample` and `collate` leave them).
    """
    n = batch.num_atoms
    for name in ("a2a", "a2ee2a", "qint"):
        _check_sorted(name, batch.edges[name])
    main, id_swap = symmetrize_edges(batch.edges["main"], n)
    a2a, a2ee2a, qint = batch.edges["a2a"], batch.edges["a2ee2a"], batch.edges["qint"]
    q = quadruplets(main, qint, n)
    return GemNetIndices(
        main=main,
        id_swap=id_swap,
        a2a=a2a,
        a2ee2a=a2ee2a,
        qint=qint,
        trip_e2e=_trip(triplets(main, n)),
        trip_a2e=_trip(mixed_triplets(a2ee2a, main, n, to_outedge=False, return_agg_idx=True)),
        trip_e2a=_trip(mixed_triplets(main, a2ee2a, n, to_outedge=False, return_agg_idx=True)),
        quad=QuadrupletIndices(
            triplet_in=TripletPair(in_=q["triplet_in"]["in"], out=q["triplet_in"]["out"]),
            triplet_out=TripletPair(in_=q["triplet_out"]["in"], out=q["triplet_out"]["out"]),
            out=q["out"],
            trip_in_to_quad=q["trip_in_to_quad"],
            trip_out_to_quad=q["trip_out_to_quad"],
            out_agg=q["out_agg"],
        ),
        a2ee2a_target_neighbor_idx=inner_index(a2ee2a.index[1], n),
        a2a_target_neighbor_idx=inner_index(a2a.index[1], n),
        num_atoms=n,
    )


__all__ = [
    "GemNetIndices",
    "QuadrupletIndices",
    "TripletIndices",
    "TripletPair",
    "build_indices",
]
