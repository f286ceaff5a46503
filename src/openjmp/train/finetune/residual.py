"""Residual references: continue a pre-trained head and fit the per-element references to what
the pre-trained model gets wrong on the fine-tuning data.

``residual_references: SOURCE`` in the config (``openjmp finetune --residual-references
SOURCE``) starts the fine-tuning energy (or scalar) head from head SOURCE of ``model.checkpoint``
instead of a random one, keeps that head's output scale and mean, and refits the per-element
references to the residual

    label − prediction of the pre-trained model        (least squares on element counts),

so the model starts from the pre-trained predictions plus a per-element correction (a change
of reference energies, of DFT functional, a systematic offset) and training only has to learn
what is left. SOURCE names a head whose outputs have known units, i.e. an openjmp checkpoint:

* an openjmp pre-training run (``model.pt`` / ``last.ckpt``): a dataset name, e.g. ``ani1x``
  (head ``<name>_energy``, E = Σ ref[Z] + mean + std · y with that dataset's statistics);
* an openjmp fine-tuned checkpoint: a head name, e.g. ``energy`` or a scalar's name.

The authors' jmp-s.pt / jmp-l.pt do not say what their heads' outputs mean in eV (the
pre-training linear references are not published), so they are refused with that reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from openjmp.config.finetune import EnergyForcesHead, FinetuneConfig, ForcesHead, ScalarHead
from openjmp.data.statistics import fit_element_references
from openjmp.errors import ConfigError
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.model.heads import EnergyHead
from openjmp.records import N_ELEMENTS, AtomsRecord
from openjmp.tasks.finetune_stats import (
    Stats,
    element_counts,
    record_label,
    reference_offsets,
)
from openjmp.tasks.finetune_targets import target_name


@dataclass
class ResidualStart:
    """Statistics with the residual references, and the head to start from.

    Attributes:
        stats: the run's statistics with the target's ``references`` (refitted), ``mean`` and
            output scale (``energy_scale`` / ``std``) of the pre-trained head.
        head_specs: {target head name: the pre-trained head's spec}.
        head_state: `JMPModel` keys ``heads.<name>.*`` -> the pre-trained head's weights.
        mae_before / mae_after: training-set MAE of the pre-trained predictions without / with
            the residual references (the label's unit).
    """

    stats: Stats
    head_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    head_state: dict[str, Tensor] = field(default_factory=dict)
    mae_before: float = float("nan")
    mae_after: float = float("nan")


def _conversion(model: Any, source: str, path: object) -> tuple[str, Any, float, float]:
    """(model head name, references, mean, output scale) of head ``source``: the head's own
    output transform (`openjmp.model.outputs`), which must give physical values."""
    energy = [n for n, h in model.heads.items() if isinstance(h, EnergyHead)]
    head = source if source in energy else f"{source}_energy"
    if head not in energy:
        raise ConfigError(f"{path}: no energy or scalar head {source!r} (have {energy})")
    transform = model.output_transform(head)
    if transform is None or not transform.physical:
        why = "its outputs have no known units" if transform is None else transform.missing
        raise ConfigError(
            f"{path}: residual references need a head whose outputs have known units; "
            f"head {head!r}: {why}"
        )
    if not isinstance(transform.scale, float) or not isinstance(transform.shift, float):
        raise ConfigError(f"{path}: head {head!r} has several outputs")
    return head, transform.references, transform.shift, transform.scale


def _target(config: FinetuneConfig) -> Any:
    for h in config.heads:
        if isinstance(h, EnergyForcesHead | ForcesHead):
            return h
    scalars = [h for h in config.heads if isinstance(h, ScalarHead)]
    if len(scalars) != 1:
        raise ConfigError("residual references need an energy head or exactly one scalar head")
    return scalars[0]


@torch.no_grad()
def _raw_outputs(
    model: nn.Module, head: str, records: Sequence[AtomsRecord], config: FinetuneConfig
) -> np.ndarray:
    graph = config.data.graph
    bs = config.loader.eval_batch_size or config.loader.batch_size
    out = []
    for start in range(0, len(records), bs):
        part = [records[i] for i in range(start, min(start + bs, len(records)))]
        batch = collate([build_graph_sample(r, graph.spec(r.natoms)) for r in part])
        out.append(model(batch)[head].double().cpu().numpy())
    return np.concatenate(out)


def residual_start(
    config: FinetuneConfig,
    train: Sequence[AtomsRecord],
    stats: Stats,
    source: str,
    *,
    dtype: torch.dtype,
) -> ResidualStart:
    """Refit the target's references to the residual of head ``source`` (module docstring)."""
    from openjmp.model.checkpoint import load_checkpoint

    if config.model.checkpoint is None:
        raise ConfigError("residual references need model.checkpoint (the pre-trained model)")
    path = Path(config.model.checkpoint)
    model = load_checkpoint(path, ema=config.model.ema_weights, dtype=dtype)
    head, refs, mean, scale = _conversion(model, source, path)
    spec = model.head_specs()[head]
    if spec["type"] not in ("energy", "scalar"):
        raise ConfigError(
            f"{path}: head {head!r} is a {spec['type']} head, not an energy or scalar head"
        )
    kept = model.heads[head]
    model.heads = nn.ModuleDict({head: kept})  # only what the residual needs (no force heads)
    model.eval()

    target = _target(config)
    name = target_name(target)
    key = (
        target.energy_target if isinstance(target, EnergyForcesHead | ForcesHead) else target.target
    )
    labels = np.array([record_label(r, key, f"head {name!r}") for r in train])
    pred = reference_offsets(train, refs) + mean + scale * _raw_outputs(model, head, train, config)
    delta = fit_element_references(element_counts(train), labels - pred)
    old = np.zeros(N_ELEMENTS)
    if refs is not None:
        r = np.asarray(refs, np.float64)[:N_ELEMENTS]
        old[: len(r)] = r
    after = labels - pred - reference_offsets(train, delta)
    new = {k: dict(v) for k, v in stats.items()}
    new[name].update(references=(old + delta).tolist(), mean=mean)
    if isinstance(target, ScalarHead):
        new[name]["std"] = scale
    else:
        new[name]["energy_scale"] = scale
    state = {f"heads.{name}.{k}": v.detach().clone() for k, v in kept.state_dict().items()}
    return ResidualStart(
        stats=new,
        head_specs={name: spec},
        head_state=state,
        mae_before=float(np.mean(np.abs(labels - pred))),
        mae_after=float(np.mean(np.abs(after))),
    )
