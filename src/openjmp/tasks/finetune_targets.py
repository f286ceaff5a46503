"""Fine-tuning targets: for each configured head, its network heads, labels, loss and predictions.

One `Target` per entry of ``FinetuneConfig.heads`` (jmp-reference §3.2). A target is data plus
the buffers that turn network outputs into physical units (`ElementReferences`, `Normalizer`):

* `EnergyForcesTarget` (``energy_forces`` / ``forces``): an energy head (per-atom MLP without
  biases, summed) and forces, gradient (F = −∂E/∂r) or direct (edge MLP × unit vectors).
  Outputs ``energy`` (B,) eV and ``forces`` (N, 3) eV/Å; with a stress coefficient also
  ``stress`` (B, 6) eV/Å³ Voigt, (1/V) ∂E/∂ε by autograd.
* `ScalarTarget` (``scalar``): per-atom MLP pooled by sum/mean/max; output ``<name>`` (B,).
* `SpatialExtentTarget` (``spatial_extent``, QM9 R²): R² = Σ_i q_i ‖r_i − r_COM‖², q_i from a
  bias-free per-atom MLP, mass-weighted centre; output ``<name>`` (B,), the label's unit.
* `ClassificationTarget` (``classification``): dropout, per-atom MLP to C logits, pooled;
  output ``<name>`` (B, C) logits; labels are class indices.

Energies and forces stay physical when the loss is the authors' (errata 2). The energy head's
raw output u maps to E = Σ ref[Z] + μ_E + s·u with one scale s, and gradient forces are
F = −s ∂u/∂r, so F = −∂E/∂r exactly. With gradient forces s = σ_F (the force std), which makes
the normalised force F/σ_F = −∂u/∂r: the authors' force loss, number for number. Otherwise
s = σ_E. The energy loss is always |E − E_label| / σ_E.

Energy and scalar heads live in the `JMPModel` (``model_heads``) so the backbone model can be
saved and used alone, with the transform that makes their outputs physical
(``output_transforms``, `openjmp.model.outputs`): predictions of model heads go through
`JMPModel.to_physical`, the one conversion that `openjmp.predict` and the calculator use too.
The spatial-extent and classification heads are modules of their own that read the model's
per-atom features (``outputs["embedding"]``) and convert their own outputs (``predict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from openjmp.config.finetune import (
    ClassificationHead,
    EnergyForcesHead,
    ForcesHead,
    ScalarHead,
    SpatialExtentHead,
)
from openjmp.errors import ConfigError
from openjmp.graph.batch import Batch
from openjmp.graph.scatter import segment_sum
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.heads import DirectForceHead, EnergyHead, GradientForceHead, mlp, pool
from openjmp.model.heads import ScalarHead as ScalarHeadModule
from openjmp.model.normalization import ElementReferences, Normalizer
from openjmp.model.outputs import OutputTransform, voigt
from openjmp.tasks.losses import classification_loss, energy_force_loss, scalar_loss

HeadConfig = EnergyForcesHead | ForcesHead | ScalarHead | SpatialExtentHead | ClassificationHead

ENERGY = "energy"
FORCES = "forces"
STRESS = "stress"
NUM_MLPS = 5
"""Linear layers of every new head (the authors' ``[d] * 5 -> out`` MLPs)."""


def target_name(head: HeadConfig) -> str:
    """The name of a head's outputs and metrics: energy/forces, or ``name`` (default: target)."""
    if isinstance(head, EnergyForcesHead | ForcesHead):
        return ENERGY
    return head.name or head.target


def _references(values: Any) -> ElementReferences:
    return ElementReferences.zeros() if values is None else ElementReferences(values)


class Target(nn.Module):
    """One configured head. Subclasses define the methods below."""

    name: str
    kind: str

    def model_heads(self, backbone: GemNetOCConfig) -> dict[str, nn.Module]:
        """Heads to place in the `JMPModel` (name -> module); may be empty."""
        return {}

    def output_transforms(self) -> dict[str, OutputTransform]:
        """How the raw outputs of its `model_heads` become physical units (head -> transform)."""
        return {}

    def derived(self) -> dict[str, str]:
        """Extra model outputs it needs: ``{output: energy head}`` of stress (`JMPModel.forward`)."""
        return {}

    def outputs(self) -> tuple[str, ...]:
        """Names of the physical predictions (model-head outputs, or keys of `predict`)."""
        return (self.name,)

    def predict(self, out: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """Physical predictions of the heads that are not model heads (model heads are
        converted by `JMPModel.to_physical`)."""
        return {}

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        """Physical labels of the batch, same keys and shapes as `predict` (classes: (B,))."""
        raise NotImplementedError

    def loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """() the weighted loss in normalised units."""
        raise NotImplementedError


def _label(batch: Batch, key: str, what: str) -> Tensor:
    if key == ENERGY:
        if batch.energy is None:
            raise ConfigError(f"{what} needs energies but the batch has none")
        return batch.energy
    if key not in batch.targets:
        raise ConfigError(
            f"{what} needs target {key!r}; the batch has {sorted(batch.targets) or 'no targets'}"
        )
    return batch.targets[key]


class EnergyForcesTarget(Target):
    """Energy (sum over atoms) and forces; ``forces_only`` trains the forces alone.

    Buffers: ``references`` (K,) eV by Z, ``energy_norm`` (μ_E, σ_E) eV, ``force_std`` σ_F eV/Å,
    ``energy_scale`` s eV (σ_F with gradient forces, else σ_E, module docstring; or the
    statistics' ``energy_scale`` for a head started from a checkpoint's head). With a stress
    coefficient the loss compares stresses over ``stats["stress_std"]`` (eV/Å³, the RMS stress
    component of the training split).
    """

    kind = "energy_forces"
    force_std: Tensor
    energy_scale: Tensor

    def __init__(self, head: EnergyForcesHead | ForcesHead, stats: Mapping[str, Any]) -> None:
        super().__init__()
        self.name = ENERGY
        self.gradient = head.forces == "gradient"
        self.forces_only = isinstance(head, ForcesHead)
        self.energy_key = head.energy_target
        self.energy_coefficient = 0.0 if self.forces_only else float(head.energy_coefficient)
        self.force_coefficient = float(head.force_coefficient)
        self.stress_coefficient = (
            float(head.stress_coefficient) if isinstance(head, EnergyForcesHead) else 0.0
        )
        self.stress_std = float(stats.get("stress_std") or 1.0)
        # energy head present unless the energy is neither trained nor needed for the forces
        self.has_energy = self.gradient or not self.forces_only
        self.references = _references(stats.get("references"))
        self.energy_norm = Normalizer(float(stats.get("mean", 0.0)), float(stats.get("std", 1.0)))
        f_std = float(stats["force_std"])
        self.register_buffer("force_std", torch.tensor(f_std, dtype=torch.float64))
        default = f_std if self.gradient else float(self.energy_norm.std)
        scale = float(
            stats.get("energy_scale") or default
        )  # given: a head started from a checkpoint's
        self.register_buffer("energy_scale", torch.tensor(scale, dtype=torch.float64))

    def model_heads(self, backbone: GemNetOCConfig) -> dict[str, nn.Module]:
        heads: dict[str, nn.Module] = {}
        if self.has_energy:  # the authors' energy head has no bias anywhere
            heads[ENERGY] = EnergyHead(
                backbone.emb_size_atom,
                num_mlps=NUM_MLPS,
                bias=False,
                activation=backbone.activation,
            )
        if self.gradient:
            heads[FORCES] = GradientForceHead(ENERGY)
        else:
            heads[FORCES] = DirectForceHead(
                backbone.emb_size_edge, num_mlps=NUM_MLPS, activation=backbone.activation
            )
        return heads

    def output_transforms(self) -> dict[str, OutputTransform]:
        out: dict[str, OutputTransform] = {}
        if self.has_energy:
            refs = self.references.references
            out[ENERGY] = OutputTransform.energy(
                float(self.energy_scale),
                float(self.energy_norm.mean),
                None if not bool(refs.any()) else refs.tolist(),
            )
        if not self.gradient:
            out[FORCES] = OutputTransform.forces(float(self.force_std))
        return out

    def derived(self) -> dict[str, str]:
        return {STRESS: ENERGY} if self.stress_coefficient > 0 else {}

    def outputs(self) -> tuple[str, ...]:
        names = (ENERGY, FORCES) if self.has_energy else (FORCES,)
        return (*names, STRESS) if self.stress_coefficient > 0 else names

    def predict(self, out: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        """The stress in Voigt order (the model's physical (B, 3, 3) from `to_physical`)."""
        return {STRESS: voigt(out[STRESS])} if STRESS in out and out[STRESS].ndim == 3 else {}

    def _force_factor(self) -> Tensor:
        """Raw force output -> eV/Å."""
        return self.energy_scale if self.gradient else self.force_std

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        """Forces, and the energy when the batch has it (always when the energy is trained)."""
        what = "the energy/forces head"
        if batch.forces is None:
            raise ConfigError(f"{what} needs forces but the batch has none")
        res = {FORCES: batch.forces}
        has_label = (
            batch.energy is not None
            if self.energy_key == ENERGY
            else self.energy_key in batch.targets
        )
        if self.has_energy and (has_label or not self.forces_only):
            res[ENERGY] = _label(batch, self.energy_key, what).to(torch.float64)
        if self.stress_coefficient > 0:
            if batch.stress is None:
                raise ConfigError(f"{what} trains on stress but the batch has no stress labels")
            res[STRESS] = batch.stress.to(torch.float64)
        return res

    def _stress_loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """coef · mean |σ̂ − σ| / σ_std over the Voigt components of the batch."""
        raw = out[STRESS]
        if batch.stress is None:
            raise ConfigError("the energy/forces head trains on stress but the batch has none")
        pred = voigt(raw) * (self.energy_scale / self.stress_std).to(raw.dtype)
        true = (batch.stress.to(torch.float64) / self.stress_std).to(raw.dtype)
        return scalar_loss(pred, true, self.stress_coefficient)

    def loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        f = out[FORCES]
        if batch.forces is None:
            raise ConfigError("the energy/forces head needs forces but the batch has none")
        ratio = (self._force_factor() / self.force_std).to(
            f.dtype
        )  # 1 unless energy_scale is given
        f_pred = f * ratio
        f_true = (batch.forces.to(torch.float64) / self.force_std).to(f.dtype)
        if self.forces_only:
            return energy_force_loss(
                None, None, f_pred, f_true, force_coef=self.force_coefficient, forces_only=True
            )
        u = out[ENERGY]
        e_pred = u * (self.energy_scale / self.energy_norm.std).to(u.dtype)
        e_lab = _label(batch, self.energy_key, "the energy/forces head").to(torch.float64)
        e_true = self.energy_norm.normalize(
            self.references.subtract(e_lab, batch.atomic_numbers, batch.batch)
        ).to(u.dtype)
        loss = energy_force_loss(
            e_pred,
            e_true,
            f_pred,
            f_true,
            energy_coef=self.energy_coefficient,
            force_coef=self.force_coefficient,
        )
        if self.stress_coefficient > 0:
            loss = loss + self._stress_loss(out, batch)
        return loss


class ScalarTarget(Target):
    """A pooled per-structure property: y = Σ ref[Z] + μ + σ·u (references and (μ, σ) optional)."""

    kind = "scalar"

    def __init__(self, head: ScalarHead, stats: Mapping[str, Any]) -> None:
        super().__init__()
        self.name = target_name(head)
        self.key = head.target
        self.pooling = head.pooling
        self.coefficient = float(head.loss_coefficient)
        self.references = _references(stats.get("references"))
        self.norm = Normalizer(float(stats.get("mean", 0.0)), float(stats.get("std", 1.0)))
        self.unit = str(stats.get("unit", ""))

    def model_heads(self, backbone: GemNetOCConfig) -> dict[str, nn.Module]:
        return {
            self.name: ScalarHeadModule(
                backbone.emb_size_atom,
                num_mlps=NUM_MLPS,
                pooling=self.pooling,
                activation=backbone.activation,
            )
        }

    def output_transforms(self) -> dict[str, OutputTransform]:
        refs = self.references.references
        return {
            self.name: OutputTransform.scalar(
                self.norm.std.tolist(),
                self.norm.mean.tolist(),
                None if not bool(refs.any()) else refs.tolist(),
                unit=self.unit,
            )
        }

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        return {self.name: _label(batch, self.key, f"head {self.name!r}").to(torch.float64)}

    def loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        u = out[self.name]
        y = self.labels(batch)[self.name]
        y_n = self.norm.normalize(self.references.subtract(y, batch.atomic_numbers, batch.batch))
        return scalar_loss(u, y_n.to(u.dtype), self.coefficient)


def _masses(atomic_numbers: Tensor) -> Tensor:
    from ase.data import atomic_masses

    table = torch.as_tensor(atomic_masses, dtype=torch.float64, device=atomic_numbers.device)
    return table[atomic_numbers]


class SpatialExtentTarget(Target):
    """QM9 R²: Σ_i q_i ‖r_i − r_COM‖² (Å² × q); q_i = MLP(x_i) without biases (6 Linear layers:
    5 × (A → A) and A → 1, the authors' ``SpatialExtentConfig`` head)."""

    kind = "spatial_extent"

    def __init__(
        self, head: SpatialExtentHead, stats: Mapping[str, Any], emb_size: int, activation: str
    ) -> None:
        super().__init__()
        self.name = target_name(head)
        self.key = head.target
        self.coefficient = float(head.loss_coefficient)
        self.norm = Normalizer(float(stats.get("mean", 0.0)), float(stats.get("std", 1.0)))
        self.mlp = mlp([emb_size] * (NUM_MLPS + 1) + [1], activation, bias=False)

    def _raw(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        x = out["embedding"]
        q = self.mlp(x)[:, 0]  # (N,)
        pos = batch.pos.to(x.dtype)
        m = _masses(batch.atomic_numbers).to(x.dtype)
        b = batch.batch
        n = batch.num_graphs
        total = segment_sum(m, b, n)
        com = segment_sum(pos * m[:, None], b, n) / total[:, None]
        r2 = ((pos - com[b]) ** 2).sum(-1)
        return segment_sum(q * r2, b, n)

    def predict(self, out: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {self.name: self.norm.denormalize(self._raw(out, batch).to(torch.float64))}

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        return {self.name: _label(batch, self.key, f"head {self.name!r}").to(torch.float64)}

    def loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        u = self._raw(out, batch)
        y = self.norm.normalize(self.labels(batch)[self.name]).to(u.dtype)
        return scalar_loss(u, y, self.coefficient)


class ClassificationTarget(Target):
    """Class logits: dropout on the per-atom features, MLP to C outputs, pooled per structure."""

    kind = "classification"
    class_weights: Tensor | None

    def __init__(self, head: ClassificationHead, emb_size: int, activation: str) -> None:
        super().__init__()
        self.name = target_name(head)
        self.key = head.target
        self.num_classes = head.num_classes
        self.pooling = head.pooling
        self.coefficient = float(head.loss_coefficient)
        self.dropout = nn.Dropout(head.dropout or 0.0)
        self.mlp = mlp([emb_size] * NUM_MLPS + [head.num_classes], activation)
        weights = None if head.class_weights is None else torch.tensor(head.class_weights)
        self.register_buffer("class_weights", weights)

    def _logits(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        x = self.mlp(self.dropout(out["embedding"]))
        return pool(x, batch.batch, batch.num_graphs, self.pooling)

    def predict(self, out: Mapping[str, Tensor], batch: Batch) -> dict[str, Tensor]:
        return {self.name: self._logits(out, batch)}

    def labels(self, batch: Batch) -> dict[str, Tensor]:
        y = _label(batch, self.key, f"head {self.name!r}")
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise ConfigError(f"classification target {self.key!r} has non-integer values")
        y = y.long()
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ConfigError(
                f"classification target {self.key!r} has labels outside 0..{self.num_classes - 1}"
            )
        return {self.name: y}

    def loss(self, out: Mapping[str, Tensor], batch: Batch) -> Tensor:
        logits = self._logits(out, batch)
        return classification_loss(
            logits,
            self.labels(batch)[self.name],
            class_weights=self.class_weights,
            coef=self.coefficient,
        )


def build_target(head: HeadConfig, stats: Mapping[str, Any], backbone: GemNetOCConfig) -> Target:
    """The `Target` of one config head with its resolved statistics (`openjmp.tasks.finetune_stats`)."""
    if isinstance(head, EnergyForcesHead | ForcesHead):
        return EnergyForcesTarget(head, stats)
    if isinstance(head, ScalarHead):
        return ScalarTarget(head, stats)
    if isinstance(head, SpatialExtentHead):
        return SpatialExtentTarget(head, stats, backbone.emb_size_atom, backbone.activation)
    if isinstance(head, ClassificationHead):
        return ClassificationTarget(head, backbone.emb_size_atom, backbone.activation)
    raise ConfigError(f"unknown head kind {type(head).__name__}")


def check_heads(heads: list[HeadConfig]) -> None:
    """Raise ConfigError for duplicate output names or more than one energy/forces head."""
    names = [target_name(h) for h in heads]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"heads: output names must be unique, repeated {dup} (at most one energy/forces "
            "head; give scalar heads distinct 'name's)"
        )
    reserved = {"embedding", FORCES, "loss"}
    bad = sorted(set(names) & reserved)
    if bad:
        raise ConfigError(f"heads: names {sorted(reserved)} are reserved, got {bad}")


def as_float_array(x: Tensor) -> np.ndarray:
    """Detached CPU numpy copy (float64 for floating tensors)."""
    x = x.detach().cpu()
    return (x.double() if x.is_floating_point() else x).numpy()
