"""`PretrainConfig`: what ``openjmp pretrain CONFIG`` runs (jmp-reference §2).

One entry of ``datasets`` per pre-training dataset; each gets its own energy and direct-force
head, its graph setting, its linear references and normalisation, and its loss coefficients
(λ_E, λ_F). ``sampling`` chooses how the datasets are mixed (temperature T = 2 in JMP, see
openjmp.data.sampling), ``schedule`` the warm-up + cosine of openjmp.tasks.schedules. The
presets ``jmp-s``, ``jmp-l`` and ``demo`` live in presets/pretrain/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from openjmp.config.common import (
    ClippingConfig,
    ForceNormalization,
    GraphConfig,
    LinearReferences,
    LoaderConfig,
    ModelConfig,
    NonNegativeFloat,
    Normalization,
    OptimizerConfig,
    PositiveFloat,
    PositiveInt,
    Precision,
    SourceConfig,
    SplitConfig,
    Strict,
    TrainerConfig,
    check_format,
    check_reader,
)


class PretrainDataset(Strict):
    """One pre-training dataset (one task, one pair of heads)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    """Task name (also the head and metric prefix), e.g. oc20."""
    format: str
    """An openjmp.io format: ocp_lmdb, ani1x, transition1x, ase, ..."""
    train: SourceConfig
    val: SourceConfig | None = None
    split: SplitConfig | None = None
    """Divide ``train`` into train/val (/test) when ``val`` is not a separate source."""
    graph: GraphConfig = GraphConfig()
    linear_references: LinearReferences | None = None
    energy_normalization: Normalization = Normalization()
    force_normalization: ForceNormalization = ForceNormalization()
    energy_coefficient: NonNegativeFloat = 1.0
    """λ_E (authors: 1)."""
    force_coefficient: NonNegativeFloat = 1.0
    """λ_F (authors: the dataset's mean atom count: OC20 73, OC22 80, ANI-1x 15, T1x 14)."""

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        check_format(fmt)
        return fmt

    @model_validator(mode="after")
    def _check(self) -> PretrainDataset:
        if (self.val is None) == (self.split is None):
            raise ValueError("give either a val source or a split of the train source (not both)")
        check_reader(self.format, [self.train, self.val])
        return self


class SamplingConfig(Strict):
    """How datasets are mixed: deterministic up-sampling to probabilities p_i."""

    mode: Literal["temperature", "ratios", "uniform"] = "temperature"
    temperature: PositiveFloat = 2.0
    """p_i ∝ N_i^(1/T) (mode temperature)."""
    ratios: dict[str, PositiveFloat] | None = None
    """p_i ∝ ratios[name] (mode ratios), one entry per dataset."""

    @model_validator(mode="after")
    def _ratios_iff_mode(self) -> SamplingConfig:
        if (self.mode == "ratios") != (self.ratios is not None):
            raise ValueError("ratios are given exactly when mode is 'ratios'")
        return self


class PretrainScheduleConfig(Strict):
    """Linear warm-up from warmup_start_factor × lr over warmup_steps, cosine to
    min_lr_factor × lr at the end (max_steps, or max_epochs expanded epochs)."""

    warmup_steps: int = Field(default=2000, ge=0)
    warmup_start_factor: float = Field(default=0.2, gt=0, le=1)
    min_lr_factor: float = Field(default=0.1, gt=0, le=1)
    max_epochs: PositiveFloat | None = 2.0
    max_steps: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_length(self) -> PretrainScheduleConfig:
        if (self.max_epochs is None) == (self.max_steps is None):
            raise ValueError("give exactly one of max_epochs and max_steps")
        if self.max_steps is not None and self.max_steps <= self.warmup_steps:
            raise ValueError("max_steps must exceed warmup_steps")
        return self


class PretrainConfig(Strict):
    """A pre-training run."""

    kind: Literal["pretrain"] = "pretrain"
    name: str = "pretrain"
    data_root: Path | None = None
    """Directory the relative ``datasets.*.train/val.path`` are read from (the demo preset:
    ``demo-corpus``); null: the working directory. ``--set data_root=DIR`` points a preset at
    another copy of its corpus."""
    model: ModelConfig = ModelConfig()
    datasets: list[PretrainDataset] = Field(min_length=1)
    sampling: SamplingConfig = SamplingConfig()
    loader: LoaderConfig = LoaderConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: PretrainScheduleConfig = PretrainScheduleConfig()
    ema_decay: float | None = Field(default=0.99, gt=0, lt=1)
    """EMA of the weights, updated every optimizer step; validation uses it. null: off."""
    clipping: ClippingConfig | None = ClippingConfig(algorithm="norm", value=1.0)
    precision: Precision = "16-mixed"
    edge_dropout: float = Field(default=0.1, ge=0, lt=1)
    """Fraction of a2a edges dropped per training sample (then 1/(1−p) boost in the output blocks)."""
    shared_gradient_scaling: bool = True
    """Divide shared basis-projection gradients by their use count (authors: always on)."""
    trainer: TrainerConfig = TrainerConfig(max_epochs=2)

    @model_validator(mode="after")
    def _check(self) -> PretrainConfig:
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"dataset names must be unique, repeated: {dup}")
        if self.sampling.ratios is not None and set(self.sampling.ratios) != set(names):
            raise ValueError(
                f"sampling.ratios names {sorted(self.sampling.ratios)} must be the datasets {names}"
            )
        return self

    def source_path(self, path: Path) -> Path:
        """``path`` as the run reads it: relative paths are taken from ``data_root``."""
        path = Path(path).expanduser()
        if self.data_root is None or path.is_absolute():
            return path
        return Path(self.data_root).expanduser() / path

    def resolved_datasets(self) -> list[PretrainDataset]:
        """``datasets`` with every source path resolved against ``data_root``."""
        out = []
        for d in self.datasets:
            update = {"train": d.train.model_copy(update={"path": self.source_path(d.train.path)})}
            if d.val is not None:
                update["val"] = d.val.model_copy(update={"path": self.source_path(d.val.path)})
            out.append(d.model_copy(update=update))
        return out
