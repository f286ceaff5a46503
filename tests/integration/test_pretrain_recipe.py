"""One short pre-training run through `run_pretrain`, checked against the recipe.

On two tiny EMT datasets (float64, CPU; ~10 s because it is a real Lightning run with two
validations and checkpoints):

* the EMA: the averaged weights in ``last.ckpt`` equal the moving average (decay 0.9) of the
  raw weights recorded after every optimizer step, computed here by hand (Lightning's EMA
  starts from the weights after the first step);
* validation runs on the EMA weights: re-evaluating the validation sets with the EMA weights of
  ``model.pt`` gives the last validation record again;
* shared-gradient scaling happens before clipping: the gradients the optimizer steps with equal
  the raw gradients with the shared projections divided by num_blocks (+1), then clipped to norm
  ``clipping.value`` (small enough here that clipping is active);
* ``last.ckpt`` and ``model.pt`` load with ``openjmp.load_model`` and give the EMA weights; the
  checkpoint unpickles with openjmp's restricted unpickler (nothing but plain data);
* histories, steps and structures seen are reported.
"""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch

import openjmp
from openjmp.model.checkpoint import load_checkpoint, read_checkpoint
from openjmp.tasks.param_groups import shared_parameter_factors
from openjmp.train.pretrain import build_datamodule, build_task, run_pretrain

from helpers.tiny_data import tiny_config, write_tiny_data

CLIP = 0.05


class Recorder(pl.Callback):
    """Raw gradients before the task's hook, the gradients the optimizer uses, weights after."""

    def __init__(self) -> None:
        self.raw: list[dict[str, torch.Tensor]] = []
        self.stepped: list[dict[str, torch.Tensor]] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # callback hooks run before the LightningModule's (where the scaling is) and clipping
        self.raw.append(_grads(pl_module))

    def on_train_start(self, trainer, pl_module) -> None:
        # after the update the gradients are still those the optimizer used (zeroed later)
        trainer.optimizers[0].register_step_post_hook(
            lambda opt, args, kwargs: self.stepped.append(_grads(pl_module))
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.weights.append({n: p.detach().clone() for n, p in pl_module.model.named_parameters()})


def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    write_tiny_data(root / "data")
    cfg = tiny_config(root / "data", clipping={"algorithm": "norm", "value": CLIP})
    rec = Recorder()
    result = run_pretrain(cfg, out_dir=root / "run", progress=False, logger=False, callbacks=[rec])
    return cfg, root, rec, result


def test_ema_is_the_moving_average_of_the_raw_weights(run) -> None:
    cfg, root, rec, result = run
    ck = read_checkpoint(root / "run" / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 6 and len(rec.weights) == 6
    decay = cfg.ema_decay
    ema = dict(rec.weights[0])
    for w in rec.weights[1:]:
        ema = {n: decay * ema[n] + (1 - decay) * w[n] for n in ema}
    for n, value in ema.items():
        torch.testing.assert_close(ck["ema_state_dict"][n], value, rtol=1e-12, atol=1e-15)
        assert torch.equal(ck["model_state_dict"][n], rec.weights[-1][n])
    assert any(not torch.equal(ema[n], rec.weights[-1][n]) for n in ema)


def test_loaders_give_the_ema_weights(run) -> None:
    _, root, _, result = run
    ck = read_checkpoint(root / "run" / "checkpoints" / "last.ckpt")
    for path in (root / "run" / "checkpoints" / "last.ckpt", result.checkpoint):
        model = openjmp.load_model(path, dtype=torch.float64)
        assert model.config.edge_dropout is None  # no boost for whoever fine-tunes it
        for n, v in model.state_dict().items():
            if n in ck["ema_state_dict"]:
                assert torch.equal(v, ck["ema_state_dict"][n]), n


def test_validation_used_the_ema_weights(run) -> None:
    cfg, root, _, result = run
    dm = build_datamodule(cfg, root / "run")
    task = build_task(cfg, dm)
    ema = load_checkpoint(result.checkpoint, dtype=torch.float64)
    task.model.load_state_dict(ema.state_dict())
    task.eval()
    task.on_validation_epoch_start()
    with torch.no_grad():
        for i, batch in enumerate(dm.val_dataloader()):
            task.validation_step(batch, i)
    s = task._val_sums
    step, last = result.val_history[-1]
    assert step == 6
    for t, name in enumerate(task.task_names):
        assert last[name]["energy_mae"] == pytest.approx(float(s[t, 0] / s[t, 1]), rel=1e-10)
        assert last[name]["force_mae"] == pytest.approx(float(s[t, 2] / s[t, 3]), rel=1e-10)
        assert last[name]["loss"] == pytest.approx(float(s[t, 4] / s[t, 5]), rel=1e-10)


def test_shared_scaling_then_clipping(run) -> None:
    cfg, _, rec, _ = run
    nb = cfg.model.backbone.num_blocks
    factors = shared_parameter_factors(nb)
    assert len(rec.raw) == len(rec.stepped) == 6
    clipped = 0
    for raw, used in zip(rec.raw, rec.stepped):
        scaled = {}
        for n, g in raw.items():
            layer = n.split("bases.")[-1].split(".")[0] if ".bases.mlp_" in n else None
            scaled[n] = g / factors[layer] if layer in factors and n.endswith("weight") else g
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g) for g in scaled.values()])
        )
        coef = min(1.0, CLIP / (float(norm) + 1e-6))
        clipped += coef < 1
        for n, g in used.items():
            torch.testing.assert_close(g, scaled[n] * coef, rtol=1e-12, atol=1e-16)
    assert clipped >= 1


