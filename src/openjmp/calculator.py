"""`JMPCalculator`: an ASE calculator (energy, free_energy, forces, stress) on a `JMPModel`.

    from openjmp import JMPCalculator
    atoms.calc = JMPCalculator("run/checkpoints/best.ckpt")        # its own head, graph, units
    atoms.calc = JMPCalculator(load_model("jmp-s.pt"), head="oc20", forces="direct")

Units are ASE's: energy eV, forces eV/Å, stress eV/Å³ in Voigt order (xx, yy, zz, yz, xz, xy)
with ASE's sign, σ = (1/V) ∂E/∂ε (negative for a compressed cell that wants to expand), the
quantity ``Calculator.calculate_numerical_stress`` estimates; the tests compare the two. The
stress is conservative: the derivative of the energy with respect to a symmetric strain ε of
the cell, positions strained along, by autograd.

Partially periodic cells (a slab): the strain acts on all three cell vectors and all positions,
and V is the full cell volume (vacuum included), as ASE's numerical stress does; only the
components along periodic axes mean something physically: relax slabs with
``FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])``. A molecule (no periodic axis) has no
stress: asking for it raises `PropertyNotImplementedError`.

``forces="gradient"`` (conservative, -dE/dx) is what geometry optimisation and MD need;
``"direct"`` uses a direct-force head (what JMP pre-training trained); ``"auto"`` (default) picks
the direct head when the model has one for the task, else the gradient.

The calculator does the model's work once per new structure: ASE asks again only when atoms
change, everything that does not depend on the structure is prepared once (`openjmp.api.
Predictor`), and energy, forces and stress come from one forward and one backward pass.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from ase.calculators.calculator import (
    Calculator,
    PropertyNotImplementedError,
    all_changes,
)

from openjmp.api import ForceMode, Predictor, UnknownElements, load_model
from openjmp.errors import DataError
from openjmp.graph.spec import GraphSpec
from openjmp.model.jmp_model import JMPModel


class JMPCalculator(Calculator):
    """ASE calculator: energy and free_energy in eV, forces in eV/Å, stress in eV/Å³.

    Args:
        model: a `JMPModel` or a checkpoint path (`openjmp.load_model`).
        head, graph, forces, unknown_elements: as `openjmp.api.Predictor` (defaults: the
            model's own energy head and the graph it was trained with).
        device: where the model runs (None: where it is; a path loads onto ``device`` or CPU).
        dtype: parameter dtype when loading from a path.
        references: per-element references when loading from a path (`openjmp.load_model`).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        model: JMPModel | str | Path,
        *,
        head: str | None = None,
        graph: str | GraphSpec | None = None,
        forces: ForceMode = "auto",
        unknown_elements: UnknownElements = "warn",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        references: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(model, (str, Path)):
            model = load_model(model, device=device or "cpu", dtype=dtype, references=references)
        self.model = model
        self._predictor = functools.partial(
            Predictor, head=head, graph=graph, forces=forces, unknown_elements=unknown_elements
        )
        # fail now, not at the first step; the stress variant is made on first request
        self._predictors = {False: self._predictor(model, device=device)}
        if self._predictors[False].energy_head is None:
            raise DataError(None, None, "JMPCalculator needs a model with an energy head")

    @property
    def predictor(self) -> Predictor:
        return self._predictors[False]

    def _with_stress(self) -> Predictor:
        if True not in self._predictors:
            self._predictors[True] = self._predictor(self.model, stress=True)
        return self._predictors[True]

    def calculate(
        self,
        atoms: Any = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        properties = properties or ["energy"]
        super().calculate(atoms, properties, system_changes)
        if self.atoms is None or len(self.atoms) == 0:
            raise DataError(None, None, "JMPCalculator: no atoms to compute")
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.any():
            raise PropertyNotImplementedError(
                "stress: the structure has no periodic axis (a molecule has no stress)"
            )
        predictor = self._with_stress() if want_stress else self.predictor
        pred = predictor(self.atoms)
        if pred.energies is not None:
            energy = float(pred.energies[0])
            self.results["energy"] = energy
            self.results["free_energy"] = energy
        if pred.forces is not None:
            self.results["forces"] = pred.forces[0]
        if pred.stress is not None:
            self.results["stress"] = pred.stress[0]
