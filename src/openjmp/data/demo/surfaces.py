"""Metal slabs with adsorbates and EMT-labelled trajectories (OC20-like and OC22-like sets).

Slabs follow OC20's conventions: tags 0 (subsurface, fixed), 1 (surface), 2 (adsorbate), with
the bottom half of the layers held by a `FixAtoms` constraint. Every recorded frame is rounded
to float32 first and then labelled by a fresh EMT single point, so the stored geometry is the
labelled one; forces are taken with ``apply_constraint=False`` as OCP does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from openjmp.data.demo.molecules import snap_float32

EMT_METALS = ("Al", "Ni", "Cu", "Pd", "Ag", "Pt", "Au")
"""The metals ASE's EMT describes with realistic parameters (all fcc)."""

# Adsorbates: symbols and positions (Å) relative to the binding atom, which comes first.
_CH = 1.09
ADSORBATES: dict[str, tuple[str, list[tuple[float, float, float]]]] = {
    "H": ("H", [(0, 0, 0)]),
    "O": ("O", [(0, 0, 0)]),
    "C": ("C", [(0, 0, 0)]),
    "N": ("N", [(0, 0, 0)]),
    "OH": ("OH", [(0, 0, 0), (0, 0, 0.97)]),
    "CO": ("CO", [(0, 0, 0), (0, 0, 1.15)]),
    "NO": ("NO", [(0, 0, 0), (0, 0, 1.16)]),
    "CH2": ("CH2", [(0, 0, 0), (0.89, 0, 0.63), (-0.89, 0, 0.63)]),
    "CH3": (
        "CH3",
        [(0, 0, 0)]
        + [(1.03 * np.cos(p), 1.03 * np.sin(p), 0.36) for p in (0.0, 2 * np.pi / 3, 4 * np.pi / 3)],
    ),
    "NH2": ("NH2", [(0, 0, 0), (0.82, 0, 0.58), (-0.82, 0, 0.58)]),
    "H2O": ("OH2", [(0, 0, 0), (0.76, 0, 0.59), (-0.76, 0, 0.59)]),
}
del _CH


@dataclass(frozen=True)
class Frame:
    """One labelled frame: positions (N, 3) float32 Å, energy eV, forces (N, 3) float32 eV/Å."""

    positions: np.ndarray
    energy: float
    forces: np.ndarray


def tag_and_fix(slab: Atoms, layer_tags: np.ndarray, n_layers: int) -> Atoms:
    """OC20 tags from ASE's layer numbers (1 = top): bottom half 0 and fixed, top half 1."""
    n_fixed_layers = n_layers // 2
    sub = layer_tags > n_layers - n_fixed_layers
    slab.set_tags(np.where(sub, 0, 1))
    slab.set_constraint(FixAtoms(mask=sub))
    return slab


def add_adsorbate(slab: Atoms, name: str, rng: np.random.Generator) -> Atoms:
    """Place adsorbate ``name`` above a random surface position, tagged 2, randomly rotated about z."""
    symbols, rel = ADSORBATES[name]
    rel_arr = np.asarray(rel, dtype=float)
    phi = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(phi), -np.sin(phi), 0], [np.sin(phi), np.cos(phi), 0], [0, 0, 1]])
    top = slab.positions[:, 2].max()
    frac = rng.uniform(0, 1, size=2)
    xy = frac @ slab.cell.array[:2, :2]
    height = 1.3 if name == "H" else rng.uniform(1.5, 2.0)
    anchor = np.array([xy[0], xy[1], top + height])
    ads = Atoms(symbols, positions=anchor + rel_arr @ rot.T)
    ads.set_tags(2)
    out = slab.copy()
    out.extend(ads)
    return out


def emt_label(atoms: Atoms) -> Frame:
    """Round ``atoms`` to float32 and label it with a fresh EMT single point."""
    a = snap_float32(atoms.copy())
    a.calc = EMT()
    energy = float(a.get_potential_energy())
    forces = a.get_forces(apply_constraint=False)
    return Frame(a.positions.astype(np.float32), energy, forces.astype(np.float32))


def emt_trajectory(
    atoms: Atoms, kind: str, n_frames: int, rng: np.random.Generator, temperature_k: float = 600.0
) -> list[Frame]:
    """``n_frames`` labelled frames along a BFGS relaxation (``"relax"``) or Langevin MD (``"md"``).

    A relaxation that converges early yields fewer frames. MD: 2 fs steps, a frame every 5 steps.
    """
    from ase.md.langevin import Langevin
    from ase.optimize import BFGS
    from ase.units import fs

    work = atoms.copy()
    work.calc = EMT()
    geometries: list[Atoms] = []
    if kind == "relax":
        opt = BFGS(work, logfile=None, maxstep=0.1)
        for converged in opt.irun(fmax=0.03, steps=n_frames - 1):
            geometries.append(work.copy())
            if converged:
                break
    elif kind == "md":
        from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

        MaxwellBoltzmannDistribution(work, temperature_K=temperature_k, rng=rng)
        dyn = Langevin(
            work, timestep=2 * fs, temperature_K=temperature_k, friction=0.02, fixcm=False, rng=rng
        )
        for _ in range(n_frames):
            geometries.append(work.copy())
            dyn.run(5)
    else:
        raise ValueError(f"unknown trajectory kind {kind!r}")
    return [emt_label(g) for g in geometries[:n_frames]]
