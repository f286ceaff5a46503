"""Checkpoint writing is atomic: a save that fails midway leaves the previous file intact and
no temporary file behind; the trainer builder wires the stock pieces as documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint

from openjmp.config.common import ClippingConfig, TrainerConfig
from openjmp.errors import ConfigError
from openjmp.train.callbacks import AtomicCheckpointIO, LastCheckpoint
from openjmp.train.trainer import build_trainer


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"step": 1, "w": torch.ones(1000)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot pickle"):
        io.save_checkpoint({"step": 2, "w": torch.zeros(1000), "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
    assert io.load_checkpoint(path)["step"] == 1


def test_build_trainer_wiring(tmp_path: Path) -> None:
    cfg = TrainerConfig(max_steps=10, val_check_interval=5, accelerator="cpu", devices=1)
    trainer = build_trainer(cfg, out_dir=tmp_path, precision="64-true", last_checkpoint=True,
                            clipping=ClippingConfig(algorithm="norm", value=1.0), ema_decay=0.99,
                            progress=False)  # fmt: skip
    assert trainer.gradient_clip_val == 1.0 and trainer.gradient_clip_algorithm == "norm"
    assert trainer.precision == "32-true"  # the task builds a float64 model itself
    ema = [c for c in trainer.callbacks if isinstance(c, EMAWeightAveraging)]
    assert len(ema) == 1 and ema[0]._use_buffers is False
    ckpt = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert len(ckpt) == 1 and ckpt[0].monitor == "val/loss" and not ckpt[0].save_last
    names = [type(c).__name__ for c in trainer.callbacks]
    assert names.index("EMA") < names.index("LastCheckpoint")  # the saved EMA has the step
    last = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
    assert last[0].path == tmp_path / "checkpoints" / "last.ckpt"
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert trainer.num_sanity_val_steps == float("inf")  # a full validation at step 0
    assert (
        build_trainer(cfg, out_dir=tmp_path, progress=False, resume=True).num_sanity_val_steps == 0
    )
    with pytest.raises(ConfigError, match="16-mixed .* needs a GPU"):
        build_trainer(cfg, out_dir=tmp_path, precision="16-mixed")


def test_ema_update_is_the_exponential_average() -> None:
    """The multi-tensor EMA update gives ema <- d * ema + (1 - d) * theta, buffers copied."""
    from torch.optim.swa_utils import AveragedModel

    from openjmp.train.callbacks import ema_callback

    cb = ema_callback(0.9)
    model = torch.nn.BatchNorm1d(3).double()  # parameters and buffers
    avg = AveragedModel(model, use_buffers=cb._use_buffers, **cb._kwargs)
    expected = [p.detach().clone() for p in model.parameters()]
    avg.update_parameters(model)  # first update copies
    for k in range(1, 4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(k))
            model.running_mean.fill_(float(k))
        avg.update_parameters(model)
        expected = [
            0.9 * e + 0.1 * p.detach() for e, p in zip(expected, model.parameters(), strict=True)
        ]
    for e, p in zip(expected, avg.module.parameters(), strict=True):
        torch.testing.assert_close(p, e, rtol=1e-12, atol=1e-12)
    assert torch.equal(avg.module.running_mean, torch.full((3,), 3.0, dtype=torch.float64))


def test_cached_ema_step_update_equals_the_stock_update() -> None:
    """The callback's per-step update (parameter lists kept from the first update) gives the
    stock `AveragedModel.update_parameters` result bit for bit, step after step."""
    import copy

    from torch.optim.swa_utils import AveragedModel

    from openjmp.train.callbacks import ema_callback

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.SiLU(), torch.nn.Linear(5, 2))
    cb = ema_callback(0.95)
    cb._average_model = AveragedModel(model, use_buffers=cb._use_buffers, **cb._kwargs)
    stock = AveragedModel(copy.deepcopy(model), use_buffers=cb._use_buffers, **cb._kwargs)
    for k in range(4):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        cb._update(model)
        stock.update_parameters(model)
        assert int(cb._average_model.n_averaged) == int(stock.n_averaged) == k + 1
        for a, b in zip(cb._average_model.module.parameters(), stock.module.parameters(),
                        strict=True):  # fmt: skip
            assert torch.equal(a, b)
    assert cb._pairs is not None
    assert not torch.equal(next(stock.module.parameters()), next(model.parameters()))


def test_ema_update_falls_back_to_the_stock_one_for_other_layouts() -> None:
    """A parameter that lerp cannot average (here an integer one) sends every update through
    the stock `AveragedModel.update_parameters`, decided once."""
    import copy

    from torch.optim.swa_utils import AveragedModel

    from openjmp.train.callbacks import ema_callback

    model = torch.nn.Linear(3, 2)
    model.count = torch.nn.Parameter(torch.zeros(2, dtype=torch.int64), requires_grad=False)
    cb = ema_callback(0.9)
    cb._average_model = AveragedModel(model, use_buffers=cb._use_buffers, **cb._kwargs)
    stock = AveragedModel(copy.deepcopy(model), use_buffers=cb._use_buffers, **cb._kwargs)
    for _ in range(3):
        with torch.no_grad():
            model.weight.add_(1.0)
            model.count.add_(10)
        cb._update(model)
        stock.update_parameters(model)
    assert cb._pairs == ()
    for a, b in zip(cb._average_model.module.parameters(), stock.module.parameters(), strict=True):
        assert torch.equal(a, b)
    assert int(cb._average_model.n_averaged) == 3
