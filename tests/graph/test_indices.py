"""GemNet-OC indices against brute-force enumeration on a small hand-built batch.

The batch mixes a one-atom triclinic cell (every neighbour is an image of the atom itself, so
"same atom" must be told apart by cell offsets), a two-atom periodic cell with tags 0 and 1
(qint differs from main) and a small molecule. For each index set the brute force loops over
all edge pairs / triples with the definitions of the authors' ``get_triplets``,
``get_mixed_triplets`` and ``get_quadruplets`` written out, and the sets must be equal; the
``out_agg`` / inner indices must enumerate 0..n-1 within every output edge / target atom.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np
import pytest
import torch

from openjmp.graph.batch import EdgeSet
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.geometry import edge_vectors
from openjmp.graph.indices import build_indices
from openjmp.graph.spec import GraphSpec
from openjmp.records import AtomsRecord


@pytest.fixture(scope="module")
def batch_and_indices():
    spec = GraphSpec(cutoff=4.2, max_neighbors=(8, 5, 3, 30), pbc=True)
    one = AtomsRecord(
        atomic_numbers=[29],
        positions=[[0.1, 0.2, 0.3]],
        cell=[[2.6, 0.1, 0.0], [1.2, 2.3, 0.1], [0.9, 0.6, 2.2]],
        pbc=True,
        tags=[1],
    )
    two = AtomsRecord(
        atomic_numbers=[14, 8],
        positions=[[0.0, 0.0, 0.0], [1.3, 0.9, 1.1]],
        cell=[[3.4, 0.0, 0.2], [1.5, 3.0, 0.0], [0.3, 1.2, 3.3]],
        pbc=True,
        tags=[0, 1],
    )
    rng = np.random.default_rng(4)
    mol = AtomsRecord(
        atomic_numbers=[6, 1, 1, 1, 8], positions=rng.uniform(0, 2.5, (5, 3)), tags=[0, 0, 0, 2, 0]
    )
    samples = [build_graph_sample(r, spec) for r in (one, two, mol)]
    batch = collate(samples)
    return batch, build_indices(batch)


def _edges(es) -> list[tuple[int, int, tuple[int, int, int]]]:
    return [(s, t, tuple(o)) for (s, t), o in zip(es.index.T.tolist(), es.cell_offset.tolist())]


def _add(a, b):
    return tuple(x + y for x, y in zip(a, b))


def _sub(a, b):
    return tuple(x - y for x, y in zip(a, b))


ZERO = (0, 0, 0)


def _check_agg(out: torch.Tensor, agg: torch.Tensor) -> None:
    assert bool((out[1:] >= out[:-1]).all()), "out not sorted"
    groups = defaultdict(list)
    for o, a in zip(out.tolist(), agg.tolist()):
        groups[o].append(a)
    for vals in groups.values():
        assert vals == list(range(len(vals)))


def test_symmetric_main_and_id_swap(batch_and_indices) -> None:
    batch, ind = batch_and_indices
    main = _edges(ind.main)
    directed = _edges(batch.edges["main"])
    assert len(set(main)) == len(main)
    kept = {
        e for e in directed if e[0] < e[1] or (e[0] == e[1] and e[2] < ZERO)
    }  # tuple comparison is lexicographic
    want = kept | {(t, s, tuple(-x for x in o)) for s, t, o in kept}
    assert set(main) == want
    assert {e for e in directed if e[0] < e[1]} <= set(main)
    swap = ind.id_swap
    assert torch.equal(swap[swap], torch.arange(len(main)))
    for e, r in enumerate(swap.tolist()):
        s, t, o = main[e]
        assert main[r] == (t, s, tuple(-x for x in o))
    d, v = edge_vectors(batch.pos, batch.cell, batch.batch, ind.main)
    assert torch.allclose(d[swap], d, rtol=0, atol=1e-12)
    assert torch.allclose(v[swap], -v, rtol=0, atol=1e-12)
    t = ind.main.index[1]
    assert bool((t[1:] >= t[:-1]).all())


def test_e2e_triplets(batch_and_indices) -> None:
    _, ind = batch_and_indices
    main = _edges(ind.main)
    want = {
        (i, o)
        for o in range(len(main))
        for i in range(len(main))
        if main[i][1] == main[o][1] and i != o
    }
    trip = ind.trip_e2e
    got = list(zip(trip.in_.tolist(), trip.out.tolist()))
    assert len(got) == len(set(got)) and set(got) == want
    assert trip["in"] is trip.in_  # the authors' dict-style access
    _check_agg(trip.out, trip.out_agg)
    # The one-atom cell: b and c are images of the same atom and still form triplets.
    assert any(main[i][0] == main[o][0] == main[o][1] for i, o in got)


def _mixed(graph_in, graph_out, to_outedge: bool) -> set[tuple[int, int]]:
    want = set()
    for o, (cs, ct, co) in enumerate(graph_out):
        for i, (bs, bt, bo) in enumerate(graph_in):
            if to_outedge:
                if bt != cs or (bs == ct and _add(co, bo) == ZERO):
                    continue
            elif bt != ct or (bs == cs and _sub(co, bo) == ZERO):
                continue
            want.add((i, o))
    return want


def test_mixed_triplets(batch_and_indices) -> None:
    _, ind = batch_and_indices
    main, a2ee2a = _edges(ind.main), _edges(ind.a2ee2a)
    for trip, gin, gout in ((ind.trip_a2e, a2ee2a, main), (ind.trip_e2a, main, a2ee2a)):
        got = list(zip(trip.in_.tolist(), trip.out.tolist()))
        assert len(got) == len(set(got)) and set(got) == _mixed(gin, gout, to_outedge=False)
        _check_agg(trip.out, trip.out_agg)
    assert ind.trip_a2e.out.shape == ind.trip_e2a.out.shape


def _brute_quadruplets(main, qint) -> set[tuple[int, int, int]]:
    """(edge d->b, qint edge b->a, edge c->a) with b != c, d != a and c != d as images."""
    want = set()
    for ca, (c, a, o_ca) in enumerate(main):
        for ba, (b, a2, o_ba) in enumerate(qint):
            if a2 != a or (b == c and o_ba == o_ca):
                continue
            for db, (d, b2, o_db) in enumerate(main):
                if b2 != b or (d == a and _add(o_db, o_ba) == ZERO):
                    continue
                if d == c and _add(o_db, o_ba) == o_ca:
                    continue
                want.add((db, ba, ca))
    return want


def _quadruplet_rows(q) -> list[tuple[int, int, int]]:
    tin_in, tin_out = q.triplet_in.in_[q.trip_in_to_quad], q.triplet_in.out[q.trip_in_to_quad]
    return list(zip(tin_in.tolist(), tin_out.tolist(), q.out.tolist()))


def test_quadruplets(batch_and_indices) -> None:
    _, ind = batch_and_indices
    main, qint = _edges(ind.main), _edges(ind.qint)
    assert len(qint) < ind.a2ee2a.num_edges  # tags 0 removed some edges
    q = ind.quad
    t_in = set(zip(q.triplet_in.in_.tolist(), q.triplet_in.out.tolist()))
    t_out = set(zip(q.triplet_out.in_.tolist(), q.triplet_out.out.tolist()))
    assert t_in == _mixed(main, qint, to_outedge=True)
    assert t_out == _mixed(qint, main, to_outedge=False)
    want = _brute_quadruplets(main, qint)
    tin_in, tin_out = q.triplet_in.in_[q.trip_in_to_quad], q.triplet_in.out[q.trip_in_to_quad]
    tout_in, tout_out = q.triplet_out.in_[q.trip_out_to_quad], q.triplet_out.out[q.trip_out_to_quad]
    assert torch.equal(tin_out, tout_in), "input and output triplet must share the qint edge"
    assert torch.equal(q.out, tout_out)
    got = list(zip(tin_in.tolist(), tin_out.tolist(), q.out.tolist()))
    assert len(got) == len(set(got)) and set(got) == want and len(want) > 0
    _check_agg(q.out, q.out_agg)


def test_target_neighbor_idx_and_counts(batch_and_indices) -> None:
    batch, ind = batch_and_indices
    for es, idx in (
        (ind.a2a, ind.a2a_target_neighbor_idx),
        (ind.a2ee2a, ind.a2ee2a_target_neighbor_idx),
    ):
        _check_agg(es.index[1], idx)
    assert ind.a2a is batch.edges["a2a"] and ind.num_atoms == batch.num_atoms
    c = ind.counts()
    assert c["n_triplets"] == ind.trip_e2e.in_.shape[0]
    assert c["n_quadruplets"] == ind.quad.out.shape[0]


def test_unsorted_graph_is_refused(batch_and_indices) -> None:
    batch, _ = batch_and_indices
    a2a = batch.edges["a2a"]
    flipped = type(a2a)(a2a.index.flip(1), a2a.cell_offset.flip(0))
    bad = type(batch)(
        **{
            **{f: getattr(batch, f) for f in batch.__slots__},
            "edges": {**batch.edges, "a2a": flipped},
        }
    )
    with pytest.raises(ValueError, match="sorted by target"):
        build_indices(bad)


def test_no_input_triplet_at_all() -> None:
    # Hand-made graphs (as edge dropout can leave them): two leaves 0 and 1 point at atom 2 in
    # main and qint. Every input triplet d->b->a would return to a, so there is none, while
    # output triplets c->2<-b exist. No quadruplet; nothing may fail.
    rec = AtomsRecord(atomic_numbers=[1, 1, 6], positions=[[1.0, 0, 0], [-1.0, 0.1, 0], [0, 0, 0]])
    sample = build_graph_sample(rec, GraphSpec(cutoff=4.0, max_neighbors=(5, 4, 3, 10), pbc=False))
    into_center = EdgeSet(torch.tensor([[0, 1], [2, 2]]), torch.zeros(2, 3, dtype=torch.long))
    sample = dataclasses.replace(sample, edges=dict.fromkeys(sample.edges, into_center))
    ind = build_indices(collate([sample]))
    q = ind.quad
    assert q.triplet_in.in_.numel() == 0 and q.triplet_out.in_.numel() == 2
    assert q.out.numel() == 0 == len(_brute_quadruplets(_edges(ind.main), _edges(ind.qint)))
    assert ind.main.num_edges == 4 and ind.trip_e2e.in_.numel() == 2
