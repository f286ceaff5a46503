"""`MultiDatasetDataModule`: the data side of multi-dataset training, from config sections.

For every dataset (a `PretrainDataset` config section: name, format, train / val sources or a
split, graph setting, linear references and normalisation) it

1. reads each source once into a record cache under ``cache_dir`` (`openjmp.train.sources`);
2. cuts the train / val parts (a separate val source, or `openjmp.train.splits` on one source);
3. resolves the target normalisation on the training part only, cached as JSON beside the run
   (`openjmp.train.normalization`);
4. builds `GraphDataset` s: training items with a2a edge dropout, validation items without.

All of this happens in ``__init__`` (so the model can be built from the statistics before the
Trainer starts); record caches are safe to build from several processes at once. Lightning then
calls ``setup`` and the ``*_dataloader`` hooks: training batches come from a
`TemperatureSampler` over the concatenated training parts (temperature / ratio / uniform
up-sampling, sharded by rank), fixed-size or capped in atoms, through a `ResumableDataLoader`;
validation batches from an in-order shard of every validation part. Use it with
``Trainer(use_distributed_sampler=False)``.

The loaders themselves are `GraphDataModule`'s, the base that fine-tuning's data module
(`openjmp.train.finetune.data`) shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

from openjmp.config.common import LoaderConfig
from openjmp.config.pretrain import PretrainDataset, SamplingConfig
from openjmp.data.cache import RecordStore
from openjmp.data.sampling import ExpansionPlan, TemperatureSampler
from openjmp.errors import ConfigError
from openjmp.train.graph_dataset import ConcatGraphDataset, GraphDataset
from openjmp.train.loader import KeyedBatchSampler, ResumableDataLoader, sharded_eval_loader
from openjmp.train.normalization import TargetNormalization, resolve_normalization
from openjmp.train.sources import open_source
from openjmp.train.splits import split_indices


@dataclass
class PreparedDataset:
    """A dataset after step 1-3 of the module docstring."""

    spec: PretrainDataset
    train_store: RecordStore
    train_indices: np.ndarray
    val_store: RecordStore
    val_indices: np.ndarray
    normalization: TargetNormalization


def prepare_dataset(spec: PretrainDataset, cache_dir: Path) -> PreparedDataset:
    """Read (or reopen) the sources, cut the parts and resolve the normalisation of ``spec``."""
    cache_dir = Path(cache_dir)
    train_store = open_source(spec.format, spec.train, cache_dir, label=f"{spec.name}-train")
    if spec.val is not None:
        val_store = open_source(spec.format, spec.val, cache_dir, label=f"{spec.name}-val")
        train_idx = np.arange(len(train_store), dtype=np.int64)
        val_idx = np.arange(len(val_store), dtype=np.int64)
    elif spec.split is not None:
        parts = split_indices(spec.split, train_store.ids, source=spec.train.path)
        val_store, train_idx, val_idx = train_store, parts["train"], parts["val"]
    else:
        raise ConfigError(f"datasets.{spec.name}: give a val source or a split")
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ConfigError(
            f"datasets.{spec.name}: the training part has {len(train_idx)} and the validation "
            f"part {len(val_idx)} structures; both need at least one"
        )
    norm = resolve_normalization(
        spec.name,
        train_store,
        train_idx,
        references=spec.linear_references,
        energy=spec.energy_normalization,
        forces=spec.force_normalization,
        cache_dir=cache_dir,
    )
    return PreparedDataset(spec, train_store, train_idx, val_store, val_idx, norm)


class GraphDataModule(pl.LightningDataModule):
    """What every openjmp data module does with its built graph datasets: training batches
    from a `TemperatureSampler` over ``plan`` (sharded by rank), fixed-size or capped in atoms,
    through a `ResumableDataLoader` whose position checkpoints save; evaluation batches from an
    in-order shard of a dataset. Use with ``Trainer(use_distributed_sampler=False)``.

    Subclasses build ``train_set`` (a `GraphDataset` or `ConcatGraphDataset`), ``val_set``,
    ``test_set`` (None when there is none) and the ``plan`` over the training parts, then call
    ``super().__init__(loader, seed)`` first.
    """

    train_set: GraphDataset | ConcatGraphDataset
    val_set: GraphDataset | ConcatGraphDataset | None
    test_set: GraphDataset | ConcatGraphDataset | None = None
    plan: ExpansionPlan

    def __init__(self, loader: LoaderConfig, seed: int) -> None:
        super().__init__()
        self.loader_config = loader
        self.seed = int(seed)
        self._train_natoms: np.ndarray | None = None
        self._train_loader: ResumableDataLoader | None = None

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (0, 1) if trainer is None else (int(trainer.global_rank), int(trainer.world_size))

    def _batch_sampler(self, rank: int, world_size: int) -> KeyedBatchSampler:
        cfg = self.loader_config
        sampler = TemperatureSampler(self.plan, seed=self.seed, rank=rank, world_size=world_size)
        if cfg.max_atoms_per_batch is None:
            return KeyedBatchSampler(sampler, batch_size=cfg.batch_size)
        if self._train_natoms is None:
            self._train_natoms = self.train_set.natoms()
        return KeyedBatchSampler(
            sampler,
            batch_size=cfg.batch_size,
            max_atoms=cfg.max_atoms_per_batch,
            natoms=self._train_natoms,
        )

    def _no_full_batch(self, world: int) -> str:
        """The error when an epoch makes no full training batch."""
        return (
            f"one training epoch of {self.plan.epoch_size} structures makes no full batch of "
            f"{self.loader_config.batch_size} per rank on {world} rank(s)"
        )

    def train_batches_per_epoch(self, world_size: int | None = None) -> int:
        """Training batches per rank in one (expanded) epoch (epoch 0 for atom-capped batches);
        ConfigError when that is not one full batch."""
        world = self._rank_world()[1] if world_size is None else world_size
        n = len(self._batch_sampler(0, world))
        if n == 0:
            raise ConfigError(self._no_full_batch(world))
        return n

    def train_dataloader(self) -> ResumableDataLoader:
        if self._train_loader is None:
            rank, world = self._rank_world()
            workers = self.loader_config.num_workers
            self._train_loader = ResumableDataLoader(
                self.train_set,
                self._batch_sampler(rank, world),
                num_workers=workers,
                persistent_workers=workers > 0,
            )
        return self._train_loader

    def eval_loader(
        self, dataset: GraphDataset | ConcatGraphDataset, *, shard: bool = True
    ) -> torch.utils.data.DataLoader:
        """In-order batches of ``dataset`` (this rank's shard unless ``shard=False``)."""
        cfg = self.loader_config
        rank, world = self._rank_world() if shard else (0, 1)
        return sharded_eval_loader(
            dataset,
            cfg.eval_batch_size or cfg.batch_size,
            rank=rank,
            world_size=world,
            num_workers=cfg.num_workers,
        )

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        if self.val_set is None:
            raise ConfigError("no validation data")
        return self.eval_loader(self.val_set)

    def test_dataloader(self) -> torch.utils.data.DataLoader:
        if self.test_set is None:
            raise ConfigError("no test data: give data.test or a split with a test part")
        return self.eval_loader(self.test_set)


class MultiDatasetDataModule(GraphDataModule):
    """Graph datasets, samplers and loaders of several datasets (see the module docstring).

    Args:
        datasets: the datasets, in task order.
        loader: batch size, atom cap, eval batch size, workers.
        cache_dir: where record caches and normalisation files live.
        sampling: how training parts are mixed; None: each seen once per epoch (T = 1).
        edge_dropout: a2a edge dropout of training samples.
        seed: shuffling and dropout seed.
        dtype: floating dtype of sample positions and labels.
    """

    def __init__(
        self,
        datasets: Sequence[PretrainDataset],
        loader: LoaderConfig,
        cache_dir: Path,
        *,
        sampling: SamplingConfig | None = None,
        edge_dropout: float = 0.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(loader, seed)
        self.sampling = sampling
        self.prepared = [prepare_dataset(d, cache_dir) for d in datasets]
        names = self.names
        self.train_set = ConcatGraphDataset(
            [
                GraphDataset(
                    p.train_store,
                    p.spec.graph,
                    p.spec.name,
                    indices=p.train_indices,
                    edge_dropout=edge_dropout,
                    seed=seed,
                    dtype=dtype,
                )  # fmt: skip
                for p in self.prepared
            ]
        )
        self.val_set = ConcatGraphDataset(
            [
                GraphDataset(
                    p.val_store, p.spec.graph, p.spec.name, indices=p.val_indices, dtype=dtype
                )  # fmt: skip
                for p in self.prepared
            ]
        )
        sizes = [len(d) for d in self.train_set.datasets]
        if sampling is None:
            self.plan = ExpansionPlan.unbalanced(sizes, names=names)
        else:
            ratios = None if sampling.ratios is None else [sampling.ratios[n] for n in names]
            self.plan = ExpansionPlan.build(
                sizes, sampling.mode, temperature=sampling.temperature, ratios=ratios,
                names=names,
            )  # fmt: skip

    @property
    def names(self) -> list[str]:
        return [p.spec.name for p in self.prepared]

    @property
    def normalizations(self) -> dict[str, TargetNormalization]:
        return {p.spec.name: p.normalization for p in self.prepared}
