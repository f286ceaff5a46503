"""Config sections shared by ``openjmp pretrain`` and ``openjmp finetune`` (pydantic v2).

Every model is frozen and rejects unknown keys (``extra="forbid"``), so a typo in a YAML file
is an error that names its field path, never a silently ignored setting. Units: Å for
lengths, eV / eV/Å for energies and forces. Fields that may be left to the data (``None``
normalisation statistics) are documented as such. `openjmp.config.load` turns YAML into these
models; the trainer code reads them and builds objects (model, data, optimizer) explicitly.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from openjmp.graph.spec import GRAPH_SETTINGS, GraphSpec, max_neighbors_from_base

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
Precision = Literal["32-true", "16-mixed", "bf16-mixed", "64-true"]
ReaderOption = str | int | float | bool | list[str] | None

PRESET_NUM_BLOCKS: dict[str, int] = {"jmp-s": 4, "jmp-l": 6}
"""Interaction blocks of the published backbones (jmp-reference §1.1)."""


class Strict(BaseModel):
    """Base of every config model: frozen, unknown keys rejected, defaults validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ---------------------------------------------------------------------------------- model


class BackboneConfig(Strict):
    """GemNet-OC hyper-parameters: a published preset plus any fields changed (authors' names).

    Fields left at None keep the preset's value (see jmp-reference §1.1 for both presets).
    """

    preset: Literal["jmp-s", "jmp-l"] = "jmp-l"
    num_blocks: PositiveInt | None = None
    num_spherical: PositiveInt | None = None
    num_radial: PositiveInt | None = None
    emb_size_atom: PositiveInt | None = None
    emb_size_edge: PositiveInt | None = None
    emb_size_trip_in: PositiveInt | None = None
    emb_size_trip_out: PositiveInt | None = None
    emb_size_quad_in: PositiveInt | None = None
    emb_size_quad_out: PositiveInt | None = None
    emb_size_aint_in: PositiveInt | None = None
    emb_size_aint_out: PositiveInt | None = None
    emb_size_rbf: PositiveInt | None = None
    emb_size_cbf: PositiveInt | None = None
    emb_size_sbf: PositiveInt | None = None
    num_before_skip: int | None = Field(default=None, ge=0)
    num_after_skip: int | None = Field(default=None, ge=0)
    num_concat: int | None = Field(default=None, ge=0)
    num_atom: int | None = Field(default=None, ge=0)
    num_output_afteratom: int | None = Field(default=None, ge=0)
    num_atom_emb_layers: int | None = Field(default=None, ge=0)
    num_global_out_layers: int | None = Field(default=None, ge=0)
    num_elements: PositiveInt | None = None
    absolute_rbf_cutoff: PositiveFloat | None = None
    """Å; every radial basis uses d / this (12 Å in JMP, whatever the graph cutoff)."""

    @property
    def resolved_num_blocks(self) -> int:
        return self.num_blocks if self.num_blocks is not None else PRESET_NUM_BLOCKS[self.preset]

    def overrides(self) -> dict[str, Any]:
        """The fields set here (authors' names), to apply on top of the preset."""
        return {k: v for k, v in self.model_dump(exclude={"preset"}).items() if v is not None}


class ModelConfig(Strict):
    """The network and where its starting weights come from."""

    backbone: BackboneConfig = BackboneConfig()
    checkpoint: Path | None = None
    """Starting weights: a JMP-S/L pre-training checkpoint (jmp-s.pt, jmp-l.pt) or an openjmp
    checkpoint. None: random initialisation (pre-training, or the from-scratch baseline)."""
    architecture: Literal["preset", "checkpoint"] = "preset"
    """Where the backbone's architecture comes from when ``checkpoint`` is set: "preset"
    (``backbone``, checked against the checkpoint: the paper's benchmark presets) or
    "checkpoint" (the checkpoint's own; fields set in ``backbone`` must agree with it, and
    layer-wise LR multipliers are resampled to its depth; the ``user-*`` presets). Without a
    checkpoint both mean ``backbone``."""
    ema_weights: bool = True
    """Take the EMA weights stored in the checkpoint (the authors fine-tune from them)."""
    scale_file: str | None = None
    """GemNet-OC scale factors: "small", "large" or a file. None: taken from the checkpoint's
    buffers, or unfitted (identity) when training from scratch, as the released pre-training
    configs do (jmp-reference errata 5)."""
    activation_checkpointing: bool | Literal["residual"] | None = None
    """Recompute interaction-block activations in backward to save memory: True always, False
    never, None (auto) on batches whose activations would take more than half the device's
    memory; "residual": only the residual layers' first products, a little less memory for a
    little more time (see `GemNetOCBackbone.memory_efficient`)."""


# ----------------------------------------------------------------------------------- data


