"""Presets: every one loads and validates, and the published ones carry the authors' numbers.

Expected numbers are typed in from jmp-reference §2.3-2.6, §3.1-3.3 and Appendix B (which quote
the authors' configs), not read from openjmp's own tables, so a transcription slip in either
place fails here.
"""

from __future__ import annotations

import pytest

from openjmp.config import FinetuneConfig, PretrainConfig, load_config, preset_names
from openjmp.config.finetune import ClassificationHead, ForcesHead, ScalarHead, SpatialExtentHead
from openjmp.errors import ConfigError
from openjmp.tasks.param_groups import JMP_L_LLRD, llrd_multipliers_for_depth

PAPER_BENCHMARKS = (
    [f"qm9-{t}" for t in "mu alpha eps_homo eps_lumo delta_eps r_2_abs zpve u_0 u h g c_v".split()]
    + [f"rmd17-{m}" for m in "aspirin azobenzene benzene ethanol malonaldehyde naphthalene paracetamol salicylic toluene uracil".split()]
    + [f"md22-{m}" for m in "ac-ala3-nhme dha stachyose at-at at-at-cg-cg buckyball-catcher double-walled_nanotube".split()]
    + ["spice-dipeptides", "spice-solvated_amino_acids"]
    + [f"matbench-{t}" for t in "jdft2d phonons dielectric log_gvrh log_kvrh perovskites mp_gap mp_e_form".split()]
    + ["qmof"]
)  # fmt: skip


def test_paper_has_forty_benchmarks_with_presets() -> None:
    assert len(PAPER_BENCHMARKS) == 40
    names = set(preset_names("finetune"))
    for name in PAPER_BENCHMARKS:
        assert {name, f"jmp-s-{name}", f"jmp-l-{name}"} <= names
    assert {"user-energy-forces", "user-property", "jmp-s-user-property"} <= names
    assert preset_names("pretrain") == ["demo", "jmp-l", "jmp-s"]


@pytest.mark.parametrize("name", preset_names("pretrain"))
def test_every_pretrain_preset_validates(name: str) -> None:
    assert isinstance(load_config(name, "pretrain"), PretrainConfig)


@pytest.mark.parametrize("name", preset_names("finetune"))
def test_every_finetune_preset_validates(name: str) -> None:
    cfg = load_config(name, "finetune")
    assert isinstance(cfg, FinetuneConfig)
    assert cfg.model.backbone.preset == ("jmp-s" if name.startswith("jmp-s-") else "jmp-l")


def test_jmp_l_pretrain_is_the_authors_recipe() -> None:
    cfg = load_config("jmp-l", "pretrain")
    assert cfg.model.backbone.preset == "jmp-l" and cfg.model.backbone.overrides() == {}
    o = cfg.optimizer
    assert (o.name, o.lr, o.betas, o.weight_decay, o.eps, o.amsgrad) == (
        "adamw",
        3e-4,
        (0.9, 0.95),
        0.1,
        1e-8,
        False,
    )
    s = cfg.schedule
    assert (s.warmup_steps, s.warmup_start_factor, s.min_lr_factor, s.max_epochs) == (
        2000,
        0.2,
        0.1,
        2.0,
    )
    assert cfg.ema_decay == 0.99
    assert cfg.clipping is not None and (cfg.clipping.algorithm, cfg.clipping.value) == (
        "norm",
        1.0,
    )
    assert cfg.edge_dropout == 0.1 and cfg.precision == "16-mixed" and cfg.shared_gradient_scaling
    assert (cfg.sampling.mode, cfg.sampling.temperature) == ("temperature", 2.0)
    assert cfg.trainer.max_epochs == 2 and cfg.trainer.matmul_precision == "medium"
    ds = {d.name: d for d in cfg.datasets}
    assert list(ds) == ["oc20", "oc22", "ani1x", "transition1x"]  # the authors' task order
    expected = {
        "oc20": (73, 24.901469505465872, 0.5111534595489502, 12.0, True),
        "oc22": (80, 25.229595396538468, 0.25678861141204834, 12.0, True),
        "ani1x": (15, 2.8700712783472118, 2.131422996520996, 8.0, False),
        "transition1x": (14, 1.787466168382901, 0.3591422140598297, 8.0, False),
    }
    for name, (f_coef, e_std, f_std, cutoff, pbc) in expected.items():
        d = ds[name]
        assert (d.force_coefficient, d.energy_coefficient) == (f_coef, 1.0)
        assert (d.energy_normalization.mean, d.energy_normalization.std) == (0.0, e_std)
        assert d.force_normalization.std == f_std
        assert (d.graph.cutoff, d.graph.max_neighbors, d.graph.pbc, d.graph.dummy_cell) == (
            cutoff,
            30,
            pbc,
            not pbc,
        )
        assert d.linear_references is not None and d.linear_references.fit
    assert ds["oc20"].train.options == {"ref_energies": "data/oc20/oc20_ref.pkl"}
    assert ds["transition1x"].val is not None and ds["transition1x"].val.options == {"split": "val"}


