"""Graph datasets, keyed batches and the resumable loader.

* edge dropout acts only on keyed (training) items, is a function of the draw key alone, and
  never touches validation items;
* draw keys are unique across ranks and epochs; two ranks see disjoint structures;
* a loader's state taken mid-epoch and loaded into a fresh loader continues with exactly the
  batches the first loader would have produced next (fixed-size and atom-capped batches).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openjmp.config.common import GraphConfig
from openjmp.data.sampling import ExpansionPlan, TemperatureSampler
from openjmp.records import AtomsRecord
from openjmp.train.graph_dataset import ConcatGraphDataset, GraphDataset
from openjmp.train.loader import KeyedBatchSampler, ResumableDataLoader

from helpers.tiny_data import molecules, slabs

GRAPH = GraphConfig(cutoff=4.0, max_neighbors=8, pbc=True)
MOL_GRAPH = GraphConfig(cutoff=4.0, max_neighbors=8, pbc=False, dummy_cell=True)


@pytest.fixture(scope="module")
def data() -> ConcatGraphDataset:
    s = [AtomsRecord.from_ase(a, source="slabs", index=i) for i, a in enumerate(slabs(5))]
    m = [AtomsRecord.from_ase(a, source="mols", index=i) for i, a in enumerate(molecules(7))]
    return ConcatGraphDataset(
        [
            GraphDataset(s, GRAPH, "slabs", edge_dropout=0.3, seed=11),
            GraphDataset(m, MOL_GRAPH, "mols", edge_dropout=0.3, seed=11),
        ]
    )


def test_edge_dropout_only_on_keyed_items_and_set_by_the_key(data: ConcatGraphDataset) -> None:
    plain = data[2]
    assert plain.dataset == "slabs" and plain.fixed.any()
    again = data[2]
    assert torch.equal(plain.edges["a2a"].index, again.edges["a2a"].index)
    a = data[(2, (0, 5))]
    b = data[(2, (0, 5))]
    c = data[(2, (1, 5))]
    n_full = plain.edges["a2a"].num_edges
    assert a.edges["a2a"].num_edges < n_full  # p = 0.3 of ~150 edges: some dropped
    assert torch.equal(a.edges["a2a"].index, b.edges["a2a"].index)
    assert torch.equal(a.edges["a2a"].cell_offset, b.edges["a2a"].cell_offset)
    assert not torch.equal(a.edges["a2a"].index, c.edges["a2a"].index)
    # main / a2ee2a / qint are sub-selected from the dropped a2a graph
    kept = {tuple(e) for e in a.edges["a2a"].index.T.tolist()}
    assert {tuple(e) for e in a.edges["main"].index.T.tolist()} <= kept
    # the fraction kept is about 1 - p
    frac = np.mean([data[(i, (9, i))].edges["a2a"].num_edges / data[i].edges["a2a"].num_edges
                    for i in range(5)])  # fmt: skip
    assert 0.55 < frac < 0.85


def test_keys_unique_and_ranks_disjoint(data: ConcatGraphDataset) -> None:
    plan = ExpansionPlan.build([5, 7], "temperature", temperature=2.0)
    seen, keys = [], set()
    for rank in (0, 1):
        s = KeyedBatchSampler(
            TemperatureSampler(plan, seed=3, rank=rank, world_size=2), batch_size=2
        )
        for epoch in (0, 1):
            s.set_epoch(epoch)
            for batch in s:
                for index, key in batch:
                    assert key not in keys
                    keys.add(key)
                    if epoch == 0:
                        seen.append((rank, index, key[1]))
    pos0 = {p for r, _, p in seen if r == 0}
    pos1 = {p for r, _, p in seen if r == 1}
    assert not pos0 & pos1  # global positions split between the ranks
    per_rank = plan.epoch_size // 2 // 2 * 2
    assert len(pos0) == len(pos1) == per_rank


def _loader(data: ConcatGraphDataset, capped: bool) -> ResumableDataLoader:
    plan = ExpansionPlan.build([5, 7], "temperature", temperature=2.0)
    sampler = TemperatureSampler(plan, seed=5)
    if capped:
        ks = KeyedBatchSampler(sampler, batch_size=3, max_atoms=25, natoms=data.natoms())
    else:
        ks = KeyedBatchSampler(sampler, batch_size=2)
    return ResumableDataLoader(data, ks)


def _fingerprint(batch) -> tuple:
    return (batch.datasets, batch.natoms.tolist(), batch.edges["a2a"].num_edges,
            round(float(batch.pos.sum()), 10))  # fmt: skip


@pytest.mark.parametrize("capped", [False, True], ids=["fixed", "atom-capped"])
def test_state_mid_epoch_resumes_the_same_batches(data: ConcatGraphDataset, capped: bool) -> None:
    ref = _loader(data, capped)
    ref.keyed_sampler.set_epoch(1)
    expected = [_fingerprint(b) for b in ref]
    assert len(expected) == len(ref) >= 3

    first = _loader(data, capped)
    first.keyed_sampler.set_epoch(1)
    it = iter(first)
    got = [_fingerprint(next(it)) for _ in range(2)]
    state = first.state_dict()
    assert state == _state_after(data, capped, 2)

    second = _loader(data, capped)  # a fresh process: new objects, state from the checkpoint
    second.load_state_dict(state)
    got += [_fingerprint(b) for b in second]
    assert got == expected
    if capped:
        assert all(n <= 25 for fp in expected for n in [sum(fp[1])])


def _state_after(data: ConcatGraphDataset, capped: bool, batches: int) -> dict:
    ld = _loader(data, capped)
    ld.keyed_sampler.set_epoch(1)
    return ld.keyed_sampler.state_dict(consumed_batches=batches)
