"""GFN2-xTB labels through tblite, as an ASE calculator and as a one-call property function.

tblite works in atomic units; everything returned here is converted: energies in eV, forces
in eV/Å (forces = -gradient), dipoles in Debye, orbital energies in Hartree (QM9 keeps them
in Hartree). Output of the library is silenced (verbosity 0). One calculator keeps its
wavefunction between calls (faster SCF along a trajectory); start a new one for each
independent structure so that a label never depends on what was computed before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import CalculationFailed, Calculator, all_changes
from ase.units import Bohr, Debye, Hartree

METHOD = "GFN2-xTB"
ELECTRONIC_TEMPERATURE_K = 300.0
_KB_HARTREE_PER_K = 3.166808578545117e-6
MAX_ITERATIONS = 300


def level_of_theory() -> str:
    """A provenance string such as ``"GFN2-xTB (tblite 0.8.0)"``."""
    from importlib.metadata import version

    return f"{METHOD} (tblite {version('tblite')})"


class XTBCalculator(Calculator):
    """ASE calculator for GFN2-xTB (molecules only, no periodic boundaries).

    Results: ``energy`` (eV), ``forces`` (N, 3) eV/Å, ``dipole`` (3,) e·Å, ``charges`` (N,) e.
    SCF failures raise `ase.calculators.calculator.CalculationFailed`.
    """

    implemented_properties = ["energy", "free_energy", "forces", "dipole", "charges"]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._xtb: Any = None
        self._res: Any = None
        self.last_result: Any = None

    def reset(self) -> None:
        super().reset()
        self._xtb = None
        self._res = None

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties or ["energy"], system_changes)
        assert self.atoms is not None
        if self.atoms.pbc.any():
            raise CalculationFailed(
                "GFN2-xTB labels are made for molecules only (pbc must be False)"
            )
        from tblite.interface import Calculator as TBCalculator

        pos_bohr = self.atoms.positions / Bohr
        if self._xtb is None or any(c in system_changes for c in ("numbers", "pbc", "cell")):
            self._xtb = TBCalculator(METHOD, self.atoms.numbers, pos_bohr)
            self._xtb.set("verbosity", 0)
            self._xtb.set("max-iter", MAX_ITERATIONS)
            self._xtb.set("temperature", ELECTRONIC_TEMPERATURE_K * _KB_HARTREE_PER_K)
            self._res = None
        else:
            self._xtb.update(pos_bohr)
        try:
            res = (
                self._xtb.singlepoint(self._res)
                if self._res is not None
                else self._xtb.singlepoint()
            )
        except RuntimeError as exc:  # TBLiteRuntimeError: SCF not converged, ...
            self._xtb, self._res = None, None
            raise CalculationFailed(f"{METHOD}: {exc}") from exc
        self._res = res
        self.last_result = res
        energy = float(res["energy"]) * Hartree
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": -np.asarray(res["gradient"]) * (Hartree / Bohr),
            "dipole": np.asarray(res["dipole"]) * Bohr,
            "charges": np.asarray(res["charges"]).copy(),
        }


@dataclass(frozen=True)
class XTBProperties:
    """GFN2-xTB single point of one molecule.

    energy: eV; forces: (N, 3) eV/Å; dipole: (3,) Debye; homo, lumo, gap: Hartree;
    charges: (N,) Mulliken charges, e.
    """

    energy: float
    forces: np.ndarray
    dipole: np.ndarray
    homo: float
    lumo: float
    gap: float
    charges: np.ndarray


def xtb_single_point(atoms: Atoms) -> XTBProperties:
    """Label ``atoms`` with a fresh GFN2-xTB calculation (no wavefunction carried over)."""
    calc = XTBCalculator()
    calc.calculate(atoms.copy(), ["energy", "forces"])
    res = calc.last_result
    eps = np.asarray(res["orbital-energies"])  # Hartree
    occ = np.asarray(res["orbital-occupations"])
    n_occ = int(round(float(occ.sum()) / 2.0))
    homo, lumo = float(eps[n_occ - 1]), float(eps[n_occ])
    return XTBProperties(
        energy=float(calc.results["energy"]),
        forces=np.array(calc.results["forces"]),
        dipole=np.asarray(res["dipole"]) * Bohr / Debye,
        homo=homo,
        lumo=lumo,
        gap=lumo - homo,
        charges=np.array(calc.results["charges"]),
    )
