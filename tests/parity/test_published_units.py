"""Units of the published checkpoints' heads (``tiny/lightning_checkpoint.ckpt`` is built like
jmp-s.pt): their pre-training heads learned normalised targets (jmp-reference §2.3: energy and
force std per dataset, mean 0, per-dataset linear references that are not in the file).

* forces are physical without anything else: F = force_std · (the authors' raw direct forces);
* energies need the references: without them predict leaves energies out with a warning that
  says so (never a normalised number labelled eV); with them (the authors' ``linref.npz`` layout,
  or a JSON table) E = Σ ref[Z] + energy_std · (the authors' raw energy);
* each head uses its task's graph setting by default.

Raw numbers come from ``expected.npz`` (the authors' implementation, float64); the tolerance is
the fixtures' (1e-8 relative).
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

import openjmp
from openjmp.graph.spec import graph_spec
from openjmp.model.checkpoint import PUBLISHED_NORMALIZATION

TASKS = ("oc20", "oc22", "ani1x", "transition1x")


@pytest.fixture(scope="module")
def tiny_dir(reference_dir: Path) -> Path:
    return reference_dir / "tiny"


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert np.abs(a - b).max() <= 1e-8 * np.abs(b).max() + 1e-10


@pytest.mark.parametrize("i", [0, 7, 11])
def test_forces_physical_energies_need_references(tiny_dir: Path, i: int) -> None:
    exp = np.load(tiny_dir / "expected.npz")
    atoms = ase.io.read(tiny_dir / "structures.extxyz", index=i)
    task = atoms.info["graph"]
    t = TASKS.index(task)
    e_std, f_std = PUBLISHED_NORMALIZATION[task]
    model = openjmp.load_model(tiny_dir / "lightning_checkpoint.ckpt", dtype=torch.float64)
    with pytest.warns(UserWarning, match="linear references"):
        pred = openjmp.predict(model, atoms, head=task, forces="direct")
    assert pred.energies is None  # not a normalised number called eV
    assert pred.graph == graph_spec(task)
    _close(pred.forces[0], f_std * exp[f"s{i}_forces_direct"][t])
    with pytest.raises(openjmp.ConfigError, match="linear references"):
        openjmp.predict(model, atoms, head=task, forces="none")

    refs = np.zeros(100)
    refs[[1, 6, 7, 8, 29, 22, 12]] = [-13.6, -1029.4, -1484.9, -2041.8, -7.1, -3.3, -1.5]
    model = openjmp.load_model(
        tiny_dir / "lightning_checkpoint.ckpt", dtype=torch.float64, references={task: refs}
    )
    pred = openjmp.predict(model, atoms, head=task, forces="direct")
    expected = refs[atoms.numbers].sum() + e_std * exp[f"s{i}_energy"][t]
    assert pred.energies[0] == pytest.approx(expected, rel=1e-10)
    assert pred.units == {"energy": "eV", "forces": "eV/Å"}


def test_reference_files_in_both_formats(tiny_dir: Path, tmp_path: Path) -> None:
    refs = np.zeros(10)
    refs[[1, 6, 8]] = [-13.6, -1029.4, -2041.8]
    np.savez(tmp_path / "linref.npz", coeff=refs)  # the authors' layout
    (tmp_path / "refs.json").write_text(json.dumps({"H": -13.6, "6": -1029.4, "O": -2041.8}))
    atoms = ase.io.read(tiny_dir / "structures.extxyz", index=0)  # ethanol: H, C, O
    got = []
    for f in ("linref.npz", "refs.json"):
        model = openjmp.load_model(
            tiny_dir / "lightning_checkpoint.ckpt", references={"ani1x": tmp_path / f}
        )
        got.append(openjmp.predict(model, atoms, head="ani1x", forces="none").energies[0])
    assert got[0] == pytest.approx(got[1], rel=1e-12)
    assert got[0] < -4000  # 2 C, 6 H, 1 O: the references carry the total energy
    (tmp_path / "bad.json").write_text(json.dumps({"Xx": 1.0}))
    with pytest.raises(openjmp.DataError, match="bad.json.*not an element"):
        openjmp.load_model(
            tiny_dir / "lightning_checkpoint.ckpt", references={"ani1x": tmp_path / "bad.json"}
        )
