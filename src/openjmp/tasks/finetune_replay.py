"""`ReplayFinetuneTask`: fine-tuning that keeps the pre-training heads (``adaptation: replay``).

A `FinetuneTask` whose model also holds the checkpoint's pre-training heads ``{name}_energy``
and ``{name}_forces`` (kept, not re-initialised). Training batches are `MixedBatch` es: the
target structures (the fine-tuning heads and losses, as `FinetuneTask`) and the replayed
pre-training structures, each trained through its own dataset's heads as in pre-training:

* targets normalised with the head's recorded output transform (the checkpoint's statistics):
  Ê = (E − Σ ref[Z] − mean) / std, F̂ = F / std_F;
* `openjmp.tasks.losses.pretrain_loss` (λ_E |Ê' − Ê| + λ_F · structure-wise force L2),
  with the dataset's loss weights;
* loss = target loss + replay loss (each the mean over its own structures).

Validation is the target's (the monitored metric); the pre-training sets' errors are what
``openjmp evaluate --forgetting`` reports. A kept head with loss weight 0 is frozen
(`FinetuneConfig.frozen_sets`), so it stays exactly as the checkpoint had it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from openjmp.config.finetune import FinetuneConfig
from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch, GraphSample
from openjmp.graph.collate import collate
from openjmp.model.outputs import OutputTransform
from openjmp.tasks.finetune import FinetuneTask
from openjmp.tasks.losses import PretrainLoss, pretrain_loss
from openjmp.tasks.pretrain import dataset_indices, own_task_heads

TARGET_DATASET = "finetune"
"""Dataset name of the target's structures in training batches (`FinetuneDataModule`)."""


@dataclass(frozen=True)
class MixedBatch:
    """One training batch of replay fine-tuning: its target and its replayed structures."""

    target: Batch | None
    replay: Batch | None

    @property
    def num_graphs(self) -> int:
        return sum(b.num_graphs for b in (self.target, self.replay) if b is not None)

    def to(self, device: torch.device | str) -> MixedBatch:
        return MixedBatch(
            None if self.target is None else self.target.to(device),
            None if self.replay is None else self.replay.to(device),
        )


def collate_mixed(samples: Sequence[GraphSample]) -> MixedBatch:
    """Split the samples into the target's (dataset ``finetune``) and the replayed ones, each
    collated into a `Batch` (None when there are none), order kept within each."""
    target = [s for s in samples if s.dataset == TARGET_DATASET]
    replay = [s for s in samples if s.dataset != TARGET_DATASET]
    return MixedBatch(collate(target) if target else None, collate(replay) if replay else None)


def kept_head_names(names: Sequence[str]) -> list[str]:
    """The model heads of the replayed datasets ``names``."""
    return [f"{n}_{kind}" for n in names for kind in ("energy", "forces")]


