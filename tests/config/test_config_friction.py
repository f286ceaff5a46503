"""Friction on a new user's path: one ``--set data_root=`` moves a preset's corpus, a missing
demo corpus names the command that makes it, ``trainer.max_steps`` and ``schedule.max_steps``
follow each other, ``finetune --help`` spells presets as they resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from openjmp.cli.main import main
from openjmp.config.load import load_config
from openjmp.config.presets import preset_names
from openjmp.errors import ConfigError


def test_data_root_moves_every_relative_source() -> None:
    cfg = load_config("demo", "pretrain")
    assert cfg.data_root == Path("demo-corpus")
    paths = [d.train.path for d in cfg.resolved_datasets()]
    assert paths[0] == Path("demo-corpus/oc20_like/s2ef/train")
    moved = load_config("demo", "pretrain", ["data_root=/data/corpus"])
    for d in moved.resolved_datasets():
        for src in (d.train, d.val):
            assert src is None or str(src.path).startswith("/data/corpus/")
    absolute = load_config(
        "demo", "pretrain", ["data_root=/data/corpus", "datasets.0.train.path=/elsewhere/train"]
    )
    assert absolute.resolved_datasets()[0].train.path == Path("/elsewhere/train")


def test_missing_demo_corpus_names_the_command(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "demo", "--prepare-only"]) == 2
    err = capsys.readouterr().err
    assert "datasets.0.train.path: demo-corpus/oc20_like/s2ef/train not found" in err
    assert "openjmp data make-demo demo-corpus" in err and "--set data_root=DIR" in err
    assert not (tmp_path / "demo-runs").exists()  # nothing started


@pytest.mark.parametrize(
    "overrides,trainer,schedule",
    [
        (["trainer.max_steps=100"], 100, 100),
        (["schedule.max_steps=300"], 300, 300),
        (["trainer.max_steps=100", "schedule.max_steps=300"], 100, 300),
    ],
)
def test_max_steps_follow_each_other(overrides, trainer, schedule) -> None:
    cfg = load_config("demo", "pretrain", overrides)
    assert (cfg.trainer.max_steps, cfg.schedule.max_steps) == (trainer, schedule)


def test_max_steps_below_warmup_names_the_override() -> None:
    with pytest.raises(ConfigError, match=r"max_steps must exceed warmup_steps \[from --set "
                       r"trainer.max_steps=20 \(schedule.max_steps follows it\)\]"):  # fmt: skip
        load_config("demo", "pretrain", ["trainer.max_steps=20"])
    cfg = load_config("user-property", "finetune", ["trainer.max_steps=100"])
    assert cfg.schedule.max_steps is None and cfg.schedule.max_epochs == 32.0  # epochs: kept


def test_finetune_help_spells_presets_as_they_resolve(capsys) -> None:
    from openjmp.cli.finetune import HELP_PRESETS

    names = set(preset_names("finetune"))
    assert set(HELP_PRESETS) <= names
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in HELP_PRESETS)


@pytest.mark.parametrize(
    "preset,key,unit",
    [
        ("rmd17-aspirin", "energy_mae", "eV"),
        ("rmd17-aspirin", "forces_mae", "eV/Å"),
        ("qm9-u_0", "U_0_mae", "eV"),
        ("qm9-mu", "mu_mae", "D"),
        ("matbench-mp_e_form-fold0", "y_mae", "eV/atom"),
        ("qmof", "y_mae", "eV"),
        ("matbench-mp_is_metal-fold0", "y_balanced_accuracy", ""),
        ("user-property", "y_mae", None),
    ],
)
def test_finetune_summary_units(preset, key, unit) -> None:
    """The fine-tune summary gives each metric's unit (the data's: eV, not the paper's meV)."""
    from openjmp.cli.finetune import metric_unit

    assert metric_unit(load_config(preset, "finetune"), key) == unit
