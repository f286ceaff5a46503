"""Pooled backbone embeddings of structures from every set of the study (for the t-SNE map)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from openjmp.config import PretrainConfig
from openjmp.config.common import GraphConfig
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.scatter import segment_mean
from openjmp.io import read_records
from openjmp.model.checkpoint import load_checkpoint
from openjmp.model.jmp_model import EMBEDDING_KEY
from openjmp.study.tasks import DemoTask


def _sources(pretrain: PretrainConfig, tasks: Sequence[DemoTask]):
    for d in pretrain.resolved_datasets():
        src = d.val or d.train
        yield d.name, d.format, src.path, dict(src.options), d.graph
    seen = set()
    for t in tasks:
        path = t.data["train"]["path"]
        if path in seen:
            continue
        seen.add(path)
        yield (
            t.name.split("_")[0] + "_ft",
            t.data["format"],
            path,
            {},
            GraphConfig(**t.data["graph"]),
        )


@torch.no_grad()
def pooled_embeddings(
    checkpoint: Path, pretrain: PretrainConfig, tasks: Sequence[DemoTask], per_set: int = 60
) -> tuple[np.ndarray, list[str]]:
    """Mean-pooled per-atom backbone features (M, emb_size_atom) and the set of each structure.

    Takes the first ``per_set`` structures of each pre-training set (its validation source
    when it has one) and of each fine-tuning source.
    """
    model = load_checkpoint(checkpoint, dtype=torch.float32).eval()
    feats: list[np.ndarray] = []
    labels: list[str] = []
    for name, fmt, path, options, graph in _sources(pretrain, tasks):
        records = list(itertools.islice(read_records(path, fmt, **options), per_set))
        for i in range(0, len(records), 16):
            chunk = records[i : i + 16]
            batch = collate(
                [build_graph_sample(r, graph.spec(r.natoms), dtype=torch.float32) for r in chunk]
            )
            h = model(batch)[EMBEDDING_KEY]
            n = batch.num_graphs
            feats.append(segment_mean(h, batch.batch, n).numpy())
            labels += [name] * n
    return np.concatenate(feats), labels
