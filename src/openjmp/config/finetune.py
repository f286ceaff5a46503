"""`FinetuneConfig`: what ``openjmp finetune CONFIG`` runs (jmp-reference §3).

A pre-trained backbone (``model.checkpoint``, EMA weights) gets fresh heads (``heads``, one
entry per target; ``kind`` picks the head), is trained end to end with layer-wise LR
multipliers (``llrd``), warm-up + cosine + reduce-on-plateau (``schedule``), early stopping and
best-checkpoint selection on ``monitor``. Presets: every benchmark of the paper for JMP-S and
JMP-L (openjmp.config.benchmarks) and ``user-energy-forces`` / ``user-property``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from openjmp.config.benchmarks import check_matbench_fold
from openjmp.config.common import (
    ClippingConfig,
    DatasetSources,
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
from openjmp.errors import ConfigError
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


class ReplayDataset(DatasetSources):
    """One pre-training dataset replayed during fine-tuning, through the checkpoint's heads
    ``{name}_energy`` / ``{name}_forces`` with their own normalisation (the heads' recorded
    output transforms) and this dataset's loss weights. ``name`` is the pre-training dataset
    (= head prefix in ``model.checkpoint``); the same split as in pre-training gives the same
    validation part (forgetting report)."""

    energy_coefficient: NonNegativeFloat = 1.0
    """λ_E of this dataset's energy head (0: the head is held fixed)."""
    force_coefficient: NonNegativeFloat = 1.0
    """λ_F of this dataset's force head (0: the head is held fixed)."""
    references: Path | None = None
    """Per-element energy references (the authors' ``linref.npz`` or a JSON {element: eV})
    completing an energy head that records none (the published JMP checkpoints)."""


class PseudoLabels(Strict):
    """The target's training structures labelled by the starting model's head pair
    ``{name}_energy`` / ``{name}_forces`` (before any fine-tuning), replayed through those
    heads: replay without the pre-training data."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    """The pre-training dataset whose heads label (and then train on) the structures."""
    energy_coefficient: NonNegativeFloat = 1.0
    force_coefficient: NonNegativeFloat = 1.0
    references: Path | None = None
    """As `ReplayDataset.references`."""


class ReplayConfig(Strict):
    """Multi-head replay (``adaptation: replay``): batches of the pre-training data (or of
    pseudo-labels) mixed into fine-tuning. One epoch is one pass over the target's training
    part plus ``round(ratio × N_target)`` replay structures, shared among the replayed sets by
    temperature (p_i ∝ N_i^(1/T)) and drawn afresh every epoch."""

    datasets: list[ReplayDataset] = []
    """Pre-training datasets replayed from their data."""
    pseudo_labels: list[PseudoLabels] = []
    """Heads whose predictions on the target's training structures are replayed."""
    data_root: Path | None = None
    """Directory the relative ``datasets.*.train/val.path`` are read from; null: the working
    directory."""
    ratio: PositiveFloat = 1.0
    """Replay structures per target structure (1.0: on average half of every batch)."""
    temperature: PositiveFloat = 2.0

    @model_validator(mode="after")
    def _unique(self) -> ReplayConfig:
        if not self.datasets and not self.pseudo_labels:
            raise ValueError("replay needs datasets, pseudo_labels or both")
        names = [d.name for d in self.datasets] + [p.name for p in self.pseudo_labels]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(
                f"replay names must be unique over datasets and pseudo_labels, repeated: {dup}"
            )
        return self

    def heads(self) -> list[PseudoLabels | ReplayDataset]:
        """Every replayed set in head order: the datasets, then the pseudo-labelled ones."""
        return [*self.datasets, *self.pseudo_labels]

    def resolved_datasets(self) -> list[ReplayDataset]:
        """``datasets`` with every source path resolved against ``data_root``."""

        def resolve(src: SourceConfig) -> SourceConfig:
            path = Path(src.path).expanduser()
            if self.data_root is not None and not path.is_absolute():
                path = Path(self.data_root).expanduser() / path
            return src.model_copy(update={"path": path})

        out = []
        for d in self.datasets:
            update: dict[str, SourceConfig] = {"train": resolve(d.train)}
            if d.val is not None:
                update["val"] = resolve(d.val)
            out.append(d.model_copy(update=update))
        return out


