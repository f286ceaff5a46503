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