def test_jmp_s_pretrain_differs_only_in_backbone() -> None:
    s = load_config("jmp-s", "pretrain").model_dump(exclude={"name", "model"})
    l_ = load_config("jmp-l", "pretrain").model_dump(exclude={"name", "model"})
    assert s == l_
    assert load_config("jmp-s", "pretrain").model.backbone.preset == "jmp-s"


def test_demo_pretrain_follows_the_pilot() -> None:
    cfg = load_config("demo", "pretrain")
    assert cfg.model.backbone.overrides() == {
        "num_blocks": 2, "emb_size_atom": 64, "emb_size_edge": 64, "emb_size_trip_in": 32,
        "emb_size_trip_out": 32, "emb_size_aint_in": 32, "emb_size_aint_out": 32,
        "emb_size_quad_in": 16, "emb_size_quad_out": 16, "emb_size_rbf": 16, "emb_size_cbf": 16,
        "emb_size_sbf": 32, "num_radial": 32, "absolute_rbf_cutoff": 6.0,
    }  # fmt: skip
    for d in cfg.datasets:
        assert d.graph.spec().max_neighbors == (16, 10, 4, 533) and d.graph.cutoff == 6.0
    assert cfg.precision == "32-true" and cfg.trainer.accelerator == "cpu"
    assert cfg.trainer.max_time == "00:00:05:00" and cfg.schedule.max_steps == cfg.trainer.max_steps


def test_finetune_recipe_is_the_authors() -> None:
    cfg = load_config("qm9-u_0", "finetune")
    o = cfg.optimizer
    assert (o.lr, o.betas, o.weight_decay, o.eps) == (8e-5, (0.9, 0.95), 0.1, 1e-8)
    assert cfg.clipping is not None and (cfg.clipping.algorithm, cfg.clipping.value) == (
        "value",
        1.0,
    )
    s = cfg.schedule
    assert (s.warmup_epochs, s.warmup_start_factor, s.max_epochs, s.min_lr_factor) == (
        5.0,
        0.1,
        32.0,
        0.1,
    )
    p = s.plateau
    assert (p.factor, p.patience, p.threshold, p.threshold_mode, p.min_lr) == (
        0.8,
        3,
        1e-4,
        "rel",
        0.0,
    )
    assert cfg.early_stopping is not None
    assert (
        cfg.early_stopping.patience,
        cfg.early_stopping.min_delta,
        cfg.early_stopping.min_lr,
    ) == (50, 1e-8, 1e-8)
    assert cfg.trainer.max_epochs == 500 and cfg.trainer.max_time == "07:00:00:00"
    assert cfg.ema_decay is None and cfg.model.ema_weights and cfg.shared_gradient_scaling
    assert cfg.llrd == JMP_L_LLRD
    assert str(cfg.model.checkpoint).endswith("jmp-l.pt")


def test_jmp_s_finetune_uses_resampled_llrd() -> None:
    cfg = load_config("jmp-s-qm9-u_0", "finetune")
    assert cfg.llrd == llrd_multipliers_for_depth(4)
    assert str(cfg.model.checkpoint).endswith("jmp-s.pt") and cfg.name == "jmp-s-qm9-U_0"


