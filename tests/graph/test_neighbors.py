"""Candidate pairs against a brute-force oracle (tests/graph/conftest.py).

Both backends (vesin and the torch image enumeration) must return exactly the oracle's set of
(source, target, offset) on random cells: orthorhombic, triclinic and strongly skewed; random
partial periodicity, with zero cell vectors along non-periodic axes; positions outside the cell
(unwrapped by whole lattice vectors); one- and two-atom cells with hundreds of images inside
the cutoff. Distances must agree with the oracle to 1e-9 Å (float64 rounding is ~1e-14 Å).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from openjmp.graph.neighbors import candidate_pairs, completed_basis, image_ranges


def _as_dict(p) -> dict:
    rows = torch.cat([p.source[:, None], p.target[:, None], p.offset], dim=1).tolist()
    assert len(rows) == len({tuple(r) for r in rows}), "duplicate pairs"
    return {tuple(r): float(d) for r, d in zip(rows, p.distance.tolist())}


def _check(pos, cell, pbc, cutoff, oracle) -> int:
    want = oracle(pos, cell, pbc, cutoff)
    for backend in ("vesin", "torch"):
        got = _as_dict(candidate_pairs(pos, cell, pbc, cutoff, backend=backend))
        assert set(got) == set(want), (
            f"{backend}: {len(set(got) - set(want))} extra, {len(set(want) - set(got))} missing"
        )
        err = max((abs(got[k] - want[k]) for k in want), default=0.0)
        assert err < 1e-9, f"{backend}: distance error {err}"
    return len(want)


@pytest.mark.parametrize("seed", range(12))
def test_random_cells_match_oracle(seed, oracle_pairs, make_cell) -> None:
    rng = np.random.default_rng(seed)
    kind = ("ortho", "triclinic", "skewed")[seed % 3]
    cell = make_cell(rng, kind)
    pbc = rng.random(3) < 0.6
    if seed % 4 == 0:
        cell[~pbc] = 0.0  # ASE-style: no vector along non-periodic axes
    n = int(rng.integers(1, 7))
    frac = rng.random((n, 3))
    pos = frac @ np.where(pbc[:, None] | cell.any(1, keepdims=True), cell, np.eye(3) * 3)
    if seed % 2 == 1:  # unwrapped: whole lattice vectors along periodic axes, then translated
        pos = pos + (rng.integers(-2, 3, (n, 3)) * pbc) @ cell + rng.normal(0.0, 5.0, 3)
    cutoff = float(rng.uniform(3.0, 6.0))
    _check(pos, cell, pbc, cutoff, oracle_pairs)


@pytest.mark.parametrize(
    ("pbc", "at_least"),
    [((True, True, True), 500), ((True, True, False), 30), ((False, True, False), 6)],
)
def test_one_atom_cell_with_hundreds_of_images(pbc, at_least, oracle_pairs) -> None:
    # Cu-like fcc primitive cell, slightly distorted: ~600 images within 12 Å in 3-D.
    cell = np.array([[0.0, 1.8, 1.8], [1.8, 0.0, 1.8], [1.8, 1.8, 0.0]]) + np.array(
        [[0.03, -0.02, 0.01], [0.0, 0.04, -0.03], [0.02, 0.0, 0.05]]
    )
    pos = np.array([[0.3, -0.2, 0.1]])
    count = _check(pos, cell, np.array(pbc), 12.0 if all(pbc) else 9.0, oracle_pairs)
    assert count >= at_least


def test_two_atom_skewed_cell(oracle_pairs) -> None:
    cell = np.array([[3.9, 0.0, 0.0], [3.5, 1.9, 0.0], [1.9, 1.1, 3.2]])
    pos = np.array([[0.0, 0.0, 0.0], [1.4, 0.8, 0.9]]) + 10.0  # far outside the cell
    assert _check(pos, cell, np.array([True, True, True]), 8.0, oracle_pairs) > 300


def test_molecule_has_no_images(oracle_pairs) -> None:
    rng = np.random.default_rng(7)
    pos = rng.uniform(0, 6, (10, 3))
    # A cell that would give images if periodic must be ignored when pbc is all False.
    _check(pos, np.eye(3) * 2.0, np.zeros(3, bool), 5.0, oracle_pairs)
    p = candidate_pairs(pos, np.zeros((3, 3)), np.zeros(3, bool), 5.0)
    assert int(p.offset.abs().sum()) == 0


def test_full_list_is_symmetric() -> None:
    rng = np.random.default_rng(3)
    cell = np.diag([3.0, 3.5, 4.0]) + rng.uniform(-0.5, 0.5, (3, 3))
    pos = rng.random((4, 3)) @ cell
    p = candidate_pairs(pos, cell, np.ones(3, bool), 7.0)
    fwd = {
        (s, t, *o): d
        for s, t, o, d in zip(
            p.source.tolist(), p.target.tolist(), p.offset.tolist(), p.distance.tolist()
        )
    }
    for (s, t, *o), d in fwd.items():
        rev = (t, s, *(-x for x in o))
        assert rev in fwd and abs(fwd[rev] - d) < 1e-12


def test_image_ranges_and_completed_basis() -> None:
    cell = torch.tensor([[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    pbc = (True, True, False)
    basis = completed_basis(cell, pbc)
    assert torch.allclose(basis[2].abs(), torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    # Plane spacings 4 and 5 Å: 11 Å needs ceil(11/4) = 3 and ceil(11/5) = 3 images; none along z.
    assert image_ranges(cell, pbc, 11.0) == [3, 3, 0]
    assert image_ranges(cell, pbc, 2.0) == [1, 1, 0]


@pytest.mark.parametrize(
    "far",
    [[6660.0, 82.6, 0.07], [1000.0, 1000.0, 0.0], [2000.0, 82.0, 0.5], [1e5, 1e5, 1e-3]],
)
def test_wide_thin_point_sets_do_not_kill_the_process(far) -> None:  # noqa: ANN001
    """A molecule with one atom hundreds of Å away in a thin plane (found by the reader
    fuzzer) made vesin divide by zero (SIGFPE, the process dies); the search still returns
    exactly the pairs within the cutoff, and the record check names the overlap."""
    from openjmp.errors import DataError
    from openjmp.neighbor_search import half_neighbor_list
    from openjmp.records import AtomsRecord
    from openjmp.validate import check_distances

    pts = np.array([[0.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 1.5, 0.0], far])
    i, j, d = half_neighbor_list(pts, np.zeros((3, 3)), [False] * 3, 1.2, "ijd")
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) in ([(0, 1)], [(1, 0)])
    np.testing.assert_allclose(d, [0.9])
    for cutoff in (6.0, 12.0):  # the graph cutoffs: brute force agrees
        pairs = candidate_pairs(pts, np.zeros((3, 3)), (False,) * 3, cutoff)
        dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        want = {(a, b) for a in range(4) for b in range(4) if a != b and dist[a, b] <= cutoff}
        got = set(zip(pairs.source.tolist(), pairs.target.tolist(), strict=True))
        assert got == want
    rec = AtomsRecord(atomic_numbers=np.array([6, 1, 1, 1]), positions=pts, source="x.h5", index=3)
    with pytest.raises(DataError, match="overlapping atoms: atoms 0 and 1"):
        check_distances(rec, min_distance=1.0)
