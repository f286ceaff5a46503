"""OC20-like set: EMT-labelled adsorbate+slab trajectories, written as an OC20 S2EF LMDB.

Each system is a 2x2x4 fcc(111) or fcc(100) slab of one metal (a third of them with surface
atoms swapped for a second metal) carrying one adsorbate from H, O, C, N, OH, CO, NO, CH2, CH3,
NH2, H2O; it is rattled and followed along a short BFGS relaxation or Langevin MD run. As in
the published recipe ``y`` is the adsorption energy: total energy minus the relaxed clean slab
minus gas references (H from H2, O from H2O - H2, C from CO - O, N from N2), all EMT; the
reference of each system goes to ``oc20_ref.pkl`` (``{"random<sid>": eV}``) so that
``y + ref`` is the total energy. Splits by system: ``s2ef/train`` and ``s2ef/val_id``.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, emt_level, scaled
from openjmp.data.demo.surfaces import (
    ADSORBATES,
    EMT_METALS,
    Frame,
    add_adsorbate,
    emt_trajectory,
    tag_and_fix,
)
from openjmp.data.demo.writers.ocp_lmdb import write_s2ef_split

NAME = "oc20_like"
SYSTEMS_AT_SCALE_1 = 80
FRAMES_PER_SYSTEM = 7
VAL_FRACTION = 0.1


@dataclass(frozen=True)
class Job:
    seed: int
    index: int


@dataclass(frozen=True)
class System:
    sid: int
    metals: str
    adsorbate: str
    numbers: np.ndarray  # (N,)
    cell: np.ndarray  # (3, 3) Å
    tags: np.ndarray  # (N,)
    fixed: np.ndarray  # (N,) bool
    reference: float  # eV: clean slab + gas references
    frames: list[Frame]


@cache
def gas_references() -> dict[str, float]:
    """EMT chemical potentials (eV/atom) of H, O, C, N from H2, H2O, CO and N2."""
    from ase.build import molecule
    from ase.calculators.emt import EMT

    def energy(name: str) -> float:
        m = molecule(name)
        m.calc = EMT()
        return float(m.get_potential_energy())

    h = energy("H2") / 2
    o = energy("H2O") - 2 * h
    c = energy("CO") - o
    n = energy("N2") / 2
    return {"H": h, "O": o, "C": c, "N": n}


def _slab(rng: np.random.Generator) -> tuple[object, str]:
    from ase.build import fcc100, fcc111

    metal = str(rng.choice(EMT_METALS))
    build = fcc111 if rng.random() < 0.6 else fcc100
    slab = build(metal, size=(2, 2, 4), vacuum=7.0, periodic=True)
    slab = tag_and_fix(slab, slab.get_tags(), 4)
    label = metal
    if rng.random() < 1 / 3:
        second = str(rng.choice([m for m in EMT_METALS if m != metal]))
        surface = np.flatnonzero(slab.get_tags() == 1)
        swap = rng.choice(surface, size=max(1, len(surface) // 3), replace=False)
        symbols = slab.get_chemical_symbols()
        for i in swap:
            symbols[int(i)] = second
        slab.set_chemical_symbols(symbols)
        label = f"{metal}{second}"
    return slab, label


def run(job: Job) -> System:
    """Build, rattle and follow one adsorbate+slab system; label its frames with EMT."""
    from ase.calculators.emt import EMT
    from ase.optimize import BFGS

    rng = job_rng(job.seed, NAME, job.index)
    slab, metals = _slab(rng)
    clean = slab.copy()
    clean.calc = EMT()
    BFGS(clean, logfile=None).run(fmax=0.05, steps=60)
    e_slab = float(clean.get_potential_energy())
    ads_name = str(rng.choice(sorted(ADSORBATES)))
    system = add_adsorbate(slab, ads_name, rng)
    movable = system.get_tags() > 0
    system.positions[movable] += rng.normal(0, 0.08, size=(int(movable.sum()), 3))
    kind = "relax" if rng.random() < 0.6 else "md"
    frames = emt_trajectory(
        system, kind, FRAMES_PER_SYSTEM, rng, temperature_k=rng.uniform(300, 900)
    )
    mu = gas_references()
    ref = e_slab + sum(mu[s] for s in system.get_chemical_symbols()[len(slab) :])
    fixed = np.zeros(len(system), dtype=bool)
    fixed[system.constraints[0].get_indices()] = True
    return System(
        sid=job.index,
        metals=metals,
        adsorbate=ads_name,
        numbers=system.numbers.copy(),
        cell=system.cell.array.astype(np.float32),
        tags=system.get_tags().astype(np.int64),
        fixed=fixed,
        reference=ref,
        frames=frames,
    )


def plan(scale: float, seed: int) -> list[Job]:
    return [Job(seed, i) for i in range(scaled(SYSTEMS_AT_SCALE_1, scale, 4))]


def split_systems(n: int, seed: int, set_name: str) -> np.ndarray:
    """Boolean mask (n,) of systems in the validation split (at least one)."""
    rng = job_rng(seed, f"{set_name}/split", 0)
    n_val = max(1, int(round(VAL_FRACTION * n)))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_val]] = True
    return mask


def lmdb_entries(systems: Sequence[System], total_energy: bool) -> list[dict]:
    """PyG ``Data`` fields per frame (``y`` total energy, or adsorption energy if not ``total_energy``)."""
    entries = []
    for s in systems:
        for fid, fr in enumerate(s.frames):
            y = fr.energy if total_energy else fr.energy - s.reference
            entries.append(
                {
                    "pos": fr.positions.astype(np.float32),
                    "cell": s.cell.reshape(1, 3, 3).astype(np.float32),
                    "atomic_numbers": s.numbers.astype(np.float32),
                    "natoms": int(len(s.numbers)),
                    "tags": s.tags.astype(np.int64),
                    "fixed": s.fixed.astype(np.float32),
                    "force": fr.forces.astype(np.float32),
                    "y": float(y),
                    "sid": int(s.sid),
                    "fid": int(fid),
                }
            )
    return entries


def write(results: Sequence[System], directory: Path, seed: int) -> WrittenSet:
    val = split_systems(len(results), seed, NAME)
    train_sys = [s for s, v in zip(results, val, strict=True) if not v]
    val_sys = [s for s, v in zip(results, val, strict=True) if v]
    files = write_s2ef_split(directory / "s2ef" / "train", lmdb_entries(train_sys, False))
    files += write_s2ef_split(directory / "s2ef" / "val_id", lmdb_entries(val_sys, False))
    ref_path = directory / "oc20_ref.pkl"
    ref_path.write_bytes(
        pickle.dumps({f"random{s.sid}": float(s.reference) for s in results}, protocol=4)
    )
    files.append(ref_path)
    n_train = sum(len(s.frames) for s in train_sys)
    n_val = sum(len(s.frames) for s in val_sys)
    return WrittenSet(
        files=files,
        counts={
            "systems": len(results),
            "structures": n_train + n_val,
            "train": n_train,
            "val_id": n_val,
        },
        notes={
            "y": "adsorption energy (eV); add oc20_ref.pkl[f'random{sid}'] for the total energy"
        },
    )


SET = DemoSet(
    name=NAME,
    role="pretrain",
    stands_in_for="OC20 S2EF",
    file_format="ocp-lmdb",
    units="eV, eV/Å, Å",
    level_of_theory=emt_level,
    plan=plan,
    run=run,
    write=write,
)
