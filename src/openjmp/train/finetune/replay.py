"""Replay fine-tuning's data and heads (``adaptation: replay``): what `run_full` adds for it.

* `kept_heads`: the checkpoint's pre-training heads of the replayed datasets (specs with
  their recorded normalisation, and weights); a dataset without both heads in the checkpoint
  is a `ConfigError` naming the datasets the checkpoint has;
* `load_replay_sources`: each replayed dataset's training and validation parts (record caches,
  the same split rule as pre-training); a source that does not exist is a `ConfigError`;
* `replay_plan` / `ReplaySampler`: one epoch = the target's training part once + ``round(ratio
  × N_target)`` replay structures shared by temperature; each replayed dataset is walked in a
  fixed seeded order, one window per epoch, so later epochs see new structures;
* `ReplayDataModule`: `FinetuneDataModule` whose training batches are `MixedBatch` es;
* `pseudo_labelled`: the target's training structures labelled by the starting model's heads
  (``replay.pseudo_labels``), replayed like a dataset;
* `replay_summary` / `format_replay_summary`: which heads and datasets take part, how many
  structures each (printed at the start, kept in ``metrics.json`` and the CLI's summary).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openjmp.config.common import GraphConfig, LoaderConfig
from openjmp.config.finetune import FinetuneConfig, ReplayConfig, ReplayDataset
from openjmp.data.sampling import ExpansionPlan, TemperatureSampler, sampling_probabilities
from openjmp.errors import ConfigError
from openjmp.model.jmp_model import JMPModel
from openjmp.tasks.finetune_replay import TARGET_DATASET, collate_mixed, kept_head_names
from openjmp.train.finetune.data import FinetuneDataModule, FinetuneSplits, Part, iterate_batches
from openjmp.train.graph_dataset import ConcatGraphDataset, GraphDataset
from openjmp.train.sources import open_source
from openjmp.train.splits import split_indices


@dataclass(frozen=True)
class ReplaySource:
    """One replayed dataset: its config and its training / validation parts."""

    spec: ReplayDataset
    train: Part
    val: Part


def starting_model(config: FinetuneConfig, *, dtype: torch.dtype = torch.float32) -> JMPModel:
    """``model.checkpoint`` as fine-tuning starts from it (EMA weights as ``model.ema_weights``
    says), checked to have the heads of every replayed set (a `ConfigError` names the
    pre-training datasets it has)."""
    from openjmp.model.checkpoint import load_checkpoint, set_references

    assert config.replay is not None and config.model.checkpoint is not None
    path = Path(config.model.checkpoint)
    model = load_checkpoint(path, ema=config.model.ema_weights, dtype=dtype)
    have = sorted(h[: -len("_energy")] for h in model.heads if h.endswith("_energy"))
    names = [d.name for d in config.replay.heads()]
    if TARGET_DATASET in names:
        raise ConfigError(f"replay: the name {TARGET_DATASET!r} is the target's")
    missing = [h for h in kept_head_names(names) if h not in model.heads]
    if missing:
        raise ConfigError(
            f"replay: model.checkpoint {path} has no head(s) {missing}; its "
            f"pre-training datasets are {have or 'none (not a pre-training checkpoint)'}"
        )
    for d in config.replay.heads():
        if d.references is None:
            continue
        transform = model.output_transform(f"{d.name}_energy")
        if transform is not None and transform.physical:
            raise ConfigError(
                f"replay {d.name}: references {d.references} given, but head {d.name}_energy "
                "records its own references already; leave references out"
            )
        if not Path(d.references).expanduser().is_file():
            raise ConfigError(f"replay {d.name}: references file {d.references} does not exist")
        set_references(model, d.name, Path(d.references).expanduser())
    return model


def kept_heads(
    config: FinetuneConfig, *, dtype: torch.dtype = torch.float32
) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """(head specs with `HeadInfo`, ``heads.*`` weights) of the replayed sets' heads in
    ``model.checkpoint`` (`starting_model`)."""
    assert config.replay is not None
    model = starting_model(config, dtype=dtype)
    specs = model.head_specs()
    wanted = kept_head_names([d.name for d in config.replay.heads()])
    state = {
        k: v.detach().clone()
        for k, v in model.state_dict().items()
        if any(k.startswith(f"heads.{h}.") for h in wanted)
    }
    return {h: specs[h] for h in wanted}, state


def _check_source(spec: ReplayDataset, part: str) -> None:
    src = getattr(spec, part)
    if src is not None and not Path(src.path).expanduser().exists():
        raise ConfigError(
            f"replay.datasets {spec.name}: {part} source {src.path} does not exist (replay "
            "needs the pre-training data; point replay.data_root or the paths at it)"
        )


def load_replay_sources(replay: ReplayConfig, cache_dir: Path) -> list[ReplaySource]:
    """The training and validation parts of every replayed dataset (module docstring)."""
    out = []
    for spec in replay.resolved_datasets():
        _check_source(spec, "train")
        _check_source(spec, "val")
        store = open_source(spec.format, spec.train, cache_dir, label=f"{spec.name}-train")
        if spec.val is not None:
            val_store = open_source(spec.format, spec.val, cache_dir, label=f"{spec.name}-val")
            train = Part(store, np.arange(len(store), dtype=np.int64))
            val = Part(val_store, np.arange(len(val_store), dtype=np.int64))
        else:
            assert spec.split is not None
            parts = split_indices(spec.split, store.ids, source=spec.train.path)
            train, val = Part(store, parts["train"]), Part(store, parts["val"])
        if len(train) == 0:
            raise ConfigError(f"replay.datasets {spec.name}: the training part is empty")
        out.append(ReplaySource(spec, train, val))
    return out


@torch.no_grad()
def pseudo_labelled(
    config: FinetuneConfig,
    train: Part,
    *,
    edge_dropout: float = 0.0,
    batch_size: int = 16,
) -> list[GraphDataset]:
    """Per ``replay.pseudo_labels`` entry: the target's training structures with the energies
    and forces the starting model's heads of that name predict for them (eV, eV/Å; the energy
    label is 0 where the head records no eV transform and its loss weight must be 0), as a
    dataset of that name on the target's graph setting."""
    assert config.replay is not None
    if not config.replay.pseudo_labels:
        return []
    model = starting_model(config, dtype=torch.float32).eval()
    graph = config.data.graph
    source = GraphDataset(train.store, graph, TARGET_DATASET, indices=train.indices)
    out = []
    for entry in config.replay.pseudo_labels:
        e_head, f_head = kept_head_names([entry.name])
        energy_t = model.output_transform(e_head)
        with_energy = energy_t is not None and energy_t.physical
        if not with_energy and entry.energy_coefficient > 0:
            raise ConfigError(
                f"replay.pseudo_labels {entry.name}: head {e_head} does not predict eV; set its "
                "energy_coefficient to 0 to replay forces only"
            )
        heads = [e_head, f_head] if with_energy else [f_head]
        energies: list[float] = []
        forces: list[np.ndarray] = []
        for batch in iterate_batches(source, batch_size):
            pred = model.to_physical(model(batch, heads=heads), batch)
            f = pred[f_head].to(torch.float64).numpy()
            ends = np.cumsum(batch.natoms.numpy())
            forces += np.split(f, ends[:-1])
            e = pred[e_head].numpy() if with_energy else np.zeros(batch.num_graphs)
            energies += [float(x) for x in e]
        records = [
            train.records[i].replace(energy=energies[i], forces=forces[i], dataset=entry.name)
            for i in range(len(train))
        ]
        out.append(
            GraphDataset(
                records, graph, entry.name, edge_dropout=edge_dropout, seed=config.trainer.seed
            )  # fmt: skip
        )
    return out


