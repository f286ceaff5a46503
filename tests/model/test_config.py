"""GemNetOCConfig: authors' field names, presets, and explicit handling of unknown keys.

A config dict from a checkpoint must either map onto the fields, be one of the known inert keys
with its inert value, or raise a ConfigError that names the key: nothing is silently ignored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openjmp.errors import ConfigError
from openjmp.model.gemnet_oc.config import INERT_KEYS, GemNetOCConfig


def test_tiny_reference_config_loads(reference_dir: Path) -> None:
    d = json.loads((reference_dir / "tiny" / "config.json").read_text())["backbone"]
    c = GemNetOCConfig.from_dict(d)
    assert (c.num_blocks, c.emb_size_atom, c.emb_size_edge, c.emb_size_sbf) == (2, 16, 24, 7)
    assert c.to_dict()["qint_tags"] == [1, 2]
    assert GemNetOCConfig.from_dict(c.to_dict()) == c  # round trip


@pytest.mark.parametrize("key", sorted(INERT_KEYS))
def test_inert_keys_accepted_only_with_inert_value(key: str) -> None:
    base = GemNetOCConfig.jmp_s().to_dict()
    assert GemNetOCConfig.from_dict({**base, key: False}) == GemNetOCConfig.jmp_s()
    with pytest.raises(ConfigError, match=key):
        GemNetOCConfig.from_dict({**base, key: True}, source="ckpt.pt")


def test_unknown_key_is_an_error_naming_source_and_key() -> None:
    with pytest.raises(ConfigError, match=r"ckpt\.pt.*'emb_size_foo'"):
        GemNetOCConfig.from_dict({"emb_size_foo": 3}, source="ckpt.pt")


@pytest.mark.parametrize(
    "change",
    [
        {"sbf": {"name": "spherical_harmonics"}},
        {"rbf": {"name": "spherical_bessel"}},
        {"quad_interaction": False},
        {"dropout": 0.1},
        {"absolute_rbf_cutoff": None},
        {"learnable_rbf": True},
        {"emb_size_edge": 0},
        {"direct_forces": False},  # with regress_forces=True
        {"activation": "relu"},
    ],
)
def test_unsupported_values_are_rejected(change: dict) -> None:
    with pytest.raises(ConfigError):
        GemNetOCConfig.from_dict({**GemNetOCConfig.jmp_s().to_dict(), **change})


def test_fine_tune_style_config_without_force_branch() -> None:
    c = GemNetOCConfig.jmp_l(regress_forces=False, direct_forces=False)
    assert not c.direct_forces and c.num_blocks == 6
