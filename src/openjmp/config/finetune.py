"""`FinetuneConfig`: what ``openjmp finetune CONFIG`` runs (jmp-reference §3).

A pre-trained backbone (``model.checkpoint``, EMA weights) gets fresh heads (``heads``, one
entry per target; ``kind`` picks the head), is trained end to end with layer-wise LR
multipliers (``llrd``), warm-up + cosine + reduce-on-plateau (``schedule``), early stopping and
best-checkpoint selection on ``monitor``. Presets: every benchmark of the paper for JMP-S and
JMP-L (openjmp.config.benchmarks) and ``user-energy-forces`` / ``user-property``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from openjmp.config.benchmarks import check_matbench_fold
from openjmp.config.common import (
    ClippingConfig,
    EarlyStoppingConfig,
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
from openjmp.model.parameter_sets import check_llrd_multipliers

ForceKind = Literal["gradient", "direct"]
"""gradient: F = −∂E/∂r (conservative; graph built inside forward); direct: an edge head."""


class EnergyForcesHead(Strict):
    """Energy (sum over atoms) and forces, both in the loss."""

    kind: Literal["energy_forces"] = "energy_forces"
    forces: ForceKind = "gradient"
    energy_target: str = "energy"
    """The record's energy, or the name of one of its targets (e.g. SPICE formation_energy)."""
    energy_coefficient: NonNegativeFloat = 1.0
    force_coefficient: NonNegativeFloat = 1.0
    stress_coefficient: NonNegativeFloat = 0.0
    """> 0: also train on stress (eV/Å³, gradient forces only), L1 over Voigt components."""
    linear_references: LinearReferences | None = None
    energy_normalization: Normalization = Normalization()
    force_normalization: ForceNormalization = ForceNormalization()

    @model_validator(mode="after")
    def _stress_needs_gradient(self) -> EnergyForcesHead:
        if self.stress_coefficient > 0 and self.forces != "gradient":
            raise ValueError("stress needs gradient forces")
        return self


class ForcesHead(Strict):
    """Forces only in the loss (rMD17 ×10, MD22 and SPICE ×100); the energy is predicted but
    not trained (gradient forces) or absent (direct forces). The loss is in normalised force
    units (F − 0)/std; the energy normalisation only turns predictions into eV."""

    kind: Literal["forces"] = "forces"
    forces: ForceKind = "gradient"
    energy_target: str = "energy"
    force_coefficient: NonNegativeFloat = 1.0
    linear_references: LinearReferences | None = None
    energy_normalization: Normalization = Normalization()
    force_normalization: ForceNormalization = ForceNormalization()


class ScalarHead(Strict):
    """A per-structure property: per-atom MLP, pooled (sum, mean or max), L1 loss."""

    kind: Literal["scalar"] = "scalar"
    target: str
    """Name in the record's targets (e.g. QM9 U_0, MatBench "gap pbe", QMOF bandgap)."""
    name: str | None = None
    """Head and metric name (metrics are <name>_mae, ...); null: the target."""
    pooling: Literal["sum", "mean", "max"] = "sum"
    loss_coefficient: NonNegativeFloat = 1.0
    atom_references: LinearReferences | None = None
    """Per-element references subtracted first (QM9 ZPVE, U_0, U, H, G, c_v)."""
    normalization: Normalization | None = Normalization()
    """null: no normalisation."""


class SpatialExtentHead(Strict):
    """QM9 R² (electronic spatial extent): R² = Σ_i q_i ‖r_i − r_COM‖², q_i from a bias-free
    per-atom MLP, COM mass-weighted (jmp-reference §3.2). No normalisation by default."""

    kind: Literal["spatial_extent"] = "spatial_extent"
    target: str = "R_2_Abs"
    name: str | None = None
    """Head and metric name (metrics are <name>_mae, ...); null: the target."""
    loss_coefficient: NonNegativeFloat = 1.0
    normalization: Normalization | None = None


class ClassificationHead(Strict):
    """Class logits from pooled per-atom features, cross-entropy summed over the batch."""

    kind: Literal["classification"] = "classification"
    target: str
    name: str | None = None
    """Head and metric name (metrics are <name>_mae, ...); null: the target."""
    num_classes: int = Field(default=2, ge=2)
    class_weights: list[PositiveFloat] | None = None
    dropout: float | None = Field(default=None, ge=0, lt=1)
    """Dropout on the head's input (MatBench mp_is_metal: 0.5)."""
    pooling: Literal["sum", "mean", "max"] = "sum"
    loss_coefficient: NonNegativeFloat = 1.0

    @model_validator(mode="after")
    def _weights_per_class(self) -> ClassificationHead:
        if self.class_weights is not None and len(self.class_weights) != self.num_classes:
            raise ValueError(f"class_weights needs {self.num_classes} entries")
        return self


Head = Annotated[
    EnergyForcesHead | ForcesHead | ScalarHead | SpatialExtentHead | ClassificationHead,
    Field(discriminator="kind"),
]


