"""The paper's downstream benchmarks as data: one small table per dataset (jmp-reference §3.3,
Appendix B; the authors' config/all-jmp-l-configs.py and src/jmp/configs/finetune/*.py).

`benchmark_parts()` turns the tables into the dataset-specific half of a fine-tuning config
(data, heads, monitor, batch size, precision and the few recipe deviations such as rMD17's
patience); `openjmp.config.presets` lays them over the JMP-S or JMP-L recipe. Preset names are
``qm9-<target>``, ``rmd17-<molecule>``, ``md22-<molecule>``, ``spice-<subset>``,
``matbench-<task>[-fold<k>]`` (fold 0 by default) and ``qmof``, lower case. Data paths are
placeholders under ``data/``: point them at your copies with ``--set data.train.path=...``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# --- QM9: (mean, std) after atom references; Appendix B (eps_HOMO per errata 8) ---------------
QM9_NORMALIZATION: dict[str, tuple[float, float]] = {
    "mu": (2.674587, 1.5054824),
    "alpha": (75.31013, 8.164021),
    "eps_HOMO": (-6.5347567, 0.59702325),
    "eps_LUMO": (0.323833, 1.273586),
    "delta_eps": (6.8585854, 1.283122),
    "R_2_Abs": (1189.6819, 280.0421),  # not used: the R² head is trained unnormalised
    "ZPVE": (-0.00052343315, 0.04904531),
    "U_0": (0.0028667436, 1.0965848),
    "U": (0.0028711546, 1.0941933),
    "H": (0.0029801112, 1.0942822),
    "G": (0.000976671, 1.101572),
    "c_v": (-0.005799451, 2.2179737),
}
# Per-element references indexed by Z = 0..9, verbatim (src/jmp/tasks/finetune/dataset_config.py).
QM9_ATOM_REFS: dict[str, list[float]] = {
    "ZPVE": [0.0, 3.1213e-01, -1.0408e-17, 2.7756e-17, -1.3878e-17, 0.0, 1.3694e-01, 1.3955e-01, 1.1424e-01, 9.3038e-02],
    "U_0": [0.0, -1.6430e01, 1.1369e-13, -4.5475e-13, 0.0, 0.0, -1.0360e03, -1.4898e03, -2.0470e03, -2.7175e03],
    "U": [0.0, -1.6419e01, 2.2737e-13, -4.5475e-13, 0.0, 0.0, -1.0360e03, -1.4898e03, -2.0470e03, -2.7175e03],
    "H": [0.0, -1.6419e01, 3.4106e-13, -4.5475e-13, 0.0, 0.0, -1.0360e03, -1.4898e03, -2.0470e03, -2.7175e03],
    "G": [0.0, -1.6443e01, 3.4106e-13, -4.5475e-13, 0.0, 0.0, -1.0361e03, -1.4899e03, -2.0471e03, -2.7176e03],
    "c_v": [0.0, 1.2409e00, -3.3307e-16, 4.4409e-16, -1.1102e-16, 0.0, 2.0350e00, 2.7877e00, 3.0860e00, 3.3401e00],
}  # fmt: skip

# --- rMD17: energy mean, energy std (eV), force std (eV/Å); src/jmp/configs/finetune/rmd17.py --
RMD17: dict[str, tuple[float, float, float]] = {
    "aspirin": (-17617.379355234374, 0.2673998440577667, 1.2733363),
    "azobenzene": (-15553.118351233397, 0.2866098335926971, 1.2940075),
    "benzene": (-6306.374855859375, 0.10482645661015047, 0.90774584),
    "ethanol": (-4209.534573266602, 0.18616576961275716, 1.1929188),
    "malonaldehyde": (-7254.903633896484, 0.1812291921138577, 1.302443),
    "naphthalene": (-10478.192319667969, 0.24922674853668708, 1.3102233),
    "paracetamol": (-13998.780924130859, 0.26963984094801224, 1.2707518),
    "salicylic": (-13472.110348867187, 0.2437920552529055, 1.3030343),
    "toluene": (-7373.347077485351, 0.22534282741069667, 1.246547),
    "uracil": (-11266.351949697266, 0.2227113171300836, 1.3692871),
}

# --- MD22: train size, batch, gradient forces, mixed precision, energy mean/std, force std -----
MD22: dict[str, tuple[int, int, bool, bool, float, float, float]] = {
    "Ac-Ala3-NHMe": (6000, 2, False, True, -26913.953, 0.35547638, 1.1291506),
    "DHA": (8000, 1, True, False, -27383.035, 0.41342595, 1.1258113),
    "stachyose": (8000, 1, True, True, -68463.59, 0.5940788, 1.1104717),
    "AT-AT": (3000, 1, True, True, -50080.08, 0.47309175, 1.2109985),
    "AT-AT-CG-CG": (2000, 1, True, True, -101034.23, 0.680055, 1.2021886),
    "buckyball-catcher": (600, 1, True, True, -124776.7, 0.64662045, 1.0899031),
    "double-walled_nanotube": (800, 1, False, True, -338224.16, 3.3810701, 1.0137014),
}

# --- SPICE: force std (eV/Å); energy stats in the authors' configs are total-energy, unused ----
SPICE: dict[str, float] = {"dipeptides": 0.5386545, "solvated_amino_acids": 0.81945145}

# --- MatBench: target column, batch, mixed precision, pooling; (mean, std) per fold -------------
MATBENCH_TASKS: dict[str, tuple[str, int, bool, str]] = {
    "jdft2d": ("exfoliation_en", 3, False, "mean"),
    "phonons": ("last phdos peak", 8, True, "max"),
    "dielectric": ("n", 8, True, "mean"),
    "log_gvrh": ("log10(G_VRH)", 8, True, "mean"),
    "log_kvrh": ("log10(K_VRH)", 8, True, "mean"),
    "perovskites": ("e_form", 8, True, "mean"),
    "mp_gap": ("gap pbe", 2, False, "mean"),
    "mp_e_form": ("e_form", 6, True, "mean"),
    "mp_is_metal": ("is_metal", 3, False, "sum"),  # in the authors' code, not in the paper tables
}
MATBENCH_STATS: dict[str, list[tuple[float, float]]] = {
    "jdft2d": [
        (110.63706001904778, 132.02502987887982),
        (100.05996525195053, 114.26362221432791),
        (101.59535193788061, 112.45760038504558),
        (99.43551549230911, 109.9220303290942),
        (95.50851385805468, 76.27587565670332),
    ],
    "phonons": [
        (602.9007780432183, 471.03858838413055),
        (613.7996473907606, 486.75099875453213),
        (619.3868976573087, 495.2975486965762),
        (609.7402387661577, 462.3438660855412),
        (595.4547502676089, 476.8567310885976),
    ],
    "dielectric": [
        (2.417849270334958, 2.208662738016193),
        (2.3716402963883074, 2.1271523121706912),
        (2.354418196731436, 1.5712251872961516),
        (2.392308273978868, 2.0724149898647544),
        (2.3891527750974495, 2.011348533899877),
    ],
    "log_gvrh": [
        (1.5557434474198688, 0.37307197984408746),
        (1.5584101768747889, 0.36743473539736493),
        (1.55746252819908, 0.36800038945046654),
        (1.5543022349873286, 0.3684552493569905),
        (1.5595705795473838, 0.37039750391284176),
    ],
    "log_kvrh": [
        (1.880001033036957, 0.36820395518377785),
        (1.883820392919235, 0.3679308395031994),
        (1.883778380784775, 0.3724392829717956),
        (1.8828457515367547, 0.3731179944882516),
        (1.8862681006404232, 0.3671596024523317),
    ],
    "perovskites": [
        (1.4726657310327749, 0.7384309800882398),
        (1.4690728968876414, 0.736635027626099),
        (1.4702980269132337, 0.7456716470700677),
        (1.46773815420175, 0.7431740904365189),
        (1.478002311375268, 0.7435117654840315),
    ],
    "mp_gap": [
        (1.236432240252091, 1.6096424425437108),
        (1.2345678083402052, 1.6044708412420103),
        (1.2352391374131229, 1.6058092380465256),
        (1.230066812934386, 1.6003749533498033),
        (1.2350543114618917, 1.6035590734723943),
    ],
    "mp_e_form": [
        (-1.4371594843879998, 1.1577096884761835),
        (-1.4372781184639032, 1.1576872656463288),
        (-1.4353308741245294, 1.1568986659292604),
        (-1.4337824626302396, 1.1570679204976484),
        (-1.437067044514929, 1.1567267481888575),
    ],
}
MATBENCH_IS_METAL_WEIGHTS = [1.0, 1.34219693]

QMOF_NORMALIZATION = (2.1866251527, 1.175752521125648)


def _graph(setting: str) -> dict[str, Any]:
    """The dataset's graph: the authors' setting in `openjmp.graph.spec.GRAPH_SETTINGS`."""
    return {"setting": setting}


def _forces_part(
    fmt: str, path: str, split: dict[str, Any], graph: dict[str, Any], head: dict[str, Any]
) -> dict[str, Any]:
    return {
        "data": {"format": fmt, "train": {"path": path}, "split": split, "graph": graph},
        "heads": [head],
        "monitor": {"metric": "forces_mae", "mode": "min"},
    }


def _qm9(target: str) -> dict[str, Any]:
    mean, std = QM9_NORMALIZATION[target]
    if target == "R_2_Abs":
        head: dict[str, Any] = {"kind": "spatial_extent", "target": target, "normalization": None}
    else:
        head = {
            "kind": "scalar",
            "target": target,
            "pooling": "sum",
            "normalization": {"mean": mean, "std": std},
        }
        if target in QM9_ATOM_REFS:
            head["atom_references"] = {"values": QM9_ATOM_REFS[target]}
    return {
        "name": f"qm9-{target}",
        "data": {
            "format": "qm9",
            "train": {"path": "data/qm9/dsgdb9nsd.xyz.tar.bz2"},
            "split": {"counts": [None, 10_000, 10_000], "seed": 42},
            "graph": _graph("qm9"),
        },
        "heads": [head],
        "monitor": {"metric": f"{target}_mae", "mode": "min"},
        "loader": {"batch_size": 48},
        "precision": "16-mixed",
    }


def _rmd17(molecule: str) -> dict[str, Any]:
    mean, std, f_std = RMD17[molecule]
    head = {
        "kind": "forces",
        "forces": "gradient",
        "force_coefficient": 10.0,
        "energy_normalization": {"mean": mean, "std": std},
        "force_normalization": {"std": f_std},
    }
    part = _forces_part(
        "md_npz",
        f"data/rmd17/npz_data/rmd17_{molecule}.npz",
        {"counts": [950, 50, None], "seed": 42},
        _graph("rmd17"),
        head,
    )
    part.update(
        name=f"rmd17-{molecule}",
        loader={"batch_size": 1},
        precision="32-true",
        schedule={"plateau": {"patience": 10}},
        early_stopping={"patience": 1000, "min_delta": 1e-8, "min_lr": 1e-10},
        trainer={"max_epochs": 100_000},
    )
    return part


def _md22(molecule: str) -> dict[str, Any]:
    train_size, batch, gradient, amp, mean, std, f_std = MD22[molecule]
    val = int(train_size * 0.05)
    head = {
        "kind": "forces",
        "forces": "gradient" if gradient else "direct",
        "force_coefficient": 100.0,
        "energy_normalization": {"mean": mean, "std": std},
        "force_normalization": {"std": f_std},
    }
    part = _forces_part(
        "md_npz",
        f"data/md22/md22_{molecule}.npz",
        {"counts": [train_size - val, val, None], "seed": 42},
        _graph("md22"),
        head,
    )
    part.update(
        name=f"md22-{molecule}",
        loader={"batch_size": batch},
        precision="16-mixed" if amp else "32-true",
    )
    return part


def _spice(subset: str) -> dict[str, Any]:
    head = {
        "kind": "forces",
        "forces": "gradient",
        "energy_target": "formation_energy",
        "force_coefficient": 100.0,
        "force_normalization": {"std": SPICE[subset]},
    }
    part = _forces_part(
        "spice",
        f"data/spice/{subset}.h5",
        {"fractions": [0.8, None, 0.1], "seed": 42},
        _graph("spice"),
        head,
    )
    part.update(name=f"spice-{subset}", loader={"batch_size": 2}, precision="16-mixed")
    return part


def _matbench(task: str, fold: int) -> dict[str, Any]:
    column, batch, amp, pooling = MATBENCH_TASKS[task]
    if task == "mp_is_metal":
        head: dict[str, Any] = {
            "kind": "classification",
            "name": "y",
            "target": column,
            "num_classes": 2,
            "class_weights": MATBENCH_IS_METAL_WEIGHTS,
            "dropout": 0.5,
            "pooling": pooling,
        }
        monitor = {"metric": "y_balanced_accuracy", "mode": "max"}
    else:
        mean, std = MATBENCH_STATS[task][fold]
        head = {
            "kind": "scalar",
            "name": "y",
            "target": column,
            "pooling": pooling,
            "normalization": {"mean": mean, "std": std},
        }
        monitor = {"metric": "y_mae", "mode": "min"}
    return {
        "name": f"matbench-{task}-fold{fold}",
        "data": {
            "format": "matbench",
            "train": {"path": f"data/matbench/matbench_{task}.json.gz"},
            "fold": fold,
            "split": {"fractions": [0.9, None, 0.0], "seed": 42},
            "graph": _graph("matbench"),
        },
        "heads": [head],
        "monitor": monitor,
        "loader": {"batch_size": batch},
        "precision": "16-mixed" if amp else "32-true",
    }


def _qmof() -> dict[str, Any]:
    mean, std = QMOF_NORMALIZATION
    return {
        "name": "qmof",
        "data": {
            "format": "qmof",
            "train": {"path": "data/qmof/qmof_database"},
            "split": {"fractions": [0.8, None, 0.1], "seed": 42},
            "graph": _graph("qmof"),
        },
        # pooling: mean as config/all-jmp-l-configs.py (errata 7; configs/finetune/qmof.py says sum)
        "heads": [
            {
                "kind": "scalar",
                "name": "y",
                "target": "bandgap",
                "pooling": "mean",
                "normalization": {"mean": mean, "std": std},
            }
        ],
        "monitor": {"metric": "y_mae", "mode": "min"},
        "loader": {"batch_size": 4},
        "precision": "16-mixed",
    }


def benchmark_parts() -> dict[str, dict[str, Any]]:
    """Preset name (lower case) -> dataset-specific config part, for every benchmark."""
    parts: dict[str, dict[str, Any]] = {}
    for target in QM9_NORMALIZATION:
        parts[f"qm9-{target}".lower()] = _qm9(target)
    for molecule in RMD17:
        parts[f"rmd17-{molecule}"] = _rmd17(molecule)
    for molecule in MD22:
        parts[f"md22-{molecule}".lower()] = _md22(molecule)
    for subset in SPICE:
        parts[f"spice-{subset}"] = _spice(subset)
    for task in MATBENCH_TASKS:
        parts[f"matbench-{task}"] = _matbench(task, 0)
        for fold in range(5):
            parts[f"matbench-{task}-fold{fold}"] = _matbench(task, fold)
    parts["qmof"] = _qmof()
    return parts


def check_matbench_fold(fmt: str, fold: int | None, heads: Sequence[Any]) -> None:
    """Raise if a MatBench run (data format ``fmt``, ``fold``) normalises ``heads`` (head
    configs) with another fold's statistics (e.g. after ``--set data.fold=3`` on a fold-0
    preset): each fold has its own (mean, std)."""
    if fmt != "matbench" or fold is None:
        return
    for head in heads:
        norm = getattr(head, "normalization", None)
        if norm is None or norm.mean is None:
            continue
        for task, stats in MATBENCH_STATS.items():
            if MATBENCH_TASKS[task][0] != getattr(head, "target", None):
                continue
            folds = [k for k, (m, s) in enumerate(stats) if (m, s) == (norm.mean, norm.std)]
            if folds and fold not in folds:
                raise ValueError(
                    f"data.fold is {fold} but the normalisation is MatBench {task} fold "
                    f"{folds[0]}'s; use preset matbench-{task}-fold{fold} or set the "
                    f"normalisation explicitly"
                )
