"""Every family of fine-tuning presets builds a runnable module and trains one step.

For a sample of presets of each family (rMD17, MD22 with gradient and direct forces, SPICE,
QM9 scalars and the R² spatial-extent head, MatBench regression / max pooling /
classification / a later fold, QMOF, the two user presets, JMP-S and JMP-L recipes) the preset
is loaded with a tiny 2-block backbone (the JMP-L multiplier profile resampled to 2 blocks),
statistics are resolved on synthetic structures of the right kind (molecules with energies,
forces and QM9-style targets; periodic cells with MatBench / QMOF targets) and one optimizer
step is taken through the module's own ``configure_optimizers``. The test checks the preset's
heads, pooling and graph setting (cutoff, neighbour caps, atom-count caps, dummy cell), a
finite loss, and that the step moved the new heads.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from openjmp.config import load_config
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.records import AtomsRecord
from openjmp.tasks.finetune import FinetuneTask
from openjmp.tasks.finetune_stats import resolve_statistics
from openjmp.train.backbone import build_backbone, uses_direct_forces

from helpers.ft_helpers import TINY_BACKBONE, llrd_override, molecules

QM9_TARGETS = [
    "mu",
    "alpha",
    "eps_HOMO",
    "eps_LUMO",
    "delta_eps",
    "R_2_Abs",
    "ZPVE",
    "U_0",
    "U",
    "H",
    "G",
    "c_v",
]
MATBENCH_TARGETS = [
    "exfoliation_en",
    "last phdos peak",
    "n",
    "log10(G_VRH)",
    "log10(K_VRH)",
    "e_form",
    "gap pbe",
]


def molecule_records(n: int = 6) -> list[AtomsRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i, atoms in enumerate(molecules(n)):
        targets = {t: float(rng.normal()) for t in QM9_TARGETS}
        targets["formation_energy"] = float(atoms.get_potential_energy() - 3.0)
        out.append(
            AtomsRecord.from_ase(atoms, source="synthetic", index=i).replace(targets=targets)
        )
    return out


def crystal_records(n: int = 6) -> list[AtomsRecord]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=i)
        targets = {t: float(rng.normal()) for t in MATBENCH_TARGETS}
        targets["is_metal"] = bool(i % 2)
        targets["bandgap"] = float(rng.uniform(0, 3))
        targets["y"] = float(rng.normal())
        rec = AtomsRecord.from_ase(atoms, source="synthetic", index=i)
        out.append(
            rec.replace(energy=float(rng.normal()), forces=rng.normal(size=(4, 3)), targets=targets)
        )
    return out


# preset -> (structures, expected head kinds, pooling of the first head or None, graph checks)
CASES = {
    "rmd17-aspirin": ("mol", ["forces"], None, {"cutoff": 7.0, "caps": (100, 66, 26, 3333)}),
    "jmp-s-rmd17-uracil": ("mol", ["forces"], None, {"cutoff": 7.0}),
    "md22-ac-ala3-nhme": (
        "mol",
        ["forces"],
        None,
        {"cutoff": 12.0, "dummy_cell": True, "direct": True},
    ),
    "md22-dha": ("mol", ["forces"], None, {"cutoff": 12.0, "dummy_cell": True}),
    "spice-dipeptides": ("mol", ["forces"], None, {"cutoff": 12.0, "dummy_cell": True}),
    "qm9-u_0": ("mol", ["scalar"], "sum", {"cutoff": 8.0, "caps": (30, 20, 8, 1000)}),
    "qm9-eps_homo": ("mol", ["scalar"], "sum", {"cutoff": 8.0}),
    "jmp-s-qm9-r_2_abs": ("mol", ["spatial_extent"], None, {"cutoff": 8.0}),
    "matbench-phonons": ("xtal", ["scalar"], "max", {"cutoff": 12.0, "atom_caps": True}),
    "matbench-mp_is_metal": ("xtal", ["classification"], "sum", {"cutoff": 12.0}),
    "matbench-mp_e_form-fold3": ("xtal", ["scalar"], "mean", {"cutoff": 12.0, "atom_caps": True}),
    "jmp-s-matbench-jdft2d": ("xtal", ["scalar"], "mean", {"cutoff": 12.0}),
    "qmof": ("xtal", ["scalar"], "mean", {"cutoff": 19.0, "atom_caps": True}),
    "user-energy-forces": ("xtal", ["energy_forces"], None, {"cutoff": 12.0}),
    "user-property": ("xtal", ["scalar"], "mean", {"cutoff": 12.0}),
}


@pytest.mark.parametrize("preset", list(CASES))
def test_preset_builds_and_trains_one_step(preset: str) -> None:
    kind, heads, pooling, graph = CASES[preset]
    bb = dict(TINY_BACKBONE, num_blocks=2)
    overrides = [f"model.backbone.{k}={v}" for k, v in bb.items()]
    overrides += ["model.checkpoint=null", llrd_override(2), "precision=32-true"]
    cfg = load_config(preset, "finetune", overrides)

    assert [h.kind for h in cfg.heads] == heads
    if pooling is not None:
        assert cfg.heads[0].pooling == pooling
    g = cfg.data.graph
    assert g.cutoff == graph["cutoff"]
    if "caps" in graph:
        assert g.spec(20).max_neighbors == graph["caps"]
    if graph.get("atom_caps"):  # MatBench / QMOF: k = 10 above 200 atoms, 5 above 300 (errata 3)
        assert g.spec(250).max_neighbors == (10, 6, 2, 333)
        assert g.spec(301).max_neighbors == (5, 3, 1, 166)
        assert g.pbc
    assert g.dummy_cell == graph.get("dummy_cell", False)

    records = molecule_records() if kind == "mol" else crystal_records()
    stats = resolve_statistics(list(cfg.heads), records)
    backbone = build_backbone(
        cfg.model, direct_forces=uses_direct_forces(cfg), edge_dropout=cfg.edge_dropout
    )[0]
    assert backbone.direct_forces == graph.get("direct", False)
    torch.manual_seed(0)
    task = FinetuneTask(cfg, backbone.to_dict(), stats, steps_per_epoch=10)
    samples = [build_graph_sample(r, g.spec(r.natoms)) for r in records[:2]]
    batch = collate(samples)
    if g.dummy_cell:
        assert torch.equal(batch.cell[0], 1000.0 * torch.eye(3, dtype=batch.cell.dtype))

    opt_cfg = task.configure_optimizers()
    opt = opt_cfg["optimizer"]
    assert [grp["name"] for grp in opt.param_groups] == [
        "embedding",
        "blocks_0",
        "blocks_1",
        "rest",
    ]
    task.train()
    before = {
        n: p.detach().clone()
        for n, p in task.named_parameters()
        if ".heads." in f".{n}" or n.startswith("targets.")
    }
    loss = torch.stack(list(task.losses(batch).values())).sum()
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    task.on_before_optimizer_step(opt)
    opt.step()
    moved = [n for n, p in task.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert moved, "the step did not change any head parameter"
    preds = task.eval()(batch)
    for t in task.targets.values():
        for key in t.outputs():
            assert torch.isfinite(preds[key].detach()).all()
