"""Fixtures of the fine-tuning tests (data files in tmp_path); helpers live in ft_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.ft_helpers import write_crystals, write_molecules


@pytest.fixture
def molecules_file(tmp_path: Path) -> Path:
    """20 EMT-labelled molecules (energy, forces, gap, is_big) as extxyz."""
    return write_molecules(tmp_path / "data" / "mols.extxyz")


@pytest.fixture
def crystals_file(tmp_path: Path) -> Path:
    """16 EMT-labelled periodic Cu/Ni cells (energy, forces, band) as extxyz."""
    return write_crystals(tmp_path / "data" / "crystals.extxyz")
