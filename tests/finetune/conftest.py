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


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model.pt of a 6-step pre-training run on two tiny datasets ``slabs`` and ``mols``,
    the directory of their extxyz files)."""
    from openjmp.train.pretrain import run_pretrain

    from helpers.tiny_data import tiny_config, write_tiny_data

    root = tmp_path_factory.mktemp("pre")
    write_tiny_data(root / "data")
    cfg = tiny_config(root / "data", precision="32-true")
    result = run_pretrain(cfg, out_dir=root / "run", progress=False, logger=False)
    return result.checkpoint, root / "data"
