"""Collation offsets, edge geometry (differentiable in positions and cell) and graph physics.

Geometry: the unit vector points from source to target; ``torch.autograd.gradcheck`` (float64,
central differences, its default tolerances) checks the derivatives with respect to positions
and cell. Physics on the graphs: distances are invariant under translation and rotation (unit
vectors rotate with the structure), moving an atom by a lattice vector changes offsets but not
the geometry (periodic images), a supercell has the same neighbour distances per atom as the
cell it repeats (extensivity), and a toy pair energy's autograd force equals minus its finite
difference gradient.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.geometry import edge_vectors
from openjmp.graph.spec import GraphSpec, graph_spec
from openjmp.records import AtomsRecord

SPEC = GraphSpec(cutoff=5.0, max_neighbors=(12, 8, 4, 400), pbc=True)


def _crystal(seed: int = 0, reps: tuple[int, int, int] = (1, 1, 1)) -> AtomsRecord:
    rng = np.random.default_rng(seed)
    cell = np.array([[3.1, 0.2, 0.0], [0.4, 2.9, 0.1], [0.2, 0.3, 3.3]])
    frac = np.array([[0.0, 0.0, 0.0], [0.48, 0.52, 0.47]]) + rng.normal(0, 0.02, (2, 3))
    shifts = np.array(
        [[i, j, k] for i in range(reps[0]) for j in range(reps[1]) for k in range(reps[2])]
    )
    frac_all = (frac[None] + shifts[:, None]).reshape(-1, 3)
    return AtomsRecord(
        atomic_numbers=[14, 8] * len(shifts),
        positions=frac_all @ cell,
        cell=np.diag(reps) @ cell,
        pbc=True,
        energy=1.0,
    )


def _geometry(sample, name: str = "a2a"):
    b = collate([sample])
    return edge_vectors(b.pos, b.cell, b.batch, b.edges[name])


def _per_target_distances(sample) -> list[list[float]]:
    d, _ = _geometry(sample)
    t = sample.edges["a2a"].index[1]
    return [sorted(np.round(d[t == i].numpy(), 9).tolist()) for i in range(sample.natoms)]


def test_collate_offsets_and_labels() -> None:
    mol = AtomsRecord(
        atomic_numbers=[8, 1, 1],
        positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]],
        energy=-2.0,
        forces=np.ones((3, 3)),
        targets={"q": 0.5},
    )
    crystal = _crystal().replace(forces=np.zeros((2, 3)), targets={"q": 1.5, "only_here": 2.0})
    samples = [
        build_graph_sample(r, graph_spec("oc20") if r.pbc.any() else graph_spec("ani1x"))
        for r in (mol, crystal, mol)
    ]
    b = collate(samples)
    assert b.natoms.tolist() == [3, 2, 3] and b.num_graphs == 3 and b.num_atoms == 8
    assert b.batch.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert b.cell.shape == (3, 3, 3) and torch.equal(b.cell[1], samples[1].cell)
    assert torch.equal(b.cell[0], torch.eye(3, dtype=torch.float64) * 1000)
    start = [0, 3, 5]
    for name in ("main", "a2ee2a", "qint", "a2a"):
        pieces = []
        for i, s in enumerate(samples):
            pieces.append(s.edges[name].index + start[i])
        assert torch.equal(b.edges[name].index, torch.cat(pieces, 1))
        assert torch.equal(
            b.edges[name].cell_offset, torch.cat([s.edges[name].cell_offset for s in samples])
        )
        src_struct = b.batch[b.edges[name].index[0]]
        assert torch.equal(src_struct, b.batch[b.edges[name].index[1]])  # no cross-structure edge
    assert b.energy.tolist() == [-2.0, 1.0, -2.0]
    assert b.forces.shape == (8, 3) and b.forces[3:5].abs().sum() == 0
    assert set(b.targets) == {"q"} and b.targets["q"].tolist() == [0.5, 1.5, 0.5]
    assert b.datasets == ("", "", "") and b.stress is None
    no_energy = build_graph_sample(mol.replace(energy=None), graph_spec("ani1x"))
    assert collate([samples[0], no_energy]).energy is None
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_unit_vector_points_from_source_to_target() -> None:
    rec = AtomsRecord(atomic_numbers=[1, 1], positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 0.8]])
    s = build_graph_sample(rec, graph_spec("ani1x"))
    d, v = _geometry(s)
    src, tgt = s.edges["a2a"].index
    expected = (
        torch.as_tensor(np.array(rec.positions))[tgt]
        - torch.as_tensor(np.array(rec.positions))[src]
    )
    assert torch.allclose(v * d[:, None], expected)
    assert torch.allclose(d, torch.full_like(d, 0.8))


def test_periodic_vector_uses_the_source_image() -> None:
    s = build_graph_sample(_crystal(), SPEC)
    b = collate([s])
    d, v = edge_vectors(b.pos, b.cell, b.batch, b.edges["a2a"])
    src, tgt = b.edges["a2a"].index
    off = b.edges["a2a"].cell_offset.double()
    manual = b.pos[tgt] - (b.pos[src] + off @ b.cell[0])
    assert torch.allclose(v * d[:, None], manual) and bool((d <= 5.0).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_edge_geometry_keeps_its_precision_under_autocast(dtype: torch.dtype) -> None:
    """Mixed-precision training computes edges under autocast: the periodic shift must not
    become a reduced-precision product (in bfloat16, shifts of up to 17.5 Å came out up to 0.066 Å off on the benchmark slabs)."""
    s = build_graph_sample(_crystal(3, reps=(3, 3, 3)), SPEC)
    b = collate([s])
    pos, cell = b.pos.float() + 20.0, b.cell.float()  # away from the origin: large shifts
    ref = edge_vectors(pos, cell, b.batch, b.edges["a2a"])
    assert float(b.edges["a2a"].cell_offset.abs().max()) >= 1
    with torch.autocast("cpu", dtype=dtype):
        out = edge_vectors(pos, cell, b.batch, b.edges["a2a"])
    for o, r in zip(out, ref):
        assert o.dtype == torch.float32 and torch.equal(o, r)


def test_gradcheck_positions_and_cell() -> None:
    samples = [build_graph_sample(_crystal(1), SPEC), build_graph_sample(_crystal(2), SPEC)]
    b = collate(samples)
    es = b.edges["main"]
    pos = b.pos.clone().requires_grad_(True)
    cell = b.cell.clone().requires_grad_(True)
    w = torch.randn(
        es.num_edges, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )

    def f(p, c):
        d, v = edge_vectors(p, c, b.batch, es)
        return d.sin().sum() + (v * w).sum()

    assert torch.autograd.gradcheck(f, (pos, cell))
    d, _ = edge_vectors(pos, cell, b.batch, es)
    (g_cell,) = torch.autograd.grad(d.sum(), cell)
    assert bool(g_cell[0].abs().sum() > 0) and bool(g_cell[1].abs().sum() > 0)


def test_force_is_minus_gradient_of_a_pair_energy() -> None:
    sample = build_graph_sample(_crystal(3), SPEC)
    b = collate([sample])
    es = b.edges["a2a"]

    def energy(p: torch.Tensor) -> torch.Tensor:
        d, _ = edge_vectors(p, b.cell, b.batch, es)
        return torch.exp(-d).sum()

    pos = b.pos.clone().requires_grad_(True)
    forces = -torch.autograd.grad(energy(pos), pos)[0]
    h = 1e-5
    fd = torch.zeros_like(forces)
    for i in range(b.num_atoms):
        for k in range(3):
            plus, minus = b.pos.clone(), b.pos.clone()
            plus[i, k] += h
            minus[i, k] -= h
            fd[i, k] = -(energy(plus) - energy(minus)) / (2 * h)
    assert torch.allclose(forces, fd, rtol=1e-6, atol=1e-8)
    # Newton's third law for a translation-invariant energy.
    assert torch.allclose(forces.sum(0), torch.zeros(3, dtype=torch.float64), atol=1e-10)


def test_translation_rotation_and_periodic_images() -> None:
    rec = _crystal(4)
    base = build_graph_sample(rec, SPEC)
    d0, v0 = _geometry(base)
    # Translation: same edges, same vectors.
    moved = build_graph_sample(
        rec.replace(positions=rec.positions + np.array([0.3, -0.7, 1.1])), SPEC
    )
    d1, v1 = _geometry(moved)
    assert torch.equal(moved.edges["a2a"].index, base.edges["a2a"].index)
    assert torch.allclose(d1, d0, atol=1e-12) and torch.allclose(v1, v0, atol=1e-12)
    # Rotation of positions and cell: same distances, rotated unit vectors.
    rot = Rotation.from_euler("xyz", [0.3, -1.1, 2.0]).as_matrix()
    turned = build_graph_sample(
        rec.replace(positions=rec.positions @ rot.T, cell=rec.cell @ rot.T), SPEC
    )
    d2, v2 = _geometry(turned)
    assert torch.equal(turned.edges["a2a"].index, base.edges["a2a"].index)
    assert torch.allclose(d2, d0, atol=1e-12)
    assert torch.allclose(v2, v0 @ torch.as_tensor(rot).T, atol=1e-12)
    # Periodic image: move atom 1 by a lattice vector; offsets change, geometry does not.
    pos = rec.positions.copy()
    pos[1] += rec.cell[0] - 2 * rec.cell[2]
    imaged = build_graph_sample(rec.replace(positions=pos), SPEC)
    assert _per_target_distances(imaged) == _per_target_distances(base)
    assert not torch.equal(imaged.edges["a2a"].cell_offset, base.edges["a2a"].cell_offset)


def test_supercell_is_extensive() -> None:
    cell_sample = build_graph_sample(_crystal(5), SPEC)
    super_sample = build_graph_sample(_crystal(5, reps=(2, 1, 2)), SPEC)
    per_atom = _per_target_distances(cell_sample)
    per_atom_super = _per_target_distances(super_sample)
    assert super_sample.edges["a2a"].num_edges == 4 * cell_sample.edges["a2a"].num_edges
    for i, dists in enumerate(per_atom_super):
        assert dists == per_atom[i % 2]
