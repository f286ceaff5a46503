"""Evaluate a fine-tuned checkpoint: metrics in the paper's units, parity plots, a JSON file.

    openjmp evaluate runs/jmp-l-rmd17-aspirin/checkpoints/best-step=*.ckpt --split test

The checkpoint carries its configuration and statistics; ``config`` (a `FinetuneConfig`, e.g.
with another data path) replaces the saved one for the data. For each part it writes
``evaluation_<part>.json`` (metrics in physical units, the same MAEs in the paper's units, and
the paper's JMP-S / JMP-L numbers where the run is one of the paper's benchmarks) and
``parity_<part>_<output>.png``.

Paper units (jmp-reference §5): forces meV/Å; QM9 ε_HOMO, ε_LUMO, Δε, ZPVE, U0, U, H, G meV
(the data are eV), μ D, α a0³, R² a0², c_v cal/mol/K; MatBench mp_e_form meV/atom (data eV/atom),
the other MatBench tasks in their native units; QMOF band gap eV.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openjmp.config.finetune import EnergyForcesHead, FinetuneConfig, ForcesHead
from openjmp.io.paths import atomic_write_bytes, check_writable_dir
from openjmp.plots import parity
from openjmp.tasks.finetune_targets import FORCES, target_name
from openjmp.train.finetune.data import FinetuneDataModule, load_finetune_splits
from openjmp.train.finetune.full import evaluation_device, load_task, predict_dataset

_MEV = (1000.0, "meV")
QM9_UNITS: dict[str, tuple[float, str]] = {
    "mu": (1.0, "D"),
    "alpha": (1.0, "a0^3"),
    "eps_HOMO": _MEV,
    "eps_LUMO": _MEV,
    "delta_eps": _MEV,
    "R_2_Abs": (1.0, "a0^2"),
    "ZPVE": _MEV,
    "U_0": _MEV,
    "U": _MEV,
    "H": _MEV,
    "G": _MEV,
    "c_v": (1.0, "cal/mol/K"),
}
MATBENCH_UNITS: dict[str, tuple[float, str]] = {
    "exfoliation_en": (1.0, "meV/atom"),
    "last phdos peak": (1.0, "cm^-1"),
    "n": (1.0, ""),
    "log10(G_VRH)": (1.0, "log10 GPa"),
    "log10(K_VRH)": (1.0, "log10 GPa"),
    "e_form": (1000.0, "meV/atom"),  # mp_e_form; perovskites is handled by the task name
    "gap pbe": (1.0, "eV"),
}

# Paper Tables 2-5 (test MAE in the units above): preset name (without jmp-s-/jmp-l-) -> (JMP-S, JMP-L).
# MatBench: mean over the 5 folds (fold 0 in parentheses in the paper is not repeated here).
PAPER_RESULTS: dict[str, tuple[float, float]] = {
    "qm9-mu": (0.010, 0.008),
    "qm9-alpha": (0.037, 0.032),
    "qm9-eps_homo": (11.1, 8.8),
    "qm9-eps_lumo": (10.8, 8.6),
    "qm9-delta_eps": (23.1, 19.1),
    "qm9-r_2_abs": (0.200, 0.163),
    "qm9-zpve": (1.0, 0.9),
    "qm9-u_0": (3.3, 2.9),
    "qm9-u": (3.3, 2.8),
    "qm9-h": (3.3, 2.8),
    "qm9-g": (4.5, 4.3),
    "qm9-c_v": (0.018, 0.017),
    "rmd17-aspirin": (6.7, 5.1),
    "rmd17-benzene": (0.7, 0.3),
    "rmd17-ethanol": (2.8, 2.0),
    "rmd17-malonaldehyde": (5.3, 4.0),
    "rmd17-naphthalene": (2.2, 1.4),
    "rmd17-salicylic": (4.6, 3.4),
    "rmd17-toluene": (2.3, 1.5),
    "rmd17-uracil": (4.0, 2.5),
    "rmd17-paracetamol": (5.3, 4.0),
    "rmd17-azobenzene": (4.5, 3.3),
    "md22-ac-ala3-nhme": (2.64, 1.92),
    "md22-dha": (2.01, 1.37),
    "md22-stachyose": (2.69, 1.73),
    "md22-at-at": (3.02, 1.98),
    "md22-at-at-cg-cg": (3.28, 2.11),
    "md22-buckyball-catcher": (3.08, 2.26),
    "md22-double-walled_nanotube": (8.36, 6.17),
    "spice-solvated_amino_acids": (5.71, 4.75),
    "spice-dipeptides": (4.71, 3.64),
    "matbench-jdft2d": (30.16, 29.94),
    "matbench-phonons": (22.77, 20.57),
    "matbench-dielectric": (0.252, 0.249),
    "matbench-log_gvrh": (0.062, 0.059),
    "matbench-log_kvrh": (0.046, 0.045),
    "matbench-perovskites": (0.028, 0.026),
    "matbench-mp_gap": (0.121, 0.091),
    "matbench-mp_e_form": (13.3, 10.1),
    "qmof": (0.18, 0.16),
}


def paper_unit(config: FinetuneConfig, output: str) -> tuple[float, str]:
    """(factor, unit): value in the data's unit × factor = value in the paper's unit."""
    if output == FORCES:
        return 1000.0, "meV/Å"
    fmt = config.data.format
    for head in config.heads:
        if isinstance(head, EnergyForcesHead | ForcesHead):
            if output == "energy":
                return _MEV
            continue
        if target_name(head) != output:
            continue
        if fmt == "qm9" and head.target in QM9_UNITS:
            return QM9_UNITS[head.target]
        if fmt == "matbench":
            if "perovskites" in config.name:
                return 1.0, "eV/unit cell"
            return MATBENCH_UNITS.get(head.target, (1.0, ""))
        if fmt == "qmof":
            return 1.0, "eV"
    return 1.0, ""


def benchmark_name(config: FinetuneConfig) -> str | None:
    """The paper benchmark a run is (from its preset name), e.g. "rmd17-aspirin", or None."""
    name = re.sub(r"^jmp-[sl]-", "", config.name.lower())
    name = re.sub(r"-fold\d$", "", name)
    return name if name in PAPER_RESULTS else None


def paper_metrics(config: FinetuneConfig, metrics: dict[str, float]) -> dict[str, dict[str, Any]]:
    """``<output>_mae`` converted to the paper's unit: {metric: {"value", "unit"}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        if not key.endswith("_mae"):
            continue
        factor, unit = paper_unit(config, key[: -len("_mae")])
        out[key] = {"value": value * factor, "unit": unit}
    return out


