"""JMP-S / JMP-L presets against the published checkpoints' state-dict tables.

``jmp_s_state_dict.tsv`` / ``jmp_l_state_dict.tsv`` list key, shape and dtype of every entry of
the authors' pre-training model (the ``state_dict`` of jmp-s.pt / jmp-l.pt);
``param_counts.json`` their parameter counts. Our presets, mapped to the authors' key names, must
reproduce both exactly (order included: the EMA weights map onto keys by position). Models are
built on the meta device: JMP-L has 234M parameters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.jmp_model import PRETRAIN_TASKS, JMPModel
from openjmp.model.keymap import IGNORED_PREFIXES, ours_to_authors

PRESETS = {"jmp_s": GemNetOCConfig.jmp_s, "jmp_l": GemNetOCConfig.jmp_l}


def read_table(path: Path) -> list[tuple[str, tuple[int, ...], str]]:
    rows = []
    for line in path.read_text().splitlines()[1:]:
        key, shape, dtype = line.split("\t")
        rows.append((key, tuple(int(s) for s in shape.split(",")) if shape else (), dtype))
    return rows


def meta_model(name: str) -> JMPModel:
    with torch.device("meta"):
        return JMPModel.pretraining(PRESETS[name]())


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_state_dict_table_equals_published(reference_dir: Path, name: str) -> None:
    table = read_table(reference_dir / f"{name}_state_dict.tsv")
    expected = [r for r in table if not r[0].startswith(IGNORED_PREFIXES)]
    # the only entries we do not model are the metric step counters, one per task
    assert [r[0] for r in table if r not in expected] == [
        f"task_steps._module_dict._typed_moduledict_{t}.value" for t in PRETRAIN_TASKS
    ]
    sd = ours_to_authors(meta_model(name).state_dict(), PRETRAIN_TASKS)
    ours = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()]
    assert ours == expected


@pytest.mark.parametrize("name", ["jmp_s", "jmp_l"])
def test_parameter_counts_equal_published(reference_dir: Path, name: str) -> None:
    ref = json.loads((reference_dir / "param_counts.json").read_text())[name]
    m = meta_model(name)

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(m) == ref["total"]
    assert count(m.backbone) == ref["backbone"]
    assert count(m.embedding) == ref["embedding"]
    assert count(m.heads) == ref["heads"]
    assert len(list(m.parameters())) == ref["num_parameter_tensors"]
    n_task_steps = len(PRETRAIN_TASKS)
    assert len(m.state_dict()) + n_task_steps == ref["num_state_dict_entries"]


def test_preset_values_are_the_authors() -> None:
    s, lg = GemNetOCConfig.jmp_s(), GemNetOCConfig.jmp_l()
    assert (s.num_blocks, s.emb_size_edge, s.num_concat, s.emb_size_sbf) == (4, 512, 1, 32)
    assert (lg.num_blocks, lg.emb_size_edge, lg.num_concat, lg.emb_size_sbf) == (6, 1024, 4, 64)
    assert (lg.emb_size_trip_out, lg.emb_size_quad_in, lg.emb_size_rbf) == (128, 64, 32)
    for c in (s, lg):
        assert c.absolute_rbf_cutoff == 12.0 and c.num_elements == 120
        assert c.qint_tags == (1, 2) and c.sbf == {"name": "legendre_outer"}
