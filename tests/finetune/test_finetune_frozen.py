"""Frozen-backbone mode: pooled pre-trained features + ridge / MLP / logistic heads.

* The ridge solution equals scikit-learn's ``Ridge`` on the same standardised features
  (closed form both ways: 1e-8 relative); α is the validation-MAE minimiser of the grid.
* Pooled features are the backbone's per-atom output pooled per structure (1e-12).
* ``run_frozen`` on tiny data (backbone from a pre-trained tiny checkpoint) returns and writes
  metrics for every part, the fitted heads and test predictions, in seconds; a ridge on real
  features must beat predicting the training mean on the test part of a smooth property.
* Forces cannot be fitted on a frozen backbone: a ConfigError says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import Ridge

import openjmp
from openjmp.errors import ConfigError
from openjmp.model.heads import pool
from openjmp.tasks.frozen import ALPHAS, Standardizer, fit_ridge, pooled_features, ridge_solve
from openjmp.train.finetune.data import load_finetune_splits
from openjmp.train.finetune.frozen import run_frozen
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import batch_of, molecules, tiny_config, write_molecules


def test_ridge_matches_sklearn_and_picks_alpha_on_val() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8))
    y = x @ rng.normal(size=8) + 0.1 * rng.normal(size=60)
    w, b = ridge_solve(x, y, 0.7)
    sk = Ridge(alpha=0.7).fit(x, y)
    assert np.allclose(w, sk.coef_, rtol=1e-8) and b == pytest.approx(sk.intercept_, rel=1e-8)
    head, curve = fit_ridge(x[:40], y[:40], x[40:], y[40:])
    assert [a for a, _ in curve] == list(ALPHAS)
    assert head.alpha == min(curve, key=lambda c: c[1])[0]
    xs = Standardizer.fit(x[:40])(x[40:])
    assert np.allclose(head.predict(x[40:]), xs @ head.weight + head.bias)


def test_pooled_features_are_pooled_backbone_outputs(tmp_path: Path) -> None:
    from openjmp.model.jmp_model import JMPModel
    from openjmp.train.backbone import build_backbone, uses_direct_forces

    cfg = tiny_config(tmp_path / "x.extxyz", preset="user-property")
    model = JMPModel(
        build_backbone(
            cfg.model, direct_forces=uses_direct_forces(cfg), edge_dropout=cfg.edge_dropout
        )[0],
        {},
    ).double()
    batch = batch_of(molecules(3))
    feats = pooled_features(model, [batch], ["sum", "mean"])
    with torch.no_grad():
        h = model(batch)["embedding"]
    for p in ("sum", "mean"):
        assert np.allclose(feats[p], pool(h, batch.batch, 3, p).numpy(), rtol=1e-12)


def test_run_frozen_fits_in_seconds_and_beats_the_mean(tmp_path: Path) -> None:
    data = write_molecules(tmp_path / "data" / "mols.extxyz", n=40)
    pre = tiny_config(data, ["trainer.max_steps=4", "trainer.val_check_interval=2"])
    base = run_finetune(
        pre, out_dir=tmp_path / "pre", progress=False, logger=False, evaluate_parts=()
    )
    cfg = tiny_config(data, [f"model.checkpoint={base.best_checkpoint}", "heads.0.target=gap",
                             "heads.0.pooling=sum", "monitor.metric=y_mae"], preset="user-property")  # fmt: skip
    res = run_frozen(cfg, out_dir=tmp_path / "frozen", head="ridge", progress=False)
    assert res.wall_time < 30 and res.steps == 0
    assert set(res.metrics) == {"train", "val", "test"}
    assert res.best_metric == res.metrics["val"]["y_mae"]
    y = res.test_targets["y"]
    assert res.test_predictions["y"].shape == y.shape == (4,)
    train_mean = json.loads((tmp_path / "frozen" / "stats.json").read_text())["y"]["mean"]
    assert res.metrics["test"]["y_mae"] < np.abs(y - train_mean).mean()
    for name in ("frozen_heads.pt", "metrics.json", "test_predictions.npz", "config.yaml"):
        assert (tmp_path / "frozen" / name).is_file()
    mlp = run_frozen(cfg, out_dir=tmp_path / "mlp", head="mlp", progress=False)
    assert np.isfinite(mlp.metrics["test"]["y_mae"])
    # both are openjmp models: predict gives the run's own test predictions
    test = [
        r.to_ase()
        for r in load_finetune_splits(cfg.data, tmp_path / "frozen" / "cache").test.records
    ]
    for run in (res, mlp):
        assert run.best_checkpoint.name == "model.pt"
        pred = openjmp.predict(openjmp.load_model(run.best_checkpoint), test)
        np.testing.assert_allclose(
            pred.properties["y"], run.test_predictions["y"], rtol=1e-5, atol=1e-6
        )
        assert pred.energies is None


def test_frozen_energy_is_a_potential(tmp_path: Path) -> None:
    """A frozen ridge energy head in model.pt: eV as the run predicted, and forces -dE/dx."""
    data = write_molecules(tmp_path / "data" / "mols.extxyz", n=40)
    cfg = tiny_config(data)
    res = run_frozen(cfg, out_dir=tmp_path / "frozen", head="ridge", progress=False)
    test = [
        r.to_ase()
        for r in load_finetune_splits(cfg.data, tmp_path / "frozen" / "cache").test.records
    ]
    pred = openjmp.predict(openjmp.load_model(res.best_checkpoint), test)  # float32, as fitted
    # the run evaluates its ridge in float64 on float32 features, the module in float32
    np.testing.assert_allclose(pred.energies, res.test_predictions["energy"], rtol=1e-4)
    model = openjmp.load_model(res.best_checkpoint, dtype=torch.float64)  # finite differences
    atoms = test[0].copy()
    atoms.calc = openjmp.JMPCalculator(model)
    f = atoms.get_forces()
    h, i = 1e-5, 0
    e = []
    for sign in (1, -1):
        a = atoms.copy()
        a.positions[i, 0] += sign * h
        a.calc = openjmp.JMPCalculator(model)
        e.append(a.get_potential_energy())
    assert f[i, 0] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-7)


def test_classification_and_forces(tmp_path: Path) -> None:
    data = write_molecules(tmp_path / "data" / "mols.extxyz", n=24)
    cfg = tiny_config(data, ["heads=[{kind: classification, name: big, target: is_big, num_classes: 2}]",
                             "monitor={metric: big_balanced_accuracy, mode: max}"], preset="user-property")  # fmt: skip
    res = run_frozen(cfg, out_dir=tmp_path / "cls", progress=False)
    assert res.monitor == "big_balanced_accuracy" and 0.0 <= res.best_metric <= 1.0
    assert res.test_predictions["big"].shape == (len(res.test_targets["big"]), 2)
    forces = tiny_config(data, ["heads=[{kind: forces}]"])
    with pytest.raises(ConfigError, match="forces need end-to-end fine-tuning"):
        run_frozen(forces, out_dir=tmp_path / "f", progress=False)
