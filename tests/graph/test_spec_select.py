"""Graph settings and the nearest-first selection with its tie rule.

Settings are checked against the values of the authors' transforms (jmp-reference.md 1.2 and
errata 3). The max-neighbour mask is checked against the oracle (the k nearest per target,
on random structures without ties) and, on a rotated simple-cubic cell where six neighbours
tie up to float rounding, against the stated tie rule: equal distances (to 1e-9 Å) are ranked
by source, then offset lexicographically, whatever the rotation or translation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from openjmp.errors import ConfigError
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.select import nearest_first_order, rank_within_target, tag_mask
from openjmp.graph.spec import GRAPH_SETTINGS, GraphSpec, graph_spec, max_neighbors_from_base
from openjmp.records import AtomsRecord


def test_base_proportions() -> None:
    assert max_neighbors_from_base(30) == (30, 20, 8, 1000)
    assert max_neighbors_from_base(100) == (100, 66, 26, 3333)
    assert max_neighbors_from_base(10) == (10, 6, 2, 333)
    assert max_neighbors_from_base(5) == (5, 3, 1, 166)


def test_reference_settings() -> None:
    s = GRAPH_SETTINGS
    for name in ("oc20", "oc22"):
        assert (s[name].cutoff, s[name].max_neighbors, s[name].pbc) == (
            12.0,
            (30, 20, 8, 1000),
            True,
        )
    for name in ("ani1x", "transition1x"):
        assert (s[name].cutoff, s[name].pbc, s[name].dummy_cell) == (8.0, False, True)
    assert (s["rmd17"].cutoff, s["rmd17"].max_neighbors, s["rmd17"].dummy_cell) == (
        7.0,
        (100, 66, 26, 3333),
        False,
    )
    assert (s["qm9"].cutoff, s["qm9"].pbc, s["qm9"].dummy_cell) == (8.0, False, False)
    for name in ("md22", "spice"):
        assert (s[name].cutoff, s[name].pbc, s[name].dummy_cell) == (12.0, False, True)
    assert (s["matbench"].cutoff, s["matbench"].pbc) == (12.0, True)
    assert (s["qmof"].cutoff, s["qmof"].pbc) == (19.0, True)
    assert all(spec.qint_tags == (1, 2) for spec in s.values())


@pytest.mark.parametrize("name", ["matbench", "qmof"])
def test_atom_count_caps(name: str) -> None:
    assert graph_spec(name, natoms=200).max_neighbors == (30, 20, 8, 1000)
    assert graph_spec(name, natoms=201).max_neighbors == (10, 6, 2, 333)
    assert graph_spec(name, natoms=300).max_neighbors == (10, 6, 2, 333)
    assert graph_spec(name, natoms=301).max_neighbors == (5, 3, 1, 166)
    assert graph_spec(name, natoms=301).cutoff == GRAPH_SETTINGS[name].cutoff
    # Other data sets ignore the atom count.
    assert graph_spec("oc20", natoms=1000).max_neighbors == (30, 20, 8, 1000)


def test_bad_specs_raise() -> None:
    with pytest.raises(ConfigError, match="unknown graph setting 'oc21'"):
        graph_spec("oc21")
    with pytest.raises(ConfigError, match="a2a cap"):
        GraphSpec(cutoff=6.0, max_neighbors=(30, 20, 8, 10), pbc=True)
    with pytest.raises(ConfigError, match="cutoff"):
        GraphSpec(cutoff=0.0, max_neighbors=(3, 2, 1, 5), pbc=False)
    with pytest.raises(ConfigError, match="dummy_cell"):
        GraphSpec(cutoff=6.0, max_neighbors=(3, 2, 1, 5), pbc=True, dummy_cell=True)


def test_order_and_rank() -> None:
    source = torch.tensor([0, 1, 2, 0, 2])
    target = torch.tensor([1, 0, 0, 2, 1])
    offset = torch.zeros(5, 3, dtype=torch.long)
    distance = torch.tensor([1.0, 3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    order = nearest_first_order(source, target, offset, distance)
    assert order.tolist() == [2, 1, 4, 0, 3]  # target 0: d 2 then 3; target 1: 0.5 then 1
    assert rank_within_target(target[order], 3).tolist() == [0, 1, 0, 1, 0]
    tags = torch.tensor([0, 0, 1])
    assert tag_mask(tags, source, target, (1, 2)).tolist() == [False, False, True, True, True]


def test_nearest_k_against_oracle(oracle_pairs, make_cell) -> None:
    rng = np.random.default_rng(11)
    cell = make_cell(rng, "triclinic")
    pos = rng.random((5, 3)) @ cell
    rec = AtomsRecord(atomic_numbers=[6] * 5, positions=pos, cell=cell, pbc=True)
    spec = GraphSpec(cutoff=7.0, max_neighbors=(6, 4, 2, 25), pbc=True)
    sample = build_graph_sample(rec, spec)
    want = oracle_pairs(pos, cell, np.ones(3, bool), 7.0)
    # Sort key of the stated tie rule: distance to 1e-9 Å, then source, then offset. Ties do
    # occur here: an atom's images at +o and -o are equally far.
    by_target: dict[int, list] = {}
    for (s, t, *o), d in want.items():
        by_target.setdefault(t, []).append((round(d * 1e9), s, tuple(o), (s, t, *o)))
    for name, k in zip(("main", "a2ee2a", "qint", "a2a"), spec.max_neighbors):
        es = sample.edges[name]
        got = set(map(tuple, torch.cat([es.index.T, es.cell_offset], 1).tolist()))
        nearest = {x[-1] for lst in by_target.values() for x in sorted(lst)[:k]}
        if name == "qint":  # all tags are 2 (molecule/bulk default): no tag filtering
            assert set(rec.tags.tolist()) == {2}
        assert got == nearest, name


def _cubic_sample(rotation: np.ndarray, shift: np.ndarray) -> set[tuple[int, int, int]]:
    cell = 3.0 * np.eye(3) @ rotation.T
    pos = (np.array([[0.4, 0.7, 1.1]]) + shift) @ rotation.T
    rec = AtomsRecord(atomic_numbers=[29], positions=pos, cell=cell, pbc=True)
    spec = GraphSpec(cutoff=3.5, max_neighbors=(3, 3, 3, 6), pbc=True)
    sample = build_graph_sample(rec, spec)
    assert sample.edges["a2a"].num_edges == 6  # the six face neighbours at 3 Å
    return set(map(tuple, sample.edges["main"].cell_offset.tolist()))


def test_tie_rule_is_deterministic_under_rotation_and_translation() -> None:
    # Six neighbours at 3 Å exactly (up to float rounding); k = 3 keeps the three with the
    # lexicographically smallest offsets.
    want = {(-1, 0, 0), (0, -1, 0), (0, 0, -1)}
    rng = np.random.default_rng(5)
    assert _cubic_sample(np.eye(3), np.zeros(3)) == want
    for _ in range(5):
        rot = Rotation.random(random_state=int(rng.integers(1 << 30))).as_matrix()
        assert _cubic_sample(rot, rng.uniform(-0.3, 0.3, 3)) == want
