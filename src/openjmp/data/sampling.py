"""Multi-dataset sampling for pre-training: temperature sampling as the authors implement it.

JMP draws its pre-training datasets with probabilities p_i ∝ N_i^(1/T) (T = 2), not by a random
dataset choice per batch but by *deterministic up-sampling*: dataset i is repeated (index mod
N_i) up to n_i = ceil(N_i · e_i) samples, with e_i ∝ p_i / N_i normalised so that min e = 1. With
T ≥ 1 that means the largest dataset is seen exactly once per epoch and every other one is
stretched to n_i = ceil(N_max · p_i / p_max); one epoch is Σ n_i samples. The expanded index
space is then shuffled per epoch (as a `DistributedSampler` would) and split across ranks.

How it is meant to be used (the data module builds this; nothing here touches records)::

    plan = ExpansionPlan.build([len(d) for d in datasets], mode="temperature", temperature=2.0)
    sampler = TemperatureSampler(plan, seed=cfg.seed, rank=rank, world_size=world_size)
    loader = DataLoader(ConcatDataset(datasets), sampler=sampler, batch_size=..., collate_fn=...)
    # or, to cap the atoms per batch (memory control):
    batches = MaxAtomsBatchSampler(sampler, natoms=concatenated_atom_counts, max_atoms=2000)
    loader = DataLoader(ConcatDataset(datasets), batch_sampler=batches, collate_fn=...)

Both samplers yield indices into the *concatenation of the original datasets* (no expanded
dataset wrapper is needed), have ``set_epoch`` (Lightning calls it; set
``Trainer(use_distributed_sampler=False)`` so Lightning does not replace them), and have
``state_dict`` / ``load_state_dict``: the state records the epoch and how far into it the
consumer got, so a resumed run continues with exactly the samples an uninterrupted run would
have seen. DataLoader workers prefetch, so the sampler runs ahead of training; pass the number
of samples (or batches) the training loop actually consumed to ``state_dict(consumed=...)``.
The position is the same on every rank (shards have equal lengths), so rank 0's saved state
restores every rank.

Validation uses no balancing (T = 1, which gives n_i = N_i) and no shuffling.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from openjmp.errors import DataError

SamplingMode = Literal["temperature", "ratios", "uniform"]

# Expanded sizes that are integers up to floating-point rounding are not rounded up: the authors'
# float arithmetic sometimes adds one sample at T = 1 (e.g. 100,000,001 for a 100M dataset).
_INTEGER_TOLERANCE = 1e-12
_CHUNK = 1 << 16  # indices converted to Python ints per step of iteration


def sampling_probabilities(
    sizes: Sequence[int],
    mode: SamplingMode = "temperature",
    *,
    temperature: float = 2.0,
    ratios: Sequence[float] | None = None,
) -> np.ndarray:
    """Probability of drawing each dataset, (K,) float64 summing to 1.

    ``temperature``: p_i ∝ (N_i / Σ N)^(1/T) (T = 1 is proportional, T → ∞ uniform);
    ``uniform``: p_i = 1/K; ``ratios``: p_i ∝ ``ratios[i]`` as given.
    """
    n = np.asarray(sizes, dtype=np.float64)
    if n.ndim != 1 or len(n) == 0:
        raise ValueError(f"need at least one dataset size, got {list(sizes)}")
    if np.any(n < 1) or np.any(n != np.round(n)):
        raise ValueError(f"dataset sizes must be positive integers, got {list(sizes)}")
    if mode == "temperature":
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be a positive finite number, got {temperature}")
        w = (n / n.sum()) ** (1.0 / temperature)
    elif mode == "uniform":
        w = np.ones_like(n)
    elif mode == "ratios":
        if ratios is None or len(ratios) != len(n):
            raise ValueError(f"mode 'ratios' needs one ratio per dataset ({len(n)}), got {ratios}")
        w = np.asarray(ratios, dtype=np.float64)
        if np.any(~np.isfinite(w)) or np.any(w <= 0):
            raise ValueError(f"sampling ratios must be positive and finite, got {list(ratios)}")
    else:
        raise ValueError(f"unknown sampling mode {mode!r} (temperature, ratios, uniform)")
    return w / w.sum()


def expansion_sizes(sizes: Sequence[int], probabilities: Sequence[float]) -> np.ndarray:
    """Samples per dataset per epoch, (K,) int64: n_i = ceil(N_i · e_i), e_i = (p_i/N_i) / min_j (p_j/N_j).

    The dataset with the smallest p_i/N_i keeps its size; no dataset is ever shrunk.
    """
    n = np.asarray(sizes, dtype=np.float64)
    p = np.asarray(probabilities, dtype=np.float64)
    per_sample = p / n
    factors = per_sample / per_sample.min()
    x = n * factors
    nearest = np.round(x)
    exact = np.abs(x - nearest) <= _INTEGER_TOLERANCE * x
    out = np.where(exact, nearest, np.ceil(x)).astype(np.int64)
    return np.maximum(out, n.astype(np.int64))


@dataclass(frozen=True)
class ExpansionPlan:
    """Original and expanded sizes of K datasets, and the map expanded position → original index.

    Attributes:
        sizes: (K,) N_i, samples in each original dataset.
        probabilities: (K,) p_i.
        expanded_sizes: (K,) n_i, samples of each dataset per epoch.
        names: dataset names, for messages (may be empty).
    """

    sizes: tuple[int, ...]
    probabilities: tuple[float, ...]
    expanded_sizes: tuple[int, ...]
    names: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        sizes: Sequence[int],
        mode: SamplingMode = "temperature",
        *,
        temperature: float = 2.0,
        ratios: Sequence[float] | None = None,
        names: Sequence[str] = (),
    ) -> ExpansionPlan:
        p = sampling_probabilities(sizes, mode, temperature=temperature, ratios=ratios)
        n = expansion_sizes(sizes, p)
        return cls(
            sizes=tuple(int(s) for s in sizes),
            probabilities=tuple(float(x) for x in p),
            expanded_sizes=tuple(int(x) for x in n),
            names=tuple(names),
        )

    @classmethod
    def unbalanced(cls, sizes: Sequence[int], names: Sequence[str] = ()) -> ExpansionPlan:
        """No expansion (validation): T = 1."""
        return cls.build(sizes, "temperature", temperature=1.0, names=names)

    @property
    def epoch_size(self) -> int:
        """Σ n_i: samples in one (expanded) epoch."""
        return int(sum(self.expanded_sizes))

    @property
    def repeats(self) -> tuple[float, ...]:
        """n_i / N_i: how often each dataset is seen per epoch."""
        return tuple(e / s for e, s in zip(self.expanded_sizes, self.sizes))

    def source_index(self, positions: torch.Tensor) -> torch.Tensor:
        """Expanded positions (any shape, int64 in [0, epoch_size)) → indices into the
        concatenation of the original datasets (same shape)."""
        exp_end = torch.tensor(np.cumsum(self.expanded_sizes), dtype=torch.int64)
        exp_start = exp_end - torch.tensor(self.expanded_sizes, dtype=torch.int64)
        sizes = torch.tensor(self.sizes, dtype=torch.int64)
        src_start = torch.cumsum(sizes, 0) - sizes
        k = torch.searchsorted(exp_end, positions, right=True)
        local = (positions - exp_start[k]) % sizes[k]
        return src_start[k] + local

    def dataset_of(self, index: int) -> int:
        """Dataset number of an index into the concatenated original datasets."""
        return int(np.searchsorted(np.cumsum(self.sizes), index, side="right"))

    def describe(self, index: int) -> tuple[str, int]:
        """(dataset name, index within it) of an index into the concatenated datasets."""
        k = self.dataset_of(index)
        name = self.names[k] if k < len(self.names) else f"dataset {k}"
        return name, index - int(sum(self.sizes[:k]))


def _resolve_rank(rank: int | None, world_size: int | None) -> tuple[int, int]:
    dist = torch.distributed
    if world_size is None:
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if rank is None:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} for world size {world_size}")
    return rank, world_size


class _Resumable:
    """Epoch / position bookkeeping shared by both samplers (position counts yielded items)."""

    epoch: int
    _position: int
    _resume_from: int

    def _check_state(self, state: dict[str, Any], expected: dict[str, Any]) -> None:
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(
                    f"cannot resume {type(self).__name__}: saved {key}={state.get(key)!r} but this "
                    f"run has {key}={value!r} (the data, seed or world size changed)"
                )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (its shuffle). A position restored by load_state_dict is kept when
        the restored epoch is selected again."""
        if epoch != self.epoch:
            self.epoch = int(epoch)
            self._resume_from = 0
            self._position = 0

    def _yield_from(self, items: Sequence[Any] | torch.Tensor) -> Iterator[Any]:
        start = self._resume_from
        self._position = start
        for first in range(start, len(items), _CHUNK):
            block = items[first : first + _CHUNK]
            if isinstance(block, torch.Tensor):
                block = block.tolist()
            for j, item in enumerate(block):
                self._position = first + j + 1
                yield item
        self._resume_from = 0
        self._position = 0


