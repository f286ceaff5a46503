"""`PretrainTask`: JMP's multi-dataset pre-training step as a LightningModule (jmp-reference §2).

One task per dataset (a `DatasetTask`: its normalisation and loss coefficients), each with its
own energy and direct-force head in a `JMPModel.pretraining` model. Per batch:

* targets are referenced and normalised per structure with its dataset's buffers
  (Ê = (E − Σ ref[Z] − mean) / std, F̂ = F / std_F);
* each task's heads predict the structures of their task only (the authors run every head on
  every structure and keep one: the same loss, gradients and numbers, for a quarter of the
  heads' work with four tasks); `pretrain_loss` keeps each structure's own head:
  λ_E |Ê' − Ê| + λ_F · mean over the structure's atoms of ‖F̂' − F̂‖₂, averaged over
  structures (fixed atoms included);
* validation (on the EMA weights, swapped in by Lightning's weight-averaging callback) sums, per
  dataset, the energy MAE (eV), the force MAE (eV/Å, free atoms only) and the same loss, and
  reduces the sums across ranks once per validation.

Behaviour that changes numbers sits in visible hooks below: shared-parameter gradient scaling
(`on_before_optimizer_step`, before Lightning clips), the optimizer and schedule
(`configure_optimizers`). Edge dropout happens in the data pipeline; its 1/(1 − p) output boost
is the backbone's ``edge_dropout`` setting, active in train mode only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from openjmp.graph.batch import Batch
from openjmp.graph.spec import GraphSpec
from openjmp.model.checkpoint import OPENJMP_FORMAT, OPENJMP_FORMAT_VERSION
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.jmp_model import JMPModel
from openjmp.model.normalization import ElementReferences, Normalizer
from openjmp.model.outputs import HeadInfo, OutputTransform
from openjmp.tasks.losses import energy_error_sums, force_error_sums, pretrain_loss
from openjmp.tasks.optimizer import Optimization, configure_optimization
from openjmp.tasks.param_groups import scale_shared_gradients


@dataclass(frozen=True)
class DatasetTask:
    """One pre-training dataset as the loss sees it.

    Attributes:
        name: dataset / task name (heads ``{name}_energy``, ``{name}_forces``).
        references: (K,) per-element energies, eV, indexed by Z.
        energy_mean, energy_std: eV; force_std: eV/Å (see the module docstring).
        energy_coefficient, force_coefficient: λ_E, λ_F.
        graph: the graph setting of the dataset (saved with the heads; None: not recorded).
        elements: atomic numbers of its training data (saved with the heads; None: unknown).
    """

    name: str
    references: Sequence[float]
    energy_mean: float
    energy_std: float
    force_std: float
    energy_coefficient: float = 1.0
    force_coefficient: float = 1.0
    graph: GraphSpec | None = None
    elements: tuple[int, ...] | None = None

    def head_info(self) -> dict[str, HeadInfo]:
        """What its two heads were trained with: the inverse of its normalisation, the graph
        setting and the elements (`openjmp.model.outputs`)."""
        energy = OutputTransform.energy(self.energy_std, self.energy_mean, self.references)
        return {
            f"{self.name}_energy": HeadInfo(energy, self.graph, self.elements),
            f"{self.name}_forces": HeadInfo(
                OutputTransform.forces(self.force_std), self.graph, self.elements
            ),
        }


def dataset_indices(batch: Batch, index: Mapping[str, int]) -> Tensor:
    """(B,) int64: ``index`` of every structure's dataset; ValueError naming an unknown one."""
    try:
        idx = [index[name] for name in batch.datasets]
    except KeyError as exc:
        raise ValueError(f"batch holds a structure of unknown dataset {exc}") from None
    return torch.tensor(idx, dtype=torch.long, device=batch.natoms.device)


def own_task_heads(names: Sequence[str], task: Tensor) -> dict[str, Tensor]:
    """``{f"{name}_energy" / f"{name}_forces": (B,) bool}``: the structures of each task, for
    `JMPModel.forward`'s ``structures`` (each task's heads run on its own structures only);
    ``task`` (B,) the index in ``names`` of every structure's task."""
    return {f"{n}_{kind}": task == t for t, n in enumerate(names) for kind in ("energy", "forces")}


def disable_dropout_boost(model: JMPModel) -> None:
    """Switch off the 1/(1 − p) edge-dropout boost (config and output blocks), e.g. before a
    pre-trained model is saved for fine-tuning, which drops no edges."""
    model.config = model.config.replace(edge_dropout=None)
    for block in model.backbone.out_blocks:
        block.edge_dropout = None


