"""`JMPCalculator`: an ASE calculator (energy, free_energy, forces) on a `JMPModel`.

    from openjmp import JMPCalculator, load_model
    atoms.calc = JMPCalculator(load_model("model.pt"), graph="oc20", head="oc20", forces="gradient")

``forces="gradient"`` (conservative, -dE/dx) is what geometry optimisation and MD need;
``"direct"`` uses a direct-force head (what JMP pre-training trained); ``"auto"`` (default) picks
the direct head when the model has one for the task, else the gradient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator, all_changes

from openjmp.api import ForceMode, load_model, predict, resolve_heads
from openjmp.errors import DataError
from openjmp.graph.spec import GraphSpec
from openjmp.model.jmp_model import JMPModel


class JMPCalculator(Calculator):
    """ASE calculator: energy and free_energy in eV, forces in eV/Å."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(
        self,
        model: JMPModel | str | Path,
        *,
        graph: str | GraphSpec = "oc20",
        head: str | None = None,
        forces: ForceMode = "auto",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model = load_model(model) if isinstance(model, (str, Path)) else model
        self.graph = graph
        self.head = head
        self.forces_mode: ForceMode = forces
        resolve_heads(self.model, head, forces)  # fail now, not at the first step

    def calculate(
        self,
        atoms: Any = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        if self.atoms is None or len(self.atoms) == 0:
            raise DataError(None, None, "JMPCalculator: no atoms to compute")
        want_forces = properties is None or "forces" in properties
        pred = predict(
            self.model,
            self.atoms,
            graph=self.graph,
            head=self.head,
            forces=self.forces_mode if want_forces else "none",
        )
        energy = float(pred.energies[0])
        self.results["energy"] = energy
        self.results["free_energy"] = energy
        if pred.forces is not None:
            self.results["forces"] = pred.forces[0]