RMD17 = {  # molecule: (energy mean, energy std, force std), Appendix B (means from configs/finetune/rmd17.py)
    "aspirin": (-17617.379, 0.26740, 1.2733363),
    "azobenzene": (-15553.118, 0.28661, 1.2940075),
    "benzene": (-6306.375, 0.10483, 0.90774584),
    "ethanol": (-4209.535, 0.18617, 1.1929188),
    "malonaldehyde": (-7254.904, 0.18123, 1.302443),
    "naphthalene": (-10478.192, 0.24923, 1.3102233),
    "paracetamol": (-13998.781, 0.26964, 1.2707518),
    "salicylic": (-13472.110, 0.24379, 1.3030343),
    "toluene": (-7373.347, 0.22534, 1.246547),
    "uracil": (-11266.352, 0.22271, 1.3692871),
}


@pytest.mark.parametrize("molecule", RMD17)
def test_rmd17_presets(molecule: str) -> None:
    cfg = load_config(f"rmd17-{molecule}", "finetune")
    g = cfg.data.graph
    assert (g.cutoff, g.max_neighbors, g.pbc) == (7.0, 100, False)
    assert g.spec().max_neighbors == (100, 66, 26, 3333)
    (head,) = cfg.heads
    assert isinstance(head, ForcesHead)  # force-only loss
    assert (head.forces, head.force_coefficient) == ("gradient", 10.0)
    mean, std, f_std = RMD17[molecule]
    assert head.energy_normalization.mean == pytest.approx(mean, abs=1e-3)
    assert head.energy_normalization.std == pytest.approx(std, abs=1e-5)
    assert head.force_normalization.std == f_std
    assert (
        cfg.data.split is not None
        and cfg.data.split.counts == (950, 50, None)
        and cfg.data.split.seed == 42
    )
    assert cfg.loader.batch_size == 1 and cfg.precision == "32-true"
    assert cfg.schedule.plateau.patience == 10
    assert cfg.early_stopping is not None
    assert (cfg.early_stopping.patience, cfg.early_stopping.min_lr) == (1000, 1e-10)
    assert cfg.trainer.max_epochs == 100_000 and cfg.gradient_forces
    assert cfg.monitor.metric == "forces_mae" and cfg.monitor.mode == "min"


def test_md22_presets() -> None:
    expected = {  # forces, batch, precision, train size
        "ac-ala3-nhme": ("direct", 2, "16-mixed", 6000),
        "dha": ("gradient", 1, "32-true", 8000),
        "stachyose": ("gradient", 1, "16-mixed", 8000),
        "at-at": ("gradient", 1, "16-mixed", 3000),
        "at-at-cg-cg": ("gradient", 1, "16-mixed", 2000),
        "buckyball-catcher": ("gradient", 1, "16-mixed", 600),
        "double-walled_nanotube": ("direct", 1, "16-mixed", 800),
    }
    for name, (forces, batch, precision, train) in expected.items():
        cfg = load_config(f"md22-{name}", "finetune")
        (head,) = cfg.heads
        assert isinstance(head, ForcesHead)
        assert (head.forces, head.force_coefficient) == (forces, 100.0)
        assert (cfg.loader.batch_size, cfg.precision) == (batch, precision)
        val = int(0.05 * train)
        assert cfg.data.split is not None and cfg.data.split.counts == (train - val, val, None)
        assert (cfg.data.graph.cutoff, cfg.data.graph.max_neighbors, cfg.data.graph.dummy_cell) == (
            12.0,
            30,
            True,
        )
    nanotube = load_config("md22-double-walled_nanotube", "finetune").heads[0]
    assert nanotube.force_normalization.std == 1.0137014
    assert nanotube.energy_normalization.mean == -338224.16


def test_spice_presets() -> None:
    for subset, f_std in [("dipeptides", 0.5386545), ("solvated_amino_acids", 0.81945145)]:
        cfg = load_config(f"spice-{subset}", "finetune")
        (head,) = cfg.heads
        assert (
            isinstance(head, ForcesHead)
            and head.forces == "gradient"
            and head.force_coefficient == 100.0
        )
        assert head.energy_target == "formation_energy" and head.force_normalization.std == f_std
        assert cfg.data.split is not None and cfg.data.split.fractions == (0.8, None, 0.1)