class TemperatureSampler(_Resumable, Sampler[int]):
    """Shuffled, rank-sharded order over the expanded index space of an `ExpansionPlan`.

    Every epoch is a fresh permutation of all Σ n_i expanded positions (seeded by
    ``seed + epoch``), mapped to indices of the concatenated original datasets. Rank r takes
    positions r, r + W, r + 2W, ... of that permutation. With ``drop_last`` (default) the last
    Σ n_i mod W positions are dropped, so shards are disjoint and of equal length; without it the
    permutation is padded from its start (shards then share at most W - 1 indices).
    """

    def __init__(
        self,
        plan: ExpansionPlan,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        drop_last: bool = True,
    ) -> None:
        self.plan = plan
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = _resolve_rank(rank, world_size)
        self.drop_last = drop_last
        self.epoch = 0
        self._position = 0
        self._resume_from = 0
        if plan.epoch_size < self.world_size:
            raise ValueError(f"{plan.epoch_size} samples cannot feed {self.world_size} ranks")

    def epoch_order(self) -> torch.Tensor:
        """(Σ n_i,) int64: this epoch's global order (all ranks), as original indices."""
        size = self.plan.epoch_size
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            positions = torch.randperm(size, generator=g)
        else:
            positions = torch.arange(size)
        return self.plan.source_index(positions)

    def _per_rank(self) -> int:
        size, w = self.plan.epoch_size, self.world_size
        return size // w if self.drop_last else -(-size // w)

    def rank_indices(self) -> torch.Tensor:
        """(len(self),) int64: this rank's shard of the epoch order."""
        order = self.epoch_order()
        total = self._per_rank() * self.world_size
        if total > len(order):
            order = torch.cat([order, order[: total - len(order)]])
        return order[self.rank : total : self.world_size]

    def __len__(self) -> int:
        return self._per_rank()

    def __iter__(self) -> Iterator[int]:
        return self._yield_from(self.rank_indices())

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Epoch and position within it (samples of this rank already used).

        ``consumed``: the number of samples the training loop has actually used this epoch
        (defaults to the number yielded so far, which runs ahead when workers prefetch).
        """
        return {
            "epoch": self.epoch,
            "position": self._position if consumed is None else int(consumed),
            "seed": self.seed,
            "epoch_size": self.plan.epoch_size,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved state: the next iteration starts where the saved one stopped."""
        self._check_state(
            state,
            {"seed": self.seed, "epoch_size": self.plan.epoch_size, "world_size": self.world_size},
        )
        self.epoch = int(state["epoch"])
        self._resume_from = self._position = int(state["position"])


