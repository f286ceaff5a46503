"""Fine-tuning targets: physical consistency, the authors' losses, de-normalisation, metrics.

The model is the tiny GemNet-OC in float64 on EMT molecules. Gradient forces must be exactly
minus the gradient of the *physical* energy (errata 2): compared with autograd to 1e-10 relative
(float64 rounding) and with central finite differences (h = 1e-4 Å, error O(h²) ~ 1e-7 of the
force scale; tolerance 1e-5). The force loss must equal the authors' normalised one,
coef · mean_atoms ‖−∂u/∂r − F/σ_F + 1e-6‖, computed here independently from the raw head output
u. Metric sums are compared with numpy / scikit-learn on the same arrays (1e-12).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from openjmp.tasks.finetune import FinetuneTask
from openjmp.tasks.finetune_metrics import MetricAccumulator, array_metrics
from openjmp.train.backbone import build_backbone, uses_direct_forces

from helpers.ft_helpers import batch_of, molecules, tiny_config

REFS = [0.0, -0.7, 0.0, 0.0, 0.0, 0.0, -2.1, -1.6, -3.0]  # H, C, N, O (eV, indexed by Z)
E_STATS = {"references": REFS, "mean": 0.3, "std": 2.0, "force_std": 0.5}


def make_task(tmp_path, overrides=(), stats=None, preset="user-energy-forces") -> FinetuneTask:
    cfg = tiny_config(tmp_path / "unused.extxyz", overrides, preset=preset)
    bb = build_backbone(
        cfg.model, direct_forces=uses_direct_forces(cfg), edge_dropout=cfg.edge_dropout
    )[0]
    torch.manual_seed(0)
    task = FinetuneTask(cfg, bb.to_dict(), stats or {"energy": E_STATS})
    return task.set_dtype(torch.float64)


def test_gradient_forces_are_minus_the_gradient_of_the_physical_energy(tmp_path) -> None:
    task = make_task(tmp_path).train()  # train mode keeps the autograd graph of the forces
    batch = batch_of(molecules(3))
    batch.pos.requires_grad_(True)
    pred = task(batch)
    (grad,) = torch.autograd.grad(pred["energy"].sum(), batch.pos)
    f = pred["forces"].detach()
    assert torch.allclose(f, -grad, rtol=1e-10, atol=1e-12 * float(f.abs().max()))

    # and against central finite differences of the energy in eV
    h = 1e-4
    for atom, axis in [(0, 0), (1, 2), (5, 1)]:
        e = []
        for sign in (1, -1):
            b = batch_of(molecules(3))
            with torch.no_grad():
                b.pos[atom, axis] += sign * h
            e.append(task(b)["energy"].sum().item())
        fd = -(e[0] - e[1]) / (2 * h)
        assert fd == pytest.approx(f[atom, axis].item(), abs=1e-5 * float(f.abs().max()))


def test_energy_is_referenced_and_scaled_back_to_ev(tmp_path) -> None:
    task = make_task(tmp_path).eval()
    batch = batch_of(molecules(4))
    out = task.model(batch)
    u = out["energy"].detach()
    pred = task(batch)["energy"].detach()
    z = batch.atomic_numbers
    ref = torch.zeros(4, dtype=torch.float64).index_add_(
        0, batch.batch, torch.tensor(REFS, dtype=torch.float64)[z]
    )
    # gradient forces: one scale s = force std for energy and forces (E = Σref + μ + s·u)
    assert torch.allclose(pred, ref + 0.3 + 0.5 * u, rtol=1e-14)


def test_forces_only_loss_is_the_authors_normalised_force_loss(tmp_path) -> None:
    task = make_task(tmp_path, ["heads=[{kind: forces, force_coefficient: 10.0}]"]).train()
    batch = batch_of(molecules(3))
    loss = task.losses(batch)["energy"]
    pos = batch.pos.detach().clone().requires_grad_(True)
    b2 = batch_of(molecules(3))
    object.__setattr__(b2, "pos", pos)
    u = task.model.heads["energy"]
    out = task.model(b2)
    (du,) = torch.autograd.grad(out["energy"].sum(), pos)
    f_norm = b2.forces / 0.5
    expected = 10.0 * torch.linalg.vector_norm(-du - f_norm + 1e-6, dim=1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-10)
    assert u is not None


def test_energy_force_loss_normalises_the_energy_by_its_std(tmp_path) -> None:
    over = ["heads.0.energy_coefficient=2.0", "heads.0.force_coefficient=3.0"]
    task = make_task(tmp_path, over).train()
    batch = batch_of(molecules(3))
    total = task.losses(batch)["energy"].item()
    forces_only = make_task(tmp_path, ["heads=[{kind: forces, force_coefficient: 3.0}]"])
    forces_only.load_state_dict(task.state_dict())
    f_term = forces_only.train().losses(batch)["energy"].item()
    with torch.no_grad():
        u = task.model(batch)["energy"]
    z = batch.atomic_numbers
    ref = torch.zeros(3, dtype=torch.float64).index_add_(
        0, batch.batch, torch.tensor(REFS, dtype=torch.float64)[z]
    )
    e_true = (batch.energy - ref - 0.3) / 2.0
    e_term = 2.0 * (0.5 * u / 2.0 - e_true).abs().mean().item()
    assert total == pytest.approx(e_term + f_term, rel=1e-10)


def test_scalar_target_denormalises_with_references(tmp_path) -> None:
    stats = {"gap": {"references": [0.0, 0.1, 0, 0, 0, 0, 0.5, 0, 0], "mean": 1.5, "std": 3.0}}
    task = make_task(tmp_path, preset="user-property",
                     overrides=["heads.0.target=gap", "heads.0.name=gap", "heads.0.pooling=sum",
                                "monitor.metric=gap_mae"], stats=stats).eval()  # fmt: skip
    batch = batch_of(molecules(4))
    with torch.no_grad():
        u = task.model(batch)["gap"]
        pred = task(batch)["gap"]
    z = batch.atomic_numbers
    table = torch.tensor([0.0, 0.1, 0, 0, 0, 0, 0.5, 0, 0], dtype=torch.float64)
    ref = torch.zeros(4, dtype=torch.float64).index_add_(0, batch.batch, table[z])
    assert torch.allclose(pred, ref + 1.5 + 3.0 * u, rtol=1e-14)
    loss = task.losses(batch)["gap"]
    y_n = (batch.targets["gap"] - ref - 1.5) / 3.0
    assert loss.item() == pytest.approx((u - y_n).abs().mean().item(), rel=1e-12)


def test_spatial_extent_head_formula_and_translation_invariance(tmp_path) -> None:
    task = make_task(tmp_path, preset="user-property",
                     overrides=["heads.0={kind: spatial_extent, target: gap}", "monitor.metric=gap_mae"],
                     stats={"gap": {"mean": 0.0, "std": 1.0}}).eval()  # fmt: skip
    frames = molecules(2)
    batch = batch_of(frames)
    with torch.no_grad():
        out = task.model(batch)
        pred = task(batch)["gap"]
        q = task.targets["gap"].mlp(out["embedding"])[:, 0]
    for b, atoms in enumerate(frames):
        m = atoms.get_masses()
        r = atoms.positions - (m[:, None] * atoms.positions).sum(0) / m.sum()
        sel = (batch.batch == b).numpy()
        expected = float((q.numpy()[sel] * (r**2).sum(1)).sum())
        assert pred[b].item() == pytest.approx(expected, rel=1e-10)
    moved = [a.copy() for a in frames]
    for a in moved:
        a.positions += np.array([3.0, -1.0, 2.5])
    with torch.no_grad():
        pred2 = task(batch_of(moved))["gap"]
    assert torch.allclose(pred, pred2, rtol=1e-9)


def test_metric_accumulator_matches_numpy_and_sklearn(tmp_path) -> None:
    task = make_task(tmp_path).eval()
    acc = MetricAccumulator(task.targets)
    frames = molecules(6)
    batches = [batch_of(frames[:4]), batch_of(frames[4:])]
    preds, labels = [], []
    for b in batches:
        p = task(b)
        acc.update(p, task.labels(b), b)
        preds.append({k: v.detach() for k, v in p.items()})
        labels.append(task.labels(b))
    m = acc.compute()
    f_err = torch.cat([p["forces"] - y["forces"] for p, y in zip(preds, labels)]).numpy()
    e_err = torch.cat([p["energy"] - y["energy"] for p, y in zip(preds, labels)]).numpy()
    assert m["forces_mae"] == pytest.approx(np.abs(f_err).mean(), rel=1e-12)
    assert m["energy_mae"] == pytest.approx(np.abs(e_err).mean(), rel=1e-12)
    assert m["energy_rmse"] == pytest.approx(np.sqrt((e_err**2).mean()), rel=1e-12)

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 50)
    scores = rng.normal(size=(50, 3))
    got = array_metrics("y", scores, y, classes=3)
    assert got["y_balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(y, scores.argmax(1)), rel=1e-12
    )
    assert got["y_accuracy"] == pytest.approx(np.mean(y == scores.argmax(1)), rel=1e-12)


def test_force_metric_leaves_out_fixed_atoms(tmp_path) -> None:
    from ase.constraints import FixAtoms

    task = make_task(tmp_path).eval()
    frames = molecules(2)
    frames[0].set_constraint(FixAtoms(indices=[0, 1]))
    b = batch_of(frames)
    acc = MetricAccumulator(task.targets)
    p = task(b)
    acc.update(p, task.labels(b), b)
    err = (p["forces"].detach() - b.forces).abs()
    free = ~b.fixed
    assert int(b.fixed.sum()) == 2
    assert acc.compute()["forces_mae"] == pytest.approx(err[free].mean().item(), rel=1e-12)


def test_several_targets_at_once(tmp_path) -> None:
    heads = "heads=[{kind: scalar, target: gap, name: gap}, {kind: scalar, target: is_big, name: big, pooling: mean}]"
    stats = {"gap": {"mean": 1.0, "std": 2.0}, "big": {"mean": 0.5, "std": 0.5}}
    task = make_task(
        tmp_path, [heads, "monitor.metric=big_mae"], stats=stats, preset="user-property"
    )
    batch = batch_of(molecules(4))
    losses = task.losses(batch)
    assert set(losses) == {"gap", "big"} and all(torch.isfinite(v) for v in losses.values())
    with torch.no_grad():
        out = task.model(batch)
    assert task.model.heads["gap"].pooling == "sum" and task.model.heads["big"].pooling == "mean"
    assert torch.allclose(task.eval()(batch)["big"], 0.5 + 0.5 * out["big"].double(), rtol=1e-14)
