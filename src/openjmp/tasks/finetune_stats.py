"""Per-target referencing and normalisation constants for fine-tuning, refitted on the training split.

For every configured head the fields the config leaves open (null) are computed from the
*training* part of the data (jmp-reference §2.3, §3.3; the presets give the paper's constants):

* per-element linear references (``fit: true``): least squares of the label on element counts,
  no intercept (`openjmp.data.statistics.fit_element_references`, the authors' linref fit);
  ``path`` (.npz key ``coeff``) or ``values`` are read as given;
* mean and population std of the referenced label (energy eV, scalar in its unit);
* the force std: RMS of the force components, eV/Å (the authors' "force std"; mean 0).

The references can also be fitted to the residual of a pre-trained model's predictions instead
of to the label itself (`residual_statistics`).

The result is a JSON-able dict ``{head name: {"references": [..] | None, "mean", "std",
"force_std"}}`` stored with the fine-tuned model, so predictions can always be de-normalised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from openjmp.config.common import LinearReferences, Normalization
from openjmp.config.finetune import (
    ClassificationHead,
    EnergyForcesHead,
    ForcesHead,
    ScalarHead,
    SpatialExtentHead,
)
from openjmp.data.statistics import element_counts as _element_counts
from openjmp.data.statistics import fit_element_references
from openjmp.errors import ConfigError, DataError
from openjmp.io.references import read_references
from openjmp.io.target_units import target_unit
from openjmp.records import N_ELEMENTS, AtomsRecord
from openjmp.tasks.finetune_targets import ENERGY, HeadConfig, target_name

Stats = dict[str, dict[str, Any]]


def record_label(record: AtomsRecord, key: str, what: str) -> float:
    """The record's energy (``key == "energy"``) or scalar target ``key``; DataError if absent."""
    if key == ENERGY:
        value = record.energy
    else:
        value = record.targets.get(key)
    if value is None:
        have = ["energy"] * (record.energy is not None) + sorted(record.targets)
        raise DataError(
            record.source,
            record.index,
            f"{what} needs label {key!r}, the structure has {have or 'no labels'}",
        )
    arr = np.asarray(value, dtype=np.float64)
    if arr.size != 1:
        raise DataError(
            record.source, record.index, f"label {key!r} is not a scalar: shape {arr.shape}"
        )
    return float(arr.reshape(()))


def element_counts(records: Sequence[AtomsRecord]) -> np.ndarray:
    """(n, 120) int64: atoms of each element per structure."""
    if not len(records):
        return np.zeros((0, N_ELEMENTS), np.int64)
    z = np.concatenate([r.atomic_numbers for r in records])
    return _element_counts(z, np.array([r.natoms for r in records], np.int64))


def _read_references(
    refs: LinearReferences, counts: np.ndarray, labels: np.ndarray | None
) -> np.ndarray:
    if refs.fit:
        assert labels is not None
        return fit_element_references(counts, labels)
    if refs.path is not None:
        return read_references(refs.path)
    return np.asarray(refs.values, np.float64)


def _moments(values: np.ndarray, norm: Normalization, what: str) -> tuple[float, float]:
    mean = norm.mean if norm.mean is not None else float(np.mean(values))
    std = norm.std if norm.std is not None else float(np.std(values))
    if not np.isfinite(mean) or not std > 0 or not np.isfinite(std):
        raise ConfigError(
            f"{what}: the training split gives mean {mean}, std {std}; the std must be > 0 "
            f"({len(values)} training structures): set the normalisation explicitly"
        )
    return float(mean), float(std)


def _offsets(counts: np.ndarray, coeff: np.ndarray) -> np.ndarray:
    """(n,) Σ_atoms coeff[Z]; ConfigError if an element lies beyond the table."""
    k = min(len(coeff), N_ELEMENTS)
    if counts[:, k:].any():
        z = int(np.flatnonzero(counts[:, k:].any(0))[0]) + k
        raise ConfigError(f"the linear references cover Z < {k} but the data has Z = {z}")
    return counts[:, :k] @ np.asarray(coeff[:k], np.float64)


def _referenced(counts: np.ndarray, labels: np.ndarray, coeff: np.ndarray | None) -> np.ndarray:
    return labels if coeff is None else labels - _offsets(counts, coeff)


def reference_offsets(
    records: Sequence[AtomsRecord], references: Sequence[float] | None
) -> np.ndarray:
    """(n,) Σ_atoms references[Z] per structure (zeros without references)."""
    if references is None:
        return np.zeros(len(records))
    return _offsets(element_counts(records), np.asarray(references, np.float64))


def _energy_stats(
    head: EnergyForcesHead | ForcesHead, records: Sequence[AtomsRecord], counts: np.ndarray
) -> dict[str, Any]:
    what = f"head {head.kind} ({head.energy_target})"
    needs_energy = head.forces == "gradient" or isinstance(head, EnergyForcesHead)
    refs_cfg = head.linear_references
    norm = head.energy_normalization
    out: dict[str, Any] = {"references": None, "mean": 0.0, "std": 1.0}
    wants_labels = needs_energy and (
        (refs_cfg is not None and refs_cfg.fit) or norm.mean is None or norm.std is None
    )
    labels = (
        np.array([record_label(r, head.energy_target, what) for r in records])
        if wants_labels
        else None
    )
    if needs_energy:
        coeff = None if refs_cfg is None else _read_references(refs_cfg, counts, labels)
        if coeff is not None:
            _offsets(counts, coeff)  # every element of the data must have a reference
        out["references"] = None if coeff is None else coeff.tolist()
        if labels is not None:
            out["mean"], out["std"] = _moments(
                _referenced(counts, labels, coeff), norm, what + " energy"
            )
        else:
            out["mean"], out["std"] = float(norm.mean), float(norm.std)  # type: ignore[arg-type]
    f_std = head.force_normalization.std
    if f_std is None:
        f_std = _component_rms(records, "forces", what, "set force_normalization.std")
    out["force_std"] = float(f_std)
    return out


