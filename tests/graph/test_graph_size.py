"""The graph-size estimate (openjmp.graph.size) against the pairs the neighbour search finds,
and the named error that stops a structure whose graph would be enormous before it is built."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import add_adsorbate, bulk, fcc111, molecule

from openjmp.config.common import GraphConfig
from openjmp.errors import ConfigError, DataError
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.neighbors import candidate_pairs
from openjmp.graph.size import DEFAULT_MAX_EDGES, estimate_edges
from openjmp.graph.spec import graph_spec
from openjmp.records import AtomsRecord


def _structures() -> dict[str, Atoms]:
    rng = np.random.default_rng(0)
    slab = fcc111("Pt", (6, 6, 5), vacuum=10.0)
    add_adsorbate(slab, "O", 1.5, "fcc")
    wire_pos = np.c_[rng.uniform(0, 2, 40), rng.uniform(0, 2, 40), np.linspace(0, 20, 40, False)]
    return {
        "ethanol": molecule("CH3CH2OH"),
        "c60": molecule("C60"),
        "slab": slab,
        "bulk": bulk("Cu"),
        "si": bulk("Si", "diamond", a=5.43).repeat((2, 2, 2)),
        "framework": Atoms("C400", rng.uniform(0, 20, (400, 3)), cell=np.eye(3) * 20, pbc=True),
        "wire": Atoms("C40", wire_pos, cell=np.diag([30, 30, 20]), pbc=[False, False, True]),
        "cluster": Atoms("C1000", rng.uniform(0, 25, (1000, 3))),
        "crowded": Atoms("C100", rng.uniform(0, 4, (100, 3)), cell=np.eye(3) * 4, pbc=True),
    }


@pytest.mark.parametrize("cutoff", [6.0, 12.0])
def test_estimate_is_within_a_factor_of_two_of_the_search(cutoff: float) -> None:
    for name, a in _structures().items():
        est = estimate_edges(a.positions, a.cell.array, a.pbc, cutoff)
        found = len(candidate_pairs(a.positions, a.cell.array, a.pbc, cutoff).source)
        assert 0.5 * found <= est.edges <= 2.0 * found, (name, est.edges, found)


def _crowded(n: int = 300, box: float = 5.0) -> AtomsRecord:
    rng = np.random.default_rng(1)
    return AtomsRecord(atomic_numbers=np.full(n, 6), positions=rng.uniform(0, box, (n, 3)),
                       cell=np.eye(3) * box, pbc=True, source="crowded.xyz", index=3)  # fmt: skip


def test_enormous_graph_is_refused_before_it_is_built(monkeypatch) -> None:
    """300 atoms in a 5 Å box at 12 Å: ~5 million pairs (the issue's case, >1 GB in predict)."""
    monkeypatch.delenv("OPENJMP_MAX_EDGES", raising=False)
    t0 = time.perf_counter()
    with pytest.raises(DataError) as info:
        build_graph_sample(_crowded(), graph_spec("oc20"))
    assert time.perf_counter() - t0 < 0.5  # nothing was built
    msg = str(info.value)
    assert msg.startswith("crowded.xyz, record 3: graph too large: about 5,2")
    assert f"limit of {DEFAULT_MAX_EDGES:,}" in msg and "OPENJMP_MAX_EDGES" in msg
    assert "max_edges=" in msg and "graph.max_edges" in msg


def test_limit_is_raised_per_call_per_spec_and_by_environment(monkeypatch) -> None:
    rec = _crowded(60, 5.0)  # ~16,000 pairs at 6 Å
    spec = GraphConfig(cutoff=6.0, pbc=True).spec()
    assert build_graph_sample(rec, spec).edges["a2a"].index.shape[1] > 0
    with pytest.raises(DataError, match="over the limit of 1,000"):
        build_graph_sample(rec, spec, max_edges=1000)
    small = GraphConfig(cutoff=6.0, pbc=True, max_edges=1000).spec()
    with pytest.raises(DataError, match="over the limit of 1,000"):
        build_graph_sample(rec, small)
    assert build_graph_sample(rec, small, max_edges=10**6).natoms == 60
    monkeypatch.setenv("OPENJMP_MAX_EDGES", "2000")
    with pytest.raises(DataError, match="over the limit of 2,000"):
        build_graph_sample(rec, spec)
    monkeypatch.setenv("OPENJMP_MAX_EDGES", "zero")
    with pytest.raises(ConfigError, match="OPENJMP_MAX_EDGES='zero'"):
        build_graph_sample(rec, spec)


def test_real_sized_structures_pass_the_default_limit() -> None:
    """A 200-atom OC20-like slab at 12 Å is ~40x under the limit."""
    slab = fcc111("Cu", (8, 5, 5), vacuum=10.0)
    est = estimate_edges(slab.positions, slab.cell.array, slab.pbc, 12.0)
    assert len(slab) == 200 and est.edges * 20 < DEFAULT_MAX_EDGES
