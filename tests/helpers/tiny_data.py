"""Tiny EMT-labelled data sets and a tiny pre-training config, for the training tests.

Two datasets, written as extxyz (format "ase") into a test's tmp_path:

* ``slabs``: periodic Cu(100) slabs (2x2x2, 8 atoms) with an O adatom, bottom layer fixed
  (FixAtoms -> ``fixed``), rattled so no distances tie;
* ``mols``: non-periodic CHNO molecules (CH4, NH3, H2O, C2H6), rattled.

Labels come from ASE's EMT (eV, eV/Å). The model is a 1-block GemNet-OC with 8-16 features.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ase.build import add_adsorbate, fcc100, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import write

from openjmp.config.pretrain import PretrainConfig

TINY_BACKBONE: dict[str, Any] = {
    "preset": "jmp-s",
    "num_blocks": 1,
    "emb_size_atom": 8,
    "emb_size_edge": 16,
    "emb_size_trip_in": 4,
    "emb_size_trip_out": 4,
    "emb_size_quad_in": 4,
    "emb_size_quad_out": 4,
    "emb_size_aint_in": 4,
    "emb_size_aint_out": 4,
    "emb_size_rbf": 4,
    "emb_size_cbf": 4,
    "emb_size_sbf": 4,
    "num_radial": 8,
    "num_spherical": 3,
    "num_before_skip": 1,
    "num_after_skip": 1,
    "num_atom": 1,
    "num_output_afteratom": 1,
    "num_atom_emb_layers": 1,
    "num_global_out_layers": 1,
    "absolute_rbf_cutoff": 5.0,
}


def _labelled(atoms, seed: int):
    rng = np.random.default_rng(seed)
    atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def slabs(n: int, seed: int = 0) -> list:
    out = []
    for i in range(n):
        slab = fcc100("Cu", (2, 2, 2), vacuum=4.0)
        add_adsorbate(slab, "O", 1.5 + 0.1 * (i % 3), "hollow")
        slab.set_constraint(FixAtoms(indices=[a.index for a in slab if a.tag == 2]))
        slab.info.pop("adsorbate_info", None)
        out.append(_labelled(slab, seed + i))
    return out


def molecules(n: int, seed: int = 100) -> list:
    names = ["CH4", "NH3", "H2O", "C2H6"]
    out = []
    for i in range(n):
        mol = molecule(names[i % len(names)])
        mol.center(vacuum=3.0)
        mol.pbc = False
        out.append(_labelled(mol, seed + i))
    return out


def write_tiny_data(
    root: Path, n_slabs: int = 6, n_mols: int = 8, n_val: tuple[int, int] = (2, 2)
) -> dict[str, Path]:
    """extxyz files {name}-train.xyz / {name}-val.xyz under ``root`` (``n_val`` validation
    structures of slabs and mols); returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {}
    sets = (
        ("slabs", slabs(n_slabs + n_val[0]), n_val[0]),
        ("mols", molecules(n_mols + n_val[1]), n_val[1]),
    )
    for name, structs, k in sets:
        write(root / f"{name}-train.xyz", structs[:-k], format="extxyz")
        write(root / f"{name}-val.xyz", structs[-k:], format="extxyz")
        paths[name] = root
    return paths


def tiny_config(root: Path, **top: Any) -> PretrainConfig:
    """A 2-dataset pre-training config over `write_tiny_data` files (float64, CPU, no logger)."""

    def ds(name: str, pbc: bool, fcoef: float) -> dict[str, Any]:
        return {
            "name": name,
            "format": "ase",
            "train": {"path": str(root / f"{name}-train.xyz")},
            "val": {"path": str(root / f"{name}-val.xyz")},
            "graph": {"cutoff": 4.0, "max_neighbors": 8, "pbc": pbc, "dummy_cell": not pbc},
            "linear_references": {"fit": True},
            "force_coefficient": fcoef,
        }

    data: dict[str, Any] = {
        "name": "tiny",
        "model": {"backbone": dict(TINY_BACKBONE)},
        "datasets": [ds("slabs", True, 8.0), ds("mols", False, 5.0)],
        "sampling": {"mode": "temperature", "temperature": 2.0},
        "loader": {"batch_size": 3, "num_workers": 0},
        "optimizer": {"lr": 1e-3},
        "schedule": {"warmup_steps": 2, "max_epochs": None, "max_steps": 20},
        "ema_decay": 0.9,
        "precision": "64-true",
        "edge_dropout": 0.2,
        "trainer": {
            "max_steps": 6,
            "val_check_interval": 3,
            "accelerator": "cpu",
            "devices": 1,
            "seed": 3,
        },
    }
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return PretrainConfig.model_validate(data)