class PretrainTask(pl.LightningModule):
    """Multi-dataset pre-training of a `JMPModel` (see the module docstring).

    Args:
        config: backbone hyper-parameters (``edge_dropout`` = the data's dropout probability,
            for the 1/(1 − p) boost in train mode; None without dropout).
        tasks: one `DatasetTask` per dataset, in head order.
        optimization: optimizer and schedule settings.
        shared_gradient_scaling: divide shared basis gradients by their use count (authors).
        activation_checkpointing: recompute block activations in backward (less memory);
            None: automatic, where a batch would take more than half the memory; "residual":
            only the residual layers' first products.
        dtype: parameter dtype (float64 for exactness tests).
        steps_per_epoch: optimizer steps per epoch, for a schedule given in epochs (default:
            asked from the Trainer's data module when the optimizer is built).
    """

    def __init__(
        self,
        config: GemNetOCConfig,
        tasks: Sequence[DatasetTask],
        optimization: Optimization | None = None,
        *,
        shared_gradient_scaling: bool = True,
        activation_checkpointing: bool | Literal["residual"] | None = None,
        dtype: torch.dtype = torch.float32,
        steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.task_names = [t.name for t in self.tasks]
        self.task_index = {n: i for i, n in enumerate(self.task_names)}
        self.model = JMPModel.pretraining(config, self.task_names).to(dtype)
        self.model.set_activation_checkpointing(activation_checkpointing)
        for t in self.tasks:
            for head, info in t.head_info().items():
                self.model.set_head_info(head, info)
        self.references = nn.ModuleDict(
            {t.name: ElementReferences(list(t.references)) for t in self.tasks}
        )
        self.energy_norm = nn.ModuleDict(
            {t.name: Normalizer(t.energy_mean, t.energy_std) for t in self.tasks}
        )
        self.force_norm = nn.ModuleDict({t.name: Normalizer(0.0, t.force_std) for t in self.tasks})
        self.register_buffer(
            "energy_coef", torch.tensor([t.energy_coefficient for t in self.tasks], dtype=dtype)
        )
        self.register_buffer(
            "force_coef", torch.tensor([t.force_coefficient for t in self.tasks], dtype=dtype)
        )
        self.optimization = optimization or Optimization()
        self.shared_gradient_scaling = shared_gradient_scaling
        self._steps_per_epoch = steps_per_epoch
        # histories kept in checkpoints, so a resumed run reports the whole run
        self.train_history: list[tuple[int, float]] = []
        self.val_history: list[tuple[int, dict[str, dict[str, float]]]] = []
        self.structures_seen = 0
        self._unsynced_structures = 0
        self._val_sums: Tensor | None = None

    # ------------------------------------------------------------------------------ batches
    def transfer_batch_to_device(
        self, batch: Batch, device: torch.device, dataloader_idx: int
    ) -> Batch:
        return batch.to(device)

    def structure_tasks(self, batch: Batch) -> Tensor:
        """(B,) int64 task index of every structure."""
        return dataset_indices(batch, self.task_index)

    def normalized_targets(self, batch: Batch, task: Tensor) -> tuple[Tensor, Tensor]:
        """(B,) referenced, normalised energies and (N, 3) normalised forces (float64)."""
        if batch.energy is None or batch.forces is None:
            raise ValueError("pre-training needs energies and forces for every structure")
        energy = batch.energy.to(torch.float64).clone()
        forces = batch.forces.to(torch.float64).clone()
        atom_task = task[batch.batch]
        for t, name in enumerate(self.task_names):
            s_mask, a_mask = task == t, atom_task == t
            if not bool(s_mask.any()):
                continue
            ref = self.references[name].per_structure(
                batch.atomic_numbers, batch.batch, batch.num_graphs
            )
            e = self.energy_norm[name].normalize(energy - ref)
            energy = torch.where(s_mask, e, energy)
            forces[a_mask] = self.force_norm[name].normalize(forces[a_mask])
        return energy, forces

    def predictions(self, batch: Batch, task: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, T) normalised energies and (N, T, 3) normalised forces from every task's heads;
        with ``task`` (B,) (`structure_tasks`), each head runs on its task's structures only
        and the other entries are 0 (the loss reads each structure's own task only)."""
        structures = None if task is None else own_task_heads(self.task_names, task)
        out = self.model(batch, structures=structures)
        energy = torch.stack([out[f"{n}_energy"] for n in self.task_names], dim=1)
        forces = torch.stack([out[f"{n}_forces"] for n in self.task_names], dim=1)
        return energy, forces

    def _loss(self, batch: Batch) -> tuple[Any, Tensor, Tensor, Tensor, Tensor, Tensor]:
        task = self.structure_tasks(batch)
        e_target, f_target = self.normalized_targets(batch, task)
        e_pred, f_pred = self.predictions(batch, task)
        dtype = torch.float64 if e_pred.dtype == torch.float64 else torch.float32
        loss = pretrain_loss(
            e_pred.to(dtype),
            e_target.to(dtype),
            f_pred.to(dtype),
            f_target.to(dtype),
            task,
            batch.batch,
            self.energy_coef.to(dtype),
            self.force_coef.to(dtype),
        )
        return loss, task, e_pred, f_pred, e_target, f_target

    # ----------------------------------------------------------------------------- training
    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, task, *_ = self._loss(batch)
        b = batch.num_graphs
        self.log("train/loss", loss.total, prog_bar=True, batch_size=b)
        per_task = loss.energy_per_task + loss.force_per_task
        for t, name in enumerate(self.task_names):
            if bool((task == t).any()):  # absent datasets are not logged (no NaN in the bar)
                self.log(f"train/{name}", per_task[t], prog_bar=True, batch_size=b)
        self.train_history.append((int(self.global_step) + 1, float(loss.total.detach())))
        self._unsynced_structures += b
        return loss.total

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # CHANGES NUMBERS (authors' GemNet-OC): the shared basis projections are used by every
        # interaction block, so their gradients are divided by num_blocks (mlp_rbf_out:
        # num_blocks + 1). Runs once per optimizer step, after gradient accumulation, after AMP
        # unscaling and DDP's all-reduce, and before Lightning clips the gradient norm.
        if self.shared_gradient_scaling:
            scale_shared_gradients(self.model, num_blocks=self.model.config.num_blocks)

    def configure_optimizers(self) -> dict[str, Any]:
        # AdamW on a single group: weight decay on every parameter, biases and embeddings too;
        # linear warm-up from 0.2x, cosine to 0.1x, stepped after every optimizer step
        return configure_optimization(
            self.parameters(),
            self.optimization,
            warmup_steps=self.optimization.schedule.warmup_steps or 0,
            max_steps=self.schedule_steps(),
        )

    def schedule_steps(self) -> int:
        """Optimizer steps of the whole cosine schedule."""
        o = self.optimization.schedule
        if o.max_steps is not None:
            return int(o.max_steps)
        if o.max_epochs is None:
            raise ValueError("the schedule needs max_steps or max_epochs")
        if self._steps_per_epoch is not None:
            per_epoch = self._steps_per_epoch
        else:
            dm = getattr(self.trainer, "datamodule", None)
            if dm is None or not hasattr(dm, "train_batches_per_epoch"):
                raise ValueError("a schedule in epochs needs steps_per_epoch or a data module")
            batches = dm.train_batches_per_epoch()
            per_epoch = math.ceil(batches / self.trainer.accumulate_grad_batches)
        steps = int(o.max_epochs * per_epoch)
        return max(steps, o.warmup_steps + 1)

    # --------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        # per dataset: energy |err| sum, count; force |err| sum, count; loss sum, count
        self._val_sums = torch.zeros(len(self.tasks), 6, dtype=torch.float64, device=self.device)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, task, e_pred, f_pred, e_target, f_target = self._loss(batch)
        T = len(self.tasks)
        rows = torch.arange(batch.num_graphs, device=task.device)
        atoms = torch.arange(batch.num_atoms, device=task.device)
        atom_task = task[batch.batch]
        e_std = torch.stack([self.energy_norm[n].std for n in self.task_names])
        f_std = torch.stack([self.force_norm[n].std for n in self.task_names])
        # back to eV and eV/Å: the references and means cancel in the differences
        e_own = e_pred[rows, task].to(torch.float64) * e_std[task]
        e_ref = e_target * e_std[task]
        f_own = f_pred[atoms, atom_task].to(torch.float64) * f_std[atom_task, None]
        f_ref = f_target * f_std[atom_task, None]
        e_sums = energy_error_sums(e_own, e_ref, task, T)
        f_sums = force_error_sums(f_own, f_ref, batch.fixed, atom_task, T)
        count = e_sums.count
        per_task = torch.nan_to_num(loss.energy_per_task + loss.force_per_task).to(torch.float64)
        assert self._val_sums is not None
        self._val_sums += torch.stack(
            [e_sums.abs_sum, e_sums.count, f_sums.abs_sum, f_sums.count, per_task * count, count],
            dim=1,
        )

    def on_validation_epoch_end(self) -> None:
        assert self._val_sums is not None
        # sums over ranks (each rank validated its own shard), once per validation
        sums = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum")
        seen = torch.tensor(float(self._unsynced_structures), device=self.device)
        if not self.trainer.sanity_checking:
            self.structures_seen += int(self.trainer.strategy.reduce(seen, reduce_op="sum"))
            self._unsynced_structures = 0
        record: dict[str, dict[str, float]] = {}
        for t, name in enumerate(self.task_names):
            e_sum, e_n, f_sum, f_n, l_sum, l_n = (float(x) for x in sums[t])
            if l_n == 0:
                continue
            record[name] = {
                "energy_mae": e_sum / e_n,
                "force_mae": f_sum / f_n if f_n else math.nan,
                "loss": l_sum / l_n,
            }
            for key, value in record[name].items():
                self.log(f"val/{name}/{key}", value, batch_size=1)
        mean_loss = sum(r["loss"] for r in record.values()) / max(len(record), 1)
        self.log("val/loss", mean_loss, prog_bar=True, batch_size=1)
        step = int(self.global_step)
        if self.val_history and self.val_history[-1][0] == step:
            self.val_history[-1] = (step, record)
        else:
            self.val_history.append((step, record))

    def on_train_end(self) -> None:
        seen = torch.tensor(float(self._unsynced_structures), device=self.device)
        self.structures_seen += int(self.trainer.strategy.reduce(seen, reduce_op="sum"))
        self._unsynced_structures = 0

    # --------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["openjmp_histories"] = {
            "train": [list(x) for x in self.train_history],
            "val": [[s, r] for s, r in self.val_history],
            "structures_seen": self.structures_seen + self._unsynced_structures,
        }
        add_model_payload(checkpoint, self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hist = checkpoint.get("openjmp_histories") or {}
        self.train_history = [(int(s), float(v)) for s, v in hist.get("train", [])]
        self.val_history = [(int(s), dict(r)) for s, r in hist.get("val", [])]
        self.structures_seen = int(hist.get("structures_seen", 0))
        self._unsynced_structures = 0

    def metadata(self) -> dict[str, Any]:
        """Plain description of the tasks and their normalisation (saved with the weights)."""
        return {
            "kind": "pretrain",
            "tasks": [
                {
                    "name": t.name,
                    "references": [float(x) for x in t.references],
                    "energy_mean": t.energy_mean,
                    "energy_std": t.energy_std,
                    "force_std": t.force_std,
                    "energy_coefficient": t.energy_coefficient,
                    "force_coefficient": t.force_coefficient,
                }
                for t in self.tasks
            ],
            "heads_predict": "each head's 'output' transform (openjmp.model.outputs): E = "
            "sum(references[Z]) + energy_mean + energy_std * y eV, F = force_std * y eV/Å",
            "edge_dropout": self.model.config.edge_dropout,
        }


MODEL_PREFIX = "model."


def add_model_payload(checkpoint: dict[str, Any], task: PretrainTask) -> None:
    """Make a Lightning checkpoint also an openjmp model file (`openjmp.model.checkpoint`).

    Adds ``format``/``version``/``config``/``heads``/``metadata`` and ``ema_state_dict``: the
    JMPModel weights that Lightning's weight averaging put in ``state_dict`` (the EMA when it
    is on) and ``model_state_dict``: the raw weights. Both share storage with Lightning's own
    entries, so the file does not grow. The saved backbone config has ``edge_dropout`` None
    (the boost belongs to pre-training's data pipeline; fine-tuning must not inherit it).
    """
    averaged = checkpoint["state_dict"]
    raw = checkpoint.get("current_model_state", averaged)

    def strip(sd: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k[len(MODEL_PREFIX) :]: v for k, v in sd.items() if k.startswith(MODEL_PREFIX)}

    checkpoint["format"] = OPENJMP_FORMAT
    checkpoint["version"] = OPENJMP_FORMAT_VERSION
    checkpoint["config"] = task.model.config.replace(edge_dropout=None).to_dict()
    checkpoint["heads"] = task.model.head_specs()
    checkpoint["ema_state_dict"] = strip(averaged) if "current_model_state" in checkpoint else None
    checkpoint["model_state_dict"] = strip(raw)
    checkpoint["metadata"] = task.metadata()
