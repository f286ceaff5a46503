"""Replay fine-tuning (``adaptation: replay``) from a tiny openjmp pre-training checkpoint.

A 6-step pre-training run on two tiny datasets (``slabs``: Cu slabs with O, ``mols``: CHNO
molecules) writes ``model.pt`` with heads slabs_/mols_ energy and forces. Fine-tuning on other
molecules then replays both datasets through those heads. Checked here:

* the training batches hold exactly the structures the plan states: per epoch the target once
  and round(ratio × N_target) replayed structures shared by temperature (counted);
* the kept heads start as the checkpoint's, change under replay, and stay bit-identical when
  their loss weight is 0 (frozen: no gradient, no weight decay);
* a kill and resume reproduces the uninterrupted run exactly (losses, validation, weights);
* named errors: a dataset the checkpoint has no heads for, a missing data file, no checkpoint.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from openjmp.config import FinetuneConfig, load_config
from openjmp.errors import ConfigError
from openjmp.model.checkpoint import load_checkpoint, read_checkpoint
from openjmp.train.finetune.data import load_finetune_splits
from openjmp.train.finetune.replay import (
    ReplayDataModule,
    load_replay_sources,
    replay_plan,
)
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import write_molecules

SHORT = [
    "data.graph.pbc=false", "data.graph.cutoff=4.0", "data.graph.max_neighbors=8",
    "schedule.warmup_epochs=null", "schedule.warmup_steps=2", "schedule.max_epochs=null",
    "schedule.max_steps=20", "trainer.max_epochs=null", "trainer.max_time=null",
    "trainer.max_steps=6", "trainer.val_check_interval=3", "trainer.accelerator=cpu",
    "loader.batch_size=4", "trainer.seed=5", "early_stopping=null", "optimizer.lr=5e-3",
]  # fmt: skip


def replay_section(data: Path, **weights: Any) -> dict[str, Any]:
    def ds(name: str, pbc: bool) -> dict[str, Any]:
        return {
            "name": name,
            "format": "ase",
            "train": {"path": f"{name}-train.xyz"},
            "val": {"path": f"{name}-val.xyz"},
            "graph": {"cutoff": 4.0, "max_neighbors": 8, "pbc": pbc, "dummy_cell": not pbc},
            **weights.get(name, {}),
        }

    return {"data_root": str(data), "datasets": [ds("slabs", True), ds("mols", False)],
            "ratio": 1.5, "temperature": 2.0}  # fmt: skip


def replay_config(
    tiny_pretrained: tuple[Path, Path], target: Path, extra: list[str] = (), **section: Any
) -> FinetuneConfig:
    ckpt, data = tiny_pretrained
    cfg = load_config(
        "user-energy-forces",
        "finetune",
        [f"model.checkpoint={ckpt}", f"data.train.path={target}", *SHORT, *extra],
    )
    dump = cfg.model_dump(mode="json")
    dump["adaptation"] = "replay"
    dump["replay"] = {**replay_section(data), **section}
    return FinetuneConfig.model_validate(dump)


def test_batches_hold_the_stated_proportions(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    cfg = replay_config(tiny_pretrained, target)
    splits = load_finetune_splits(cfg.data, tmp_path / "cache")
    assert cfg.replay is not None
    sources = load_replay_sources(cfg.replay, tmp_path / "cache")
    dm = ReplayDataModule(splits, cfg.data.graph, cfg.loader, sources, cfg.replay, seed=3)
    n_target = len(splits.train)  # 16 of 20 (split 0.8 / rest / 0.1)
    sizes = [len(s.train) for s in sources]
    assert sizes == [6, 8]
    # ratio 1.5: 24 replayed structures per epoch, p ∝ N^(1/2): 6^.5 : 8^.5 -> 11.1 : 12.9
    plan = replay_plan(n_target, sizes, ["slabs", "mols"], 1.5, 2.0)
    assert plan.expanded_sizes == (16, 11, 13)
    assert dm.plan == plan
    loader = dm.train_dataloader()
    seen: dict[str, set[int]] = {"slabs": set(), "mols": set()}
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        counts: Counter[str] = Counter()
        for batch in loader:
            if batch.target is not None:
                assert set(batch.target.datasets) == {"finetune"}
                counts["finetune"] += batch.target.num_graphs
            if batch.replay is not None:
                counts.update(batch.replay.datasets)
                assert batch.replay.energy is not None and batch.replay.forces is not None
        # 40 structures per epoch in batches of 4: every one of them is used
        assert counts == {"finetune": 16, "slabs": 11, "mols": 13}
    # every replayed structure is reachable: slabs (6) are up-sampled, mols (8) cycle
    order = dm._batch_sampler(0, 1).sampler
    for epoch in range(2):
        order.set_epoch(epoch)
        idx = order.epoch_order().numpy()
        for i in idx[idx >= 16]:
            name, local = dm.plan.describe(int(i))
            seen[name].add(local)
    assert seen == {"slabs": set(range(6)), "mols": set(range(8))}


def _head_params(state: dict[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(f"heads.{head}.")}


def test_kept_heads_train_unless_their_weight_is_zero(
    tiny_pretrained, tmp_path: Path, capsys
) -> None:  # noqa: ANN001
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    start = load_checkpoint(tiny_pretrained[0], dtype=torch.float32).state_dict()
    section = replay_section(tiny_pretrained[1], slabs={"energy_coefficient": 0.0,
                                                   "force_coefficient": 0.0})  # fmt: skip
    cfg = replay_config(tiny_pretrained, target, **section)
    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False,
                          evaluate_parts=())  # fmt: skip
    out = capsys.readouterr().out
    assert "replay: datasets and heads" in out
    assert "mols_energy, mols_forces" in out and "slabs_energy, slabs_forces" in out
    assert [r["dataset"] for r in result.replay] == ["target", "slabs", "mols"]
    assert result.replay[2]["train"] == 8
    # the last checkpoint's raw weights (no EMA in this preset)
    ck = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    final = ck["model_state_dict"]
    for head in ("slabs_energy", "slabs_forces"):
        a, b = _head_params(start, head), _head_params(final, head)
        assert a and a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k  # weight 0: frozen, bit-identical
    for head in ("mols_energy", "mols_forces"):
        a, b = _head_params(start, head), _head_params(final, head)
        assert a and any(not torch.equal(a[k], b[k]) for k in a), head
    # the fine-tuned file still predicts through the kept heads, in eV
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert {"mols_energy", "mols_forces", "energy", "forces"} <= set(model.heads)
    assert model.output_transform("mols_energy").physical
    # without head=, predict uses the fine-tuned head (the model's default), not a kept one
    from ase.build import molecule

    import openjmp

    mol = molecule("CH3CH2OH")
    default = openjmp.predict(model, [mol])
    np.testing.assert_allclose(
        default.energies, openjmp.predict(model, [mol], head="energy").energies
    )
    assert not np.allclose(default.energies, openjmp.predict(model, [mol], head="mols").energies)


class Crash(Exception):
    pass


class CrashAt(pl.Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if trainer.global_step == self.step:
            raise Crash(f"killed at step {self.step}")


def test_resume_with_replay_is_exact(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    # 16 target + 8 replayed per epoch = 6 batches of 4: the run crosses an epoch boundary
    cfg = replay_config(tiny_pretrained, target, ["trainer.max_steps=8", "trainer.val_check_interval=2",
                                             "ema_decay=0.9"], ratio=0.5)  # fmt: skip
    kw = {"progress": False, "logger": False, "evaluate_parts": ()}
    full = run_finetune(cfg, out_dir=tmp_path / "full", **kw)
    assert full.steps == 8
    with pytest.raises(Crash):
        run_finetune(cfg, out_dir=tmp_path / "cut", callbacks=[CrashAt(5)], **kw)
    assert read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")["global_step"] == 4
    resumed = run_finetune(cfg, out_dir=tmp_path / "cut", resume=True, **kw)
    assert resumed.train_losses == full.train_losses
    assert resumed.history == full.history
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(tmp_path / "cut" / "checkpoints" / "last.ckpt")
    for key in ("state_dict", "current_model_state"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)


def test_a_dataset_without_heads_is_named(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    section = replay_section(tiny_pretrained[1])
    section["datasets"][0]["name"] = "oc20"
    cfg = replay_config(tiny_pretrained, target, **section)
    with pytest.raises(ConfigError, match=r"no head\(s\) \['oc20_energy', 'oc20_forces'\].*"
                                          r"datasets are \['mols', 'slabs'\]"):  # fmt: skip
        run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)


def test_missing_replay_data_is_named(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    cfg = replay_config(tiny_pretrained, target, data_root=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="slabs: train source .*slabs-train.xyz does not exist"):
        run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)


def test_replay_needs_its_section_and_a_checkpoint(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    cfg = replay_config(tiny_pretrained, tmp_path / "x.extxyz")
    dump = cfg.model_dump(mode="json")
    with pytest.raises(ValueError, match="replay section"):
        FinetuneConfig.model_validate({**dump, "replay": None})
    with pytest.raises(ValueError, match="replay section"):
        FinetuneConfig.model_validate({**dump, "adaptation": "full"})
    with pytest.raises(ValueError, match="model.checkpoint"):
        FinetuneConfig.model_validate({**dump, "model": {**dump["model"], "checkpoint": None}})
    assert np.isclose(cfg.replay.ratio, 1.5)


def test_forgetting_report(tiny_pretrained, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """Replay run: kept heads. The pre-trained model's errors are the pre-training run's own
    last validation (same heads, same validation parts). A frozen run through the CLI with
    the pre-training config: grafted heads on an unchanged backbone give the pre-trained
    model's energy errors (its gradient-force backbone has no direct-force branch: no forces)."""
    from openjmp.cli.main import main
    from openjmp.evaluate import evaluate_forgetting

    ckpt, _ = tiny_pretrained
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    cfg = replay_config(tiny_pretrained, target)
    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False,
                          evaluate_parts=())  # fmt: skip
    report = evaluate_forgetting(result.last_checkpoint)
    assert report["heads"] == "kept" and sorted(report["datasets"]) == ["mols", "slabs"]
    assert report["target"]["metrics"]["forces_mae"] > 0
    pre_run = read_checkpoint(ckpt.parent / "checkpoints" / "last.ckpt")
    step, last_val = pre_run["openjmp_histories"]["val"][-1]
    for name in ("slabs", "mols"):
        ours = report["datasets"][name]["pretrained"]
        assert ours["structures"] == 2
        assert np.isclose(ours["energy_mae"], last_val[name]["energy_mae"], rtol=1e-5)
        assert np.isclose(ours["forces_mae"], last_val[name]["force_mae"], rtol=1e-5)
        ft = report["datasets"][name]["finetuned"]
        assert ft["forces_mae"] is not None and ft["energy_mae"] != ours["energy_mae"]
    assert (tmp_path / "run" / "evaluation" / "forgetting_val.json").is_file()

    frozen = load_config("user-energy-forces", "finetune",
                         [f"model.checkpoint={ckpt}", f"data.train.path={target}", *SHORT,
                          "adaptation=frozen", f"trainer.output_dir={tmp_path / 'runs'}"])  # fmt: skip
    run = run_finetune(frozen, out_dir=tmp_path / "frozen", progress=False, logger=False,
                       evaluate_parts=())  # fmt: skip
    args = ["evaluate", str(run.last_checkpoint), "--forgetting", "--no-progress",
            "--pretrain-config", str(ckpt.parent / "config.yaml")]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "forgetting report" in out and "heads: grafted" in out
    saved = json.loads((tmp_path / "frozen" / "evaluation" / "forgetting_val.json").read_text())
    for name in ("slabs", "mols"):
        ft, pre = saved["datasets"][name]["finetuned"], saved["datasets"][name]["pretrained"]
        assert ft["forces_mae"] is None
        assert np.isclose(ft["energy_mae"], pre["energy_mae"], rtol=1e-5)
    # a run without a replay section needs the pre-training config
    with pytest.raises(ConfigError, match="pretrain-config"):
        evaluate_forgetting(run.last_checkpoint)


