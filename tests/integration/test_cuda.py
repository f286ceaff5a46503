"""On a CUDA GPU: prediction, the calculator and fine-tuning run there and agree with CPU.

Marked ``cuda``; skipped only where torch sees no GPU (CI has none). Run on a GPU machine with
``python -m pytest -m cuda tests``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

import openjmp
from openjmp.calculator import JMPCalculator

from helpers.physics_models import physics_model

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch"),
]


def structures() -> list:
    mol = molecule("CH3CH2OH")
    mol.center(vacuum=5.0)
    cu = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    cu.rattle(0.05, seed=1)
    return [mol, cu]


def test_predict_on_cuda_equals_cpu() -> None:
    model = physics_model().float()
    frames = structures()
    cpu = openjmp.predict(model, frames, head="t_energy", device="cpu")
    gpu = openjmp.predict(model, frames, head="t_energy", device="cuda")
    np.testing.assert_allclose(gpu.energies, cpu.energies, rtol=1e-4, atol=1e-5)
    for a, b in zip(gpu.forces, cpu.forces, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_calculator_on_cuda() -> None:
    atoms = structures()[1]
    atoms.calc = JMPCalculator(physics_model().float(), head="t_energy", device="cuda")
    f_gpu = atoms.get_forces()
    atoms.calc = JMPCalculator(physics_model().float(), head="t_energy", device="cpu")
    np.testing.assert_allclose(f_gpu, atoms.get_forces(), rtol=1e-4, atol=1e-4)


def test_finetuning_on_cuda(tmp_path: Path) -> None:
    from openjmp.train.finetune.run import run_finetune

    from helpers.ft_helpers import tiny_config, write_molecules

    data = write_molecules(tmp_path / "mols.extxyz")
    cfg = tiny_config(data, ["trainer.accelerator=gpu", "precision=16-mixed"])
    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False,
                          evaluate_parts=())  # fmt: skip
    assert [s for s, _ in result.history] == [0, 4, 8]
    assert all(np.isfinite(v) for _, v in result.history)