def replay_plan(
    n_target: int, sizes: Sequence[int], names: Sequence[str], ratio: float, temperature: float
) -> ExpansionPlan:
    """Dataset 0 the target (seen once per epoch), then the replayed datasets with
    ``round(ratio × n_target)`` structures per epoch in all, shared as p_i ∝ N_i^(1/T)
    (largest remainders; at least one each)."""
    total = max(len(sizes), round(ratio * n_target))
    p = sampling_probabilities(sizes, "temperature", temperature=temperature)
    exact = total * p
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    counts = np.maximum(counts, 1)
    all_counts = [n_target, *(int(c) for c in counts)]
    probs = np.asarray(all_counts, dtype=np.float64) / sum(all_counts)
    return ExpansionPlan(
        sizes=(int(n_target), *(int(s) for s in sizes)),
        probabilities=tuple(float(x) for x in probs),
        expanded_sizes=tuple(all_counts),
        names=(TARGET_DATASET, *names),
    )


def _stride(n: int) -> int:
    """A step coprime with ``n`` near 0.618 n: i -> (a·i + b) mod n visits every index once
    in a scattered order, without an n-long permutation in memory."""
    a = max(1, int(0.6180339887 * n)) | 1
    while math.gcd(a, n) != 1:
        a += 2
    return a


