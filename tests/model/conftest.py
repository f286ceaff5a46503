"""Fixtures of the model tests (helpers in tiny_models.py)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk, molecule

from openjmp.model.jmp_model import JMPModel

from helpers.tiny_models import tiny_model


@pytest.fixture(scope="module")
def model() -> JMPModel:
    return tiny_model()


@pytest.fixture(scope="module")
def frames() -> dict:
    rng = np.random.default_rng(7)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.positions += rng.normal(scale=0.05, size=cu.positions.shape)
    return {"molecule": mol, "bulk": cu}
