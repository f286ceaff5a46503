"""Layer-wise learning rates, freezing and the schedule, through the real LightningModule.

* LLRD: ``configure_optimizers`` of a 2-block fine-tune module puts every trainable parameter in
  exactly one group; the expected group is recomputed here from the names with plain string
  prefixes (embedding -> embedding; int_blocks.i and out_blocks.(i+1), plus out_blocks.0 for
  i = 0 -> blocks_i; bases, out_mlp_E, the new heads -> rest) and its lr is base × multiplier.
  The schedule starts every group at 0.1 × its lr and ends the cosine of every group at the
  same absolute lr, 0.1 × base (the authors' per-group floors), exactly (1e-12 relative).
* Freezing: after a short run (EMA on) the frozen parameters are bit-identical to their
  initial values, in the raw and in the EMA weights, and absent from the optimizer; the others
  moved. Freezing the whole backbone trains only the heads.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from openjmp.errors import ConfigError
from openjmp.model.checkpoint import read_checkpoint
from openjmp.tasks.finetune import FinetuneTask
from openjmp.train.backbone import build_backbone, uses_direct_forces
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import tiny_config

TWO_BLOCKS = {"num_blocks": 2}
MULT = {"embedding": 0.3, "blocks_0": 0.55, "blocks_1": 0.625}


def two_block_task(tmp_path: Path, overrides=()) -> FinetuneTask:
    from helpers.ft_helpers import TINY_BACKBONE

    bb = dict(TINY_BACKBONE, **TWO_BLOCKS)
    cfg = tiny_config(tmp_path / "x.extxyz", ["optimizer.lr=1e-3", *overrides], backbone=bb,
                      preset="user-property")  # fmt: skip
    backbone = build_backbone(
        cfg.model, direct_forces=uses_direct_forces(cfg), edge_dropout=cfg.edge_dropout
    )[0]
    return FinetuneTask(
        cfg, backbone.to_dict(), {"y": {"mean": 0.0, "std": 1.0}}, steps_per_epoch=5
    )


def expected_group(name: str) -> str:
    if name.startswith("model.embedding."):
        return "embedding"
    for i in range(2):
        if name.startswith(f"model.backbone.int_blocks.{i}.") or name.startswith(
            f"model.backbone.out_blocks.{i + 1}."
        ):
            return f"blocks_{i}"
    if name.startswith("model.backbone.out_blocks.0."):
        return "blocks_0"
    return "rest"


def test_llrd_groups_and_learning_rates(tmp_path: Path) -> None:
    task = two_block_task(tmp_path, ["llrd={embedding: 0.3, blocks_0: 0.55, blocks_1: 0.625}"])
    conf = task.configure_optimizers()
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    assert conf["lr_scheduler"]["interval"] == "step"
    name_of = {id(p): n for n, p in task.named_parameters()}
    seen: dict[str, str] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            n = name_of[id(p)]
            assert n not in seen, f"{n} in two groups"
            seen[n] = group["name"]
        # warm-up starts every group at 0.1 × its lr (step 0)
        assert group["lr"] == pytest.approx(0.1 * 1e-3 * MULT.get(group["name"], 1.0), rel=1e-12)
    assert set(seen) == {n for n, p in task.named_parameters() if p.requires_grad}
    for n, g in seen.items():
        assert g == expected_group(n), n
    assert {g for g in seen.values()} == {"embedding", "blocks_0", "blocks_1", "rest"}
    assert any(n.startswith("model.heads.") and g == "rest" for n, g in seen.items())
    warmup, total = task.schedule_steps()
    assert (warmup, total) == (2, 40)
    for _ in range(warmup):
        opt.step()
        sched.step()
    for group in opt.param_groups:  # peak = base × multiplier
        assert group["lr"] == pytest.approx(1e-3 * MULT.get(group["name"], 1.0), rel=1e-12)
    for _ in range(total - warmup):
        opt.step()
        sched.step()
    for group in opt.param_groups:  # cosine end: the same absolute lr for every group
        assert group["lr"] == pytest.approx(0.1 * 1e-3, rel=1e-12)


def test_frozen_parameters_leave_the_optimizer(tmp_path: Path) -> None:
    task = two_block_task(tmp_path, ["freeze=[embedding, blocks_0]", "llrd=null"])
    opt = task.configure_optimizers()["optimizer"]
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    for n, p in task.named_parameters():
        frozen = expected_group(n) in ("embedding", "blocks_0")
        assert (not p.requires_grad) == frozen, n
        assert (id(p) in in_opt) == (not frozen), n


class Snapshot(pl.Callback):
    def on_fit_start(self, trainer, pl_module) -> None:  # noqa: ANN001
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


@pytest.mark.parametrize("freeze", ["[embedding, blocks_0]", "[backbone, embedding]"])
def test_frozen_weights_are_bit_identical_after_training(
    tmp_path: Path, molecules_file: Path, freeze: str
) -> None:
    from helpers.ft_helpers import TINY_BACKBONE

    cfg = tiny_config(molecules_file, backbone=dict(TINY_BACKBONE, num_blocks=2), overrides=[
        f"freeze={freeze}", "ema_decay=0.8", "optimizer.lr=1e-2", "trainer.max_steps=6",
        "trainer.val_check_interval=3", "early_stopping=null",
    ])  # fmt: skip
    snap = Snapshot()
    run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False, callbacks=[snap],
                 evaluate_parts=())  # fmt: skip
    ck = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 6
    patterns = ("model.embedding.", "model.backbone.int_blocks.0.", "model.backbone.out_blocks.0.",
                "model.backbone.out_blocks.1.") if "blocks_0" in freeze else ("model.embedding.", "model.backbone.")  # fmt: skip
    frozen = [
        k
        for k in snap.state
        if k.startswith(patterns) and "scale_factor" not in k and "rbf." not in k
    ]
    assert frozen
    for key in ("state_dict", "current_model_state"):  # EMA and raw weights
        for k in frozen:
            assert torch.equal(ck[key][k], snap.state[k]), (key, k)
    trained = [k for k in snap.state if k.startswith("model.heads.")]
    assert any(not torch.equal(ck["current_model_state"][k], snap.state[k]) for k in trained)
    if "blocks_0" in freeze:
        k = "model.backbone.int_blocks.1.dense_ca.linear.weight"
        assert not torch.equal(ck["current_model_state"][k], snap.state[k])


@pytest.mark.parametrize("value", [None, True, False, "residual"])
def test_activation_checkpointing_setting_reaches_the_backbone(tmp_path: Path, value) -> None:
    """model.activation_checkpointing (None: automatic by batch size) sets the backbone's mode."""
    text = "null" if value is None else str(value).lower()
    task = two_block_task(tmp_path, [f"model.activation_checkpointing={text}"])
    mode = task.model.backbone.memory_efficient
    assert mode == value if isinstance(value, str) else mode is value


def test_activation_checkpointing_rejects_unknown_modes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        two_block_task(tmp_path, ["model.activation_checkpointing=residuals"])
    task = two_block_task(tmp_path, [])
    with pytest.raises(ConfigError, match="'sometimes'"):
        task.model.set_activation_checkpointing("sometimes")  # type: ignore[arg-type]
