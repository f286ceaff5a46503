"""Datasets of graph samples: records (a `RecordStore` or a list) -> `GraphSample` on access.

`GraphDataset` is one source (or one part of it, through ``indices``) under one graph setting,
labelled with a task name. Items are either a plain position (no edge dropout: validation,
testing, inference) or ``(position, draw_key)``: a training draw, whose a2a edge dropout is
drawn from a generator seeded by ``(seed, *draw_key)`` only, never by worker or process. The
draw key names the draw (epoch and place in the global sample order, see
`openjmp.train.loader.KeyedBatchSampler`), so a resumed run, any ``num_workers`` and any
number of ranks see the same dropout masks for the same draws.

`ConcatGraphDataset` puts several `GraphDataset` behind one index space (the concatenation
order), which is what `openjmp.data.sampling`'s samplers index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from openjmp.config.common import GraphConfig
from openjmp.data.cache import RecordStore
from openjmp.graph.batch import GraphSample
from openjmp.graph.gemnet import build_graph_sample
from openjmp.records import AtomsRecord

DrawKey = tuple[int, ...]
"""Integers naming one training draw (epoch, global position, ...): seeds its edge dropout."""


def dropout_generator(seed: int, key: DrawKey) -> torch.Generator:
    """A CPU generator seeded from ``(seed, *key)`` through numpy's SeedSequence (well mixed)."""
    entropy = [int(seed) & 0xFFFFFFFF, *(int(k) for k in key)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class GraphDataset(Dataset[GraphSample]):
    """Records -> GemNet-OC graph samples of one task.

    Args:
        records: a `RecordStore` or a sequence of `AtomsRecord` (Å, eV, eV/Å).
        graph: the dataset's graph setting (cutoff Å, neighbour caps, periodicity).
        name: task / dataset name written into every sample (``GraphSample.dataset``).
        indices: (k,) positions of ``records`` that make up this dataset (None: all).
        edge_dropout: probability of dropping each a2a edge, applied to keyed items only.
        seed: base seed of the dropout generators.
        dtype: floating dtype of positions and labels in the samples.
    """

    def __init__(
        self,
        records: RecordStore | Sequence[AtomsRecord],
        graph: GraphConfig,
        name: str,
        *,
        indices: np.ndarray | Sequence[int] | None = None,
        edge_dropout: float = 0.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if not 0.0 <= edge_dropout < 1.0:
            raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}")
        self.records = records
        self.graph = graph
        self.name = name
        n = len(records)
        self.indices = (
            np.arange(n, dtype=np.int64) if indices is None else np.asarray(indices, np.int64)
        )
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
            raise IndexError(f"dataset {name!r}: indices outside 0..{n - 1}")
        self.edge_dropout = float(edge_dropout)
        self.seed = int(seed)
        self.dtype = dtype

    def __len__(self) -> int:
        return int(len(self.indices))

    def natoms(self) -> np.ndarray:
        """(len,) int64 atoms per item (for atom-capped batching), without building graphs."""
        if isinstance(self.records, RecordStore):
            return np.asarray(self.records.natoms[self.indices], dtype=np.int64)
        return np.array([self.records[int(i)].natoms for i in self.indices], dtype=np.int64)

    def record(self, i: int) -> AtomsRecord:
        """The record behind item ``i``."""
        return self.records[int(self.indices[i])]

    def __getitem__(self, item: int | tuple[int, DrawKey]) -> GraphSample:
        key: DrawKey | None = None
        if isinstance(item, tuple):
            item, key = item
        rec = self.record(int(item))
        if rec.dataset != self.name:
            rec = rec.replace(dataset=self.name)
        p = self.edge_dropout if key is not None else 0.0
        gen = dropout_generator(self.seed, key) if key is not None and p > 0 else None
        return build_graph_sample(
            rec, self.graph.spec(rec.natoms), edge_dropout=p, generator=gen, dtype=self.dtype
        )


class ConcatGraphDataset(Dataset[GraphSample]):
    """Several `GraphDataset` behind one index space: item i of dataset k is ``offsets[k] + i``."""

    def __init__(self, datasets: Sequence[GraphDataset]) -> None:
        if not datasets:
            raise ValueError("need at least one dataset")
        self.datasets = list(datasets)
        self.sizes = np.array([len(d) for d in self.datasets], dtype=np.int64)
        self.ends = np.cumsum(self.sizes)

    def __len__(self) -> int:
        return int(self.ends[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset number, position inside it) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside 0..{len(self) - 1}")
        k = int(np.searchsorted(self.ends, index, side="right"))
        return k, index - int(self.ends[k] - self.sizes[k])

    def natoms(self) -> np.ndarray:
        """(len,) int64 atoms per item, in concatenation order."""
        return np.concatenate([d.natoms() for d in self.datasets])

    def __getitem__(self, item: int | tuple[int, Any]) -> GraphSample:
        if isinstance(item, tuple):
            k, i = self.locate(int(item[0]))
            return self.datasets[k][(i, item[1])]
        k, i = self.locate(int(item))
        return self.datasets[k][i]
