"""Dataset statistics that pre-training and fine-tuning use, computed on the training split.

* Per-element linear energy references: ``coeff = lstsq(X, E)`` with X (n, 120) the element
  counts per structure and no intercept, as the authors fit them (``ani1x_linear_ref.py``);
  elements that never occur get 0 (the minimum-norm solution). Referenced energy:
  ``E - sum_i coeff[Z_i]``.
* Mean and (population) std of raw and referenced energies, eV; force RMS over components
  (the authors' "force std"), mean and max |F|, eV/Å; atoms per structure (the mean is JMP's
  pre-training force-loss weight); mean/std/min/max of every other target.

Inputs are a `RecordStore` (read column-wise from its memmaps, chunk by chunk) or any iterable
of `AtomsRecord`; ``indices`` restricts to a subset (e.g. the training part of a split).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openjmp.data.cache import RecordStore
from openjmp.errors import DataError
from openjmp.records import N_ELEMENTS, AtomsRecord

__all__ = [
    "compute_statistics",
    "element_counts",
    "fit_element_references",
    "fit_linear_references",
    "referenced_energies",
]

_EXACT_ROWS = (
    200_000  # up to this many structures the fit solves lstsq(X, E) exactly as the authors
)
_CHUNK = 8192

Records = RecordStore | Iterable[AtomsRecord]


@dataclass
class _Chunk:
    """Column-wise view of up to ``_CHUNK`` structures."""

    natoms: np.ndarray  # (k,) int64
    z: np.ndarray  # (A,) int64
    energy: np.ndarray  # (k,) float64, NaN where absent
    forces: np.ndarray | None  # (A', 3) of the structures that have forces
    targets: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (k', ...) present values

    def counts(self) -> np.ndarray:
        """(k, 120) element counts."""
        return element_counts(self.z, self.natoms)


def element_counts(z: np.ndarray, natoms: np.ndarray) -> np.ndarray:
    """(k, 120) int64: atoms of each element per structure, for the atomic numbers ``z`` (A,)
    of k structures of ``natoms`` (k,) atoms each, concatenated."""
    k = len(natoms)
    rec = np.repeat(np.arange(k), natoms)
    return np.bincount(rec * N_ELEMENTS + z, minlength=k * N_ELEMENTS).reshape(k, N_ELEMENTS)


def fit_element_references(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(120,) per-element values ``c`` minimising ``|counts c - values|``, no intercept.

    ``counts`` (n, 120) element counts, ``values`` (n,). Elements that never occur get 0: the
    minimum-norm least-squares solution, as the authors' fit (module doc). The normal
    equations (``counts = XᵀX``, ``values = Xᵀy``) give the same solution.
    """
    counts = np.asarray(counts)
    present = np.flatnonzero(counts.sum(0) > 0)
    coeff = np.zeros(N_ELEMENTS)
    if len(present):
        x = counts[:, present].astype(np.float64)
        coeff[present] = np.linalg.lstsq(x, np.asarray(values, np.float64), rcond=None)[0]
    return coeff


def _chunks(records: Records, indices: Sequence[int] | np.ndarray | None) -> Iterator[_Chunk]:
    if isinstance(records, RecordStore):
        yield from _store_chunks(records, indices)
        return
    items = list(records) if indices is None else None
    if items is None:
        seq = records if isinstance(records, Sequence) else list(records)
        items = [seq[int(i)] for i in indices]
    for s in range(0, len(items), _CHUNK):
        part = items[s : s + _CHUNK]
        natoms = np.array([r.natoms for r in part], np.int64)
        z = np.concatenate([r.atomic_numbers for r in part]) if part else np.zeros(0, np.int64)
        energy = np.array([np.nan if r.energy is None else r.energy for r in part], np.float64)
        with_f = [r.forces for r in part if r.forces is not None]
        targets: dict[str, list] = {}
        for r in part:
            for k, v in r.targets.items():
                targets.setdefault(k, []).append(v)
        yield _Chunk(
            natoms,
            z,
            energy,
            np.concatenate(with_f) if with_f else None,
            {k: np.asarray(v) for k, v in targets.items()},
        )


