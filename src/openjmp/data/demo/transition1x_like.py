"""Transition-1x-like set: GFN2-xTB hydrogen-shift reaction paths, written as a Transition-1x HDF5.

Per reaction: a pre-training molecule (two or more heavy atoms, ethanol excluded) is relaxed
with GFN2-xTB (reactant); one H is moved from its heavy atom X to another heavy atom Y and the
result relaxed (product); the path between them is interpolated (IDPP, 5 inner images) and
improved by a few climbing-image NEB steps (FIRE). As in Transition-1x every image of several
NEB iterations is kept (iterations 0, 3, 6, 9), each labelled by a fresh single point; frames
more than ``ENERGY_CAP`` eV above the lower end point are dropped. The transition state is the
highest-energy image of the last iteration. Splits (train/val/test) are by formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed

from openjmp.data.demo.molecules import load_molecule, pretraining_molecules, snap_float32
from openjmp.data.demo.parallel import job_rng
from openjmp.data.demo.spec import DemoSet, WrittenSet, scaled
from openjmp.data.demo.writers.hdf5 import Reaction, write_transition1x
from openjmp.data.demo.xtb import XTBCalculator, level_of_theory, xtb_single_point

NAME = "transition1x_like"
REACTIONS_AT_SCALE_1 = 24
FILE_NAME = "transition1x.h5"
N_IMAGES = 5
RECORD_ITERATIONS = (0, 3, 6, 9)
ENERGY_CAP = 5.0  # eV above the lower end point
_TRIES = 6


@dataclass(frozen=True)
class Job:
    seed: int
    index: int
    molecule: str


def reaction_molecules() -> tuple[str, ...]:
    """Pre-training molecules with at least two heavy atoms and one H."""
    out = []
    for name in pretraining_molecules():
        z = load_molecule(name).numbers
        if (z > 1).sum() >= 2 and (z == 1).any():
            out.append(name)
    return tuple(out)


def _relax(atoms: Atoms, steps: int = 120) -> Atoms:
    from ase.optimize import BFGS

    a = atoms.copy()
    a.calc = XTBCalculator()
    BFGS(a, logfile=None, maxstep=0.15).run(fmax=0.05, steps=steps)
    out = a.copy()
    out.calc = None
    return out


def _moved_h(atoms: Atoms, rng: np.random.Generator) -> Atoms | None:
    """A copy with one H moved from its heavy atom to another heavy atom, or None."""
    z, pos = atoms.numbers, atoms.positions
    d = atoms.get_all_distances()
    heavy = np.flatnonzero(z > 1)
    pairs = []
    for h in np.flatnonzero(z == 1):
        x = int(heavy[np.argmin(d[h, heavy])])
        if d[h, x] > 1.25:
            continue
        for y in heavy:
            if y != x and d[x, y] < 3.2:
                pairs.append((int(h), int(y)))
    if not pairs:
        return None
    h, y = pairs[int(rng.integers(len(pairs)))]
    nbrs = [j for j in range(len(z)) if j not in (h, y) and d[y, j] < 1.7]
    away = pos[y] - (pos[nbrs].mean(axis=0) if nbrs else pos[h])
    away /= np.linalg.norm(away) + 1e-12
    out = atoms.copy()
    out.positions[h] = pos[y] + 1.05 * away
    return out


def _path_frames(reactant: Atoms, product: Atoms) -> list[Atoms]:
    """Recorded NEB image geometries: end points once, inner images at each recorded iteration."""
    from ase.mep import NEB
    from ase.optimize import FIRE

    images = [reactant.copy() for _ in range(N_IMAGES + 1)] + [product.copy()]
    for im in images:
        im.calc = XTBCalculator()
    neb = NEB(images, climb=True, k=0.2, method="improvedtangent")
    neb.interpolate("idpp")
    recorded = [reactant.copy(), product.copy()]
    opt = FIRE(neb, logfile=None, maxstep=0.1)
    for it, _ in enumerate(opt.irun(fmax=0.05, steps=max(RECORD_ITERATIONS))):
        if it in RECORD_ITERATIONS:
            recorded += [im.copy() for im in images[1:-1]]
    return recorded


def run(job: Job) -> Reaction | None:
    """One H-shift reaction of ``job.molecule``; None if no usable path in a few tries."""
    rng = job_rng(job.seed, NAME, job.index)
    base = load_molecule(job.molecule)
    for _ in range(_TRIES):
        try:
            start = base.copy()
            start.positions += rng.normal(0, 0.01, size=start.positions.shape)
            reactant = _relax(start)
            moved = _moved_h(reactant, rng)
            if moved is None:
                return None
            product = _relax(moved)
            geoms = _path_frames(reactant, product)
            labels = [xtb_single_point(snap_float32(g.copy())) for g in geoms]
        except CalculationFailed:
            continue
        energy = np.array([p.energy for p in labels])
        keep = energy <= min(energy[0], energy[1]) + ENERGY_CAP
        keep[:2] = True
        idx = np.flatnonzero(keep)
        last = [i for i in idx if i >= len(geoms) - N_IMAGES]
        ts = int(max(last, key=lambda i: energy[i])) if last else int(np.argmax(energy[idx]))
        formula = base.get_chemical_formula(mode="hill")
        pos = np.stack([snap_float32(geoms[i].copy()).positions for i in idx])
        remap = {int(i): k for k, i in enumerate(idx)}
        return Reaction(
            formula=formula,
            name=f"rxn{job.index:04d}",
            atomic_numbers=base.numbers.copy(),
            positions=pos.astype(np.float32),
            energy=energy[idx],
            forces=np.stack([labels[i].forces for i in idx]).astype(np.float32),
            reactant=0,
            product=1,
            transition_state=remap[ts],
        )
    return None


def plan(scale: float, seed: int) -> list[Job]:
    names = reaction_molecules()
    order = job_rng(seed, f"{NAME}/order", 0).permutation(len(names))
    n = scaled(REACTIONS_AT_SCALE_1, scale, 3)
    return [Job(seed, i, names[order[i % len(names)]]) for i in range(n)]


def split_formulas(formulas: Sequence[str], seed: int) -> dict[str, list[str]]:
    """Formulas into train/val/test (about 80/10/10, at least one each when there are >= 3)."""
    uniq = sorted(set(formulas))
    perm = [uniq[i] for i in job_rng(seed, f"{NAME}/split", 0).permutation(len(uniq))]
    n_held = max(1, int(round(0.1 * len(uniq)))) if len(uniq) >= 3 else 0
    return {
        "val": perm[:n_held],
        "test": perm[n_held : 2 * n_held],
        "train": perm[2 * n_held :],
    }


def write(results: Sequence[Reaction | None], directory: Path, seed: int) -> WrittenSet:
    reactions = [r for r in results if r is not None]
    splits = split_formulas([r.formula for r in reactions], seed)
    path = directory / FILE_NAME
    attrs = {"level_of_theory": level_of_theory(), "generator": "openjmp demo"}
    write_transition1x(path, reactions, splits, attrs)
    counts = {"reactions": len(reactions), "failed_reactions": len(results) - len(reactions)}
    counts["structures"] = sum(len(r.energy) for r in reactions)
    for split, formulas in splits.items():
        counts[split] = sum(len(r.energy) for r in reactions if r.formula in formulas)
    return WrittenSet(
        files=[path],
        counts=counts,
        notes={"keys": "wB97x_6-31G(d).* hold GFN2-xTB labels (eV, eV/Å)"},
    )


SET = DemoSet(
    name=NAME,
    role="pretrain",
    stands_in_for="Transition-1x",
    file_format="transition1x-hdf5",
    units="eV, eV/Å, Å",
    level_of_theory=level_of_theory,
    plan=plan,
    run=run,
    write=write,
)
