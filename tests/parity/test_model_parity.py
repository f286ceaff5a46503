"""GemNet-OC + JMP heads against the authors' numbers (../shared/reference/tiny, float64).

The tiny model of ``tiny/config.json`` with the weights of ``tiny/state_dict.pt`` must give, for
every structure of ``tiny/structures.extxyz`` (graph setting from ``info["graph"]``), the four
energies, the four direct-force fields, the oc20 gradient forces and the per-atom embeddings of
``tiny/expected.npz`` within max|ours - ref| <= 1e-8 * max|ref| + 1e-10 (the fixtures' stated
tolerance: float64 rounding differs only through summation order, ~1e-15 relative; the 1e-10
floor matters only where the reference is pure rounding noise, e.g. the direct forces on the
one-atom cell). It must hold for each structure alone and for every graph setting's structures
collated into one batch (batching must not change any number).
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.heads import GradientForceHead
from openjmp.model.jmp_model import JMPModel
from openjmp.model.keymap import authors_to_ours, ours_to_authors
from openjmp.records import AtomsRecord

N_STRUCTURES = 14


def assert_close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    err = float(np.abs(ours - ref).max()) if ref.size else 0.0
    tol = 1e-8 * (float(np.abs(ref).max()) if ref.size else 0.0) + 1e-10
    assert err <= tol, f"{what}: max |ours - ref| = {err:.3e} > {tol:.3e}"


@pytest.fixture(scope="module")
def tiny(reference_dir: Path) -> dict:
    d = reference_dir / "tiny"
    cfg = json.loads((d / "config.json").read_text())
    return {
        "cfg": cfg,
        "state_dict": torch.load(d / "state_dict.pt", weights_only=True),
        "expected": dict(np.load(d / "expected.npz")),
        "frames": ase.io.read(d / "structures.extxyz", index=":"),
    }


@pytest.fixture(scope="module")
def model(tiny: dict) -> JMPModel:
    cfg = tiny["cfg"]
    m = JMPModel.pretraining(GemNetOCConfig.from_dict(cfg["backbone"]), cfg["tasks"]).double()
    mapped, ignored = authors_to_ours(tiny["state_dict"], cfg["tasks"])
    m.load_state_dict(mapped, strict=True)
    m.heads["oc20_grad_forces"] = GradientForceHead("oc20_energy")
    return m.eval()


def test_state_dict_loads_strictly_key_for_key(tiny: dict, model: JMPModel) -> None:
    sd = tiny["state_dict"]
    ours = ours_to_authors({k: v for k, v in model.state_dict().items()}, tiny["cfg"]["tasks"])
    weights = {k: v for k, v in sd.items() if not k.startswith("task_steps.")}
    assert list(ours) == list(weights), "key sets (and order) differ"
    for k, v in weights.items():
        assert ours[k].shape == v.shape, k
        assert ours[k].dtype == v.dtype, k
        assert torch.equal(ours[k], v), k  # loaded exactly
    assert sorted(set(sd) - set(weights)) == [
        f"task_steps._module_dict._typed_moduledict_{t}.value" for t in sorted(tiny["cfg"]["tasks"])
    ]


def _check(out: dict, tiny: dict, i: int, atoms: slice, label: str) -> None:
    tasks = tiny["cfg"]["tasks"]
    exp = tiny["expected"]
    b = out["_row"]
    energy = torch.stack([out[f"{t}_energy"][b] for t in tasks]).detach().numpy()
    forces = torch.stack([out[f"{t}_forces"][atoms] for t in tasks]).detach().numpy()
    assert_close(energy, exp[f"s{i}_energy"], f"{label} s{i} energy")
    assert_close(forces, exp[f"s{i}_forces_direct"], f"{label} s{i} direct forces")
    grad = out["oc20_grad_forces"][atoms].detach().numpy()
    assert_close(grad, exp[f"s{i}_forces_grad_oc20"], f"{label} s{i} oc20 gradient forces")
    emb = out["embedding"][atoms].detach().numpy()
    assert_close(emb, exp[f"s{i}_embedding"], f"{label} s{i} embedding")


def _sample(atoms):  # noqa: ANN001, ANN202
    return build_graph_sample(AtomsRecord.from_ase(atoms), graph_spec(atoms.info["graph"]))


@pytest.mark.parametrize("i", range(N_STRUCTURES))
def test_each_structure_alone(tiny: dict, model: JMPModel, i: int) -> None:
    atoms = tiny["frames"][i]
    out = model(collate([_sample(atoms)]))
    out["_row"] = 0
    _check(out, tiny, i, slice(0, len(atoms)), "alone")


@pytest.mark.parametrize("setting", ["ani1x", "transition1x", "oc20", "oc22", "rmd17"])
def test_structures_of_a_setting_in_one_batch(tiny: dict, model: JMPModel, setting: str) -> None:
    idx = [i for i, a in enumerate(tiny["frames"]) if a.info["graph"] == setting]
    assert idx, setting
    out = model(collate([_sample(tiny["frames"][i]) for i in idx]))
    start = 0
    for row, i in enumerate(idx):
        n = len(tiny["frames"][i])
        out["_row"] = row
        _check(out, tiny, i, slice(start, start + n), f"batch[{setting}]")
        start += n