def _store_chunks(store: RecordStore, indices) -> Iterator[_Chunk]:
    idx = np.arange(len(store)) if indices is None else np.sort(np.asarray(indices, np.int64))
    off = np.asarray(store.column("offsets"))
    z_all, e_all, he = (
        store.column("atomic_numbers"),
        store.column("energy"),
        store.column("has_energy"),
    )
    has_f = store.has_column("forces")
    targets = store.manifest["targets"]
    for s in range(0, len(idx), _CHUNK):
        part = idx[s : s + _CHUNK]
        starts, ends = off[part], off[part + 1]
        atom_idx = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)])
            if len(part)
            else np.zeros(0, np.int64)
        )
        energy = np.where(he[part], e_all[part], np.nan)
        forces = None
        if has_f:
            hf = np.asarray(store.column("has_forces")[part])
            fi = (
                np.concatenate([np.arange(a, b) for a, b, h in zip(starts, ends, hf) if h])
                if hf.any()
                else None
            )
            forces = None if fi is None else np.asarray(store.column("forces")[fi], np.float64)
        tv = {}
        for k, t in enumerate(targets):
            has = np.asarray(store.column(f"target_{k}.has")[part])
            tv[t["name"]] = np.asarray(store.column(f"target_{k}")[part[has]])
        yield _Chunk(ends - starts, np.asarray(z_all[atom_idx], np.int64), energy, forces, tv)


def fit_linear_references(
    records: Records, indices: Sequence[int] | np.ndarray | None = None
) -> np.ndarray:
    """(120,) per-element energies (eV) minimising ``|X c - E|`` without intercept (module doc).

    Structures without an energy are left out; `DataError` if none has one.
    """
    rows, energies = [], []
    xtx = np.zeros((N_ELEMENTS, N_ELEMENTS), np.int64)
    xty = np.zeros(N_ELEMENTS)
    n = 0
    for ch in _chunks(records, indices):
        has = np.isfinite(ch.energy)
        x = ch.counts()[has]
        y = ch.energy[has]
        n += len(y)
        xtx += x.T @ x
        xty += x.T.astype(np.float64) @ y
        if n <= _EXACT_ROWS:
            rows.append(x)
            energies.append(y)
    if n == 0:
        raise DataError(None, None, "no structure has an energy: cannot fit linear references")
    if n <= _EXACT_ROWS:
        return fit_element_references(np.concatenate(rows), np.concatenate(energies))
    # normal equations: the same minimum-norm solution, memory independent of n
    return fit_element_references(xtx, xty)


def referenced_energies(
    z: np.ndarray, natoms: np.ndarray, energy: np.ndarray, coeff: np.ndarray
) -> np.ndarray:
    """``E - sum_i coeff[Z_i]`` per structure; z (A,), natoms (k,), energy (k,) eV."""
    per_atom = np.asarray(coeff)[z]
    rec = np.repeat(np.arange(len(natoms)), natoms)
    return energy - np.bincount(rec, weights=per_atom, minlength=len(natoms))


class _Moments:
    """Count, mean, population std, min, max accumulated with a shift (no cancellation)."""

    def __init__(self) -> None:
        self.n, self.shift, self.s1, self.s2 = 0, None, 0.0, 0.0
        self.lo, self.hi = np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1)
        if not len(x):
            return
        if self.shift is None:
            self.shift = float(x[0])
        d = x - self.shift
        self.n += len(x)
        self.s1 += float(d.sum())
        self.s2 += float((d * d).sum())
        self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    def result(self) -> dict[str, float] | None:
        if self.n == 0:
            return None
        mean_d = self.s1 / self.n
        var = max(self.s2 / self.n - mean_d * mean_d, 0.0)
        return {
            "count": self.n,
            "mean": self.shift + mean_d,
            "std": float(np.sqrt(var)),
            "min": self.lo,
            "max": self.hi,
        }


