"""Brute-force oracles for the graph tests, in plain numpy (no code shared with openjmp.graph)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

Edge = tuple[int, int, int, int, int]  # source, target, offset x, y, z


def brute_force_pairs(
    pos: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> dict[Edge, float]:
    """Every (source, target, image) with 0.01 Å < |r_t - (r_s + n @ cell)| <= cutoff.

    Images n range over |n_i| <= (cutoff + span) * |dual_i| along periodic axes, where span is
    the largest distance between two atoms as given and dual_i the dual basis of the periodic
    cell vectors: |n . cell| >= |n_i| / |dual_i|, so no image outside can be within the cutoff.
    """
    pbc = np.asarray(pbc, dtype=bool)
    per = np.flatnonzero(pbc)
    span = float(np.max(np.linalg.norm(pos[:, None] - pos[None], axis=-1))) if len(pos) else 0.0
    ranges = [range(0, 1)] * 3
    if len(per):
        a = cell[per]
        dual = np.linalg.inv(a @ a.T) @ a
        for k, ax in enumerate(per):
            r = int(np.floor((cutoff + span) * np.linalg.norm(dual[k]))) + 1
            ranges[ax] = range(-r, r + 1)
    out: dict[Edge, float] = {}
    for n in itertools.product(*ranges):
        shift = np.asarray(n, dtype=float) @ cell
        d = np.linalg.norm(pos[:, None, :] - (pos[None, :, :] + shift), axis=-1)  # [t, s]
        t_idx, s_idx = np.nonzero((d <= cutoff) & (d > 0.01))
        for t, s in zip(t_idx.tolist(), s_idx.tolist()):
            out[(s, t, *n)] = float(d[t, s])
    return out


def random_cell(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A random lattice: 'ortho', 'triclinic' (mild) or 'skewed' (strongly sheared)."""
    lengths = rng.uniform(2.0, 5.0, 3)
    if kind == "ortho":
        return np.diag(lengths)
    shear = 0.3 if kind == "triclinic" else 1.2
    cell = np.diag(lengths) + rng.uniform(-shear, shear, (3, 3)) * lengths[:, None]
    if abs(np.linalg.det(cell)) < 0.2 * np.prod(lengths):
        cell = np.diag(lengths) + 0.5 * (cell - np.diag(lengths))
    return cell


@pytest.fixture
def oracle_pairs() -> Callable[..., dict[Edge, float]]:
    return brute_force_pairs


@pytest.fixture
def make_cell() -> Callable[..., np.ndarray]:
    return random_cell