QM9 = {  # target: (mean, std), Appendix B
    "mu": (2.674587, 1.5054824), "alpha": (75.31013, 8.164021), "eps_HOMO": (-6.5347567, 0.59702325),
    "eps_LUMO": (0.323833, 1.273586), "delta_eps": (6.8585854, 1.283122), "ZPVE": (-0.00052343315, 0.04904531),
    "U_0": (0.0028667436, 1.0965848), "U": (0.0028711546, 1.0941933), "H": (0.0029801112, 1.0942822),
    "G": (0.000976671, 1.101572), "c_v": (-0.005799451, 2.2179737),
}  # fmt: skip
QM9_REF_C = {
    "ZPVE": 0.13694,
    "U_0": -1036.0,
    "U": -1036.0,
    "H": -1036.0,
    "G": -1036.1,
    "c_v": 2.0350,
}


@pytest.mark.parametrize("target", [*QM9, "R_2_Abs"])
def test_qm9_presets(target: str) -> None:
    cfg = load_config(f"qm9-{target}", "finetune")
    (head,) = cfg.heads
    assert cfg.loader.batch_size == 48 and cfg.monitor.metric == f"{target}_mae"
    assert (cfg.data.graph.cutoff, cfg.data.graph.max_neighbors, cfg.data.graph.pbc) == (
        8.0,
        30,
        False,
    )
    assert cfg.data.split is not None and cfg.data.split.counts == (None, 10_000, 10_000)
    if target == "R_2_Abs":
        assert isinstance(head, SpatialExtentHead) and head.normalization is None
        return
    assert isinstance(head, ScalarHead) and head.pooling == "sum"  # sum for every QM9 target
    assert head.normalization is not None
    assert (head.normalization.mean, head.normalization.std) == QM9[target]
    if target in QM9_REF_C:
        assert head.atom_references is not None and head.atom_references.values is not None
        assert head.atom_references.values[6] == QM9_REF_C[target]
    else:
        assert head.atom_references is None


def test_matbench_folds_are_selectable() -> None:
    f0 = load_config("matbench-mp_gap", "finetune")
    f3 = load_config("matbench-mp_gap-fold3", "finetune")
    assert (f0.data.fold, f3.data.fold) == (0, 3)
    assert f0.heads[0].normalization.mean == pytest.approx(1.23643, abs=1e-5)
    assert f3.heads[0].normalization.mean == pytest.approx(1.23007, abs=1e-5)
    assert f3.heads[0].normalization.std == pytest.approx(1.60037, abs=1e-5)
    assert f3.heads[0].pooling == "mean" and f3.data.graph.atom_count_caps
    assert f3.data.graph.spec(250).max_neighbors == (10, 6, 2, 333)
    assert f3.data.graph.spec(350).max_neighbors == (5, 3, 1, 166)
    assert f3.data.graph.spec(20).max_neighbors == (30, 20, 8, 1000)
    with pytest.raises(ConfigError, match="use preset matbench-mp_gap-fold3"):
        load_config("matbench-mp_gap", "finetune", ["data.fold=3"])
    assert load_config("matbench-phonons-fold1", "finetune").heads[0].pooling == "max"
    metal = load_config("matbench-mp_is_metal", "finetune")
    (head,) = metal.heads
    assert isinstance(head, ClassificationHead)
    assert head.class_weights == [1.0, 1.34219693] and head.dropout == 0.5 and head.pooling == "sum"
    assert (metal.monitor.metric, metal.monitor.mode) == ("y_balanced_accuracy", "max")


def test_qmof_preset() -> None:
    cfg = load_config("qmof", "finetune")
    (head,) = cfg.heads
    assert isinstance(head, ScalarHead) and head.pooling == "mean" and head.target == "bandgap"
    assert head.normalization is not None
    assert (head.normalization.mean, head.normalization.std) == (2.1866251527, 1.175752521125648)
    g = cfg.data.graph
    assert (g.cutoff, g.pbc, g.atom_count_caps) == (19.0, True, True) and cfg.loader.batch_size == 4


def test_user_presets() -> None:
    ef = load_config("user-energy-forces", "finetune", ["heads.0.stress_coefficient=1.0"])
    assert ef.data.format == "ase" and ef.heads[0].stress_coefficient == 1.0
    with pytest.raises(ConfigError, match="stress needs gradient forces"):
        load_config(
            "user-energy-forces",
            "finetune",
            ["heads.0.stress_coefficient=1", "heads.0.forces=direct"],
        )
    prop = load_config("jmp-s-user-property", "finetune", ["heads.0.target=band_gap"])
    assert prop.heads[0].target == "band_gap" and prop.heads[0].normalization.mean is None  # fitted