Adaptation = Literal["ridge", "mlp", "frozen", "partial", "full", "replay"]
TRAINED_END_TO_END = ("frozen", "partial", "full", "replay")
"""Adaptations that run the training loop (the others fit a head on pooled features)."""


class FinetuneConfig(Strict):
    """A fine-tuning run."""

    kind: Literal["finetune"] = "finetune"
    name: str = "finetune"
    adaptation: Adaptation = "full"
    """How the pre-trained model adapts (the ladder, cheapest first): ``ridge`` / ``mlp``
    fit a ridge regression / small MLP on the frozen backbone's pooled features, in seconds;
    ``frozen`` trains new heads on a frozen embedding + backbone; ``partial`` also trains the
    last ``trainable_blocks`` blocks; ``full`` trains everything end to end (the JMP recipe;
    ``freeze`` can hold parts fixed); ``replay`` is ``full`` with the checkpoint's pre-training
    heads kept and trained on replayed pre-training data (``replay``)."""
    trainable_blocks: int | None = Field(default=None, ge=1)
    """``adaptation: partial``: how many of the last interaction blocks train (with their
    output blocks, the final output MLPs and the heads); the rest is frozen."""
    replay: ReplayConfig | None = None
    """``adaptation: replay``: the pre-training data to replay and how."""
    residual_references: str | None = None
    """Start the energy (or scalar) head from this head of ``model.checkpoint`` (a pre-training
    dataset name or a fine-tuned head name) and fit the per-element references to its residual
    (label − pre-trained prediction); ``adaptation`` frozen, partial or full."""
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
        if self.residual_references is not None and self.adaptation not in (
            "frozen",
            "partial",
            "full",
        ):
            raise ValueError("residual_references needs adaptation frozen, partial or full")
        if (self.adaptation == "partial") != (self.trainable_blocks is not None):
            raise ValueError("trainable_blocks is given exactly when adaptation is 'partial'")
        if (self.adaptation == "replay") != (self.replay is not None):
            raise ValueError("a replay section is given exactly when adaptation is 'replay'")
        if self.adaptation == "replay" and self.model.checkpoint is None:
            raise ValueError(
                "adaptation replay keeps the pre-training heads of model.checkpoint: set it"
            )
        if self.llrd is not None and not depth_from_checkpoint:  # else: at resolution
            check_llrd_multipliers(self.llrd, self.model.backbone.resolved_num_blocks)
        check_matbench_fold(self.data.format, self.data.fold, self.heads)
        return self

    def frozen_sets(self, num_blocks: int) -> list[str]:
        """``freeze`` plus the parameter sets the adaptation holds fixed (named sets of
        `openjmp.model.parameter_sets`): ``frozen``: embedding and backbone; ``partial``:
        embedding, bases and every block but the last ``trainable_blocks``; ``replay``: the
        kept heads whose loss weight is 0 (no gradient, no weight decay)."""
        sets = list(self.freeze)
        if self.adaptation == "frozen":
            sets += ["embedding", "backbone"]
        elif self.adaptation == "partial":
            k = int(self.trainable_blocks or 0)
            if k > num_blocks:
                raise ConfigError(
                    f"trainable_blocks {k}: the backbone has only {num_blocks} blocks"
                )
            sets += ["embedding", "bases", *(f"blocks_{i}" for i in range(num_blocks - k))]
        elif self.replay is not None:  # a kept head without loss weight stays as it was
            for d in self.replay.heads():
                if d.energy_coefficient == 0:
                    sets.append(f"heads.{d.name}_energy.*")
                if d.force_coefficient == 0:
                    sets.append(f"heads.{d.name}_forces.*")
        return list(dict.fromkeys(sets))

    @property
    def gradient_forces(self) -> bool:
        """Whether any head differentiates the energy (needs autograd in validation too)."""
        return any(
            isinstance(h, EnergyForcesHead | ForcesHead) and h.forces == "gradient"
            for h in self.heads
        )