def _component_rms(records: Sequence[AtomsRecord], label: str, what: str, fix: str) -> float:
    """RMS component of every record's ``label`` array (forces eV/Å, stress eV/Å³): the
    normalisation of that label's loss. Every record must carry it; all zero is an error."""
    sq, n = 0.0, 0
    for r in records:
        values = getattr(r, label)
        if values is None:
            raise DataError(r.source, r.index, f"{what} trains on {label}, the structure has none")
        sq += float(np.square(values).sum())
        n += values.size
    rms = float(np.sqrt(sq / n)) if n else 0.0
    if not rms > 0:
        raise ConfigError(f"{what}: the training {label} are all zero; {fix}")
    return rms


def _scalar_stats(
    head: ScalarHead | SpatialExtentHead, records: Sequence[AtomsRecord], counts: np.ndarray
) -> dict[str, Any]:
    name = target_name(head)
    what = f"head {name!r}"
    refs_cfg = head.atom_references if isinstance(head, ScalarHead) else None
    norm = head.normalization
    wants = (refs_cfg is not None and refs_cfg.fit) or (
        norm is not None and (norm.mean is None or norm.std is None)
    )
    labels = np.array([record_label(r, head.target, what) for r in records]) if wants else None
    coeff = None if refs_cfg is None else _read_references(refs_cfg, counts, labels)
    if coeff is not None:
        _offsets(counts, coeff)  # every element of the data must have a reference
    out: dict[str, Any] = {"references": None if coeff is None else coeff.tolist()}
    if norm is None:
        out["mean"], out["std"] = 0.0, 1.0
    elif labels is None:
        out["mean"], out["std"] = float(norm.mean), float(norm.std)  # type: ignore[arg-type]
    else:
        out["mean"], out["std"] = _moments(_referenced(counts, labels, coeff), norm, what)
    return out


def resolve_statistics(
    heads: Sequence[HeadConfig], train: Sequence[AtomsRecord], *, fmt: str | None = None
) -> Stats:
    """{head name: statistics} for ``heads`` on the training records ``train`` (module doc).

    Every entry also lists the ``elements`` (atomic numbers) of the training records; scalar
    entries the ``unit`` of their target in format ``fmt`` (`openjmp.io.target_units`).
    """
    if len(train) == 0:
        raise ConfigError("the training split is empty")
    counts = element_counts(train)
    elements = np.flatnonzero(counts.sum(0)).tolist()
    dataset = train[0].dataset
    out: Stats = {}
    for head in heads:
        name = target_name(head)
        if isinstance(head, EnergyForcesHead | ForcesHead):
            out[name] = _energy_stats(head, train, counts)
            if isinstance(head, EnergyForcesHead) and head.stress_coefficient > 0:
                out[name]["stress_std"] = _component_rms(
                    train, "stress", f"head {head.kind}", "set stress_coefficient: 0"
                )
        elif isinstance(head, ScalarHead | SpatialExtentHead):
            out[name] = _scalar_stats(head, train, counts)
            out[name]["unit"] = target_unit(fmt, head.target, dataset)
        elif isinstance(head, ClassificationHead):
            out[name] = {}
        out[name]["elements"] = elements
    return out


def residual_statistics(
    stats: Stats,
    name: str,
    train: Sequence[AtomsRecord],
    key: str,
    predictions: np.ndarray,
    *,
    keep_normalization: Normalization | None = None,
) -> Stats:
    """``stats`` with head ``name``'s references refitted to the residual label − prediction.

    predictions: (n,) the pre-trained model's per-structure predictions (the label's unit) for
    the training records. The references then absorb what the pre-trained model gets wrong
    per element; mean/std are recomputed on label − references − prediction unless
    ``keep_normalization`` gives them.
    """
    labels = np.array([record_label(r, key, f"head {name!r}") for r in train])
    counts = element_counts(train)
    pred = np.asarray(predictions, np.float64)
    if pred.shape != labels.shape:
        raise ValueError(f"predictions have shape {pred.shape}, the labels {labels.shape}")
    coeff = fit_element_references(counts, labels - pred)
    resid = _referenced(counts, labels, coeff) - pred
    mean, std = _moments(resid, keep_normalization or Normalization(), f"head {name!r} residual")
    new = {k: dict(v) for k, v in stats.items()}
    new[name].update(references=coeff.tolist(), mean=mean, std=std)
    return new


def stats_summary(stats: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The statistics without the long reference vectors (for logs): nonzero references by Z."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in stats.items():
        d = {k: v for k, v in s.items() if k != "references"}
        refs = s.get("references")
        if refs is not None:
            d["references"] = {z: round(v, 6) for z, v in enumerate(refs) if v != 0.0}
        out[name] = d
    return out
