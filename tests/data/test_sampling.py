"""Temperature sampling (jmp-reference §2.4): expansion sizes, shuffling, DDP shards, resume.

The expansion sizes are checked against an exact integer oracle: for T = 2 and the largest
dataset as reference, n_i = ceil(N_max · sqrt(N_i/N_max)) = ceil(sqrt(N_i · N_max)), computed
with math.isqrt so no floating point is involved. Everything else is checked by counting.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from openjmp.data.sampling import (
    ExpansionPlan,
    MaxAtomsBatchSampler,
    TemperatureSampler,
    expansion_sizes,
    sampling_probabilities,
)
from openjmp.errors import DataError

PAPER_SIZES = [100_000_000, 8_230_000, 4_000_000, 7_600_000]  # §2.4's illustrative sizes


def ceil_sqrt(x: int) -> int:
    r = math.isqrt(x)
    return r if r * r == x else r + 1


def test_worked_example_temperature_two() -> None:
    plan = ExpansionPlan.build(PAPER_SIZES, "temperature", temperature=2.0)
    # §2.4 quotes p = (0.567, 0.163, 0.114, 0.156), rounded
    assert np.allclose(plan.probabilities, [0.567, 0.163, 0.114, 0.156], atol=1e-3)
    n_max = max(PAPER_SIZES)
    expected = [ceil_sqrt(n * n_max) for n in PAPER_SIZES]
    assert list(plan.expanded_sizes) == expected
    assert expected == [100_000_000, 28_687_977, 20_000_000, 27_568_098]
    assert np.allclose(plan.repeats, [1.0, 3.4858, 5.0, 3.6274], atol=1e-4)
    assert plan.epoch_size == sum(expected) == 176_256_075
    # epoch = N_max / p_max up to the ceilings
    assert abs(plan.epoch_size - n_max / plan.probabilities[0]) < len(PAPER_SIZES)


@pytest.mark.parametrize(
    "sizes",
    [PAPER_SIZES, [7, 5, 3], [1, 1], [123_457, 99, 4_000_000, 31], [10**9, 17]],
)
def test_temperature_one_means_no_expansion(sizes: list[int]) -> None:
    plan = ExpansionPlan.build(sizes, "temperature", temperature=1.0)
    assert list(plan.expanded_sizes) == sizes
    assert np.allclose(plan.probabilities, np.array(sizes) / sum(sizes))
    assert ExpansionPlan.unbalanced(sizes).expanded_sizes == tuple(sizes)


def test_high_temperature_tends_to_uniform() -> None:
    sizes = [1000, 10, 5]
    p = sampling_probabilities(sizes, "temperature", temperature=1e9)
    assert np.allclose(p, 1 / 3, atol=1e-8)
    assert list(ExpansionPlan.build(sizes, temperature=1e9).expanded_sizes) == [1000, 1000, 1000]
    assert list(ExpansionPlan.build(sizes, "uniform").expanded_sizes) == [1000, 1000, 1000]
    # and lower temperatures interpolate monotonically between proportional and uniform
    p2, p4 = (sampling_probabilities(sizes, temperature=t) for t in (2.0, 4.0))
    assert p2[0] > p4[0] > 1 / 3 and p2[2] < p4[2] < 1 / 3


def test_explicit_ratios() -> None:
    plan = ExpansionPlan.build([100, 50], "ratios", ratios=[1.0, 3.0])
    assert np.allclose(plan.probabilities, [0.25, 0.75])
    assert plan.expanded_sizes == (100, 300)  # dataset 0 has the smallest p/N and keeps its size
    sampler = TemperatureSampler(plan, seed=3)
    counts = Counter(plan.dataset_of(i) for i in sampler)
    assert counts == {0: 100, 1: 300}
    with pytest.raises(ValueError, match="one ratio per dataset"):
        sampling_probabilities([1, 2], "ratios", ratios=[1.0])
    with pytest.raises(ValueError, match="positive"):
        sampling_probabilities([1, 2], "ratios", ratios=[1.0, 0.0])


def test_expansion_never_shrinks_and_bad_sizes_raise() -> None:
    assert (expansion_sizes([5, 5], [0.9, 0.1]) >= 5).all()
    with pytest.raises(ValueError, match="positive integers"):
        sampling_probabilities([3, 0])


def test_epoch_visits_repeated_indices_round_robin() -> None:
    sizes = [7, 5, 3]
    plan = ExpansionPlan.build(sizes, temperature=2.0)
    assert plan.expanded_sizes == tuple(ceil_sqrt(n * 7) for n in sizes) == (7, 6, 5)
    order = TemperatureSampler(plan, seed=0).epoch_order().tolist()
    counts = Counter(order)
    offsets = np.cumsum([0, *sizes])
    for k, (n, e) in enumerate(zip(sizes, plan.expanded_sizes)):
        got = [counts[offsets[k] + j] for j in range(n)]
        q, r = divmod(e, n)
        assert got == [q + 1] * r + [q] * (n - r)  # index mod N_i: the first r seen once more


def test_shuffle_is_seeded_per_epoch() -> None:
    plan = ExpansionPlan.build([50, 20], temperature=2.0)
    a, b = TemperatureSampler(plan, seed=1), TemperatureSampler(plan, seed=1)
    e0 = list(a)
    assert e0 == list(b)
    a.set_epoch(1)
    assert list(a) != e0 and sorted(list(a)) == sorted(e0)
    assert list(TemperatureSampler(plan, seed=2)) != e0
    assert (
        list(TemperatureSampler(plan, shuffle=False))
        == plan.source_index(torch.arange(plan.epoch_size)).tolist()
    )


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_get_disjoint_equal_shards(world_size: int) -> None:
    plan = ExpansionPlan.unbalanced([11, 6, 4])  # unique indices, so disjointness is visible
    shards = [
        list(TemperatureSampler(plan, seed=5, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    assert len({len(s) for s in shards}) == 1
    assert len(shards[0]) == 21 // world_size
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat))
    # together they are the epoch order minus its last (21 mod W) entries
    order = TemperatureSampler(plan, seed=5).epoch_order().tolist()
    assert sorted(flat) == sorted(order[: len(flat)])


def test_padding_instead_of_dropping() -> None:
    plan = ExpansionPlan.unbalanced([5])
    shards = [
        list(TemperatureSampler(plan, rank=r, world_size=3, drop_last=False)) for r in range(3)
    ]
    assert [len(s) for s in shards] == [2, 2, 2]
    assert set().union(*map(set, shards)) == set(range(5))


def _take(it, n):
    return [next(it) for _ in range(n)]


@pytest.mark.parametrize("world_size", [1, 2])
def test_resume_mid_epoch_equals_uninterrupted(world_size: int) -> None:
    plan = ExpansionPlan.build([40, 9, 3], temperature=2.0)

    def make(rank: int) -> TemperatureSampler:
        return TemperatureSampler(plan, seed=7, rank=rank, world_size=world_size)

    for rank in range(world_size):
        ref = make(rank)
        uninterrupted = []
        for epoch in range(3):
            ref.set_epoch(epoch)
            uninterrupted.append(list(ref))

        first = make(rank)
        first.set_epoch(1)
        seen = _take(iter(first), 13)
        state = first.state_dict()
        assert state["epoch"] == 1 and state["position"] == 13

        resumed = make(rank)
        resumed.load_state_dict(state)
        resumed.set_epoch(1)  # Lightning re-selects the epoch on restart: must keep the position
        assert len(resumed) == len(uninterrupted[1])
        assert seen + list(resumed) == uninterrupted[1]
        resumed.set_epoch(2)
        assert list(resumed) == uninterrupted[2]


def test_resume_uses_the_consumed_count() -> None:
    plan = ExpansionPlan.build([30, 8], temperature=2.0)
    s = TemperatureSampler(plan, seed=2)
    full = list(s)
    it = iter(s)
    _take(it, 20)  # prefetched further than training consumed
    state = s.state_dict(consumed=12)
    r = TemperatureSampler(plan, seed=2)
    r.load_state_dict(state)
    assert list(r) == full[12:]
    assert list(r) == full  # after the resumed epoch, iteration starts at the beginning again


def test_resume_refuses_a_different_run() -> None:
    plan = ExpansionPlan.build([30, 8], temperature=2.0)
    state = TemperatureSampler(plan, seed=2, rank=0, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        TemperatureSampler(plan, seed=2, rank=0, world_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        TemperatureSampler(plan, seed=3, rank=0, world_size=2).load_state_dict(state)


def test_works_as_a_dataloader_sampler() -> None:
    datasets = [list(range(100, 106)), list(range(200, 202))]
    plan = ExpansionPlan.build([len(d) for d in datasets], temperature=2.0)
    sampler = TemperatureSampler(plan, seed=0)
    loader = DataLoader(ConcatDataset(datasets), sampler=sampler, batch_size=4)
    items = [x for b in loader for x in b.tolist()]
    assert len(items) == plan.epoch_size == 6 + ceil_sqrt(2 * 6)
    assert Counter(x // 100 for x in items) == {1: 6, 2: 4}


# ---------------------------------------------------------------------------- atom-capped batches


def _natoms(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(1, 30, size=n)


def test_atom_cap_batches_are_full_and_within_caps(rng: np.random.Generator) -> None:
    plan = ExpansionPlan.build([60, 15], temperature=2.0)
    natoms = _natoms(rng, 75)
    sampler = TemperatureSampler(plan, seed=4)
    bs = MaxAtomsBatchSampler(sampler, natoms, max_atoms=60, max_batch_size=5)
    batches = list(bs)
    order = sampler.epoch_order().tolist()
    assert [i for b in batches for i in b] == order  # one rank: every sample, in epoch order
    for k, b in enumerate(batches):
        assert natoms[b].sum() <= 60 and len(b) <= 5
        if k + 1 < len(batches) and len(b) < 5:  # greedy: the next structure did not fit
            assert natoms[b].sum() + natoms[batches[k + 1][0]] > 60


def test_atom_cap_ranks_get_equal_batch_counts(rng: np.random.Generator) -> None:
    plan = ExpansionPlan.unbalanced([40, 13])
    natoms = _natoms(rng, 53)
    per_rank = [
        list(
            MaxAtomsBatchSampler(
                TemperatureSampler(plan, seed=1, rank=r, world_size=3), natoms, max_atoms=50
            )
        )
        for r in range(3)
    ]
    assert len({len(b) for b in per_rank}) == 1
    flat = [i for batches in per_rank for b in batches for i in b]
    assert len(flat) == len(set(flat))


def test_atom_cap_names_the_structure_that_cannot_fit() -> None:
    plan = ExpansionPlan.unbalanced([3, 2], names=["oc20", "ani1x"])
    natoms = np.array([5, 5, 5, 5, 99])
    bs = MaxAtomsBatchSampler(TemperatureSampler(plan), natoms, max_atoms=50)
    with pytest.raises(DataError, match=r"ani1x, record 1: structure has 99 atoms"):
        list(bs)


def test_atom_cap_resume_mid_epoch(rng: np.random.Generator) -> None:
    plan = ExpansionPlan.build([50, 10], temperature=2.0)
    natoms = _natoms(rng, 60)

    def make() -> MaxAtomsBatchSampler:
        return MaxAtomsBatchSampler(TemperatureSampler(plan, seed=9), natoms, max_atoms=40)

    ref = make()
    ref.set_epoch(1)
    full = list(ref)
    a = make()
    a.set_epoch(1)
    head = _take(iter(a), 4)
    b = make()
    b.load_state_dict(a.state_dict())
    b.set_epoch(1)
    assert head + list(b) == full
