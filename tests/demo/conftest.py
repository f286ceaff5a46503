"""The scale-0.05 demo corpus, built once per test session (about 10 s on 2 cores)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openjmp.data.demo import make_demo

SCALE = 0.05
SEED = 0


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a complete scale-0.05, seed-0 corpus made with 2 workers."""
    out = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo(out, scale=SCALE, seed=SEED, progress=False, workers=2)
    return out


@pytest.fixture(scope="session")
def demo_manifest(demo_corpus: Path) -> dict[str, Any]:
    return json.loads((demo_corpus / "manifest.json").read_text())