class FinetuneData(Strict):
    """The downstream dataset: sources, split and graph setting."""

    format: str
    """An openjmp.io format: md_npz, qm9, spice, matbench, qmof, ase, ..."""
    train: SourceConfig
    val: SourceConfig | None = None
    test: SourceConfig | None = None
    split: SplitConfig | None = None
    """Divide ``train`` into [train | val | test] where val / test are not separate sources."""
    fold: int | None = Field(default=None, ge=0, le=4)
    """MatBench fold: ``split`` then divides the fold's training part (test: 0); the fold's
    test part is the test split."""
    graph: GraphConfig = GraphConfig()

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        check_format(fmt)
        return fmt

    @model_validator(mode="after")
    def _check(self) -> FinetuneData:
        if self.val is None and self.split is None:
            raise ValueError("give a val source or a split of the train source")
        check_reader(self.format, [self.train, self.val, self.test])
        return self


class MonitorConfig(Strict):
    """The validation metric that drives reduce-on-plateau, early stopping and the best checkpoint."""

    metric: str = "forces_mae"
    """e.g. forces_mae, energy_mae, <target>_mae, <target>_balanced_accuracy."""
    mode: Literal["min", "max"] = "min"


class PlateauConfig(Strict):
    """ReduceLROnPlateau after the cosine (mode from ``monitor``)."""

    factor: float = Field(default=0.8, gt=0, lt=1)
    patience: int = Field(default=3, ge=0)
    threshold: NonNegativeFloat = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    min_lr: NonNegativeFloat = 0.0
    cooldown: int = Field(default=0, ge=0)
    eps: NonNegativeFloat = 1e-8


class FinetuneScheduleConfig(Strict):
    """Per-group warm-up from warmup_start_factor × the group's lr, cosine to min_lr_factor ×
    the base lr (every LLRD group ends there), then reduce-on-plateau. Lengths in epochs or steps."""

    warmup_epochs: NonNegativeFloat | None = 5.0
    warmup_steps: int | None = Field(default=None, ge=0)
    max_epochs: PositiveFloat | None = 32.0
    max_steps: PositiveInt | None = None
    warmup_start_factor: float = Field(default=0.1, gt=0, le=1)
    min_lr_factor: float = Field(default=0.1, gt=0, le=1)
    plateau: PlateauConfig = PlateauConfig()

    @model_validator(mode="after")
    def _one_each(self) -> FinetuneScheduleConfig:
        if (self.warmup_epochs is None) == (self.warmup_steps is None):
            raise ValueError("give exactly one of warmup_epochs and warmup_steps")
        if (self.max_epochs is None) == (self.max_steps is None):
            raise ValueError("give exactly one of max_epochs and max_steps")
        return self


class FinetuneConfig(Strict):
    """A fine-tuning run."""

    kind: Literal["finetune"] = "finetune"
    name: str = "finetune"
    adaptation: Literal["full", "ridge", "mlp"] = "full"
    """How the pre-trained model adapts: ``full`` trains everything end to end (the JMP recipe;
    ``freeze`` can hold parts fixed); ``ridge`` / ``mlp`` keep the backbone frozen and fit a
    ridge regression / small MLP on its pooled features, in seconds (tiny datasets)."""
    residual_references: str | None = None
    """Start the energy (or scalar) head from this head of ``model.checkpoint`` (a pre-training
    dataset name or a fine-tuned head name) and fit the per-element references to its residual
    (label − pre-trained prediction); ``adaptation: full`` only."""
    model: ModelConfig = ModelConfig()
    data: FinetuneData
    heads: list[Head] = Field(min_length=1)
    monitor: MonitorConfig = MonitorConfig()
    loader: LoaderConfig = LoaderConfig()
    optimizer: OptimizerConfig = OptimizerConfig(lr=8e-5)
    schedule: FinetuneScheduleConfig = FinetuneScheduleConfig()
    llrd: dict[str, PositiveFloat] | None = None
    """Layer-wise LR multipliers: embedding, blocks_0..blocks_{n-1}; the rest use 1.0."""
    freeze: list[str] = []
    """Parameters to freeze: named sets (embedding, bases, backbone, blocks_i, int_blocks_i,
    out_blocks_j, out_mlp) or globs such as backbone.bases.*."""
    ema_decay: float | None = Field(default=None, gt=0, lt=1)
    clipping: ClippingConfig | None = ClippingConfig(algorithm="value", value=1.0)
    precision: Precision = "16-mixed"
    edge_dropout: float = Field(default=0.0, ge=0, lt=1)
    shared_gradient_scaling: bool = True
    early_stopping: EarlyStoppingConfig | None = EarlyStoppingConfig()
    trainer: TrainerConfig = TrainerConfig(max_epochs=500)

    @model_validator(mode="after")
    def _check(self) -> FinetuneConfig:
        depth_from_checkpoint = (
            self.model.architecture == "checkpoint" and self.model.checkpoint is not None
        )
        if self.residual_references is not None and self.adaptation != "full":
            raise ValueError("residual_references needs adaptation: full")
        if self.llrd is not None and not depth_from_checkpoint:  # else: at resolution
            check_llrd_multipliers(self.llrd, self.model.backbone.resolved_num_blocks)
        check_matbench_fold(self.data.format, self.data.fold, self.heads)
        return self

    @property
    def gradient_forces(self) -> bool:
        """Whether any head differentiates the energy (needs autograd in validation too)."""
        return any(
            isinstance(h, EnergyForcesHead | ForcesHead) and h.forces == "gradient"
            for h in self.heads
        )
