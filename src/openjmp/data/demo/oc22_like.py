"""OC22-like set: EMT-labelled bulk alloys and alloy surfaces, written as an OC22 S2EF-Total LMDB.

A different family of periodic systems from the OC20-like set: two thirds are bulk cells (fcc,
bcc or hcp; two or three metals; strained and rattled, then a short Langevin MD run, tags 2,
nothing fixed), one third random binary alloy slabs of other facets (fcc(110), fcc(100)) with
zero to two O atoms on top, followed along a BFGS relaxation (tags 0/1/2, bottom half fixed).
``y`` is the total EMT energy (eV), every entry carries ``oc22=1``. Splits by system:
``s2ef-total/train`` and ``s2ef-total/val_id``.

Size: 400 systems x 5 frames = 2,000 frames at scale 1, the size design/datasets.md gives for
this set. It is the periodic-materials part of the demo's pre-training corpus (the OC20-like
slabs are the other), so it carries most of the bulk-alloy chemistry the MatBench-like task
asks about. Measured with ``openjmp demo`` (alloy task, mean of two seeds): 120 half-bulk systems
gave the pre-trained arm 13 % over scratch, 400 half-bulk 24 % (both 1,200 pre-training
steps); at 1,400 steps, 400 half-bulk 22 % and 400 two-thirds-bulk 26 %.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms

from openjmp.data.demo.oc20_like import System, lmdb_entries, split_systems
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, emt_level, scaled
from openjmp.data.demo.surfaces import EMT_METALS, add_adsorbate, emt_trajectory, tag_and_fix
from openjmp.data.demo.writers.ocp_lmdb import write_s2ef_split

NAME = "oc22_like"
SYSTEMS_AT_SCALE_1 = 400
FRAMES_PER_SYSTEM = 5


@dataclass(frozen=True)
class Job:
    seed: int
    index: int


def random_alloy_bulk(rng: np.random.Generator, n_metals: int) -> Atoms:
    """A 4-16 atom fcc, bcc or hcp cell of ``n_metals`` EMT metals at a Vegard-law volume."""
    from ase.build import bulk
    from ase.data import atomic_numbers, reference_states

    metals = [str(m) for m in rng.choice(EMT_METALS, size=n_metals, replace=False)]
    # atomic volume from the fcc lattice constants of the metals (a^3/4 per atom)
    vol = float(np.mean([reference_states[atomic_numbers[m]]["a"] ** 3 / 4 for m in metals]))
    lattice = str(rng.choice(["fcc", "bcc", "hcp"]))
    if lattice == "fcc":
        atoms = bulk("Cu", "fcc", a=(4 * vol) ** (1 / 3), cubic=True)
    elif lattice == "bcc":
        atoms = bulk("Cu", "bcc", a=(2 * vol) ** (1 / 3), cubic=True).repeat((2, 1, 1))
    else:
        a = (vol * 4 / (np.sqrt(3) * 1.633)) ** (1 / 3)  # 2 atoms per cell, ideal c/a
        atoms = bulk("Cu", "hcp", a=a, c=1.633 * a).repeat((2, 1, 1))
    if len(atoms) < 8 and rng.random() < 0.5:
        atoms = atoms.repeat((1, 2, 1))
    symbols = [metals[i % n_metals] for i in range(len(atoms))]  # every metal present
    rng.shuffle(symbols)
    atoms.set_chemical_symbols(symbols)
    return atoms


def _surface(rng: np.random.Generator) -> Atoms:
    from ase.build import fcc100, fcc110

    build = fcc110 if rng.random() < 0.5 else fcc100
    metals = [str(m) for m in rng.choice(EMT_METALS, size=2, replace=False)]
    slab = build(metals[0], size=(2, 2, 4), vacuum=7.0, periodic=True)
    slab = tag_and_fix(slab, slab.get_tags(), 4)
    symbols = [metals[int(rng.random() < 0.5)] for _ in range(len(slab))]
    slab.set_chemical_symbols(symbols)
    for _ in range(int(rng.integers(0, 3))):
        slab = add_adsorbate(slab, "O", rng)
    return slab


def run(job: Job) -> System:
    """One bulk cell or one surface, with its EMT-labelled frames (``reference`` = 0)."""
    rng = job_rng(job.seed, NAME, job.index)
    if job.index % 3 != 0:
        atoms = random_alloy_bulk(rng, int(rng.integers(2, 4)))
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.rattle(0.05, seed=int(rng.integers(2**31)))
        atoms.set_tags(2)
        frames = emt_trajectory(
            atoms, "md", FRAMES_PER_SYSTEM, rng, temperature_k=rng.uniform(300, 1200)
        )
        fixed = np.zeros(len(atoms), dtype=bool)
        label = "bulk"
    else:
        atoms = _surface(rng)
        movable = atoms.get_tags() > 0
        atoms.positions[movable] += rng.normal(0, 0.06, size=(int(movable.sum()), 3))
        frames = emt_trajectory(atoms, "relax", FRAMES_PER_SYSTEM, rng)
        fixed = np.zeros(len(atoms), dtype=bool)
        fixed[atoms.constraints[0].get_indices()] = True
        label = "surface"
    return System(
        sid=job.index,
        metals=f"{label}:{''.join(sorted(set(atoms.get_chemical_symbols())))}",
        adsorbate="",
        numbers=atoms.numbers.copy(),
        cell=atoms.cell.array.astype(np.float32),
        tags=atoms.get_tags().astype(np.int64),
        fixed=fixed,
        reference=0.0,
        frames=frames,
    )


def plan(scale: float, seed: int) -> list[Job]:
    return [Job(seed, i) for i in range(scaled(SYSTEMS_AT_SCALE_1, scale, 4))]


def write(results: Sequence[System], directory: Path, seed: int) -> WrittenSet:
    val = split_systems(len(results), seed, NAME)
    files: list[Path] = []
    counts = {"systems": len(results)}
    for split, keep in (("train", False), ("val_id", True)):
        systems = [s for s, v in zip(results, val, strict=True) if v == keep]
        entries = lmdb_entries(systems, total_energy=True)
        for e in entries:
            e["oc22"] = 1
        files += write_s2ef_split(directory / "s2ef-total" / split, entries)
        counts[split] = len(entries)
    counts["structures"] = counts["train"] + counts["val_id"]
    counts["bulk_systems"] = sum(s.metals.startswith("bulk") for s in results)
    return WrittenSet(files=files, counts=counts, notes={"y": "total EMT energy (eV)"})


SET = DemoSet(
    name=NAME,
    role="pretrain",
    stands_in_for="OC22 S2EF-Total",
    file_format="ocp-lmdb",
    units="eV, eV/Å, Å",
    level_of_theory=emt_level,
    plan=plan,
    run=run,
    write=write,
)
