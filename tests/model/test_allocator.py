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
import os, torch
from openjmp.model import allocator
print(allocator.tune_malloc())
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
a = torch.ones(16 << 20); before = rss_mb(); del a
print(round(before - rss_mb()))
"""


def _probe(env: dict[str, str]) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True
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
