"""JMP's losses, as pure functions of predictions and targets (jmp-reference §2.5, §3.2).

Everything here works in *normalised* units (targets already referenced and divided by their
std, see `openjmp.model.normalization`); the metric helpers at the end work in eV and eV/Å.

Pre-training (one call per batch, every head predicts every structure)::

    loss = pretrain_loss(energy_pred, energy, forces_pred, forces, task_index, batch,
                         energy_coef, force_coef)
    loss.total.backward()

  L = (1/B) Σ_b λ_E[t_b] |Ê_b[t_b] − E_b|  +  (1/B) Σ_b λ_F[t_b] (1/N_b) Σ_{i∈b} ‖F̂_i[t_b] − F_i + ε‖₂

  with t_b the dataset (task) of structure b, ε = 1e-6 inside the norm (``F.pairwise_distance``,
  as the authors), the force term averaged per structure first ("structure-wise"), and fixed
  atoms *included* (the authors mask them only in metrics).

Fine-tuning: `scalar_loss` (L1, batch mean), `atomwise_force_loss` (per-atom L2 norm averaged
over all atoms of the batch, not per structure), `energy_force_loss` (both, or forces only), and
`classification_loss` (cross-entropy summed over the batch, optional class weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from openjmp.graph.scatter import segment_mean, segment_sum

PAIRWISE_EPS = 1e-6
"""The eps that ``F.pairwise_distance`` adds to the difference before the norm (authors' value)."""


def force_distance(pred: Tensor, target: Tensor) -> Tensor:
    """(N,) ‖pred − target + 1e-6‖₂ per atom, for (N, 3) force arrays (F.pairwise_distance)."""
    if pred.shape != target.shape or pred.shape[-1] != 3:
        raise ValueError(
            f"force shapes must match and be (N, 3): {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    return F.pairwise_distance(pred, target, p=2.0, eps=PAIRWISE_EPS)


@dataclass(frozen=True)
class PretrainLoss:
    """Pre-training loss and its parts.

    Attributes:
        total: () energy + force, differentiable.
        energy: () the energy term (already weighted), differentiable.
        force: () the force term (already weighted), differentiable.
        energy_per_task: (T,) detached weighted energy term averaged over each task's
            structures in the batch (NaN where a task is absent), for logging.
        force_per_task: (T,) detached, same for the force term.
    """

    total: Tensor
    energy: Tensor
    force: Tensor
    energy_per_task: Tensor
    force_per_task: Tensor


def pretrain_loss(
    energy_pred: Tensor,
    energy_target: Tensor,
    forces_pred: Tensor,
    forces_target: Tensor,
    task_index: Tensor,
    batch: Tensor,
    energy_coef: Tensor,
    force_coef: Tensor,
) -> PretrainLoss:
    """JMP pre-training loss (structure-wise force reduction, fixed atoms included).

    Args:
        energy_pred: (B, T) normalised energy of every structure from every task's head.
        energy_target: (B,) normalised target energy of each structure.
        forces_pred: (N, T, 3) normalised forces from every task's head.
        forces_target: (N, 3) normalised target forces.
        task_index: (B,) int64, the task (dataset) of each structure, in 0..T-1.
        batch: (N,) int64, structure of each atom.
        energy_coef: (T,) λ_E per task (authors: 1 for all).
        force_coef: (T,) λ_F per task (authors: 73, 80, 15, 14).
    """
    num_structures, num_tasks = energy_pred.shape
    if forces_pred.shape != (forces_target.shape[0], num_tasks, 3):
        raise ValueError(
            f"forces_pred must be (N, T, 3) = ({forces_target.shape[0]}, {num_tasks}, 3), "
            f"got {tuple(forces_pred.shape)}"
        )
    if energy_target.shape != (num_structures,) or task_index.shape != (num_structures,):
        raise ValueError("energy_target and task_index must be (B,) like energy_pred's rows")
    if energy_coef.shape != (num_tasks,) or force_coef.shape != (num_tasks,):
        raise ValueError(f"energy_coef and force_coef must be ({num_tasks},)")

    rows = torch.arange(num_structures, device=energy_pred.device)
    e_err = (energy_pred[rows, task_index] - energy_target).abs()
    e_loss = energy_coef.to(e_err)[task_index] * e_err  # (B,)

    atom_task = task_index[batch]  # (N,)
    atoms = torch.arange(forces_target.shape[0], device=forces_pred.device)
    f_err = force_distance(forces_pred[atoms, atom_task], forces_target)  # (N,)
    f_atom = force_coef.to(f_err)[atom_task] * f_err
    f_loss = segment_mean(f_atom, batch, num_structures)  # (B,) per-structure mean

    energy = e_loss.mean()
    force = f_loss.mean()
    with torch.no_grad():
        count = segment_sum(torch.ones_like(e_loss), task_index, num_tasks)
        e_task = segment_sum(e_loss.detach(), task_index, num_tasks) / count
        f_task = segment_sum(f_loss.detach(), task_index, num_tasks) / count
    return PretrainLoss(energy + force, energy, force, e_task, f_task)


# ------------------------------------------------------------------------------------ fine-tuning


def scalar_loss(pred: Tensor, target: Tensor, coef: float = 1.0) -> Tensor:
    """() coef · mean |pred − target| over the batch (normalised units); (B,) or (B, k) inputs."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    return coef * F.l1_loss(pred, target)


def atomwise_force_loss(pred: Tensor, target: Tensor, coef: float = 1.0) -> Tensor:
    """() coef · mean over all atoms of the batch of ‖F̂ − F + ε‖₂ (the fine-tuning reduction:
    large structures weigh more, unlike pre-training)."""
    return coef * force_distance(pred, target).mean()


def energy_force_loss(
    energy_pred: Tensor | None,
    energy_target: Tensor | None,
    forces_pred: Tensor,
    forces_target: Tensor,
    *,
    energy_coef: float = 1.0,
    force_coef: float = 1.0,
    forces_only: bool = False,
) -> Tensor:
    """() fine-tuning energy + force loss in normalised units.

    ``forces_only`` (rMD17, MD22, SPICE: coefficient 10 or 100) drops the energy term
    entirely; the energies may then be None.
    """
    loss = atomwise_force_loss(forces_pred, forces_target, force_coef)
    if forces_only:
        return loss
    if energy_pred is None or energy_target is None:
        raise ValueError("energy prediction and target are needed unless forces_only")
    return loss + scalar_loss(energy_pred, energy_target, energy_coef)


def classification_loss(
    logits: Tensor,
    labels: Tensor,
    *,
    class_weights: Tensor | None = None,
    coef: float = 1.0,
    reduction: str = "sum",
) -> Tensor:
    """() coef · cross-entropy of (B, C) logits against (B,) integer labels.

    The authors sum over the batch (``reduction="sum"``, MatBench mp_is_metal with class
    weights [1.0, 1.34219693]); "mean" is available for other uses.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"logits must be (B, C) and labels (B,), got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    w = None if class_weights is None else class_weights.to(logits)
    return coef * F.cross_entropy(logits, labels.long(), weight=w, reduction=reduction)


# ----------------------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class ErrorSums:
    """Sums of absolute errors and their counts per dataset, to accumulate over batches and ranks.

    Attributes:
        abs_sum: (D,) Σ |error| (eV, eV/Å, ... as the inputs).
        count: (D,) number of terms (structures for energies, force components for forces).
    """

    abs_sum: Tensor
    count: Tensor

    def __add__(self, other: ErrorSums) -> ErrorSums:
        return ErrorSums(self.abs_sum + other.abs_sum, self.count + other.count)

    def mae(self) -> Tensor:
        """(D,) mean absolute error; NaN where a dataset had no terms."""
        return self.abs_sum / self.count


def energy_error_sums(
    pred: Tensor, target: Tensor, dataset_index: Tensor, num_datasets: int
) -> ErrorSums:
    """Per-dataset energy error sums over structures: pred, target (B,) in eV (denormalised;
    the linear reference cancels in the difference), dataset_index (B,) int64."""
    err = (pred.detach() - target.detach()).abs().to(torch.float64)
    ones = torch.ones_like(err)
    return ErrorSums(
        segment_sum(err, dataset_index, num_datasets),
        segment_sum(ones, dataset_index, num_datasets),
    )


def force_error_sums(
    pred: Tensor,
    target: Tensor,
    fixed: Tensor,
    atom_dataset_index: Tensor,
    num_datasets: int,
) -> ErrorSums:
    """Per-dataset force error sums over the Cartesian components of *free* atoms (the authors'
    force MAE: fixed atoms excluded). pred, target (N, 3) eV/Å; fixed (N,) bool;
    atom_dataset_index (N,) int64 (the dataset of each atom's structure)."""
    free = (~fixed.bool()).to(torch.float64).unsqueeze(1)
    err = ((pred.detach() - target.detach()).abs().to(torch.float64) * free).sum(1)
    n = free.squeeze(1) * 3
    return ErrorSums(
        segment_sum(err, atom_dataset_index, num_datasets),
        segment_sum(n, atom_dataset_index, num_datasets),
    )
