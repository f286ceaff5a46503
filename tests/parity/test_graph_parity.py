"""Graph parity with the authors' code, edge for edge (../shared/reference/tiny).

For every structure of ``structures.extxyz`` under the graph setting named in its ``graph`` info
key, the a2a, a2ee2a, qint and symmetrised main edge sets (source, target, cell offset) must
equal the reference exactly, and every ``s{i}_n_*`` count (edges, e2e/a2e/e2a triplets,
quadruplets) must be equal. Then all structures of one setting are collated into one batch and
the counts must be the per-structure sums (batching must not change any graph). Exact equality
is the stated tolerance: the fixtures were perturbed so that no distance lies within 1e-6 Å of a
cutoff or of a neighbour cap, so no result depends on rounding or on a tie rule.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.indices import build_indices
from openjmp.graph.spec import GRAPH_SETTINGS, GraphSpec, graph_spec
from openjmp.records import AtomsRecord

GRAPHS = ("a2a", "main", "a2ee2a", "qint")


@pytest.fixture(scope="module")
def tiny(reference_dir: Path):
    tiny = reference_dir / "tiny"
    structures = ase.io.read(tiny / "structures.extxyz", index=":")
    with np.load(tiny / "expected.npz") as z:
        expected = {k: z[k] for k in z.files if "_edges" in k or "_n_" in k}
    config = json.loads((tiny / "config.json").read_text())
    return structures, expected, config


def _rows(edges) -> set[tuple[int, ...]]:
    arr = torch.cat([edges.index.T, edges.cell_offset], dim=1).numpy()
    return set(map(tuple, arr.tolist()))


def _ref_rows(arr: np.ndarray) -> set[tuple[int, ...]]:
    assert arr.ndim == 2 and arr.shape[1] == 5
    return set(map(tuple, arr.astype(np.int64).tolist()))


def _record(atoms, i: int) -> AtomsRecord:
    return AtomsRecord.from_ase(atoms, source="tiny/structures.extxyz", index=i)


def test_graph_settings_match_the_reference_config(tiny) -> None:
    _, _, config = tiny
    for name, ref in config["graph_settings"].items():
        assert ref["max_neighbors_order"] == ["main", "a2ee2a", "qint", "a2a"]
        spec = GRAPH_SETTINGS[name]
        assert spec == GraphSpec(
            cutoff=ref["cutoff"],
            max_neighbors=tuple(ref["max_neighbors"]),
            pbc=ref["pbc"],
            dummy_cell=ref["dummy_cell_1000"],
        )
    assert tuple(config["backbone"]["qint_tags"]) == GRAPH_SETTINGS["oc20"].qint_tags


def test_every_structure_edge_for_edge(tiny) -> None:
    structures, expected, _ = tiny
    assert len(structures) == 14
    checked: set[str] = set()
    for i, atoms in enumerate(structures):
        sample = build_graph_sample(_record(atoms, i), graph_spec(atoms.info["graph"]))
        indices = build_indices(collate([sample]))
        name = f"s{i} {atoms.info['name']}"
        mine = {
            "a2a": sample.edges["a2a"],
            "a2ee2a": sample.edges["a2ee2a"],
            "qint": sample.edges["qint"],
            "main": indices.main,
        }
        for g in GRAPHS:
            key = f"s{i}_{g}_edges"
            ref = _ref_rows(expected[key])
            got = _rows(mine[g])
            assert len(got) == mine[g].num_edges, f"{name}: duplicate {g} edges"
            assert got == ref, f"{name} {g}: {len(got - ref)} extra, {len(ref - got)} missing edges"
            checked.add(key)
        counts = indices.counts()
        counts["n_edges_main_directed"] = sample.edges["main"].num_edges
        for key, value in counts.items():
            ref_key = f"s{i}_{key}"
            assert value == int(expected[ref_key]), f"{name}: {key} {value} != {expected[ref_key]}"
            checked.add(ref_key)
    # Every edge set and count of the fixture was compared.
    assert checked == set(expected), sorted(set(expected) - checked)


@pytest.mark.parametrize("setting", ["ani1x", "transition1x", "oc20", "oc22", "rmd17"])
def test_batched_counts_are_the_sums(tiny, setting: str) -> None:
    structures, expected, _ = tiny
    members = [i for i, a in enumerate(structures) if a.info["graph"] == setting]
    assert members, setting
    samples = [build_graph_sample(_record(structures[i], i), graph_spec(setting)) for i in members]
    batch = collate(samples)
    indices = build_indices(batch)
    counts = indices.counts()
    counts["n_edges_main_directed"] = batch.edges["main"].num_edges
    for key, value in counts.items():
        want = sum(int(expected[f"s{i}_{key}"]) for i in members)
        assert value == want, f"{setting} batch of {len(members)}: {key} {value} != {want}"
    # The batched symmetric main graph is the union of the per-structure ones, shifted.
    shift = np.cumsum([0] + [len(structures[i]) for i in members])
    want_main = set()
    for j, i in enumerate(members):
        ref = expected[f"s{i}_main_edges"].astype(np.int64).copy()
        ref[:, :2] += shift[j]
        want_main |= _ref_rows(ref)
    assert _rows(indices.main) == want_main
