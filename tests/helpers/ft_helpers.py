"""Tiny data and configs for the fine-tuning tests.

Data are made in the test (ASE's EMT labels, eV and eV/Å) and written to ``tmp_path`` as extxyz:

* `write_molecules`: rattled CH4 / NH3 / H2O / C2H6 with energies, forces and two per-structure
  properties in ``info`` (``gap``: a smooth function of the geometry, ``is_big``: 0/1);
* `write_crystals`: rattled periodic Cu/Ni cells with ``band``: a smooth function of the cell.

`tiny_config` lays test settings over a preset (``user-energy-forces`` by default): a 1- or
2-block GemNet-OC with 8-16 features (`TINY_BACKBONE`), CPU, float32, short schedules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from openjmp.config import FinetuneConfig, load_config
from openjmp.tasks.param_groups import llrd_multipliers_for_depth

TINY_BACKBONE: dict[str, Any] = {
    "preset": "jmp-s",
    "num_blocks": 1,
    "emb_size_atom": 16,
    "emb_size_edge": 16,
    "emb_size_trip_in": 8,
    "emb_size_trip_out": 8,
    "emb_size_quad_in": 8,
    "emb_size_quad_out": 8,
    "emb_size_aint_in": 8,
    "emb_size_aint_out": 8,
    "emb_size_rbf": 8,
    "emb_size_cbf": 8,
    "emb_size_sbf": 8,
    "num_radial": 16,
    "num_before_skip": 1,
    "num_after_skip": 1,
    "num_atom_emb_layers": 1,
}


def _label(atoms: Any, seed: int, rattle: float = 0.05) -> Any:
    atoms.rattle(rattle, seed=seed)
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
    return atoms


def molecules(n: int, seed: int = 0) -> list[Any]:
    names = ["CH4", "NH3", "H2O", "C2H6"]
    out = []
    for i in range(n):
        mol = _label(molecule(names[i % 4]), seed + i)
        d = mol.get_all_distances()
        mol.info["gap"] = float(np.exp(-d[d > 0]).sum())  # a smooth, invariant property
        mol.info["is_big"] = int(len(mol) > 5)
        out.append(mol)
    return out


def crystals(n: int, seed: int = 0) -> list[Any]:
    out = []
    for i in range(n):
        a = bulk("Cu" if i % 2 else "Ni", "fcc", a=3.55 + 0.02 * (i % 5), cubic=False) * (2, 1, 1)
        a = _label(a, seed + i, rattle=0.03)
        a.info["band"] = float(a.get_volume() / len(a))
        out.append(a)
    return out


def write_molecules(path: Path, n: int = 20, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, molecules(n, seed), format="extxyz")
    return path


def write_crystals(path: Path, n: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write(path, crystals(n, seed), format="extxyz")
    return path


def backbone_overrides(backbone: dict[str, Any] | None = None) -> list[str]:
    bb = TINY_BACKBONE if backbone is None else backbone
    return [f"model.backbone.{k}={v}" for k, v in bb.items()]


def llrd_override(num_blocks: int) -> str:
    """The JMP-L multiplier profile resampled to ``num_blocks`` blocks, as a --set."""
    m = llrd_multipliers_for_depth(num_blocks)
    return "llrd={" + ", ".join(f"{k}: {v}" for k, v in m.items()) + "}"


def tiny_config(
    data: Path,
    overrides: Sequence[str] = (),
    *,
    preset: str = "user-energy-forces",
    backbone: dict[str, Any] | None = None,
) -> FinetuneConfig:
    """``preset`` over ``data`` with the tiny backbone, from scratch, CPU, float32, 8 steps."""
    bb = TINY_BACKBONE if backbone is None else backbone
    base = [
        *backbone_overrides(bb),
        "model.checkpoint=null",
        llrd_override(int(bb["num_blocks"])),
        f"data.train.path={data}",
        "data.graph.pbc=false",
        "data.graph.cutoff=5.0",
        "data.graph.max_neighbors=12",
        "loader.batch_size=4",
        "precision=32-true",
        "schedule.warmup_epochs=null",
        "schedule.warmup_steps=2",
        "schedule.max_epochs=null",
        "schedule.max_steps=40",
        "trainer.max_epochs=null",
        "trainer.max_time=null",
        "trainer.max_steps=8",
        "trainer.val_check_interval=4",
        "trainer.accelerator=cpu",
        "trainer.seed=7",
    ]
    cfg = load_config(preset, "finetune", [*base, *overrides])
    assert isinstance(cfg, FinetuneConfig)
    return cfg


def batch_of(frames: Sequence[Any], *, cutoff: float = 5.0, pbc: bool = False) -> Any:
    """A collated float64 `Batch` of ASE structures (graphs under a small GraphConfig)."""
    from openjmp.config.common import GraphConfig
    from openjmp.graph.collate import collate
    from openjmp.graph.gemnet import build_graph_sample
    from openjmp.records import AtomsRecord

    graph = GraphConfig(cutoff=cutoff, max_neighbors=12, pbc=pbc)
    samples = []
    for i, atoms in enumerate(frames):
        rec = AtomsRecord.from_ase(atoms, source="test", index=i)
        samples.append(build_graph_sample(rec, graph.spec(rec.natoms)))
    return collate(samples)