def test_pseudo_labels_are_the_starting_models_predictions(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    """``pseudo_labels: [{name: mols}]``: the target's training structures labelled by the
    checkpoint's mols heads (checked one structure at a time against the model itself), then
    replayed through those heads in the stated numbers, without the pre-training data."""
    from openjmp.graph.collate import collate
    from openjmp.train.finetune.replay import pseudo_labelled

    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    cfg = replay_config(tiny_pretrained, target, datasets=[], pseudo_labels=[{"name": "mols"}],
                        ratio=0.5)  # fmt: skip
    splits = load_finetune_splits(cfg.data, tmp_path / "cache")
    (labelled,) = pseudo_labelled(cfg, splits.train, batch_size=5)
    assert len(labelled) == len(splits.train) == 16
    model = load_checkpoint(tiny_pretrained[0], dtype=torch.float32)
    for i in (0, 7, 15):
        rec = labelled.record(i)
        assert rec.dataset == "mols"
        assert np.allclose(rec.positions, splits.train.records[i].positions)
        one = collate([labelled[i]])
        with torch.no_grad():
            pred = model.to_physical(model(one, heads=["mols_energy", "mols_forces"]), one)
        assert np.isclose(rec.energy, float(pred["mols_energy"][0]), rtol=0, atol=1e-4)
        assert np.allclose(rec.forces, pred["mols_forces"].double().numpy(), atol=1e-5)
        assert not np.isclose(rec.energy, splits.train.records[i].energy)  # not the EMT label

    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False,
                          evaluate_parts=())  # fmt: skip
    assert [(r["dataset"], r["train"], r["per_epoch"]) for r in result.replay] == [
        ("target", 16, 16), ("mols (pseudo-labels)", 16, 8)
    ]  # fmt: skip
    assert result.steps == 6