class MaxAtomsBatchSampler(_Resumable, Sampler[list[int]]):
    """Batches that hold at most ``max_atoms`` atoms (and ``max_batch_size`` structures).

    Batches are packed greedily, in the sampler's global epoch order, before they are dealt to
    ranks (batch b goes to rank b mod W; the last incomplete round of batches is dropped), so
    every rank gets the same number of batches, as DDP requires. ``natoms[i]`` is the atom count
    of index i of the concatenated original datasets.
    """

    def __init__(
        self,
        sampler: TemperatureSampler,
        natoms: Sequence[int] | np.ndarray,
        max_atoms: int,
        max_batch_size: int | None = None,
    ) -> None:
        self.sampler = sampler
        self.natoms = np.asarray(natoms, dtype=np.int64)
        if self.natoms.shape != (sum(sampler.plan.sizes),):
            raise ValueError(
                f"natoms has {self.natoms.shape[0]} entries but the datasets hold "
                f"{sum(sampler.plan.sizes)} samples"
            )
        if max_atoms < 1 or (max_batch_size is not None and max_batch_size < 1):
            raise ValueError(f"invalid caps max_atoms={max_atoms}, max_batch_size={max_batch_size}")
        self.max_atoms = int(max_atoms)
        self.max_batch_size = max_batch_size
        self.epoch = sampler.epoch
        self._position = 0
        self._resume_from = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)

    def _pack(self, order: np.ndarray) -> list[list[int]]:
        counts = self.natoms[order]
        too_big = np.flatnonzero(counts > self.max_atoms)
        if len(too_big):
            i = int(order[too_big[0]])
            name, local = self.sampler.plan.describe(i)
            raise DataError(
                name,
                local,
                f"structure has {int(self.natoms[i])} atoms, more than max_atoms_per_batch="
                f"{self.max_atoms}; raise the cap",
            )
        ends = np.cumsum(counts)
        cap_n = len(order) if self.max_batch_size is None else self.max_batch_size
        batches: list[list[int]] = []
        start = 0
        while start < len(order):
            before = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, before + self.max_atoms, side="right"))
            stop = min(stop, start + cap_n)
            batches.append(order[start:stop].tolist())
            start = stop
        return batches

    def rank_batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch (lists of original indices)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self.sampler.set_epoch(self.epoch)
            batches = self._pack(self.sampler.epoch_order().numpy())
            w, r = self.sampler.world_size, self.sampler.rank
            usable = (len(batches) // w) * w
            if usable == 0:
                raise ValueError(f"{len(batches)} batches cannot feed {w} ranks")
            self._cache = (self.epoch, batches[r:usable:w])
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[list[int]]:
        return self._yield_from(self.rank_batches())

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Epoch and position within it (batches of this rank already used; see TemperatureSampler)."""
        return {
            "epoch": self.epoch,
            "position": self._position if consumed is None else int(consumed),
            "seed": self.sampler.seed,
            "epoch_size": self.sampler.plan.epoch_size,
            "world_size": self.sampler.world_size,
            "max_atoms": self.max_atoms,
            "max_batch_size": self.max_batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state(
            state,
            {
                "seed": self.sampler.seed,
                "epoch_size": self.sampler.plan.epoch_size,
                "world_size": self.sampler.world_size,
                "max_atoms": self.max_atoms,
                "max_batch_size": self.max_batch_size,
            },
        )
        self.epoch = int(state["epoch"])
        self.sampler.set_epoch(self.epoch)
        self._resume_from = self._position = int(state["position"])
