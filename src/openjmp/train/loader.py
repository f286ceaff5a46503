"""Training and evaluation DataLoaders over graph datasets, resumable mid-epoch.

`KeyedBatchSampler` turns a `TemperatureSampler` (fixed batch size) or a
`MaxAtomsBatchSampler` (at most ``max_atoms`` atoms per batch) into batches of
``(index, draw_key)`` items. The draw key ``(epoch, global position[, place in batch])`` is the
same whatever the number of workers, and seeds the sample's edge dropout
(`openjmp.train.graph_dataset`); global positions interleave ranks (rank r of W takes
positions r, r + W, ...), so no two ranks or epochs share a key.

`ResumableDataLoader` is a stock `DataLoader` that also implements Lightning's stateful
protocol (``state_dict`` / ``load_state_dict``): Lightning stores its state in the checkpoint
(``loops.fit_loop.state_dict.combined_loader``) and gives it back before the first batch of a
resumed run. The state is the sampler's (epoch, position), with the position counted from the
batches *this loader has handed to the training loop* (worker prefetching runs the sampler
ahead, so its own count would be wrong). Use it with ``Trainer(use_distributed_sampler=False)``:
the samplers shard by rank themselves.

`sharded_eval_loader` splits evaluation data across ranks without padding or repeats
(rank r takes items r, r + W, ...; the metrics are summed across ranks afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader, Dataset, Sampler

from openjmp.data.sampling import MaxAtomsBatchSampler, TemperatureSampler
from openjmp.graph.collate import collate

Item = tuple[int, tuple[int, ...]]


class KeyedBatchSampler(Sampler[list[Item]]):
    """Batches of ``(index, draw_key)`` from a temperature sampler.

    Give ``batch_size`` (fixed-size batches; the last incomplete batch of an epoch is dropped)
    or ``max_atoms`` + ``natoms`` (atom-capped batches, at most ``batch_size`` structures when
    both are given). ``.sampler`` is the underlying `TemperatureSampler`, where Lightning calls
    ``set_epoch``.
    """

    def __init__(
        self,
        sampler: TemperatureSampler,
        *,
        batch_size: int | None = None,
        max_atoms: int | None = None,
        natoms: Sequence[int] | None = None,
    ) -> None:
        if batch_size is None and max_atoms is None:
            raise ValueError("give batch_size, max_atoms, or both")
        self.sampler = sampler
        self.batch_size = batch_size
        self.packer: MaxAtomsBatchSampler | None = None
        if max_atoms is not None:
            if natoms is None:
                raise ValueError("max_atoms needs the atom count of every item (natoms)")
            self.packer = MaxAtomsBatchSampler(sampler, natoms, max_atoms, batch_size)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        if self.packer is not None:
            self.packer.set_epoch(epoch)

    def __len__(self) -> int:
        if self.packer is not None:
            self.packer.set_epoch(self.sampler.epoch)
            return len(self.packer)
        assert self.batch_size is not None
        return len(self.sampler) // self.batch_size

    def _position(self) -> int:
        """Where the next iteration starts (items of the inner sampler of this rank)."""
        inner = self.packer if self.packer is not None else self.sampler
        return int(inner.state_dict()["position"])

    def __iter__(self) -> Iterator[list[Item]]:
        epoch = self.sampler.epoch
        rank, world = self.sampler.rank, self.sampler.world_size
        if self.packer is not None:
            self.packer.set_epoch(epoch)  # keeps a restored position within the same epoch
            start = self._position()
            for b, batch in enumerate(self.packer, start):
                slot = b * world + rank
                yield [(int(i), (epoch, slot, j)) for j, i in enumerate(batch)]
            return
        assert self.batch_size is not None
        start = self._position()
        batch: list[Item] = []
        for p, i in enumerate(self.sampler, start):
            batch.append((int(i), (epoch, p * world + rank)))
            if len(batch) == self.batch_size:
                yield batch
                batch = []

    def state_dict(self, consumed_batches: int) -> dict[str, Any]:
        """The inner sampler's state after ``consumed_batches`` batches of the current epoch."""
        if self.packer is not None:
            return {"packer": self.packer.state_dict(consumed=consumed_batches)}
        assert self.batch_size is not None
        return {"sampler": self.sampler.state_dict(consumed=consumed_batches * self.batch_size)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.packer is not None:
            if "packer" not in state:
                raise ValueError("cannot resume: the checkpoint used fixed-size batches")
            self.packer.load_state_dict(state["packer"])
        else:
            if "sampler" not in state:
                raise ValueError("cannot resume: the checkpoint used atom-capped batches")
            self.sampler.load_state_dict(state["sampler"])

    def consumed_batches(self) -> int:
        """Batches of the current epoch already behind the restored position."""
        pos = self._position()
        return pos if self.packer is not None else pos // (self.batch_size or 1)


class ResumableDataLoader(DataLoader):
    """A `DataLoader` over a `KeyedBatchSampler` whose position survives checkpoints (module doc)."""

    def __init__(self, dataset: Dataset[Any], batch_sampler: KeyedBatchSampler, **kwargs: Any):
        kwargs.setdefault("collate_fn", collate)
        super().__init__(dataset, batch_sampler=batch_sampler, **kwargs)
        self._consumed = 0
        self._epoch = batch_sampler.epoch

    @property
    def keyed_sampler(self) -> KeyedBatchSampler:
        return self.batch_sampler  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        sampler = self.keyed_sampler
        self._epoch = sampler.epoch
        self._consumed = sampler.consumed_batches()
        for batch in super().__iter__():
            self._consumed += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Epoch and batches handed out so far (what a resumed run must skip)."""
        sampler = self.keyed_sampler
        if sampler.epoch != self._epoch:  # a new epoch was selected but not started yet
            return sampler.state_dict(consumed_batches=0)
        return sampler.state_dict(consumed_batches=self._consumed)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keyed_sampler.load_state_dict(state)
        self._epoch = self.keyed_sampler.epoch
        self._consumed = self.keyed_sampler.consumed_batches()


class _Shard(Sampler[int]):
    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.indices = list(range(rank, n, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


def sharded_eval_loader(
    dataset: Dataset[Any],
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    **kwargs: Any,
) -> DataLoader:
    """In-order evaluation loader over this rank's items (r, r + W, ...); no padding."""
    n = len(dataset)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=_Shard(n, rank, world_size),
        collate_fn=collate,
        num_workers=num_workers,
        **kwargs,
    )
