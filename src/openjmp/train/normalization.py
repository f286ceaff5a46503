"""Per-dataset target normalisation, resolved from the config and the training split.

JMP trains on referenced, normalised targets (jmp-reference §2.3):

    Ê = (E − Σ_atoms ref[Z] − mean) / std        F̂ = F / force_std

`resolve_normalization` fills what the config leaves open (``null``) from the training split
only: the linear references (least squares on element counts, no intercept, when ``fit: true``),
the mean and std of the referenced energies, the RMS force component. The result is written as
JSON beside the run (``cache_dir/<name>-normalization-<key>.json``, atomically) and reused when
the same data and settings come back (resume, DDP ranks).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from openjmp.config.common import ForceNormalization, LinearReferences, Normalization
from openjmp.data.cache import RecordStore
from openjmp.data.statistics import compute_statistics, fit_linear_references
from openjmp.errors import ConfigError, DataError
from openjmp.io.paths import atomic_write_bytes
from openjmp.io.references import read_references
from openjmp.records import N_ELEMENTS


@dataclass(frozen=True)
class TargetNormalization:
    """How one dataset's energies and forces are turned into training targets.

    Attributes:
        references: per-element energies (K,) eV indexed by Z (zeros: no referencing).
        energy_mean: eV, subtracted after referencing.
        energy_std: eV, divides the referenced, centred energy.
        force_std: eV/Å, divides forces (their mean stays 0, so they stay equivariant).
        mean_natoms: mean atoms per training structure (JMP's force-loss weight), for reports.
        elements: atomic numbers present in the training part (empty: not recorded).
    """

    references: tuple[float, ...]
    energy_mean: float
    energy_std: float
    force_std: float
    mean_natoms: float = float("nan")
    elements: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> TargetNormalization:
        return cls(
            references=tuple(float(x) for x in data["references"]),  # type: ignore[union-attr]
            energy_mean=float(data["energy_mean"]),  # type: ignore[arg-type]
            energy_std=float(data["energy_std"]),  # type: ignore[arg-type]
            force_std=float(data["force_std"]),  # type: ignore[arg-type]
            mean_natoms=float(data.get("mean_natoms", float("nan"))),  # type: ignore[arg-type]
            elements=tuple(int(z) for z in data.get("elements", ())),  # type: ignore[attr-defined]
        )


def _given_references(refs: LinearReferences, name: str) -> np.ndarray:
    if refs.values is not None:
        return np.asarray(refs.values, dtype=np.float64)
    assert refs.path is not None
    return read_references(refs.path)


def _key(store: RecordStore, train: np.ndarray, settings: dict[str, object]) -> str:
    h = hashlib.sha256()
    h.update(str(store.path.resolve()).encode())
    h.update(np.ascontiguousarray(train, dtype=np.int64).tobytes())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def resolve_normalization(
    name: str,
    store: RecordStore,
    train: np.ndarray,
    *,
    references: LinearReferences | None,
    energy: Normalization,
    forces: ForceNormalization,
    cache_dir: Path | None = None,
) -> TargetNormalization:
    """The dataset's `TargetNormalization`: config values where given, else from ``train``.

    Args:
        name: dataset name, for messages and the cache file.
        store: the training source; ``train`` (k,) int64 positions of the training part.
        references, energy, forces: the dataset's config sections.
        cache_dir: where to keep the result as JSON (None: not cached).

    Raises:
        DataError: statistics needed but the training part has no energies / forces, or a
            constant energy (std 0) when the std is to be computed.
    """
    settings = {
        "references": None if references is None else references.model_dump(mode="json"),
        "energy": energy.model_dump(mode="json"),
        "forces": forces.model_dump(mode="json"),
    }
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"{name}-normalization-{_key(store, train, settings)}.json"
        if path.is_file():
            return TargetNormalization.from_json(json.loads(path.read_text()))
    if len(train) == 0:
        raise DataError(store.path, None, f"dataset {name!r}: the training part is empty")

    coeff = None
    if references is not None:
        coeff = (
            fit_linear_references(store, train)
            if references.fit
            else _given_references(references, name)
        )
    if coeff is not None and len(store):
        z_max = int(np.asarray(store.column("atomic_numbers")).max())
        if z_max >= len(coeff):
            raise ConfigError(
                f"datasets.{name}.linear_references: the table covers Z < {len(coeff)} but the "
                f"data contain Z = {z_max}"
            )
    # always computed: cheap next to training, and it also gives the mean atom count
    stats = compute_statistics(store, indices=train, linear_reference=coeff, fit_references=False)
    e = stats["energy"]
    e_ref = None if e is None else (e["referenced"] if coeff is not None else e)
    if (energy.mean is None or energy.std is None) and e_ref is None:
        raise DataError(store.path, None, f"dataset {name!r}: no energies to normalise with")
    mean = energy.mean if energy.mean is not None else float(e_ref["mean"])  # type: ignore[index]
    std = energy.std if energy.std is not None else float(e_ref["std"])  # type: ignore[index]
    if not std > 0:
        raise DataError(
            store.path,
            None,
            f"dataset {name!r}: referenced energies have zero spread; set energy_normalization.std",
        )
    f = stats["forces"]
    if forces.std is None and (f is None or not f["rms"] > 0):
        raise DataError(store.path, None, f"dataset {name!r}: no non-zero forces to normalise with")
    fstd = forces.std if forces.std is not None else float(f["rms"])  # type: ignore[index]
    refs = np.zeros(N_ELEMENTS) if coeff is None else np.asarray(coeff, dtype=np.float64)
    result = TargetNormalization(
        references=tuple(float(x) for x in refs),
        energy_mean=float(mean),
        energy_std=float(std),
        force_std=float(fstd),
        mean_natoms=float(stats["natoms"]["mean"]),
        elements=tuple(int(z) for z in stats["elements"]),
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(result.to_json(), indent=1).encode())
    return result
