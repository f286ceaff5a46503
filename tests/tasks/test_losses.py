"""Losses and metric helpers against numbers worked out by hand (jmp-reference §2.5, §3.2).

The pre-training batch has two datasets, structures of 2, 1 and 3 atoms and one fixed atom; the
expected loss is written out term by term below. The force norm carries the 1e-6 that
F.pairwise_distance adds to every component of the difference, so the hand values include it
exactly (`d` below) rather than loosening a tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from openjmp.tasks.losses import (
    ErrorSums,
    atomwise_force_loss,
    classification_loss,
    energy_error_sums,
    energy_force_loss,
    force_error_sums,
    pretrain_loss,
    scalar_loss,
)

EPS = 1e-6
BIG = 1000.0  # what the *other* task's head predicts: must never count


def d(*diff: float) -> float:
    """‖diff + eps‖₂ as F.pairwise_distance computes it."""
    return math.sqrt(sum((x + EPS) ** 2 for x in diff))


def _batch() -> dict[str, torch.Tensor]:
    # structures: s0 task 0 (atoms a0, a1; a1 fixed), s1 task 1 (a2), s2 task 0 (a3, a4, a5)
    task = torch.tensor([0, 1, 0])
    batch = torch.tensor([0, 0, 1, 2, 2, 2])
    energy_pred = torch.tensor([[1.5, BIG], [BIG, 0.25], [2.0, BIG]], dtype=torch.float64)
    energy = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    own = torch.tensor(
        [[3, 4, 0], [0, 0, 0], [1, 2, 2], [1, 0, 0], [0, 6, 8], [0, 0, 0]], dtype=torch.float64
    )
    forces = torch.zeros(6, 3, dtype=torch.float64)
    forces[1] = torch.tensor([0.0, 0.0, -2.0])  # the fixed atom has a target, so an error
    forces_pred = torch.full((6, 2, 3), BIG, dtype=torch.float64)
    forces_pred[torch.arange(6), task[batch]] = own
    return dict(
        energy_pred=energy_pred,
        energy_target=energy,
        forces_pred=forces_pred,
        forces_target=forces,
        task_index=task,
        batch=batch,
        energy_coef=torch.tensor([1.0, 2.0], dtype=torch.float64),
        force_coef=torch.tensor([10.0, 20.0], dtype=torch.float64),
    )


def test_pretrain_loss_by_hand() -> None:
    out = pretrain_loss(**_batch())
    # energy: s0 1·|1.5−1| = 0.5, s1 2·|0.25−1| = 1.5, s2 1·|2−(−1)| = 3; mean over B = 3
    energy = (0.5 + 1.5 + 3.0) / 3
    # forces, per structure then mean; the fixed atom a1 (error 2) counts
    s0 = 10 * (d(3, 4, 0) + d(0, 0, 2)) / 2
    s1 = 20 * d(1, 2, 2) / 1
    s2 = 10 * (d(1, 0, 0) + d(0, 6, 8) + d(0, 0, 0)) / 3
    force = (s0 + s1 + s2) / 3
    assert out.energy.item() == pytest.approx(energy, rel=1e-12)
    assert out.force.item() == pytest.approx(force, rel=1e-12)
    assert out.total.item() == pytest.approx(energy + force, rel=1e-12)
    assert out.energy_per_task.tolist() == pytest.approx([(0.5 + 3.0) / 2, 1.5])
    assert out.force_per_task.tolist() == pytest.approx([(s0 + s2) / 2, s1])


def test_pretrain_loss_gradient_reaches_only_own_task_heads() -> None:
    b = _batch()
    b["energy_pred"].requires_grad_(True)
    b["forces_pred"].requires_grad_(True)
    pretrain_loss(**b).total.backward()
    e_grad = b["energy_pred"].grad
    assert e_grad[0, 1] == 0 and e_grad[1, 0] == 0 and e_grad[2, 1] == 0
    assert e_grad[0, 0] != 0 and e_grad[1, 1] != 0
    f_grad = b["forces_pred"].grad
    own = b["task_index"][b["batch"]]
    other = 1 - own
    assert f_grad[torch.arange(6), other].abs().max() == 0
    assert f_grad[1, 0].abs().max() > 0  # the fixed atom is trained


def test_duplicating_atoms_keeps_a_structures_force_weight() -> None:
    b = _batch()
    base = pretrain_loss(**b)
    # give structure s2 its three atoms twice (same errors): per-structure mean is unchanged
    idx = torch.tensor([0, 1, 2, 3, 4, 5, 3, 4, 5])
    dup = dict(b)
    dup["forces_pred"] = b["forces_pred"][idx]
    dup["forces_target"] = b["forces_target"][idx]
    dup["batch"] = b["batch"][idx]
    out = pretrain_loss(**dup)
    assert out.force.item() == pytest.approx(base.force.item(), rel=1e-12)
    assert out.total.item() == pytest.approx(base.total.item(), rel=1e-12)
    # whereas an atom-wise mean would have shifted weight towards s2
    atomwise = lambda x: atomwise_force_loss(  # noqa: E731
        x["forces_pred"][torch.arange(len(x["batch"])), x["task_index"][x["batch"]]],
        x["forces_target"],
    )
    assert atomwise(dup).item() != pytest.approx(atomwise(b).item(), rel=1e-3)


def test_pretrain_loss_rejects_wrong_shapes() -> None:
    b = _batch()
    b["forces_pred"] = b["forces_pred"][:, 0]
    with pytest.raises(ValueError, match=r"\(N, T, 3\)"):
        pretrain_loss(**b)


# ------------------------------------------------------------------------------------ fine-tuning


def test_scalar_and_atomwise_force_losses() -> None:
    assert scalar_loss(
        torch.tensor([1.0, -1.0]), torch.tensor([0.5, 1.0]), 3.0
    ).item() == pytest.approx(3 * (0.5 + 2.0) / 2)
    pred = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    tgt = torch.zeros(3, 3, dtype=torch.float64)
    assert atomwise_force_loss(pred, tgt, 10.0).item() == pytest.approx(
        10 * (d(3, 4, 0) + d(0, 0, 1) + d(0, 0, 0)) / 3, rel=1e-12
    )


def test_energy_force_loss_and_forces_only() -> None:
    fp = torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64)
    ft = torch.zeros(1, 3, dtype=torch.float64)
    ep, et = torch.tensor([1.0]), torch.tensor([0.0])
    both = energy_force_loss(ep, et, fp, ft, energy_coef=2.0, force_coef=10.0)
    assert both.item() == pytest.approx(2 * 1.0 + 10 * d(0, 0, 2))
    only = energy_force_loss(None, None, fp, ft, force_coef=10.0, forces_only=True)
    assert only.item() == pytest.approx(10 * d(0, 0, 2))
    with pytest.raises(ValueError, match="forces_only"):
        energy_force_loss(None, None, fp, ft)


def test_classification_loss_with_class_weights() -> None:
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([1, 0])
    loss = classification_loss(logits, labels, class_weights=torch.tensor([1.0, 2.0]))
    # sample 0: 2 · −log(1/2); sample 1: 1 · −log(3/4); summed (authors' reduction)
    assert loss.item() == pytest.approx(2 * math.log(2) + math.log(4 / 3), rel=1e-6)
    assert classification_loss(logits, labels, reduction="mean").item() == pytest.approx(
        (math.log(2) + math.log(4 / 3)) / 2, rel=1e-6
    )


# ----------------------------------------------------------------------------------------- metrics


def test_energy_mae_per_dataset() -> None:
    s = energy_error_sums(
        torch.tensor([1.0, 2.0, 5.0]), torch.tensor([0.0, 2.5, 1.0]), torch.tensor([0, 1, 0]), 3
    )
    assert s.abs_sum.tolist() == [5.0, 0.5, 0.0] and s.count.tolist() == [2, 1, 0]
    mae = s.mae()
    assert mae[:2].tolist() == [2.5, 0.5] and torch.isnan(mae[2])


def test_force_mae_excludes_fixed_atoms_and_accumulates() -> None:
    pred = torch.tensor([[1.0, 0.0, 0.0], [9.0, 9.0, 9.0], [0.0, -3.0, 0.0]])
    tgt = torch.zeros(3, 3)
    fixed = torch.tensor([False, True, False])
    s = force_error_sums(pred, tgt, fixed, torch.tensor([0, 0, 1]), 2)
    assert s.abs_sum.tolist() == [1.0, 3.0] and s.count.tolist() == [3.0, 3.0]
    total = s + ErrorSums(
        torch.tensor([2.0, 0.0], dtype=torch.float64), torch.tensor([3.0, 0.0], dtype=torch.float64)
    )
    assert total.mae().tolist() == pytest.approx([0.5, 1.0])
