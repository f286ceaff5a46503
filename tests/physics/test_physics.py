"""Physics of the model, run on both force kinds (direct head, and -dE/dx), float64, tiny model.

* energy invariant and forces equivariant under rotation, translation and atom permutation;
* gradient forces equal central finite differences of the energy (no distance near the graph
  cutoff: with the 12 Å basis on an 8 Å graph the energy jumps there, erratum 6);
* no gradient (and no information) leaks between the structures of a batch;
* periodic images: a supercell of a rattled crystal has the same energy per atom and the same
  forces on equivalent atoms (rattled so that no neighbour cap has ties).

Tolerances: symmetry operations change the result only by float64 rounding of coordinates and
summation order (1e-9 relative is ~1e6 times that); the finite-difference step h = 1e-4 Å gives an
O(h^2) truncation error of ~1e-8 eV/Å.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule

from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.spec import graph_spec
from openjmp.records import AtomsRecord

from helpers.physics_models import FORCE_KINDS, cap_gap_and_margin, physics_model, run

REL = 1e-9


def close(a: torch.Tensor, b: torch.Tensor, rel: float = REL) -> None:
    scale = float(b.abs().max()) if b.numel() else 0.0
    assert float((a - b).abs().max()) <= rel * scale + 1e-12, (a - b).abs().max()


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return physics_model()


@pytest.fixture(scope="module")
def mol():  # noqa: ANN201
    a = molecule("CH3CH2OH")
    a.positions += np.random.default_rng(1).normal(scale=0.05, size=a.positions.shape)
    return a


@pytest.fixture(scope="module")
def crystal():  # noqa: ANN201
    """A rattled 2-atom triclinic cell whose neighbour caps have no near-ties (checked)."""
    rng = np.random.default_rng(0)
    a = bulk("Si", "diamond", a=5.43)
    a.set_cell(a.cell[:] @ (np.eye(3) + rng.uniform(-0.04, 0.04, (3, 3))), scale_atoms=True)
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)
    gap, margin = cap_gap_and_margin(a, "oc20")
    assert gap > 5e-3 and margin > 5e-3, (gap, margin)
    return a


def rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize("kind", FORCE_KINDS)
@pytest.mark.parametrize("system", ["mol", "crystal"])
def test_rotation(model, mol, crystal, kind: str, system: str) -> None:  # noqa: ANN001
    atoms = mol if system == "mol" else crystal
    setting = "ani1x" if system == "mol" else "oc20"
    r = rotation(5)
    rot = atoms.copy()
    rot.positions = atoms.positions @ r.T
    rot.set_cell(atoms.cell[:] @ r.T)
    a, b = run(model, [atoms], setting), run(model, [rot], setting)
    close(b["energy"], a["energy"])
    close(b[kind], a[kind] @ torch.from_numpy(r).T)


@pytest.mark.parametrize("kind", FORCE_KINDS)
def test_translation_and_permutation(model, mol, crystal, kind: str) -> None:  # noqa: ANN001
    for atoms, setting in ((mol, "ani1x"), (crystal, "oc20")):
        ref = run(model, [atoms], setting)
        moved = atoms.copy()
        moved.positions += np.array([3.1, -7.2, 0.4])
        out = run(model, [moved], setting)
        close(out["energy"], ref["energy"])
        close(out[kind], ref[kind])
        perm = np.random.default_rng(0).permutation(len(atoms))
        out = run(model, [atoms[perm]], setting)
        close(out["energy"], ref["energy"])
        close(out[kind], ref[kind][perm])


@pytest.mark.parametrize("system", ["mol", "crystal"])
def test_gradient_forces_equal_finite_differences(model, mol, crystal, system: str) -> None:  # noqa: ANN001
    atoms = (mol if system == "mol" else crystal).copy()
    setting = "ani1x" if system == "mol" else "oc20"
    gap, margin = cap_gap_and_margin(atoms, setting)
    h = 1e-4
    assert gap > 10 * h and margin > 10 * h  # no edge enters, leaves or swaps rank within +-h
    forces = run(model, [atoms], setting)["gradient"].numpy()
    idx = [(0, 0), (0, 2), (len(atoms) - 1, 1)] if system == "mol" else [(0, 0), (1, 1), (1, 2)]
    for i, c in idx:
        e = []
        for sign in (1, -1):
            a = atoms.copy()
            a.positions[i, c] += sign * h
            e.append(float(run(model, [a], setting)["energy"][0]))
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(fd - forces[i, c]) <= 1e-6 * np.abs(forces).max() + 1e-8, (
            i,
            c,
            fd,
            forces[i, c],
        )


def test_no_gradient_leaks_between_structures(model, mol, crystal) -> None:  # noqa: ANN001
    samples = [
        build_graph_sample(AtomsRecord.from_ase(mol), graph_spec("oc20")),
        build_graph_sample(AtomsRecord.from_ase(crystal), graph_spec("oc20")),
    ]
    b = collate(samples)
    pos = b.pos.clone().requires_grad_(True)
    b2 = type(b)(**{**{f: getattr(b, f) for f in b.__dataclass_fields__}, "pos": pos})
    out = model(b2, create_graph=True)
    n0 = len(mol)
    (g,) = torch.autograd.grad(out["t_energy"][0], pos, retain_graph=True)
    assert torch.all(g[n0:] == 0) and g[:n0].abs().max() > 0
    w = torch.randn(
        out["t_forces"].shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    (g,) = torch.autograd.grad((out["t_forces"][n0:] * w[n0:]).sum(), pos, retain_graph=True)
    assert torch.all(g[:n0] == 0) and g[n0:].abs().max() > 0
    # second derivatives (weighted: the plain sum of forces is 0 by translation invariance)
    (g,) = torch.autograd.grad((out["t_gradient"][:n0] * w[:n0]).sum(), pos)
    assert torch.all(g[n0:] == 0) and g[:n0].abs().max() > 0
    alone = run(model, [mol], "oc20")
    close(out["t_energy"][:1].detach(), alone["energy"], 1e-12)


@pytest.mark.parametrize("kind", FORCE_KINDS)
def test_supercell_has_same_energy_per_atom(model, crystal, kind: str) -> None:  # noqa: ANN001
    big = crystal.repeat((2, 1, 1))
    gap, _ = cap_gap_and_margin(big, "oc20")
    assert gap > 1e-4
    small, large = run(model, [crystal], "oc20"), run(model, [big], "oc20")
    close(large["energy"] / len(big), small["energy"] / len(crystal), 1e-8)
    n = len(crystal)
    close(large[kind][:n], small[kind], 1e-8)
    close(large[kind][n:], small[kind], 1e-8)
