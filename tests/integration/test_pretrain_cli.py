"""``openjmp pretrain`` end to end (in process, through the CLI entry point): a YAML config with
``--set`` overrides trains and saves, ``--resume`` continues the same run to a later step, and
config / resume mistakes are reported with the field path or the file, exit status 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openjmp.cli.main import main
from openjmp.model.checkpoint import read_checkpoint

from helpers.tiny_data import tiny_config, write_tiny_data


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    write_tiny_data(tmp_path / "data")
    data = tiny_config(tmp_path / "data").model_dump(mode="json")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_train_then_resume(config_file: Path, tmp_path: Path, capsys, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    out = tmp_path / "run"
    args = ["pretrain", str(config_file), "--out", str(out), "--no-progress"]
    assert main([*args, "--set", "trainer.max_steps=3"]) == 0
    text = capsys.readouterr().out
    assert "validation, step 0 -> step 3" in text and "slabs" in text and "mols" in text
    assert (out / "model.pt").is_file() and (out / "config.yaml").is_file()
    assert read_checkpoint(out / "checkpoints" / "last.ckpt")["global_step"] == 3
    # the run's time so far is in the checkpoint; the resumed summary adds this launch's time
    # to it (set to 1e6 s here, so that the printed total shows it was carried over)
    import torch

    ck = torch.load(out / "checkpoints" / "last.ckpt", weights_only=False)
    assert 0 < ck["callbacks"]["ElapsedTime"]["elapsed"] < 600
    ck["callbacks"]["ElapsedTime"]["elapsed"] = 1e6
    torch.save(ck, out / "checkpoints" / "last.ckpt")

    assert main([*args, "--resume", "--set", "trainer.max_steps=6"]) == 0
    captured = capsys.readouterr()
    text = captured.out
    assert "validation, step 0 -> step 6" in text and text.count("6 steps") == 1
    seconds = int(text.split("6 steps, 18 structures, ")[1].split(" s;")[0])
    assert 1_000_000 <= seconds < 1_000_600
    # Lightning's note at every save and load ("`weights_only` was not set")
    assert not [r for r in caplog.records if "weights_only" in r.getMessage()]
    ck = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert ck["global_step"] == 6
    assert [s for s, _ in ck["openjmp_histories"]["val"]] == [0, 3, 6]


def test_prepare_only_builds_caches_and_stops(config_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "prep"
    assert main(["pretrain", str(config_file), "--out", str(out), "--prepare-only"]) == 0
    text = capsys.readouterr().out
    assert "slabs" in text and "expanded epoch" in text
    assert len(list((out / "cache").glob("*-normalization-*.json"))) == 2
    assert not (out / "checkpoints").exists()


def test_errors_name_the_field_or_file(config_file: Path, tmp_path: Path, capsys) -> None:
    assert main(["pretrain", str(config_file), "--set", "trainer.max_stepz=3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_stepz: unknown key" in err and "max_steps" in err
    assert main(["pretrain", str(config_file), "--out", str(tmp_path / "none"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