def test_heads_without_references_need_them(tiny_pretrained, tmp_path: Path) -> None:  # noqa: ANN001
    """A checkpoint whose energy heads record no references (as the published JMP ones): an
    energy loss on them is a named error; ``references`` completes the head (here with the
    references the tiny run fitted, so the completed head is the original one)."""
    from openjmp.model.checkpoint import save_model
    from openjmp.model.outputs import OutputTransform
    from openjmp.train.finetune.replay import kept_heads

    model = load_checkpoint(tiny_pretrained[0], dtype=torch.float32)
    original = model.output_transform("mols_energy")
    assert original.references is not None
    bare = OutputTransform.energy(original.scale, original.shift, missing="no references")
    model.set_head_info("mols_energy", output=bare)
    published_like = save_model(model, tmp_path / "published-like.pt")
    target = write_molecules(tmp_path / "mine.extxyz", n=20, seed=40)
    section = replay_section(tiny_pretrained[1])
    section["datasets"] = [d for d in section["datasets"] if d["name"] == "mols"]
    like = (published_like, tiny_pretrained[1])
    cfg = replay_config(like, target, **section)
    with pytest.raises(ConfigError, match="head mols_energy is not in eV"):
        run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)

    refs = tmp_path / "mols-references.json"
    refs.write_text(json.dumps(list(original.references)))
    section["datasets"][0]["references"] = str(refs)
    cfg = replay_config(like, target, ["trainer.max_steps=2"], **section)
    specs, _ = kept_heads(cfg)
    completed = OutputTransform.from_dict(specs["mols_energy"]["output"])
    assert completed.physical and completed.references == original.references
    assert completed.shift == original.shift and completed.scale == original.scale
    assert run_finetune(cfg, out_dir=tmp_path / "ok", progress=False, logger=False,
                        evaluate_parts=()).steps == 2  # fmt: skip
    # forces only, without references: trains, validates and evaluates the target
    section["datasets"][0].pop("references")
    section["datasets"][0]["energy_coefficient"] = 0.0
    cfg = replay_config(like, target, ["trainer.max_steps=2"], **section)
    forces_only = run_finetune(cfg, out_dir=tmp_path / "forces-only", progress=False,
                               logger=False, evaluate_parts=("val",))  # fmt: skip
    assert forces_only.steps == 2 and forces_only.metrics["val"]["forces_mae"] > 0
    # references for a head that has its own are refused, not silently replaced
    section = replay_section(tiny_pretrained[1])
    section["datasets"][1]["references"] = str(refs)
    with pytest.raises(ConfigError, match="records its own references already"):
        kept_heads(replay_config(tiny_pretrained, target, **section))
