"""The study's configurations: the demo pre-training run and the downstream fine-tuning tasks.

Everything is built from the shipped presets (``demo`` pre-training) and plain dictionaries
validated by `FinetuneConfig`, so the demo runs exactly the code a user runs with
``openjmp pretrain`` / ``openjmp finetune``. Both fine-tuning arms of a task share one config
except ``model.checkpoint`` (pre-trained weights or none) - same data, split, head, seeds and
budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from openjmp.config import FinetuneConfig, PretrainConfig
from openjmp.config.load import load_pretrain_config

Kind = Literal["forces", "energy", "electronic"]


@dataclass(frozen=True)
class DemoTask:
    """One downstream task of the study.

    Attributes:
        name: short identifier (directory and table row).
        title: human description.
        kind: forces / energy (what JMP's energy-and-force pre-training should transfer to) or
            electronic (a property the pre-training labels carry no information about).
        metric: the monitored validation / reported test metric of the fine-tuning run.
        output: the prediction key holding the test predictions (parity plot).
        unit: unit of the metric as reported (after ``factor``).
        factor: multiplies the metric (eV -> meV).
    """

    name: str
    title: str
    kind: Kind
    metric: str
    output: str
    unit: str
    factor: float
    data: dict[str, Any]
    heads: list[dict[str, Any]]


MOLECULE_GRAPH = {"cutoff": 6.0, "max_neighbors": 16, "pbc": False}
CRYSTAL_GRAPH = {"cutoff": 6.0, "max_neighbors": 16, "pbc": True}
SPLIT = {"fractions": [0.4, 0.1, None], "seed": 42}
"""train 40 %, val 10 %, test the rest: a small-data regime, as JMP's downstream tasks."""


def demo_tasks(corpus: Path) -> list[DemoTask]:
    """The study's fine-tuning tasks on the embedded corpus at ``corpus``."""
    corpus = Path(corpus)
    qm9 = {"format": "qm9", "train": {"path": str(corpus / "qm9_like" / "dsgdb9nsd.xyz.tar.bz2")}}
    return [
        DemoTask(
            name="md_forces",
            title="ethanol MD forces (rMD17-like, GFN2-xTB)",
            kind="forces",
            metric="forces_mae",
            output="forces",
            unit="meV/Å",
            factor=1000.0,
            data={
                "format": "rmd17",
                "train": {"path": str(corpus / "rmd17_like/rmd17/npz_data/rmd17_ethanol.npz")},
                "split": {"fractions": [0.25, 0.125, None], "seed": 42},
                "graph": MOLECULE_GRAPH,
            },
            heads=[
                {
                    "kind": "energy_forces",
                    "forces": "direct",
                    "energy_coefficient": 1.0,
                    "force_coefficient": 10.0,
                    "linear_references": {"fit": True},
                    "energy_normalization": {},
                    "force_normalization": {},
                }
            ],
        ),
        DemoTask(
            name="alloy_energy",
            title="alloy formation energy per atom (MatBench-like, EMT)",
            kind="energy",
            metric="e_form_mae",
            output="e_form",
            unit="meV/atom",
            factor=1000.0,
            data={
                "format": "matbench",
                "train": {"path": str(corpus / "matbench_like/matbench_mp_e_form.json.gz")},
                "split": SPLIT,
                "graph": CRYSTAL_GRAPH,
            },
            heads=[{"kind": "scalar", "target": "e_form", "pooling": "mean", "normalization": {}}],
        ),
        DemoTask(
            name="molecule_energy",
            title="molecular total energy U0 (QM9-like, GFN2-xTB)",
            kind="energy",
            metric="U_0_mae",
            output="U_0",
            unit="meV",
            factor=1000.0,
            data={**qm9, "split": SPLIT, "graph": MOLECULE_GRAPH},
            heads=[
                {
                    "kind": "scalar",
                    "target": "U_0",
                    "pooling": "sum",
                    "atom_references": {"fit": True},
                    "normalization": {},
                }
            ],
        ),
        DemoTask(
            name="homo_lumo_gap",
            title="HOMO-LUMO gap (QM9-like, GFN2-xTB)",
            kind="electronic",
            metric="delta_eps_mae",
            output="delta_eps",
            unit="meV",
            factor=1000.0,
            data={**qm9, "split": SPLIT, "graph": MOLECULE_GRAPH},
            heads=[
                {"kind": "scalar", "target": "delta_eps", "pooling": "sum", "normalization": {}}
            ],
        ),
    ]


@dataclass(frozen=True)
class Budget:
    """Compute budget of one study, scaled with the corpus size."""

    pretrain_steps: int
    pretrain_seconds: int
    pretrain_val_every: int
    finetune_steps: int
    finetune_seconds: int
    finetune_val_every: int
    patience: int
    batch_size: int = 16

    @classmethod
    def for_scale(cls, scale: float) -> Budget:
        """Scale >= 0.5: the default study, sized for 2 idle CPU cores and <= 15 minutes in all:
        pre-training 1,800 steps of ~0.24 s, capped at 430 s (on this project's 2-core machines
        the cap ends it at ~1,700 steps, where the cosine LR is already near its floor), and
        16 fine-tuning runs of 120 steps (16-26 s each; capped at 25 s of training). Smaller
        scales: a smoke-sized run of the same pipeline."""
        if scale >= 0.5:
            return cls(
                pretrain_steps=1800,
                pretrain_seconds=430,
                pretrain_val_every=300,
                finetune_steps=120,
                finetune_seconds=25,
                finetune_val_every=12,
                patience=4,
            )
        return cls(
            pretrain_steps=12,
            pretrain_seconds=25,
            pretrain_val_every=6,
            finetune_steps=6,
            finetune_seconds=20,
            finetune_val_every=3,
            patience=2,
            batch_size=4,
        )


def _hms(seconds: int) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"00:{h:02d}:{m:02d}:{s:02d}"


def pretrain_config(corpus: Path, budget: Budget, seed: int = 0) -> PretrainConfig:
    """The ``demo`` pre-training preset pointed at ``corpus``, within ``budget``."""
    warmup = max(1, min(50, budget.pretrain_steps // 10))
    overrides = [f"data_root={Path(corpus)}"] + [
        f"schedule.max_steps={budget.pretrain_steps}",
        f"schedule.warmup_steps={warmup}",
        f"trainer.max_steps={budget.pretrain_steps}",
        f"trainer.max_time={_hms(budget.pretrain_seconds)}",
        f"trainer.val_check_interval={budget.pretrain_val_every}",
        f"trainer.seed={seed}",
        f"loader.batch_size={budget.batch_size}",
    ]
    return load_pretrain_config("demo", overrides)


def finetune_config(
    task: DemoTask,
    pretrain: PretrainConfig,
    budget: Budget,
    *,
    checkpoint: Path | None,
    seed: int,
) -> FinetuneConfig:
    """One arm of ``task``: the demo backbone, from ``checkpoint`` (None: from scratch)."""
    warmup = max(1, budget.finetune_steps // 15)
    return FinetuneConfig.model_validate(
        {
            "name": f"{task.name}-{'pretrained' if checkpoint else 'scratch'}-seed{seed}",
            "model": {
                "backbone": pretrain.model.backbone.model_dump(),
                "checkpoint": str(checkpoint) if checkpoint else None,
                "ema_weights": True,
            },
            "data": task.data,
            "heads": task.heads,
            "monitor": {"metric": task.metric, "mode": "min"},
            "loader": {"batch_size": budget.batch_size},
            "optimizer": {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.1},
            "schedule": {
                "warmup_steps": warmup,
                "warmup_epochs": None,
                "max_steps": budget.finetune_steps,
                "max_epochs": None,
                "plateau": {"patience": 2},
            },
            "precision": "32-true",
            "early_stopping": {"patience": budget.patience, "min_lr": None},
            "trainer": {
                "max_steps": budget.finetune_steps,
                "max_time": _hms(budget.finetune_seconds),
                "val_check_interval": budget.finetune_val_every,
                "accelerator": "cpu",
                "devices": 1,
                "seed": seed,
            },
        }
    )