class ReplaySampler(TemperatureSampler):
    """`TemperatureSampler` over a `replay_plan`: dataset k contributes positions
    ``epoch · n_k ... (epoch + 1) · n_k − 1`` (mod N_k) of its own seeded scattered order, so
    a dataset larger than its share shows new structures every epoch."""

    def epoch_order(self) -> torch.Tensor:
        plan = self.plan
        size = plan.epoch_size
        if self.shuffle:
            positions = torch.randperm(
                size, generator=torch.Generator().manual_seed(self.seed + self.epoch)
            )
        else:
            positions = torch.arange(size)
        expanded = torch.tensor(plan.expanded_sizes, dtype=torch.int64)
        sizes = torch.tensor(plan.sizes, dtype=torch.int64)
        exp_end = torch.cumsum(expanded, 0)
        exp_start = exp_end - expanded
        src_start = torch.cumsum(sizes, 0) - sizes
        stride = torch.tensor([_stride(int(n)) for n in plan.sizes], dtype=torch.int64)
        shift = torch.tensor([(self.seed * 7919 + k) % int(n) for k, n in enumerate(plan.sizes)])
        k = torch.searchsorted(exp_end, positions, right=True)
        step = (positions - exp_start[k] + self.epoch * expanded[k]) % sizes[k]
        local = (stride[k] * step + shift[k]) % sizes[k]
        local = torch.where(k == 0, (positions - exp_start[k]) % sizes[k], local)  # the target
        return src_start[k] + local


class ReplayDataModule(FinetuneDataModule):
    """`FinetuneDataModule` whose training part is the target plus the replayed datasets
    (`replay_plan`, `ReplaySampler`), served as `MixedBatch` es; validation and test are the
    target's."""

    sampler_type = ReplaySampler
    train_collate = staticmethod(collate_mixed)

    def __init__(
        self,
        splits: FinetuneSplits,
        graph: GraphConfig,
        loader: LoaderConfig,
        sources: Sequence[ReplaySource],
        replay: ReplayConfig,
        pseudo: Sequence[GraphDataset] = (),
        *,
        seed: int = 0,
        edge_dropout: float = 0.0,
    ) -> None:
        super().__init__(
            splits, graph, loader, name=TARGET_DATASET, seed=seed, edge_dropout=edge_dropout
        )
        self.sources = list(sources)
        target = self.train_set
        assert isinstance(target, GraphDataset)
        replayed = [
            GraphDataset(
                s.train.store,
                s.spec.graph,
                s.spec.name,
                indices=s.train.indices,
                edge_dropout=edge_dropout,
                seed=seed,
            )  # fmt: skip
            for s in self.sources
        ]
        replayed += list(pseudo)  # in `ReplayConfig.heads` order
        self.train_set = ConcatGraphDataset([target, *replayed])
        self.plan = replay_plan(
            len(target),
            [len(d) for d in replayed],
            [d.name for d in replayed],
            replay.ratio,
            replay.temperature,
        )

    def _no_full_batch(self, world: int) -> str:
        return (
            f"one epoch ({self.plan.epoch_size} target and replay structures) makes no full "
            f"batch of {self.loader_config.batch_size}: lower loader.batch_size"
        )


def replay_summary(
    replay: ReplayConfig, sources: Sequence[ReplaySource], plan: ExpansionPlan, n_target: int
) -> list[dict[str, Any]]:
    """Per part of the training data: name, heads, structures (train / val) and per epoch."""
    rows: list[dict[str, Any]] = [
        {"dataset": "target", "heads": "fine-tuning heads", "train": n_target,
         "per_epoch": plan.expanded_sizes[0]},
    ]  # fmt: skip
    parts = {s.spec.name: s for s in sources}
    for d, size, per_epoch in zip(replay.heads(), plan.sizes[1:], plan.expanded_sizes[1:]):
        real = parts.get(d.name)
        rows.append(
            {
                "dataset": d.name if real is not None else f"{d.name} (pseudo-labels)",
                "heads": ", ".join(kept_head_names([d.name])),
                "train": int(size),
                "val": None if real is None else len(real.val),
                "per_epoch": int(per_epoch),
                "energy_coefficient": d.energy_coefficient,
                "force_coefficient": d.force_coefficient,
            }
        )
    return rows


def format_replay_summary(rows: Sequence[dict[str, Any]]) -> str:
    """The summary as printed lines."""
    lines = ["replay: datasets and heads taking part (structures per epoch / in the training part)"]
    for r in rows:
        weights = ""
        if "energy_coefficient" in r:
            weights = (
                f", loss weights λ_E {r['energy_coefficient']:g} λ_F {r['force_coefficient']:g}"
            )
        lines.append(
            f"  {r['dataset']:<24} {r['per_epoch']:>7} / {r['train']:<8} -> {r['heads']}{weights}"
        )
    return "\n".join(lines)
