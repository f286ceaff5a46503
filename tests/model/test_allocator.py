"""Malloc tuning (openjmp.model.allocator) is applied for JMP-S-sized models only: it saves
memory there and costs small models time (module docstring)."""

from __future__ import annotations

import pytest

from openjmp.model import allocator
from openjmp.model.jmp_model import JMPModel

from helpers.tiny_models import tiny_config


def test_size_rule() -> None:
    assert not allocator.wants_tuning(64)  # the demo model
    assert allocator.wants_tuning(512)  # JMP-S
    assert allocator.wants_tuning(1024)  # JMP-L


@pytest.mark.parametrize(("edge", "expected"), [(24, 0), (256, 1)])
def test_model_build_tunes_only_large_models(monkeypatch, edge: int, expected: int) -> None:
    calls: list[int] = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append(1) or True)
    JMPModel.pretraining(tiny_config(emb_size_edge=edge), ("oc20",))
    assert len(calls) == expected
