"""Fine-tuning on stress labels, and a cell relaxation with the result.

EMT-labelled fcc Cu cells (2 atoms) at lattice constants 3.40-3.85 Å, sheared by a random 1 %
strain and rattled, with energies, forces and stress (eV/Å³, ASE's sign and Voigt order, read
by the ``ase`` reader as it stands). A tiny model trained 150 steps with ``stress_coefficient``
> 0 (about 20 s) must:

* report a stress MAE (eV/Å³) in its validation metrics;
* give, through `JMPCalculator`, a stress equal to the finite difference of its own energy;
* relax a strained cell with ``FrechetCellFilter`` + BFGS to a lower energy and a near-zero
  stress (its own surface has a minimum because it learned EMT's E(V)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.fd import calculate_numerical_stress
from ase.calculators.singlepoint import SinglePointCalculator
from ase.filters import FrechetCellFilter
from ase.io import write
from ase.optimize import BFGS

import openjmp
from openjmp.train.finetune.run import run_finetune

from helpers.ft_helpers import tiny_config


def cells(n: int) -> list:
    out = []
    rng = np.random.default_rng(0)
    for i, a in enumerate(np.linspace(3.40, 3.85, n)):
        atoms = bulk("Cu", "fcc", a=float(a)) * (2, 1, 1)
        eps = rng.normal(scale=0.01, size=(3, 3))
        atoms.set_cell(atoms.cell[:] @ (np.eye(3) + 0.5 * (eps + eps.T)), scale_atoms=True)
        atoms.rattle(0.03, seed=i)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        out.append(atoms)
    return out


def test_train_on_stress_then_relax_the_cell(tmp_path: Path) -> None:
    data = tmp_path / "cu.extxyz"
    write(data, cells(24), format="extxyz")
    cfg = tiny_config(
        data,
        [
            "heads.0.stress_coefficient=1.0",
            "data.graph.pbc=true",
            "data.graph.cutoff=4.0",  # 18 neighbours (two shells) per atom
            "data.graph.max_neighbors=68",  # caps (68, 45, 18, 2266): none binds, smooth in ε
            "trainer.max_steps=150",
            "schedule.max_steps=150",
            "trainer.val_check_interval=75",
            "optimizer.lr=0.005",
        ],
    )
    result = run_finetune(cfg, out_dir=tmp_path / "run", progress=False, logger=False)
    assert result.metrics["val"]["stress_mae"] < 0.05  # eV/Å³; the labels span ±0.2

    atoms = bulk("Cu", "fcc", a=3.75) * (2, 1, 1)
    # float64 for the finite-difference comparison (float32 round-off swamps a 1e-6 strain)
    atoms.calc = openjmp.JMPCalculator(result.best_checkpoint, dtype=torch.float64)
    stress = atoms.get_stress()
    np.testing.assert_allclose(
        stress, calculate_numerical_stress(atoms, eps=1e-6), rtol=1e-6, atol=1e-8
    )
    atoms.calc = openjmp.JMPCalculator(result.best_checkpoint)  # float32, as a user runs it
    e0 = atoms.get_potential_energy()
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    assert opt.run(fmax=0.005, steps=300)
    assert atoms.get_potential_energy() < e0 - 0.05
    assert np.abs(atoms.get_stress()).max() < 5e-4  # eV/Å³ (0.08 GPa)
    assert 3.5 < (4 * atoms.get_volume() / len(atoms)) ** (1 / 3) < 3.7  # EMT's a: 3.59 Å
