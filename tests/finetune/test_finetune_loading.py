"""Starting a fine-tune from a pre-trained checkpoint: exactly the EMA backbone, new random heads.

The checkpoint is the reference ``tiny/lightning_checkpoint.ckpt`` (built like jmp-s.pt: raw
weights in ``state_dict``, the EMA in ``optimizer_states[0]["ema"]``; ../shared/reference). The
fine-tune model is built as `run_finetune` builds it (`build_task`), in float64, with the
rMD17 preset's gradient-force head. Then:

* every embedding/backbone tensor equals the checkpoint's EMA tensor bit for bit, and the
  direct-force branch, unused by gradient forces, is not there;
* the backbone's per-atom output reproduces the authors' ``expected.npz`` embeddings within the
  fixtures' tolerance (max |Δ| <= 1e-8 max |ref| + 1e-10), which the raw weights do not;
* the heads are new: they depend on the seed, the backbone does not;
* a checkpoint of another architecture than the config names is refused, naming the fields.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch

from openjmp.config import load_config
from openjmp.errors import ConfigError
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.model.checkpoint import load_checkpoint
from openjmp.records import AtomsRecord
from openjmp.train.finetune.full import build_task

from helpers.ft_helpers import molecules

BACKBONE_KEYS = (
    "num_blocks", "emb_size_atom", "emb_size_edge", "emb_size_trip_in", "emb_size_trip_out",
    "emb_size_quad_in", "emb_size_quad_out", "emb_size_aint_in", "emb_size_aint_out",
    "emb_size_rbf", "emb_size_cbf", "emb_size_sbf",
)  # fmt: skip


def tiny_overrides(reference_dir: Path, ema: bool = True) -> list[str]:
    cfg = json.loads((reference_dir / "tiny" / "config.json").read_text())["backbone"]
    return [
        "model.backbone.preset=jmp-s",
        *(f"model.backbone.{k}={cfg[k]}" for k in BACKBONE_KEYS),
        f"model.checkpoint={reference_dir / 'tiny' / 'lightning_checkpoint.ckpt'}",
        f"model.ema_weights={'true' if ema else 'false'}",
        "llrd={embedding: 0.3, blocks_0: 0.55, blocks_1: 0.625}",
        "precision=64-true",
    ]


def build(reference_dir: Path, seed: int = 0, ema: bool = True):
    cfg = load_config("rmd17-aspirin", "finetune", tiny_overrides(reference_dir, ema))
    train = [AtomsRecord.from_ase(a, source="t", index=i) for i, a in enumerate(molecules(4))]
    torch.manual_seed(seed)
    return build_task(cfg, train, steps_per_epoch=10, dtype=torch.float64)


def rmd17_structure(reference_dir: Path) -> tuple[int, object]:
    frames = ase.io.read(reference_dir / "tiny" / "structures.extxyz", index=":")
    i = next(k for k, a in enumerate(frames) if a.info["graph"] == "rmd17")
    return i, frames[i]


def embedding_error(task, reference_dir: Path) -> tuple[float, float]:
    i, atoms = rmd17_structure(reference_dir)
    expected = np.load(reference_dir / "tiny" / "expected.npz")[f"s{i}_embedding"]
    batch = collate([build_graph_sample(AtomsRecord.from_ase(atoms), graph_spec("rmd17"))])
    with torch.no_grad():
        emb = task.model.eval()(batch)["embedding"].numpy()
    return float(np.abs(emb - expected).max()), 1e-8 * float(np.abs(expected).max()) + 1e-10


def test_backbone_is_the_checkpoints_ema_backbone(reference_dir: Path) -> None:
    task = build(reference_dir)
    ema = load_checkpoint(reference_dir / "tiny" / "lightning_checkpoint.ckpt", dtype=torch.float64)
    ref = ema.state_dict()
    ours = task.model.state_dict()
    shared = [k for k in ours if k.startswith(("embedding.", "backbone."))]
    assert len(shared) > 100
    for k in shared:
        assert torch.equal(ours[k], ref[k]), k
    # gradient forces: no direct-force branch in the fine-tune backbone (authors: regress_forces=False)
    dropped = [k for k in ref if k.startswith("backbone.") and k not in ours]
    assert dropped and all("out_mlp_F" in k or "seq_forces" in k or "_rbf_F" in k for k in dropped)
    err, tol = embedding_error(task, reference_dir)
    assert err <= tol, f"embedding differs from the authors' by {err:.3e} > {tol:.3e}"


def test_raw_weights_are_not_the_ema(reference_dir: Path) -> None:
    raw = build(reference_dir, ema=False)
    ref = load_checkpoint(
        reference_dir / "tiny" / "lightning_checkpoint.ckpt", ema=False, dtype=torch.float64
    )
    key = "backbone.int_blocks.0.dense_ca.linear.weight"
    assert torch.equal(raw.model.state_dict()[key], ref.state_dict()[key])
    err, tol = embedding_error(raw, reference_dir)
    assert err > 1e3 * tol


def test_new_heads_are_random_and_seeded(reference_dir: Path) -> None:
    a, b, a2 = (
        build(reference_dir, seed=1),
        build(reference_dir, seed=2),
        build(reference_dir, seed=1),
    )
    sa, sb, sa2 = a.model.state_dict(), b.model.state_dict(), a2.model.state_dict()
    heads = [k for k in sa if k.startswith("heads.")]
    assert heads == [f"heads.energy.mlp.{i}.weight" for i in (0, 2, 4, 6, 8)]  # no biases (authors)
    assert all(not torch.equal(sa[k], sb[k]) for k in heads)
    assert all(torch.equal(sa[k], sa2[k]) for k in heads)
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("heads."))
    # PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = sa["heads.energy.mlp.0.weight"]
    assert float(w.abs().max()) <= 1 / np.sqrt(w.shape[1])


def test_architecture_mismatch_is_refused(reference_dir: Path) -> None:
    over = [
        o for o in tiny_overrides(reference_dir) if not o.startswith("model.backbone.emb_size_edge")
    ]
    cfg = load_config("rmd17-aspirin", "finetune", over)
    train = [AtomsRecord.from_ase(a) for a in molecules(2)]
    with pytest.raises(ConfigError, match=r"emb_size_edge: checkpoint 24, config 512"):
        build_task(cfg, train, steps_per_epoch=1)
