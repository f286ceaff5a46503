"""Safe loading of checkpoints: the authors' Lightning file (EMA by default, raw on request),
plain state dicts, openjmp's own files, and clear errors for bad files.

``tiny/lightning_checkpoint.ckpt`` is built like the published jmp-s.pt / jmp-l.pt: raw weights
in ``state_dict``, EMA weights (= ``tiny/state_dict.pt``) in ``optimizer_states[0]["ema"]``, and
hyper-parameters pickled as objects of the authors' ``jmp`` package, which is not installed: the
loader must read them as inert records. ``tiny/malicious_checkpoint.ckpt`` runs code when
unpickled (it raises "checkpoint payload executed"); it must be refused without running.
Numbers are compared at the fixtures' tolerance (1e-8 relative, float64).
"""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

import openjmp
from openjmp.errors import CheckpointError
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.io.safe_pickle import safe_torch_load
from openjmp.model.checkpoint import LICENCE_NOTICE, load_checkpoint, save_model
from openjmp.model.jmp_model import JMPModel
from openjmp.model.keymap import ours_to_authors
from openjmp.records import AtomsRecord

TASKS = ("oc20", "oc22", "ani1x", "transition1x")
CHECK = (0, 7, 11)  # a molecule, a slab, a triclinic oxide


@pytest.fixture(scope="module")
def tiny_dir(reference_dir: Path) -> Path:
    return reference_dir / "tiny"


def energies(model: JMPModel, tiny_dir: Path, i: int) -> np.ndarray:
    atoms = ase.io.read(tiny_dir / "structures.extxyz", index=i)
    b = collate([build_graph_sample(AtomsRecord.from_ase(atoms), graph_spec(atoms.info["graph"]))])
    with torch.no_grad():
        out = model(b)
    return torch.stack([out[f"{t}_energy"][0] for t in TASKS]).numpy()


def assert_matches_expected(model: JMPModel, tiny_dir: Path) -> None:
    exp = np.load(tiny_dir / "expected.npz")
    for i in CHECK:
        ref = exp[f"s{i}_energy"]
        err = np.abs(energies(model, tiny_dir, i) - ref).max()
        assert err <= 1e-8 * np.abs(ref).max() + 1e-10, (i, err)


def test_lightning_checkpoint_loads_ema_by_default(tiny_dir: Path, capsys) -> None:  # noqa: ANN001
    model = openjmp.load_model(tiny_dir / "lightning_checkpoint.ckpt", dtype=torch.float64)
    assert LICENCE_NOTICE in capsys.readouterr().err and "CC-BY-NC 4.0" in LICENCE_NOTICE
    ema = torch.load(tiny_dir / "state_dict.pt", weights_only=True)
    ours = ours_to_authors(model.state_dict(), TASKS)
    for k, v in ours.items():
        assert torch.equal(v, ema[k]), k
    assert_matches_expected(model, tiny_dir)
    assert model.config.scale_file == "scale_files/small.pt"  # the authors' private path, mapped


def test_lightning_checkpoint_raw_weights_on_request(tiny_dir: Path) -> None:
    model = load_checkpoint(tiny_dir / "lightning_checkpoint.ckpt", ema=False, dtype=torch.float64)
    raw = safe_torch_load(tiny_dir / "lightning_checkpoint.ckpt")["state_dict"]
    ours = ours_to_authors(model.state_dict(), TASKS)
    for k, v in ours.items():
        assert torch.equal(v, raw[k].double()), k
    exp = np.load(tiny_dir / "expected.npz")
    assert np.abs(energies(model, tiny_dir, 0) - exp["s0_energy"]).max() > 1e-4


def test_plain_state_dict_with_inferred_architecture(tiny_dir: Path, capsys) -> None:  # noqa: ANN001
    model = load_checkpoint(tiny_dir / "state_dict.pt", dtype=torch.float64)
    assert "CC-BY-NC" not in capsys.readouterr().err  # no authors' hyper-parameters here
    assert (model.config.num_blocks, model.config.emb_size_edge) == (2, 24)
    assert_matches_expected(model, tiny_dir)


def test_own_format_round_trip(tiny_dir: Path, tmp_path: Path) -> None:
    model = load_checkpoint(tiny_dir / "state_dict.pt", dtype=torch.float64)
    path = save_model(model, tmp_path / "sub" / "model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left
    again = load_checkpoint(path, dtype=torch.float64)
    assert again.config == model.config and again.head_specs() == model.head_specs()
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_malicious_pickle_is_refused_without_running(tiny_dir: Path) -> None:
    path = tiny_dir / "malicious_checkpoint.ckpt"
    with pytest.raises(CheckpointError) as info:  # a RuntimeError would mean it ran
        load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg and "exec" in msg and "not safe" in msg


def test_truncated_file(tiny_dir: Path, tmp_path: Path) -> None:
    data = (tiny_dir / "lightning_checkpoint.ckpt").read_bytes()
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match=r"truncated\.ckpt.*(truncated|corrupt)"):
        load_checkpoint(bad)


def test_missing_file_and_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.ckpt")
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a JMP checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_missing_keys(tiny_dir: Path, tmp_path: Path) -> None:
    sd = torch.load(tiny_dir / "state_dict.pt", weights_only=True)
    del sd["backbone.int_blocks.1.dense_ca.linear.weight"]
    torch.save(sd, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing\.pt.*1 missing key.*dense_ca"):
        load_checkpoint(tmp_path / "missing.pt")


def test_wrong_architecture(tiny_dir: Path, tmp_path: Path) -> None:
    sd = torch.load(tiny_dir / "state_dict.pt", weights_only=True)
    k = "backbone.int_blocks.0.layers_after_skip.1.dense_mlp.0.linear.weight"
    sd[k] = sd[k][:, :-1]
    torch.save(sd, tmp_path / "wrong.pt")
    with pytest.raises(CheckpointError, match=r"wrong\.pt.*wrong architecture"):
        load_checkpoint(tmp_path / "wrong.pt")
    # a config that contradicts the weights
    model = load_checkpoint(tiny_dir / "state_dict.pt")
    payload = torch.load(save_model(model, tmp_path / "m.pt"), weights_only=False)
    payload["config"]["num_blocks"] = 3
    torch.save(payload, tmp_path / "m3.pt")
    with pytest.raises(CheckpointError, match=r"m3\.pt"):
        load_checkpoint(tmp_path / "m3.pt")


def test_jmp_package_is_not_needed() -> None:
    assert "jmp" not in sys.modules
