"""rMD17-like set: a GFN2-xTB Langevin MD trajectory of ethanol, written as an rMD17 npz.

Ethanol (rMD17's ``ethanol``; kept out of every pre-training set) is relaxed, given
Maxwell-Boltzmann velocities and run at 500 K with 0.5 fs steps (friction 0.01/fs, centre of
mass held); after ``EQUILIBRATION_STEPS`` a frame is kept every ``STRIDE`` steps (rMD17 advice:
stride >= 10 at 0.5 fs, consecutive frames are correlated). Each kept frame is rounded to
float32 precision and relabelled by a fresh single point. Energies and forces are written in
kcal/mol and kcal/mol/Å, as in rMD17, with five seeded train/test index files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openjmp.data.demo.molecules import RMD17_MOLECULE, load_molecule, snap_float32
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, scaled
from openjmp.data.demo.writers.md_npz import write_rmd17
from openjmp.data.demo.xtb import XTBCalculator, level_of_theory, xtb_single_point

NAME = "rmd17_like"
MOLECULE = "ethanol"
FRAMES_AT_SCALE_1 = 400
STRIDE = 10
EQUILIBRATION_STEPS = 200
TEMPERATURE_K = 500.0
N_SPLITS = 5


@dataclass(frozen=True)
class Job:
    seed: int
    n_frames: int


@dataclass(frozen=True)
class Trajectory:
    numbers: np.ndarray  # (N,)
    positions: np.ndarray  # (F, N, 3) Å
    energies: np.ndarray  # (F,) eV
    forces: np.ndarray  # (F, N, 3) eV/Å
    steps: np.ndarray  # (F,) MD step of each frame


def run(job: Job) -> Trajectory:
    """Run the whole trajectory (one job: MD is sequential)."""
    from ase.constraints import FixCom
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
    from ase.optimize import BFGS
    from ase.units import fs

    rng = job_rng(job.seed, NAME, 0)
    atoms = load_molecule(RMD17_MOLECULE)
    atoms.calc = XTBCalculator()
    BFGS(atoms, logfile=None).run(fmax=0.02, steps=200)
    atoms.set_constraint(FixCom())
    MaxwellBoltzmannDistribution(atoms, temperature_K=TEMPERATURE_K, rng=rng)
    Stationary(atoms)
    dyn = Langevin(
        atoms,
        timestep=0.5 * fs,
        temperature_K=TEMPERATURE_K,
        friction=0.01 / fs,
        fixcm=False,
        rng=rng,
    )
    dyn.run(EQUILIBRATION_STEPS)
    pos, energies, forces, steps = [], [], [], []
    for k in range(job.n_frames):
        frame = snap_float32(atoms.copy())
        frame.set_constraint()
        p = xtb_single_point(frame)
        pos.append(frame.positions)
        energies.append(p.energy)
        forces.append(p.forces)
        steps.append(EQUILIBRATION_STEPS + k * STRIDE)
        dyn.run(STRIDE)
    return Trajectory(
        numbers=atoms.numbers.copy(),
        positions=np.stack(pos),
        energies=np.array(energies),
        forces=np.stack(forces),
        steps=np.array(steps, dtype=np.int64),
    )


def plan(scale: float, seed: int) -> list[Job]:
    return [Job(seed, scaled(FRAMES_AT_SCALE_1, scale, 20))]


def write(results: Sequence[Trajectory], directory: Path, seed: int) -> WrittenSet:
    (traj,) = results
    n = len(traj.energies)
    n_each = max(1, n // 4)
    splits = []
    for k in range(N_SPLITS):
        perm = job_rng(seed, f"{NAME}/split", k).permutation(n)
        splits.append((np.sort(perm[:n_each]), np.sort(perm[n_each : 2 * n_each])))
    files = write_rmd17(
        directory,
        MOLECULE,
        traj.numbers,
        traj.positions,
        traj.energies,
        traj.forces,
        traj.steps,
        f"{level_of_theory()}; Langevin MD {TEMPERATURE_K:.0f} K, 0.5 fs, stride {STRIDE}",
        splits,
    )
    return WrittenSet(
        files=files,
        counts={"structures": n, "split_train": n_each, "split_test": n_each},
        notes={"molecule": MOLECULE, "units": "kcal/mol via ase.units (CODATA)"},
    )


SET = DemoSet(
    name=NAME,
    role="finetune",
    stands_in_for="rMD17",
    file_format="rmd17-npz",
    units="kcal/mol, kcal/mol/Å, Å",
    level_of_theory=level_of_theory,
    plan=plan,
    run=run,
    write=write,
)