class ReplayFinetuneTask(FinetuneTask):
    """`FinetuneTask` + the kept pre-training heads trained on replayed data (module docstring).

    ``kept_heads``: head specs with their `HeadInfo` (`JMPModel.head_specs` entries of the
    checkpoint), one energy and one direct-force head per dataset of ``config.replay``.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | FinetuneConfig,
        backbone: Mapping[str, Any],
        stats: Mapping[str, Mapping[str, Any]],
        steps_per_epoch: int | None = None,
        head_specs: Mapping[str, Mapping[str, Any]] | None = None,
        kept_heads: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(config, backbone, stats, steps_per_epoch, head_specs, kept_heads)
        replay = self.config.replay
        if replay is None:
            raise ConfigError("adaptation replay needs a replay section")
        sets = replay.heads()
        self.replay_names = [d.name for d in sets]
        self.replay_index = {n: i for i, n in enumerate(self.replay_names)}
        missing = [h for h in kept_head_names(self.replay_names) if h not in self.model.heads]
        if missing:
            raise ConfigError(f"replay: the model has no head(s) {missing}")
        self.energy_transforms: dict[str, OutputTransform] = {}
        self.force_scales: dict[str, float] = {}
        for d in sets:
            e = self.model.output_transform(f"{d.name}_energy")
            f = self.model.output_transform(f"{d.name}_forces")
            if f is None or (e is None and d.energy_coefficient > 0):
                raise ConfigError(
                    f"replay.datasets {d.name}: the checkpoint does not record the "
                    "normalisation of its heads, so their targets cannot be normalised"
                )
            if e is not None and not e.physical and d.energy_coefficient > 0:
                raise ConfigError(
                    f"replay.datasets {d.name}: head {d.name}_energy is not in eV ({e.missing}); "
                    "set its energy_coefficient to 0 to replay forces only"
                )
            if e is not None and e.physical:
                self.energy_transforms[d.name] = e
            self.force_scales[d.name] = float(f.derivative_scale())
        self.register_buffer(
            "replay_energy_coef",
            torch.tensor([d.energy_coefficient for d in sets], dtype=torch.float64),
            persistent=False,
        )
        self.register_buffer(
            "replay_force_coef",
            torch.tensor([d.force_coefficient for d in sets], dtype=torch.float64),
            persistent=False,
        )

    # ------------------------------------------------------------------- batches
    def transfer_batch_to_device(
        self, batch: Any, device: torch.device, dataloader_idx: int
    ) -> Any:
        if isinstance(batch, MixedBatch):
            return batch.to(device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def replay_tasks(self, batch: Batch) -> Tensor:
        """(B,) index of every replayed structure's dataset in ``replay.datasets``."""
        return dataset_indices(batch, self.replay_index)

    def replay_targets(self, batch: Batch, task: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) normalised energies (0 where the energy is not trained) and (N, 3) normalised
        forces, float64, each structure by its own dataset's head transforms."""
        if batch.forces is None or batch.energy is None:
            raise ValueError("replay needs energies and forces for every replayed structure")
        energy = torch.zeros_like(batch.energy, dtype=torch.float64)
        forces = batch.forces.to(torch.float64).clone()
        atom_task = task[batch.batch]
        for t, name in enumerate(self.replay_names):
            s_mask, a_mask = task == t, atom_task == t
            if not bool(s_mask.any()):
                continue
            e = self.energy_transforms.get(name)
            if e is not None:
                zero = torch.zeros_like(energy)
                base = e.apply(zero, batch.atomic_numbers, batch.batch)  # Σ ref[Z] + mean
                norm = (batch.energy.to(torch.float64) - base) / e.derivative_scale()
                energy = torch.where(s_mask, norm, energy)
            forces[a_mask] = forces[a_mask] / self.force_scales[name]
        return energy, forces

    def replay_loss(self, batch: Batch) -> PretrainLoss:
        """Pre-training loss of the replayed structures through their datasets' heads."""
        task = self.replay_tasks(batch)
        e_target, f_target = self.replay_targets(batch, task)
        out = self.model(
            batch,
            heads=kept_head_names(self.replay_names),
            structures=own_task_heads(self.replay_names, task),
        )
        e_pred = torch.stack([out[f"{n}_energy"] for n in self.replay_names], dim=1)
        f_pred = torch.stack([out[f"{n}_forces"] for n in self.replay_names], dim=1)
        dtype = torch.float64 if e_pred.dtype == torch.float64 else torch.float32
        return pretrain_loss(
            e_pred.to(dtype),
            e_target.to(dtype),
            f_pred.to(dtype),
            f_target.to(dtype),
            task,
            batch.batch,
            self.replay_energy_coef.to(dtype),
            self.replay_force_coef.to(dtype),
        )

    # ------------------------------------------------------------------- training
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        if not isinstance(batch, MixedBatch):
            return super().training_step(batch, batch_idx)
        n = batch.num_graphs
        terms: list[Tensor] = []
        if batch.target is not None:
            parts = self.losses(batch.target)
            target = torch.stack(list(parts.values())).sum()
            self.log("train/loss_target", target, batch_size=batch.target.num_graphs)
            terms.append(target)
        if batch.replay is not None:
            replay = self.replay_loss(batch.replay)
            self.log("train/loss_replay", replay.total, batch_size=batch.replay.num_graphs)
            terms.append(replay.total.to(terms[0].dtype) if terms else replay.total)
        loss = torch.stack(terms).sum()
        self.log("train/loss", loss, batch_size=n, prog_bar=True)
        self.train_losses.append((int(self.global_step), float(loss.detach())))
        return loss
