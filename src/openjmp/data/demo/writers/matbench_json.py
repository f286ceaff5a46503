"""MatBench v0.1 task file and fold file (datasets.md section 9), without pymatgen.

``matbench_<task>.json.gz``: pandas "split" orient (``index``, ``columns``, ``data``) with a
pymatgen ``Structure.as_dict()`` per row and the target; ``matbench_v0.1_validation.json``: the
5 folds as lists of MatBench ids, made with KFold(5, shuffle=True, random_state=18012019).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from ase import Atoms

from openjmp.data.demo.writers.files import write_gzip_text

FOLD_SEED = 18012019


def structure_dict(atoms: Atoms) -> dict:
    """``atoms`` as pymatgen's ``Structure.as_dict()`` would write it (Å, degrees, Å³)."""
    cell = atoms.cell.array
    a, b, c, alpha, beta, gamma = (float(x) for x in atoms.cell.cellpar())
    frac = atoms.get_scaled_positions(wrap=False)
    sites = []
    for sym, abc, xyz in zip(atoms.get_chemical_symbols(), frac, atoms.positions, strict=True):
        sites.append(
            {
                "species": [{"element": sym, "occu": 1}],
                "abc": [float(v) for v in abc],
                "properties": {},
                "label": sym,
                "xyz": [float(v) for v in xyz],
            }
        )
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {
            "matrix": [[float(v) for v in row] for row in cell],
            "pbc": [True, True, True],
            "a": a,
            "b": b,
            "c": c,
            "alpha": alpha,
            "beta": beta,
            "gamma": gamma,
            "volume": float(abs(np.linalg.det(cell))),
        },
        "properties": {},
        "sites": sites,
    }


def matbench_ids(task: str, n: int) -> list[str]:
    """MatBench's record ids for ``n`` rows: ``mb-<task>-<i+1>``, zero-padded to log10(n)+1 digits."""
    prefix = task.replace("matbench", "mb").replace("_", "-")
    width = int(math.floor(math.log10(n))) + 1 if n > 0 else 1
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(n)]


def write_matbench(
    directory: Path, task: str, target: str, structures: Sequence[Atoms], values: Sequence[float]
) -> list[Path]:
    """Write ``<task>.json.gz`` and ``matbench_v0.1_validation.json``; return the files."""
    from sklearn.model_selection import KFold

    n = len(structures)
    doc = {
        "index": list(range(n)),
        "columns": ["structure", target],
        "data": [[structure_dict(s), float(v)] for s, v in zip(structures, values, strict=True)],
    }
    data_path = directory / f"{task}.json.gz"
    write_gzip_text(data_path, json.dumps(doc))
    ids = np.array(matbench_ids(task, n))
    folds = {}
    kfold = KFold(n_splits=5, shuffle=True, random_state=FOLD_SEED)
    for k, (train, test) in enumerate(kfold.split(ids)):
        folds[f"fold_{k}"] = {"train": ids[train].tolist(), "test": ids[test].tolist()}
    validation = {
        "metadata": {"n_splits": 5, "random_state": FOLD_SEED, "shuffle": True},
        "splits": {task: folds},
    }
    val_path = directory / "matbench_v0.1_validation.json"
    val_path.write_text(json.dumps(validation, indent=1), encoding="utf-8")
    return [data_path, val_path]
