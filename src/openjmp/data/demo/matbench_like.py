"""MatBench-like set: EMT formation energy per atom of bulk alloys, in MatBench's file format.

Each structure is a random binary or ternary fcc, bcc or hcp cell of the EMT metals (4-16
atoms, every metal present), brought to its EMT equilibrium volume by a 7-point equation of
state (isotropic scaling, ideal sites). The target ``e_form`` (eV/atom) is the EMT energy at
that volume minus the composition-weighted energies of the elemental fcc metals at their own
equilibrium, per atom: a ``matbench_mp_e_form``-like task. Unlike the OC22-like set (strained,
rattled cells with total energies and forces), only the relaxed-volume scalar is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from ase import Atoms

from openjmp.data.demo.oc22_like import random_alloy_bulk
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, emt_level, scaled
from openjmp.data.demo.writers.matbench_json import write_matbench

NAME = "matbench_like"
TASK = "matbench_mp_e_form"
TARGET = "e_form"
STRUCTURES_AT_SCALE_1 = 500
_EOS_STRAINS = np.linspace(-0.06, 0.06, 7)  # volume strains


@dataclass(frozen=True)
class Job:
    seed: int
    index: int


@dataclass(frozen=True)
class Entry:
    atoms: Atoms  # at the equilibrium volume, Å
    e_form: float  # eV/atom


def relax_volume(atoms: Atoms) -> tuple[Atoms, float]:
    """``atoms`` scaled to its EMT equilibrium volume, and the EMT energy there (eV)."""
    from ase.calculators.emt import EMT
    from ase.eos import EquationOfState

    v0 = atoms.get_volume()
    volumes, energies = [], []
    for s in _EOS_STRAINS:
        a = atoms.copy()
        a.set_cell(a.cell.array * (1 + s) ** (1 / 3), scale_atoms=True)
        a.calc = EMT()
        volumes.append(a.get_volume())
        energies.append(a.get_potential_energy())
    try:
        v_min, _, _ = EquationOfState(volumes, energies, eos="sj").fit()
    except (ValueError, RuntimeError):
        v_min = volumes[int(np.argmin(energies))]
    if not np.isfinite(v_min) or not (0.8 * v0 < v_min < 1.25 * v0):
        v_min = volumes[int(np.argmin(energies))]
    out = atoms.copy()
    out.set_cell(out.cell.array * (v_min / v0) ** (1 / 3), scale_atoms=True)
    out.calc = EMT()
    energy = float(out.get_potential_energy())
    out.calc = None
    return out, energy


@cache
def elemental_reference(symbol: str) -> float:
    """EMT energy per atom of the fcc element at its EMT equilibrium volume (eV)."""
    from ase.build import bulk

    _, energy = relax_volume(bulk(symbol, "fcc", cubic=True))
    return energy / 4


def run(job: Job) -> Entry:
    rng = job_rng(job.seed, NAME, job.index)
    atoms = random_alloy_bulk(rng, 2 if rng.random() < 0.7 else 3)
    relaxed, energy = relax_volume(atoms)
    ref = sum(elemental_reference(s) for s in relaxed.get_chemical_symbols())
    return Entry(atoms=relaxed, e_form=(energy - ref) / len(relaxed))


def plan(scale: float, seed: int) -> list[Job]:
    return [Job(seed, i) for i in range(scaled(STRUCTURES_AT_SCALE_1, scale, 10))]


def write(results: Sequence[Entry], directory: Path, seed: int) -> WrittenSet:
    files = write_matbench(
        directory, TASK, TARGET, [e.atoms for e in results], [e.e_form for e in results]
    )
    return WrittenSet(
        files=files,
        counts={"structures": len(results)},
        notes={"task": TASK, "target": f"{TARGET} (eV/atom, EMT)"},
    )


SET = DemoSet(
    name=NAME,
    role="finetune",
    stands_in_for="MatBench mp_e_form",
    file_format="matbench-json",
    units="eV/atom, Å",
    level_of_theory=emt_level,
    plan=plan,
    run=run,
    write=write,
)
