"""Malloc tuning (openjmp.model.allocator): every model build asks for it once per process;
the settings reach glibc (checked in a fresh process) and the user's own settings win."""

from __future__ import annotations

import subprocess
import sys

import pytest

from openjmp.model import allocator
from openjmp.model.jmp_model import JMPModel

from helpers.tiny_models import tiny_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")


def test_model_build_tunes_malloc(monkeypatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(allocator, "tune_malloc", lambda: calls.append(1) or True)
    JMPModel.pretraining(tiny_config(emb_size_edge=24), ("oc20",))
    assert calls == [1]


# A 64 MB tensor written and freed: glibc's defaults give it its own mapping and return it to
# the system on free (resident memory drops by 64 MB); with the tuning it comes from the heap,
# which is kept for the next pass (resident memory stays).
_PROBE = """
import os, sys, torch
from openjmp.model import allocator
print(allocator.tune_malloc() if len(sys.argv) < 2 else allocator.set_mode(sys.argv[1]))
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
a = torch.ones(16 << 20); before = rss_mb(); del a
print(round(before - rss_mb()))
"""


def _probe(env: dict[str, str], *mode: str) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, *mode], capture_output=True, text=True, env=env, check=True
    )
    ok, dropped = out.stdout.split()
    return ok, int(dropped)


def test_settings_reach_glibc_and_user_settings_win() -> None:
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    base.pop("OPENJMP_MALLOC_TUNING", None)
    ok, dropped = _probe(base)
    assert ok == "True" and abs(dropped) < 8  # kept in the heap
    ok, dropped = _probe({**base, "OPENJMP_MALLOC_TUNING": "0"})
    assert ok == "False" and dropped > 56  # unmapped: glibc's default
    ok, dropped = _probe({**base, "MALLOC_ARENA_MAX": "2"})
    assert ok == "False" and dropped > 56
    ok, dropped = _probe(base, "lean")  # what activation checkpointing frees is returned
    assert ok == "True" and dropped > 56


def test_unknown_mode_is_named() -> None:
    with pytest.raises(ValueError, match="'fast' or 'lean'"):
        allocator.set_mode("greedy")


def test_training_passes_choose_the_mode_of_their_checkpointing(monkeypatch) -> None:
    """Checkpointed training passes run lean, the others fast; inference leaves the mode."""
    import torch
    from ase.build import molecule

    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.graph.spec import GraphSpec
    from openjmp.records import AtomsRecord

    model = JMPModel.pretraining(tiny_config(), ("oc20",)).train()
    modes: list[str] = []
    monkeypatch.setattr(allocator, "set_mode", lambda mode: modes.append(mode) or True)
    spec = GraphSpec.from_base(5.0, 8, pbc=False, dummy_cell=True)
    batch = collate([build_graph_sample(AtomsRecord.from_ase(molecule("CH3CH2OH")), spec)])
    for efficient in (True, False):
        model.set_activation_checkpointing(efficient)
        model(batch)
    with torch.no_grad():
        model(batch)
    assert modes == ["lean", "fast"]
