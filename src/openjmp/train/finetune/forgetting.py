"""How much a fine-tuned model forgot: its errors on the pre-training datasets' validation parts,
through the pre-training heads, beside the pre-trained model's own (``openjmp evaluate
--forgetting``).

The pre-training heads ``{dataset}_energy`` / ``{dataset}_forces`` are

* ``kept``: the fine-tuned model's own (``adaptation: replay`` keeps and trains them);
* ``grafted``: otherwise, the pre-trained checkpoint's heads on the fine-tuned embedding and
  backbone (what the pre-training heads make of the features fine-tuning changed). A
  fine-tuned backbone without the direct-force branch (gradient-force heads) gets only the
  energy head: its force error is reported as None.

The datasets are the replay section of a replay run, or the ``datasets`` of a pre-training
config (its ``config.yaml``); the validation parts are cut as in pre-training (same split).
Errors: energy MAE (eV and eV/atom) and force MAE (eV/Å, over free atoms), physical units
through the heads' recorded transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from openjmp.config.finetune import ReplayConfig, ReplayDataset
from openjmp.config.pretrain import PretrainConfig
from openjmp.errors import ConfigError
from openjmp.model.jmp_model import JMPModel
from openjmp.tasks.finetune_replay import kept_head_names
from openjmp.train.finetune.data import iterate_batches
from openjmp.train.finetune.replay import ReplaySource, load_replay_sources
from openjmp.train.graph_dataset import GraphDataset


def replay_from_pretrain_config(config: PretrainConfig) -> ReplayConfig:
    """The datasets of a pre-training config as a replay section (same sources, split, graph
    and loss weights)."""
    fields = ("name", "format", "train", "val", "split", "graph")
    fields += ("energy_coefficient", "force_coefficient")
    datasets = [
        ReplayDataset.model_validate({k: getattr(d, k) for k in fields})
        for d in config.resolved_datasets()
    ]
    return ReplayConfig(datasets=datasets)


def with_pretraining_heads(
    finetuned: JMPModel, pretrained: JMPModel, names: Sequence[str]
) -> tuple[JMPModel, str]:
    """(a model with the heads of ``names``, "kept" or "grafted"): the fine-tuned model when
    it has them all, else its embedding + backbone with the pre-trained model's heads."""
    wanted = kept_head_names(names)
    if all(h in finetuned.heads for h in wanted):
        return finetuned, "kept"
    missing = [h for h in wanted if h not in pretrained.heads]
    if missing:
        raise ConfigError(f"the pre-trained model has no head(s) {missing}")
    direct = finetuned.config.direct_forces
    heads = [h for h in wanted if direct or h.endswith("_energy")]
    model = JMPModel(finetuned.config, {h: pretrained.heads[h] for h in heads})
    state = {k: v for k, v in finetuned.state_dict().items() if not k.startswith("heads.")}
    state |= {k: v for k, v in pretrained.state_dict().items() if k.startswith("heads.")}
    model.load_state_dict({k: v for k, v in state.items() if k in model.state_dict()})
    for h in heads:
        model.set_head_info(h, pretrained.head_info[h])
    return model.to(finetuned.dtype).eval(), "grafted"


@torch.no_grad()
def dataset_errors(
    model: JMPModel,
    source: ReplaySource,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Energy MAE (eV, eV/atom) and force MAE (eV/Å, free atoms; None without a force head)
    of ``model``'s heads of ``source`` on its validation part."""
    name = source.spec.name
    energy_head, force_head = f"{name}_energy", f"{name}_forces"
    heads = [h for h in (energy_head, force_head) if h in model.heads]
    ds = GraphDataset(source.val.store, source.spec.graph, name, indices=source.val.indices)
    model = model.to(device).eval()
    e_sum = e_atom_sum = f_sum = 0.0
    n_struct = n_atoms = 0
    for batch in iterate_batches(ds, batch_size):
        batch = batch.to(device)
        if batch.energy is None or batch.forces is None:
            raise ConfigError(f"{name}: validation structures need energies and forces")
        out = model.to_physical(model(batch, heads=heads), batch)
        err = (out[energy_head] - batch.energy.to(torch.float64)).abs()
        e_sum += float(err.sum())
        e_atom_sum += float((err / batch.natoms).sum())
        n_struct += batch.num_graphs
        if force_head in out:
            free = ~batch.fixed
            diff = (out[force_head].to(torch.float64) - batch.forces.to(torch.float64))[free]
            f_sum += float(diff.abs().sum())
            n_atoms += int(free.sum()) * 3
    return {
        "structures": n_struct,
        "energy_mae": e_sum / max(n_struct, 1),
        "energy_mae_per_atom": e_atom_sum / max(n_struct, 1),
        "forces_mae": f_sum / n_atoms if n_atoms else None,
    }


def forgetting_errors(
    finetuned: JMPModel,
    pretrained: JMPModel,
    replay: ReplayConfig,
    cache_dir: Path,
    *,
    batch_size: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Per pre-training dataset: the fine-tuned and the pre-trained model's errors (module
    docstring), and how the fine-tuned model's heads were obtained."""
    sources = load_replay_sources(replay, cache_dir)
    names = [s.spec.name for s in sources]
    model, how = with_pretraining_heads(finetuned, pretrained, names)
    rows: dict[str, Any] = {}
    for s in sources:
        rows[s.spec.name] = {
            "finetuned": dataset_errors(model, s, batch_size, device),
            "pretrained": dataset_errors(pretrained, s, batch_size, device),
        }
    return {"heads": how, "datasets": rows}
