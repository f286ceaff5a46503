"""Conservative stress by autograd against ASE's finite differences.

σ = (1/V) ∂E/∂ε for a symmetric strain ε of the cell, positions strained along: the quantity
``Calculator.calculate_numerical_stress`` estimates with central differences of ±1e-6 strain.
On the tiny random float64 model (identity output transform) the two agree to 1e-6 relative on
a skewed triclinic cell, a one-atom cell and a slab (partially periodic: the strain acts on the
whole cell, V is the full cell volume, as ASE's numerical stress does). The graph caps are far
above the neighbour counts, so no neighbour selection changes under the strain (the energy is
smooth in ε). A molecule has no stress: the calculator says so.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_stress

import openjmp
from openjmp.graph.spec import GraphSpec
from openjmp.model.outputs import OutputTransform

from helpers.physics_models import physics_model

GRAPH = GraphSpec(cutoff=4.0, max_neighbors=(200, 200, 200, 2000), pbc=True)
SHORT = GraphSpec(cutoff=3.0, max_neighbors=(200, 200, 200, 2000), pbc=True)
"""For the one-atom cell: its ~30 images within 4 Å sum to energies whose round-off (1e-10
relative) swamps a 1e-6 strain difference; within 3 Å the comparison is clean."""


@pytest.fixture(scope="module")
def calc() -> openjmp.JMPCalculator:
    m = physics_model()
    m.set_head_info("t_energy", output=OutputTransform.energy(50.0))
    return openjmp.JMPCalculator(m, graph=GRAPH, forces="gradient")


def triclinic() -> Atoms:
    cell = [[3.1, 0.0, 0.0], [0.9, 2.9, 0.0], [0.6, -0.7, 3.3]]
    a = Atoms(
        "CuNiO",
        scaled_positions=[[0, 0, 0], [0.48, 0.52, 0.47], [0.2, 0.7, 0.3]],
        cell=cell,
        pbc=True,
    )
    return a


def one_atom() -> Atoms:
    return Atoms(
        "Cu",
        positions=[[0.1, 0.2, 0.3]],
        cell=[[2.6, 0.2, 0.0], [0.4, 2.5, 0.1], [0.3, 0.2, 2.7]],
        pbc=True,
    )


def slab() -> Atoms:
    s = fcc111("Cu", (2, 2, 2), vacuum=5.0)
    s.rattle(0.05, seed=1)
    return s


@pytest.mark.parametrize(
    ("make", "graph"),
    [(triclinic, GRAPH), (one_atom, SHORT), (slab, GRAPH)],
    ids=["triclinic", "one-atom", "slab"],
)
def test_stress_matches_finite_differences(calc, make, graph) -> None:  # noqa: ANN001
    atoms = make()
    atoms.calc = openjmp.JMPCalculator(calc.model, graph=graph, forces="gradient")
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-6)
    assert np.abs(stress).max() > 1e-3  # a real test: the stress is not ~0
    np.testing.assert_allclose(stress, numerical, rtol=1e-6, atol=1e-6 * np.abs(numerical).max())


def test_stress_is_symmetric_and_energy_forces_unchanged(calc) -> None:  # noqa: ANN001
    atoms = triclinic()
    atoms.calc = calc
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    full = atoms.get_stress(voigt=False)
    np.testing.assert_allclose(full, full.T, atol=1e-12)
    other = triclinic()
    other.calc = openjmp.JMPCalculator(calc.model, graph=GRAPH, forces="gradient")
    assert other.get_potential_energy() == pytest.approx(e, rel=1e-12)  # without stress
    np.testing.assert_allclose(other.get_forces(), f, rtol=1e-10, atol=1e-12)


def test_molecule_has_no_stress(calc) -> None:  # noqa: ANN001
    atoms = Atoms("H2O", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    atoms.calc = openjmp.JMPCalculator(calc.model, graph="ani1x", forces="gradient")
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="no periodic axis"):
        atoms.get_stress()
    with pytest.raises(openjmp.DataError, match="stress needs a periodic cell"):
        openjmp.predict(calc.model, atoms, graph="ani1x", stress=True, forces="gradient")


def test_predict_stress_for_a_batch_equals_one_by_one(calc) -> None:  # noqa: ANN001
    frames = [triclinic(), one_atom(), bulk("Cu", "fcc", a=3.6) * (2, 1, 1)]
    frames[2].rattle(0.03, seed=2)
    together = openjmp.predict(calc.model, frames, graph=GRAPH, stress=True, forces="gradient")
    for i, a in enumerate(frames):
        alone = openjmp.predict(calc.model, a, graph=GRAPH, stress=True, forces="gradient")
        np.testing.assert_allclose(together.stress[i], alone.stress[0], rtol=1e-8, atol=1e-12)
    assert together.stress.shape == (3, 6) and together.units["stress"] == "eV/Å^3"