class GraphConfig(Strict):
    """How the four GemNet-OC graphs are built for a dataset (see openjmp.graph.spec).

    ``setting: <dataset>`` (oc20, ani1x, rmd17, matbench, ... `GRAPH_SETTINGS`) starts from
    the authors' graph for that dataset; keys given beside it override it. The setting name is
    not kept: the config holds (and a run's config.yaml saves) the fields it gave.
    """

    cutoff: PositiveFloat = 12.0
    """Å, radius of all four graphs."""
    max_neighbors: PositiveInt = 30
    """Base k: caps (main, a2ee2a, qint, a2a) = (k, ⌊20k/30⌋, ⌊8k/30⌋, ⌊1000k/30⌋)."""
    pbc: bool = False
    """Use each structure's periodicity; False treats structures as molecules."""
    dummy_cell: bool = False
    """Non-periodic structures carry a 1000 Å cubic cell so they collate with crystals."""
    atom_count_caps: bool = False
    """MatBench/QMOF rule: k = 10 above 200 atoms, k = 5 above 300 atoms."""
    qint_tags: list[int] = [1, 2]
    max_edges: PositiveInt | None = None
    """Refuse a structure whose graph would have more neighbour pairs than this (estimated
    before building it); null: $OPENJMP_MAX_EDGES, else 3 million (openjmp.graph.size)."""

    @model_validator(mode="before")
    @classmethod
    def _from_setting(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "setting" not in data:
            return data
        fields = dict(data)
        name = fields.pop("setting")
        if name not in GRAPH_SETTINGS:
            raise ValueError(
                f"unknown graph setting {name!r}; known: {', '.join(sorted(GRAPH_SETTINGS))}"
            )
        return {**graph_fields(GRAPH_SETTINGS[name]), **fields}

    @model_validator(mode="after")
    def _dummy_cell_only_without_pbc(self) -> GraphConfig:
        if self.dummy_cell and self.pbc:
            raise ValueError("dummy_cell is only for non-periodic graphs (pbc: false)")
        return self

    def spec(self, natoms: int | None = None) -> GraphSpec:
        """The `openjmp.graph.spec.GraphSpec` of this setting; for a structure of ``natoms``
        atoms when given (the atom-count caps applied)."""
        spec = GraphSpec(
            cutoff=self.cutoff,
            max_neighbors=max_neighbors_from_base(self.max_neighbors),
            pbc=self.pbc,
            dummy_cell=self.dummy_cell,
            qint_tags=tuple(self.qint_tags),
            atom_count_caps=self.atom_count_caps,
            max_edges=self.max_edges,
        )
        return spec if natoms is None else spec.for_natoms(natoms)


def graph_fields(spec: GraphSpec) -> dict[str, Any]:
    """The `GraphConfig` fields of a `GraphSpec` built from a base k (every `GRAPH_SETTINGS`
    entry is)."""
    k = spec.max_neighbors[0]
    if max_neighbors_from_base(k) != spec.max_neighbors:
        raise ValueError(f"caps {spec.max_neighbors} do not follow from one base k")
    return {
        "cutoff": spec.cutoff,
        "max_neighbors": k,
        "pbc": spec.pbc,
        "dummy_cell": spec.dummy_cell,
        "atom_count_caps": spec.atom_count_caps,
        "qint_tags": list(spec.qint_tags),
    }


class SourceConfig(Strict):
    """One file or directory to read, with keyword options for its reader (openjmp.io)."""

    path: Path
    options: dict[str, ReaderOption] = {}
    """Reader options, e.g. transition1x {split: train}, matbench {task: mp_gap}, ocp_lmdb
    {ref_energies: oc20_ref.pkl}, ase {energy_key: ..., targets: [...]}."""


def check_format(fmt: str) -> None:
    """Raise ValueError unless ``fmt`` names an openjmp.io reader."""
    from openjmp.io import FORMATS

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")


def check_reader(fmt: str, sources: list[SourceConfig | None]) -> None:
    """Raise ValueError if a source's option is not a keyword of the format's reader."""
    from openjmp.io import FORMATS

    if fmt not in FORMATS:
        return  # reported by check_format
    params = inspect.signature(FORMATS[fmt]).parameters
    allowed = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - {"validate", "on_error"}
    for src in sources:
        unknown = sorted(set(src.options) - allowed) if src is not None else []
        if unknown:
            raise ValueError(
                f"reader option(s) {unknown} not accepted by format {fmt!r} "
                f"(accepted: {', '.join(sorted(allowed)) or 'none'})"
            )


class SplitConfig(Strict):
    """Seeded random split of one source into [train | val | test] (RandomState(seed) shuffle).

    Give ``counts`` or ``fractions`` (train, val, test); one entry may be null, meaning "the
    rest". Fractions round down (int(f · n)), as the authors' SPICE/QMOF/MatBench splits.
    """

    counts: tuple[int | None, int | None, int | None] | None = None
    fractions: tuple[float | None, float | None, float | None] | None = None
    seed: int = 42
    group_by: Literal["formula"] | None = None
    """Keep structures with the same formula in one split (ANI-1x), whole groups at a time."""

    @model_validator(mode="after")
    def _one_spec(self) -> SplitConfig:
        if (self.counts is None) == (self.fractions is None):
            raise ValueError("give exactly one of counts and fractions")
        spec: tuple[float | None, ...] = self.counts or self.fractions or ()
        if sum(x is None for x in spec) > 1:
            raise ValueError("at most one split size may be null (the rest)")
        if any(x is not None and x < 0 for x in spec):
            raise ValueError("split sizes must be >= 0")
        if self.fractions is not None and sum(x for x in spec if x is not None) > 1 + 1e-12:
            raise ValueError("split fractions add up to more than 1")
        return self


class DatasetSources(Strict):
    """A named dataset read from its sources: a train source and either a separate val source
    or a split of the train source, with the graph setting of its structures (the common part
    of a pre-training dataset and a dataset replayed in fine-tuning)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    """The dataset (= task, head and metric prefix), e.g. oc20."""
    format: str
    """An openjmp.io format: ocp_lmdb, ani1x, transition1x, ase, ..."""
    train: SourceConfig
    val: SourceConfig | None = None
    split: SplitConfig | None = None
    """Divide ``train`` into train/val (/test) when ``val`` is not a separate source."""
    graph: GraphConfig = GraphConfig()

    @field_validator("format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        check_format(fmt)
        return fmt

    @model_validator(mode="after")
    def _check_sources(self) -> DatasetSources:
        if (self.val is None) == (self.split is None):
            raise ValueError("give either a val source or a split of the train source (not both)")
        check_reader(self.format, [self.train, self.val])
        return self


class Normalization(Strict):
    """ŷ = (y − mean) / std, in the target's units. A null field is computed from the training
    split (openjmp.data.statistics)."""

    mean: float | None = None
    std: PositiveFloat | None = None


class ForceNormalization(Strict):
    """F̂ = F / std (eV/Å); forces keep mean 0 so they stay equivariant. Null: the training
    split's RMS force component."""

    std: PositiveFloat | None = None


class LinearReferences(Strict):
    """Per-element energy references subtracted before normalisation (Σ_atoms ref[Z], eV).

    Exactly one of: ``fit`` (least squares on element counts of the training split, no
    intercept, as the authors' linref scripts), ``path`` (.npz with key "coeff", indexed by Z),
    ``values`` (list indexed by Z).
    """

    fit: bool = False
    path: Path | None = None
    values: list[float] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> LinearReferences:
        if sum([self.fit, self.path is not None, self.values is not None]) != 1:
            raise ValueError("give exactly one of fit: true, path or values")
        return self


# ------------------------------------------------------------------------------- training


class LoaderConfig(Strict):
    batch_size: PositiveInt = 4
    """Structures per batch and device."""
    eval_batch_size: PositiveInt | None = None
    """Validation/test batch size; null: batch_size."""
    max_atoms_per_batch: PositiveInt | None = None
    """Cap on atoms per batch (memory control): batches close before exceeding it."""
    num_workers: int = Field(default=0, ge=0)


class OptimizerConfig(Strict):
    name: Literal["adamw"] = "adamw"
    lr: PositiveFloat = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.1
    """Applied to every parameter (biases and embeddings too), as the authors."""
    amsgrad: bool = False

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= b < 1 for b in v):
            raise ValueError("betas must lie in [0, 1)")
        return v


