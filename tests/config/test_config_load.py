"""Loading configs: YAML reading rules, --set overrides, and error messages that name the file,
the field path and the override responsible (house rule 5)."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from openjmp.config import dump_config, load_config
from openjmp.config.load import parse_override
from openjmp.config.yaml_text import parse_yaml_value
from openjmp.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_key_names_file_and_field_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "extends: rmd17-aspirin\nmodel:\n  backbon: {preset: jmp-s}\n"
        "heads:\n  - kind: scalar\n    target: y\n    colour: red\n",
    )
    with pytest.raises(ConfigError) as exc:
        load_config(path, "finetune")
    msg = str(exc.value)
    assert msg.startswith(f"{path}: invalid finetune configuration")
    assert "model.backbon: unknown key (did you mean 'backbone'?)" in msg
    assert "heads.0.colour: unknown key" in msg  # the head kind is not part of the path
    assert "allowed: atom_references, kind, loss_coefficient" in msg


def test_bad_value_names_path_and_value(tmp_path: Path) -> None:
    path = write(
        tmp_path, "extends: qmof\nheads:\n  - {kind: scalar, target: y, pooling: median}\n"
    )
    with pytest.raises(
        ConfigError,
        match=r"heads\.0\.pooling: Input should be 'sum', 'mean' or 'max' \(got 'median'\)",
    ):
        load_config(path, "finetune")


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("optimizer.lr=1e-4", ("optimizer", "lr"), 1e-4),
        ("optimizer.betas=[0.9, 0.999]", ("optimizer", "betas"), [0.9, 0.999]),
        ("heads.0.pooling=mean", ("heads", 0, "pooling"), "mean"),
        ("model.checkpoint=null", ("model", "checkpoint"), None),
        ("data.graph.pbc=true", ("data", "graph", "pbc"), True),
        ("trainer.max_time=07:00:00:00", ("trainer", "max_time"), "07:00:00:00"),
        ("heads.0.target=no", ("heads", 0, "target"), "no"),  # YAML 1.2: not a boolean
        ("trainer.seed=08", ("trainer", "seed"), 8),  # decimal, not octal
        ("data.train.path=/x/y=z.npz", ("data", "train", "path"), "/x/y=z.npz"),
    ],
)
def test_parse_override(text: str, path: tuple, value: object) -> None:
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("text", ["optimizer.lr", "=3", "a..b=1", "a.b c=1"])
def test_malformed_override(text: str) -> None:
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        parse_override(text)


def test_overrides_apply_and_are_blamed() -> None:
    cfg = load_config(
        "rmd17-aspirin",
        "finetune",
        [
            "optimizer.lr=1e-4",
            "heads.0.force_coefficient=5",
            "data.train.path=/d/a.npz",
            "freeze=[embedding]",
        ],
    )
    assert cfg.optimizer.lr == 1e-4 and cfg.heads[0].force_coefficient == 5.0
    assert cfg.data.train.path == Path("/d/a.npz") and cfg.freeze == ["embedding"]
    assert cfg.optimizer.betas == (0.9, 0.95)  # the rest of the section is kept
    with pytest.raises(ConfigError) as exc:
        load_config("rmd17-aspirin", "finetune", ["optimizer.lr=-1", "data.graph.cutof=5"])
    msg = str(exc.value)
    assert msg.startswith("preset 'rmd17-aspirin': invalid finetune configuration")
    assert (
        "optimizer.lr: Input should be greater than 0 (got -1) [from --set optimizer.lr=-1]" in msg
    )
    assert "data.graph.cutof: unknown key (did you mean 'cutoff'?)" in msg
    with pytest.raises(ConfigError, match=r"heads\.3 is not an entry of a 1-entry list"):
        load_config("rmd17-aspirin", "finetune", ["heads.3.pooling=sum"])


def test_validator_errors_name_the_section() -> None:
    with pytest.raises(
        ConfigError, match=r"schedule: give exactly one of max_epochs and max_steps"
    ):
        load_config("jmp-l", "pretrain", ["schedule.max_epochs=null"])
    with pytest.raises(ConfigError, match=r"datasets\.0\.format: unknown format 'lmdb'"):
        load_config("jmp-l", "pretrain", ["datasets.0.format=lmdb"])
    with pytest.raises(
        ConfigError, match=r"reader option\(s\) \['fold'\] not accepted by format 'ocp_lmdb'"
    ):
        load_config("jmp-l", "pretrain", ["datasets.0.train.options.fold=1"])
    with pytest.raises(
        ConfigError, match=r"sampling: ratios are given exactly when mode is 'ratios'"
    ):
        load_config("jmp-l", "pretrain", ["sampling.mode=ratios"])
    with pytest.raises(
        ConfigError,
        match=r"unknown layer-wise LR group\(s\) \['blocks_4', 'blocks_5'\] for a 4-block",
    ):
        load_config("rmd17-aspirin", "finetune", ["model.backbone.preset=jmp-s"])


def test_yaml_problems_name_file_and_line(tmp_path: Path) -> None:
    dup = write(tmp_path, "kind: finetune\nname: a\nname: b\n", "dup.yaml")
    with pytest.raises(ConfigError, match=rf"{dup}, line 3, column 1: duplicate key 'name'"):
        load_config(dup)
    broken = write(tmp_path, "kind: pretrain\nmodel: [unclosed\n", "broken.yaml")
    with pytest.raises(ConfigError, match=rf"{broken}, line \d+, column \d+"):
        load_config(broken)
    listing = write(tmp_path, "- a\n- b\n", "list.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(listing, "pretrain")
    assert parse_yaml_value("1e-4") == 1e-4 and parse_yaml_value("off") == "off"


def test_kind_checks(tmp_path: Path) -> None:
    path = write(tmp_path, "kind: pretrain\nextends: demo\n")
    assert load_config(path).kind == "pretrain"
    with pytest.raises(ConfigError, match="kind: pretrain file given to 'openjmp finetune'"):
        load_config(path, "finetune")
    with pytest.raises(ConfigError, match="say 'kind: pretrain' or 'kind: finetune'"):
        load_config(write(tmp_path, "name: x\n", "nokind.yaml"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml", "pretrain")
    bad_base = write(tmp_path, "extends: jmp-xl\n", "base.yaml")
    with pytest.raises(
        ConfigError, match=rf"{bad_base}: extends: no pretrain config file or preset named 'jmp-xl'"
    ):
        load_config(bad_base, "pretrain")


def test_unknown_preset_suggests() -> None:
    with pytest.raises(
        ConfigError, match=r"preset named 'rmd17-aspirn'\. Did you mean rmd17-aspirin"
    ):
        load_config("rmd17-aspirn", "finetune")
    with pytest.raises(ConfigError, match="Presets: demo, jmp-l, jmp-s"):
        load_config("jmp-m", "pretrain")


def test_extends_merges_mappings_and_replaces_lists(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "extends: jmp-s-user-property\ndata:\n  train: {path: mine.extxyz}\n"
        "heads:\n  - {kind: scalar, target: gap, pooling: max}\n",
    )
    cfg = load_config(path, "finetune", ["loader.batch_size=2"])
    assert cfg.model.backbone.preset == "jmp-s"
    assert cfg.data.train.path == Path("mine.extxyz") and cfg.data.split is not None  # merged
    assert [(h.target, h.pooling) for h in cfg.heads] == [("gap", "max")]  # replaced
    assert cfg.loader.batch_size == 2


def test_dump_round_trip_and_frozen(tmp_path: Path) -> None:
    for source, kind in [("jmp-l", "pretrain"), ("matbench-mp_is_metal-fold2", "finetune")]:
        cfg = load_config(source, kind)
        again = load_config(write(tmp_path, dump_config(cfg), f"{kind}.yaml"), kind)
        assert again == cfg
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.optimizer.lr = 1.0  # type: ignore[misc]
