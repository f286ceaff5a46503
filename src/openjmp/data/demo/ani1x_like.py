"""ANI-1x-like set: GFN2-xTB conformers of small H/C/N/O molecules, written as an ANI-1x HDF5.

Conformers are Gaussian rattles (sigma drawn in [0.02, 0.10] Å) of the g2 geometries of the
pre-training molecules (ethanol excluded), each labelled by a fresh GFN2-xTB single point.
A conformer whose SCF does not converge, or whose atoms come closer than 0.7 Å, is replaced
by a new draw from the same job's generator (at most a few tries; the count of dropped draws
is recorded in the manifest). One group per formula, isomers sharing it, atoms in Z order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.calculators.calculator import CalculationFailed

from openjmp.data.demo.molecules import (
    load_molecule,
    min_distance,
    pretraining_molecules,
    rattled,
    snap_float32,
)
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, scaled
from openjmp.data.demo.writers.hdf5 import write_ani1x
from openjmp.data.demo.xtb import level_of_theory, xtb_single_point

NAME = "ani1x_like"
CONFORMERS_AT_SCALE_1 = 500
FILE_NAME = "ani1x-release.h5"
_TRIES = 5


@dataclass(frozen=True)
class Job:
    seed: int
    index: int
    molecule: str


@dataclass(frozen=True)
class Conformer:
    molecule: str
    formula: str
    numbers: np.ndarray  # (N,)
    positions: np.ndarray  # (N, 3) float32 Å
    energy: float  # eV
    forces: np.ndarray  # (N, 3) eV/Å
    dropped: int


def run(job: Job) -> Conformer:
    """Rattle ``job.molecule`` and label it with GFN2-xTB."""
    rng = job_rng(job.seed, NAME, job.index)
    base = load_molecule(job.molecule)
    dropped = 0
    for _ in range(_TRIES):
        atoms = snap_float32(rattled(base, float(rng.uniform(0.02, 0.10)), rng))
        if min_distance(atoms) < 0.7:
            dropped += 1
            continue
        try:
            p = xtb_single_point(atoms)
        except CalculationFailed:
            dropped += 1
            continue
        return Conformer(
            molecule=job.molecule,
            formula=atoms.get_chemical_formula(mode="hill"),
            numbers=atoms.numbers.copy(),
            positions=atoms.positions.astype(np.float32),
            energy=p.energy,
            forces=p.forces,
            dropped=dropped,
        )
    raise RuntimeError(
        f"{NAME}: no usable conformer of {job.molecule} in {_TRIES} draws (job {job.index})"
    )


def plan(scale: float, seed: int) -> list[Job]:
    names = pretraining_molecules()
    n = scaled(CONFORMERS_AT_SCALE_1, scale, 8)
    return [Job(seed, i, names[i % len(names)]) for i in range(n)]


def write(results: Sequence[Conformer], directory: Path, seed: int) -> WrittenSet:
    by_formula: dict[str, list[Conformer]] = defaultdict(list)
    for c in results:
        by_formula[c.formula].append(c)
    groups = {}
    for formula, confs in by_formula.items():
        z = confs[0].numbers
        if any(not np.array_equal(c.numbers, z) for c in confs):
            raise RuntimeError(f"{NAME}: isomers of {formula} disagree on atom order")
        groups[formula] = (
            z,
            np.stack([c.positions for c in confs]),
            np.array([c.energy for c in confs]),
            np.stack([c.forces for c in confs]),
        )
    path = directory / FILE_NAME
    write_ani1x(path, groups, {"level_of_theory": level_of_theory(), "generator": "openjmp demo"})
    return WrittenSet(
        files=[path],
        counts={
            "structures": len(results),
            "formulas": len(groups),
            "molecules": len({c.molecule for c in results}),
            "dropped_draws": sum(c.dropped for c in results),
        },
        notes={"keys": "wb97x_dz.* hold GFN2-xTB labels (Hartree, Hartree/Å)"},
    )


SET = DemoSet(
    name=NAME,
    role="pretrain",
    stands_in_for="ANI-1x",
    file_format="ani1x-hdf5",
    units="Hartree, Hartree/Å, Å",
    level_of_theory=level_of_theory,
    plan=plan,
    run=run,
    write=write,
)
