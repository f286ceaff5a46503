"""Shared test fixtures: paths to the read-only reference fixtures, seeded rng, float64 switch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

# Two torch processes on two cores slow each other ~10x: one intra-op thread per test worker.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OPENJMP_SHARED", REPO.parent / "shared"))
REFERENCE = SHARED / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """../shared/reference: parity fixtures computed with the authors' implementation (read only)."""
    if not REFERENCE.is_dir():
        pytest.fail(f"reference fixtures not found at {REFERENCE} (set OPENJMP_SHARED)")
    return REFERENCE


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def _can_create_in(d: Path) -> bool:
    probe = d / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def readonly_dir(tmp_path: Path):
    """An existing directory that refuses new files: mode 0555, plus ``chattr +i`` when the
    tests run as root (root ignores modes). Skips only where neither works."""
    import subprocess

    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o555)
    immutable = False
    if _can_create_in(d):
        immutable = subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode == 0
    if _can_create_in(d):
        d.chmod(0o755)
        pytest.skip("cannot make a read-only directory here (root without chattr)")
    yield d
    if immutable:
        subprocess.run(["chattr", "-i", str(d)], capture_output=True)
    d.chmod(0o755)
