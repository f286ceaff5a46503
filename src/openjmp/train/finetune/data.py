"""Fine-tuning data: the configured sources, split into train / val / test, served as graph batches.

Built from the shared training pieces: record caches (`openjmp.train.sources`), the
``SplitConfig`` rule (`openjmp.train.splits`: one RandomState(seed) shuffle cut into
[train | val | test], which reproduces the authors' rMD17, MD22, QM9, SPICE and QMOF splits),
`openjmp.train.graph_dataset.GraphDataset` and the mid-epoch resumable loader
(`openjmp.train.loader`). Specific to fine-tuning:

* a test part (from the split, or a separate ``test`` source), and separate ``val`` / ``test``
  sources replacing the corresponding parts of the split;
* MatBench with ``fold``: the official fold (folds file beside the data, else MatBench's KFold),
  its training part split 90/10 into train/val with the seed, its test part as test;
* every structure of every part is checked up front for the labels the heads need, so a missing
  label is a `DataError` naming the file and the record, not a failure deep in a batch.

The graph setting is the dataset's `GraphConfig` (cutoff, neighbour caps, MatBench/QMOF
atom-count caps), applied per structure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openjmp import progress
from openjmp.config.common import GraphConfig, LoaderConfig
from openjmp.config.finetune import (
    ClassificationHead,
    EnergyForcesHead,
    FinetuneData,
    ForcesHead,
)
from openjmp.data.cache import RecordStore
from openjmp.data.sampling import ExpansionPlan
from openjmp.data.splits import make_splits
from openjmp.errors import ConfigError, DataError
from openjmp.graph.batch import Batch
from openjmp.graph.collate import collate
from openjmp.records import AtomsRecord
from openjmp.train.datamodule import GraphDataModule
from openjmp.train.graph_dataset import GraphDataset
from openjmp.train.sources import open_source
from openjmp.train.splits import split_indices

PARTS = ("train", "val", "test")


class RecordView(Sequence[AtomsRecord]):
    """Records ``indices`` of a store, in that order (for statistics and label checks)."""

    def __init__(self, store: RecordStore, indices: np.ndarray) -> None:
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> AtomsRecord:  # type: ignore[override]
        return self.store[int(self.indices[i])]

    def __iter__(self) -> Iterator[AtomsRecord]:
        for i in self.indices:
            yield self.store[int(i)]


@dataclass(frozen=True)
class Part:
    """One part of the data: the store and the positions of its records in it."""

    store: RecordStore
    indices: np.ndarray

    @property
    def records(self) -> RecordView:
        return RecordView(self.store, self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass(frozen=True)
class FinetuneSplits:
    """The train / val / test parts (test may be None)."""

    train: Part
    val: Part
    test: Part | None

    def part(self, name: str) -> Part | None:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def _matbench_parts(store: RecordStore, data: FinetuneData) -> dict[str, np.ndarray]:
    split = data.split
    if split is not None and (split.fractions is None or split.fractions[0] != 0.9):
        raise ConfigError(
            "data.split: a MatBench fold's training part is split 90/10 into train/val "
            "(fractions [0.9, null, 0.0])"
        )
    ids = store.ids
    names = {d for d in store.datasets if d}
    dataset = names.pop() if len(names) == 1 else "matbench"
    labels = None
    if store.manifest["targets"] and np.asarray(store.column("target_0")).dtype == np.bool_:
        labels = np.asarray(store.column("target_0"))
    seed = split.seed if split is not None else 42
    folds = make_splits(
        dataset, ids, store.natoms, seed=seed, source=data.train.path, labels=labels
    )
    key = f"fold_{data.fold}"
    if key not in folds:
        raise DataError(data.train.path, None, f"no {key} in the MatBench folds ({sorted(folds)})")
    return folds[key]


def load_finetune_splits(data: FinetuneData, cache_dir: Path) -> FinetuneSplits:
    """Read (through record caches under ``cache_dir``) and split the configured data."""
    store = open_source(data.format, data.train, cache_dir, label="finetune-train")
    if data.fold is not None:
        parts = _matbench_parts(store, data)
    elif data.split is not None:
        parts = split_indices(data.split, store.ids, source=data.train.path)
    else:
        parts = {"train": np.arange(len(store), dtype=np.int64)}
    out: dict[str, Part | None] = {k: Part(store, v) if len(v) else None for k, v in parts.items()}
    for name in ("val", "test"):
        src = getattr(data, name)
        if src is not None:
            other = open_source(data.format, src, cache_dir, label=f"finetune-{name}")
            out[name] = Part(other, np.arange(len(other), dtype=np.int64))
    if out.get("train") is None:
        raise ConfigError("the training part is empty: check data.split")
    if out.get("val") is None:
        raise ConfigError("the validation part is empty: give data.val or a split with a val part")
    return FinetuneSplits(out["train"], out["val"], out.get("test"))  # type: ignore[arg-type]


def check_labels(records: Sequence[AtomsRecord], heads: Sequence[Any], part: str) -> None:
    """DataError naming the first structure of ``part`` without a label some head needs."""
    needs_forces = any(isinstance(h, EnergyForcesHead | ForcesHead) for h in heads)
    keys = [h.energy_target for h in heads if isinstance(h, EnergyForcesHead)]
    keys += [h.target for h in heads if not isinstance(h, EnergyForcesHead | ForcesHead)]
    classes = [h for h in heads if isinstance(h, ClassificationHead)]
    for r in records:
        if needs_forces and r.forces is None:
            raise DataError(
                r.source,
                r.index,
                f"{part} structure has no forces (an energy/forces head needs them)",
            )
        for k in keys:
            if (r.energy is None) if k == "energy" else (k not in r.targets):
                raise DataError(
                    r.source, r.index, f"{part} structure has no label {k!r} (a head needs it)"
                )
        for h in classes:
            v = float(np.asarray(r.targets[h.target], dtype=np.float64))
            if v != int(v) or not 0 <= v < h.num_classes:
                raise DataError(
                    r.source,
                    r.index,
                    f"class label {h.target}={v} is not one of 0..{h.num_classes - 1}",
                )


class FinetuneDataModule(GraphDataModule):
    """Graph datasets and loaders of one fine-tuning dataset (module docstring).

    Training batches: a seeded shuffle, new every epoch, fixed ``batch_size`` (the last
    incomplete batch of an epoch is dropped) or capped at ``max_atoms_per_batch`` atoms, through
    a `ResumableDataLoader` whose position is saved in checkpoints (`GraphDataModule`). Use
    with ``Trainer(use_distributed_sampler=False)``.
    """

    def __init__(
        self,
        splits: FinetuneSplits,
        graph: GraphConfig,
        loader: LoaderConfig,
        *,
        name: str = "finetune",
        seed: int = 0,
        edge_dropout: float = 0.0,
    ) -> None:
        super().__init__(loader, seed)
        self.splits = splits

        def dataset(part: Part | None) -> GraphDataset | None:
            if part is None:
                return None
            return GraphDataset(part.store, graph, name, indices=part.indices, seed=seed)

        self.train_set = train = GraphDataset(
            splits.train.store, graph, name, indices=splits.train.indices,
            edge_dropout=edge_dropout, seed=seed,
        )  # fmt: skip
        self.val_set = dataset(splits.val)
        self.test_set = dataset(splits.test)
        self.plan = ExpansionPlan.unbalanced([len(train)], names=["train"])

    def _no_full_batch(self, world: int) -> str:
        return (
            f"the training part ({len(self.train_set)} structures) makes no full batch of "
            f"{self.loader_config.batch_size}: lower loader.batch_size"
        )

    def dataset(self, part: str) -> GraphDataset | None:
        return {"train": self.train_set, "val": self.val_set, "test": self.test_set}[part]


def iterate_batches(dataset: GraphDataset, batch_size: int) -> Iterator[Batch]:
    """Batches of ``dataset`` in order (evaluation outside a Trainer), with a progress bar
    (`openjmp.progress`: off under --no-progress and CI)."""
    starts = range(0, len(dataset), batch_size)
    for start in progress.bar(starts, "evaluating", total=len(starts), unit=" batches"):
        yield collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