def test_histories_and_counts(run) -> None:
    cfg, _, _, result = run
    assert [s for s, _ in result.val_history] == [0, 3, 6]
    assert set(result.val_history[0][1]) == {"slabs", "mols"}
    assert [s for s, _ in result.train_history] == [1, 2, 3, 4, 5, 6]
    assert result.structures_seen == 6 * cfg.loader.batch_size
    assert result.steps == 6 and result.wall_time > 0


def test_each_head_predicts_in_its_datasets_units(run) -> None:
    """model.pt and last.ckpt: predict(head=<dataset>) with the head's own graph gives, per
    dataset, Σ ref[Z] + mean + std · raw with that dataset's statistics (taken from the task
    here, not from the saved transforms), closer to the labels (eV) than the raw outputs."""
    import ase.io
    import numpy as np

    cfg, root, _, result = run
    dm = build_datamodule(cfg, root / "run")
    task = build_task(cfg, dm)
    for path in (result.checkpoint, root / "run" / "checkpoints" / "last.ckpt"):
        model = openjmp.load_model(path, dtype=torch.float64)
        for name in ("slabs", "mols"):
            frames = ase.io.read(root / "data" / f"{name}-val.xyz", index=":")
            labels = np.array([a.get_potential_energy() for a in frames])
            pred = openjmp.predict(model, frames, head=name)
            raw = openjmp.predict(model, frames, head=name, units="raw")
            assert pred.graph == cfg.datasets[0 if name == "slabs" else 1].graph.spec()
            assert pred.units["energy"] == "eV" and raw.units["energy"] == "raw"
            refs = task.references[name].references.numpy()
            offset = np.array([refs[a.numbers].sum() for a in frames])
            norm, fnorm = task.energy_norm[name], task.force_norm[name]
            expected = offset + float(norm.mean) + float(norm.std) * raw.energies
            np.testing.assert_allclose(pred.energies, expected, rtol=1e-12, atol=1e-9)
            for f, r in zip(pred.forces, raw.forces):
                np.testing.assert_allclose(f, float(fnorm.std) * r, rtol=1e-12, atol=1e-12)
            # the unit is the labels': raw outputs are O(1) normalised numbers, predictions not
            assert np.abs(pred.energies - labels).mean() < np.abs(raw.energies - labels).mean()
        with pytest.raises(openjmp.ConfigError, match="2 energy heads"):
            openjmp.predict(model, frames)


def test_model_files_written_before_head_transforms_still_give_ev(run, tmp_path) -> None:
    """model.pt without the per-head entries (as written before heads carried them): the
    transforms come back from the statistics in its metadata."""
    import ase.io
    import numpy as np

    from openjmp.model.outputs import INFO_KEYS

    cfg, root, _, result = run
    frames = ase.io.read(root / "data" / "slabs-val.xyz", index=":")
    new = openjmp.predict(
        openjmp.load_model(result.checkpoint, dtype=torch.float64), frames, head="slabs"
    )
    ck = read_checkpoint(result.checkpoint)
    ck["heads"] = {
        n: {k: v for k, v in s.items() if k not in INFO_KEYS} for n, s in ck["heads"].items()
    }
    torch.save(ck, tmp_path / "old.pt")
    old_model = openjmp.load_model(tmp_path / "old.pt", dtype=torch.float64)
    graph = cfg.datasets[0].graph.spec()  # old files did not say: give it
    old = openjmp.predict(old_model, frames, head="slabs", graph=graph)
    np.testing.assert_allclose(old.energies, new.energies, rtol=1e-12)
    for a, b in zip(old.forces, new.forces):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