def _primary(config: FinetuneConfig) -> str:
    return config.monitor.metric


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    config: FinetuneConfig | None = None,
    parts: Sequence[str] = ("test",),
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    plots: bool = True,
) -> dict[str, dict[str, Any]]:
    """Evaluate ``checkpoint`` on ``parts``; returns {part: report} and writes the files."""
    checkpoint = Path(checkpoint)
    run_dir = checkpoint.parent.parent
    out = check_writable_dir(
        Path(out_dir) if out_dir is not None else run_dir / "evaluation", "evaluation directory"
    )
    task = load_task(checkpoint)
    cfg = config or task.config
    out.mkdir(parents=True, exist_ok=True)
    cache = run_dir / "cache" if (run_dir / "cache").is_dir() else out / "cache"
    splits = load_finetune_splits(cfg.data, cache)
    dm = FinetuneDataModule(splits, cfg.data.graph, cfg.loader)
    bs = batch_size or cfg.loader.eval_batch_size or cfg.loader.batch_size
    bench = benchmark_name(cfg)
    reports: dict[str, dict[str, Any]] = {}
    for part in parts:
        ds = dm.dataset(part)
        if ds is None:
            raise ValueError(f"the data has no {part} part")
        metrics, preds, labels = predict_dataset(task, ds, bs, device=evaluation_device(cfg))
        report: dict[str, Any] = {
            "checkpoint": str(checkpoint),
            "run": cfg.name,
            "part": part,
            "structures": len(ds),
            "metrics": metrics,
            "paper_units": paper_metrics(cfg, metrics),
            "monitor": _primary(cfg),
        }
        if bench is not None:
            s, large = PAPER_RESULTS[bench]
            report["paper"] = {"benchmark": bench, "JMP-S": s, "JMP-L": large, "split": "test"}
        figures = []
        if plots:
            for key, p in preds.items():
                if key not in labels or p.ndim != labels[key].ndim:
                    continue  # class logits have no parity plot
                factor, unit = paper_unit(cfg, key)
                path = out / f"parity_{part}_{key}.png"
                parity(
                    {cfg.name: (labels[key] * factor, p * factor)},
                    path,
                    title=f"{key} ({part})",
                    unit=unit,
                )
                figures.append(str(path))
        report["figures"] = figures
        atomic_write_bytes(out / f"evaluation_{part}.json", json.dumps(report, indent=1).encode())
        reports[part] = report
    return reports


def format_report(report: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    lines = [f"{report['run']} [{report['part']}, {report['structures']} structures]"]
    for key, v in report["paper_units"].items():
        lines.append(f"  {key:28s} {v['value']:.6g} {v['unit']}")
    for key, v in report["metrics"].items():
        if not key.endswith(("_mae", "_rmse")):
            lines.append(f"  {key:28s} {v:.6g}")
    if "paper" in report:
        p = report["paper"]
        lines.append(
            f"  paper ({p['benchmark']}, test MAE): JMP-S {p['JMP-S']}, JMP-L {p['JMP-L']}"
        )
    return "\n".join(lines)


def load_report(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


__all__ = [
    "PAPER_RESULTS",
    "benchmark_name",
    "evaluate_checkpoint",
    "format_report",
    "paper_metrics",
    "paper_unit",
]
