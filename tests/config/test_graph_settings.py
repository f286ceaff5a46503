"""Graph settings are defined once (graph.spec.GRAPH_SETTINGS) and configs name them.

``graph: {setting: <dataset>}`` gives exactly that dataset's `GraphSpec`; keys beside the name
(and ``--set`` overrides of them) change only themselves; an unknown name is a config error
listing the known ones. The benchmark presets and the JMP pre-training presets build their
graphs from the setting of their dataset. Also the MatBench fold check, a validator of the
fine-tuning config that reads the benchmark tables.
"""

from __future__ import annotations

import pydantic
import pytest

from openjmp.config import load_config
from openjmp.config.common import GraphConfig
from openjmp.errors import ConfigError
from openjmp.graph.spec import GRAPH_SETTINGS, max_neighbors_from_base


@pytest.mark.parametrize("name", sorted(GRAPH_SETTINGS))
def test_a_setting_name_gives_that_spec(name: str) -> None:
    assert GraphConfig(setting=name).spec() == GRAPH_SETTINGS[name]


def test_keys_beside_the_setting_override_it() -> None:
    cfg = GraphConfig(setting="rmd17", cutoff=5.0)
    assert cfg.cutoff == 5.0 and cfg.max_neighbors == 100 and not cfg.pbc
    assert "setting" not in cfg.model_dump()


def test_unknown_setting_lists_the_known_ones() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"unknown graph setting 'oc21'.*oc20"):
        GraphConfig(setting="oc21")


@pytest.mark.parametrize(
    ("preset", "setting"),
    [
        ("qm9-mu", "qm9"),
        ("rmd17-aspirin", "rmd17"),
        ("md22-Ac-Ala3-NHMe", "md22"),
        ("spice-dipeptides", "spice"),
        ("matbench-mp_gap-fold2", "matbench"),
        ("qmof", "qmof"),
    ],
)
def test_benchmark_presets_use_their_dataset_setting(preset: str, setting: str) -> None:
    assert load_config(preset, "finetune").data.graph.spec() == GRAPH_SETTINGS[setting]


@pytest.mark.parametrize("preset", ["jmp-s", "jmp-l"])
def test_pretraining_presets_use_their_dataset_settings(preset: str) -> None:
    for d in load_config(preset, "pretrain").datasets:
        assert d.graph.spec() == GRAPH_SETTINGS[d.name]


def test_override_of_a_named_setting_changes_one_field() -> None:
    cfg = load_config("rmd17-aspirin", "finetune", ["data.graph.max_neighbors=20"])
    assert cfg.data.graph.spec().max_neighbors == max_neighbors_from_base(20)
    assert cfg.data.graph.cutoff == GRAPH_SETTINGS["rmd17"].cutoff


def test_matbench_fold_must_match_the_normalisation() -> None:
    assert load_config("matbench-mp_gap-fold3", "finetune").data.fold == 3
    with pytest.raises(ConfigError, match=r"data.fold is 3 but .* MatBench mp_gap fold 0"):
        load_config("matbench-mp_gap-fold0", "finetune", ["data.fold=3"])