def compute_statistics(
    records: Records,
    *,
    indices: Sequence[int] | np.ndarray | None = None,
    linear_reference: np.ndarray | None = None,
    fit_references: bool = True,
) -> dict[str, Any]:
    """Statistics of ``records`` (or the subset ``indices``) as a JSON-ready dict (module doc).

    Keys: ``n_structures``, ``n_atoms``, ``natoms`` (mean/std/min/max), ``elements`` (Z
    present), ``energy`` (raw moments, ``per_atom_mean``, ``linear_reference`` (120,),
    ``referenced`` moments) or None, ``forces`` (``rms``, ``mean_norm``, ``max_norm``,
    ``n_atoms``) or None, ``targets`` {name: moments (bool targets: ``fraction_true``)}.
    """
    if isinstance(records, Iterator):
        records = list(records)
    coeff = linear_reference
    has_energy = False
    natoms_m, energy_m, per_atom_m = _Moments(), _Moments(), _Moments()
    f_sq, f_norm_sum, f_max, f_atoms = 0.0, 0.0, 0.0, 0
    seen = np.zeros(N_ELEMENTS, bool)
    targets: dict[str, Any] = {}
    n_struct = n_atoms = 0
    for ch in _chunks(records, indices):
        n_struct += len(ch.natoms)
        n_atoms += int(ch.natoms.sum())
        natoms_m.add(ch.natoms)
        seen[np.unique(ch.z)] = True
        has = np.isfinite(ch.energy)
        has_energy |= bool(has.any())
        energy_m.add(ch.energy[has])
        per_atom_m.add(ch.energy[has] / ch.natoms[has])
        if ch.forces is not None and len(ch.forces):
            f_sq += float(np.square(ch.forces).sum())
            norms = np.linalg.norm(ch.forces, axis=1)
            f_norm_sum += float(norms.sum())
            f_max = max(f_max, float(norms.max()))
            f_atoms += len(ch.forces)
        for name, values in ch.targets.items():
            acc = targets.setdefault(name, _Moments() if values.dtype != np.bool_ else [0, 0])
            if isinstance(acc, list):
                acc[0] += int(values.sum())
                acc[1] += len(values)
            else:
                acc.add(values)
    if n_struct == 0:
        raise DataError(None, None, "no structures to compute statistics on")
    energy = None
    if has_energy:
        if coeff is None and fit_references:
            coeff = fit_linear_references(records, indices)
        energy = {**energy_m.result(), "per_atom_mean": per_atom_m.result()["mean"]}
        if coeff is not None:
            ref_m = _Moments()
            for ch in _chunks(records, indices):
                has = np.isfinite(ch.energy)
                ref = referenced_energies(ch.z, ch.natoms, ch.energy, coeff)
                ref_m.add(ref[has])
            energy["linear_reference"] = np.asarray(coeff, float).tolist()
            energy["referenced"] = ref_m.result()
    forces = None
    if f_atoms:
        forces = {
            "rms": float(np.sqrt(f_sq / (3 * f_atoms))),
            "mean_norm": f_norm_sum / f_atoms,
            "max_norm": f_max,
            "n_atoms": f_atoms,
        }
    target_stats = {}
    for name, acc in targets.items():
        if isinstance(acc, list):
            target_stats[name] = {"count": acc[1], "fraction_true": acc[0] / max(acc[1], 1)}
        else:
            target_stats[name] = acc.result()
    return {
        "n_structures": n_struct,
        "n_atoms": n_atoms,
        "natoms": natoms_m.result(),
        "elements": np.flatnonzero(seen).tolist(),
        "energy": energy,
        "forces": forces,
        "targets": target_stats,
    }
