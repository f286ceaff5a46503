"""`build_graph_sample`: the four graphs of one record, labels, cells, errors and edge dropout.

The sub-graph rules are checked directly on the output: every graph sorted by target, nearest
first; main / a2ee2a / qint are the first k edges of every target's a2a list; qint keeps an
edge iff its source or target has tag 1 or 2. Edge dropout must drop only a2a edges (the others
are re-selected from what is left), at the given rate (binomial: 4 standard deviations), and be
a function of the seed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openjmp.errors import DataError
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.geometry import edge_vectors
from openjmp.graph.spec import GraphSpec, graph_spec
from openjmp.records import AtomsRecord


def _slab(seed: int = 0) -> AtomsRecord:
    """A rattled 3x3x3 fcc-like slab with tags 0 (bottom), 1 (top layer), 2 (adsorbate)."""
    rng = np.random.default_rng(seed)
    a = 2.6
    grid = np.array([[i, j, k] for k in range(3) for j in range(3) for i in range(3)], float)
    pos = grid * a + rng.normal(0, 0.05, grid.shape)
    pos = np.vstack([pos, [[2.6, 2.6, 3 * a + 1.2]]])
    cell = np.diag([3 * a, 3 * a, 3 * a + 8.0])
    tags = np.array([0] * 18 + [1] * 9 + [2])
    return AtomsRecord(
        atomic_numbers=[29] * 27 + [8],
        positions=pos,
        cell=cell,
        pbc=[True, True, True],
        tags=tags,
        energy=-3.5,
        forces=rng.normal(size=(28, 3)),
        stress=np.arange(6.0),
        targets={"y_relaxed": 1.25, "n": 3},
        source="slab.extxyz",
        index=4,
        dataset="oc20",
    )


def _rows(es) -> list[tuple[int, ...]]:
    return [tuple(r) for r in torch.cat([es.index.T, es.cell_offset], 1).tolist()]


def _check_graph_rules(sample, spec: GraphSpec) -> None:
    n = sample.natoms
    cell = sample.cell[None]
    batch = torch.zeros(n, dtype=torch.long)
    a2a = sample.edges["a2a"]
    d, _ = edge_vectors(sample.pos, cell, batch, a2a)
    t = a2a.index[1]
    assert bool((t[1:] >= t[:-1]).all()), "a2a not sorted by target"
    same = t[1:] == t[:-1]
    assert bool((d[1:][same] >= d[:-1][same] - 1e-9).all()), "a2a not nearest-first per target"
    assert int(torch.bincount(t, minlength=n).max()) <= spec.max_neighbors[3]
    rows = _rows(a2a)
    rank = {}
    for i, r in enumerate(rows):
        rank[r] = sum(1 for j in range(i) if rows[j][1] == r[1])
    tags = sample.tags
    for name, k in zip(("main", "a2ee2a", "qint"), spec.max_neighbors[:3]):
        want = [r for r in rows if rank[r] < k]
        if name == "qint":
            want = [r for r in want if int(tags[r[0]]) in (1, 2) or int(tags[r[1]]) in (1, 2)]
        assert _rows(sample.edges[name]) == want, name


def test_slab_graph_rules_labels_and_cell() -> None:
    rec = _slab()
    spec = GraphSpec(cutoff=6.0, max_neighbors=(12, 8, 4, 40), pbc=True)
    sample = build_graph_sample(rec, spec)
    _check_graph_rules(sample, spec)
    assert int(torch.bincount(sample.edges["a2a"].index[1]).max()) == 40  # the cap binds
    qint = sample.edges["qint"]
    both_sub = (sample.tags[qint.index[0]] == 0) & (sample.tags[qint.index[1]] == 0)
    assert not bool(both_sub.any()) and qint.num_edges > 0
    deg = torch.bincount(sample.edges["a2a"].index[1], minlength=28)
    assert sample.edges["main"].num_edges == int(deg.clamp(max=12).sum())
    assert torch.equal(sample.cell, torch.tensor(np.array(rec.cell)))
    assert sample.energy.item() == -3.5 and sample.energy.dtype == torch.float64
    assert torch.equal(sample.forces, torch.tensor(np.array(rec.forces)))
    assert sample.stress.tolist() == list(range(6))
    assert sample.targets["y_relaxed"].item() == 1.25 and sample.targets["n"].item() == 3
    assert sample.dataset == "oc20"
    f32 = build_graph_sample(rec, spec, dtype=torch.float32)
    assert f32.pos.dtype == f32.cell.dtype == f32.forces.dtype == torch.float32
    assert _rows(f32.edges["main"]) == _rows(sample.edges["main"])


def test_molecule_cells() -> None:
    rng = np.random.default_rng(1)
    rec = AtomsRecord(atomic_numbers=[6, 1, 1, 8, 1], positions=rng.uniform(0, 3, (5, 3)))
    dummy = build_graph_sample(rec, graph_spec("ani1x"))
    assert torch.equal(dummy.cell, torch.eye(3, dtype=torch.float64) * 1000.0)
    plain = build_graph_sample(rec, graph_spec("rmd17"))
    assert not bool(plain.cell.any())
    for s in (dummy, plain):
        assert s.edges["a2a"].num_edges == 20 and not bool(s.edges["a2a"].cell_offset.any())
    # A periodic record under a molecule setting is a molecule: no images.
    per = rec.replace(cell=np.eye(3) * 2.5, pbc=np.ones(3, bool))
    assert build_graph_sample(per, graph_spec("ani1x")).edges["a2a"].num_edges == 20


def test_partial_periodicity_follows_the_record() -> None:
    rec = _slab().replace(pbc=np.array([True, True, False]))
    sample = build_graph_sample(rec, GraphSpec(cutoff=9.0, max_neighbors=(5, 4, 3, 500), pbc=True))
    assert not bool(sample.edges["a2a"].cell_offset[:, 2].any())
    assert bool(sample.edges["a2a"].cell_offset[:, 0].any())


def test_no_edge_raises_data_error_naming_the_record() -> None:
    rec = AtomsRecord(atomic_numbers=[8], positions=[[0.0, 0.0, 0.0]], source="ions.h5", index=17)
    with pytest.raises(DataError, match=r"ions\.h5, record 17: no pair of atoms within the 12\.0"):
        build_graph_sample(rec, graph_spec("spice"))
    far = AtomsRecord(atomic_numbers=[1, 1], positions=[[0, 0, 0], [0, 0, 9.0]], index=3)
    with pytest.raises(DataError, match="record 3"):
        build_graph_sample(far, graph_spec("ani1x"))


def test_bad_records_raise_data_errors() -> None:
    nan = AtomsRecord(atomic_numbers=[1, 1], positions=[[0, 0, 0], [np.nan, 0, 0]], index=0)
    with pytest.raises(DataError, match="NaN"):
        build_graph_sample(nan, graph_spec("ani1x"))
    flat = _slab().replace(cell=np.diag([3.0, 3.0, 0.0]))
    with pytest.raises(DataError, match="zero cell vector"):
        build_graph_sample(flat, graph_spec("oc20"))


def test_edge_dropout_rate_subset_and_seed() -> None:
    rec = _slab(2)
    spec = GraphSpec(cutoff=8.0, max_neighbors=(10, 6, 3, 1000), pbc=True)
    full = build_graph_sample(rec, spec)
    p = 0.3

    def drop(seed: int):
        return build_graph_sample(
            rec, spec, edge_dropout=p, generator=torch.Generator().manual_seed(seed)
        )

    a, b, c = drop(1), drop(1), drop(2)
    for name in ("main", "a2ee2a", "qint", "a2a"):
        assert _rows(a.edges[name]) == _rows(b.edges[name]), "same seed, different graph"
    assert _rows(a.edges["a2a"]) != _rows(c.edges["a2a"])
    kept = set(_rows(a.edges["a2a"]))
    full_rows = _rows(full.edges["a2a"])
    assert kept <= set(full_rows)
    e = len(full_rows)
    rate = 1 - len(kept) / e
    assert abs(rate - p) < 4 * np.sqrt(p * (1 - p) / e), (rate, e)
    # main / a2ee2a / qint are re-selected (nearest k per target) from the kept a2a edges.
    _check_graph_rules(a, spec)
    # Without dropout (p = 0, the default) nothing changes and no random number is drawn.
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    same = build_graph_sample(rec, spec, edge_dropout=0.0, generator=g)
    assert _rows(same.edges["a2a"]) == full_rows and torch.equal(g.get_state(), state)


def test_dropout_never_empties_a_structure() -> None:
    rec = AtomsRecord(atomic_numbers=[1, 1], positions=[[0, 0, 0], [0, 0, 0.74]])
    for seed in range(5):
        s = build_graph_sample(
            rec,
            graph_spec("ani1x"),
            edge_dropout=0.999,
            generator=torch.Generator().manual_seed(seed),
        )
        assert s.edges["a2a"].num_edges == 2 and s.edges["main"].num_edges == 2