class ClippingConfig(Strict):
    algorithm: Literal["norm", "value"] = "norm"
    """norm: rescale the global gradient norm (pre-training); value: clamp each element (fine-tuning)."""
    value: PositiveFloat = 1.0


class TrainerConfig(Strict):
    max_steps: PositiveInt | None = None
    max_epochs: PositiveInt | None = None
    max_time: str | None = Field(default=None, pattern=r"^\d{2}:\d{2}:\d{2}:\d{2}$")
    """Wall-clock budget "DD:HH:MM:SS"."""
    val_check_interval: PositiveInt | None = None
    """Validate every this many training batches; null: once per epoch."""
    check_val_every_n_epoch: PositiveInt = 1
    log_every_n_steps: PositiveInt = 50
    accumulate_grad_batches: PositiveInt = 1
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps"] = "auto"
    devices: PositiveInt | Literal["auto"] = "auto"
    num_nodes: PositiveInt = 1
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true", "ddp_spawn"] = "auto"
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """torch.set_float32_matmul_precision (the authors pre-train with "medium")."""
    seed: int = 0
    output_dir: Path = Path("runs")
    deterministic: bool = False

    @model_validator(mode="after")
    def _some_limit(self) -> TrainerConfig:
        if self.max_steps is None and self.max_epochs is None and self.max_time is None:
            raise ValueError("set at least one of max_steps, max_epochs, max_time")
        return self


class EarlyStoppingConfig(Strict):
    patience: PositiveInt = 50
    """Validations without improvement before stopping."""
    min_delta: NonNegativeFloat = 1e-8
    min_lr: NonNegativeFloat | None = 1e-8
    """Also stop once every parameter group's lr is below this."""
