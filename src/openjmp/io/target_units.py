"""The unit each reader's per-structure targets come in (openjmp's units inside: eV, Å).

`target_unit` answers for the formats with named targets (QM9, MatBench, QMOF; energies of
every format are eV). A fine-tuned scalar head is labelled with it, so whoever uses the model
later reads predictions in the same unit as the labels it was trained on. Unknown targets
(``ase`` files with user columns) get "" : "the unit of your labels".
"""

from __future__ import annotations

QM9_UNITS: dict[str, str] = {
    "mu": "D",
    "alpha": "a0^3",
    "eps_HOMO": "eV",
    "eps_LUMO": "eV",
    "delta_eps": "eV",
    "R_2_Abs": "a0^2",
    "ZPVE": "eV",
    "U_0": "eV",
    "U": "eV",
    "H": "eV",
    "G": "eV",
    "c_v": "cal/mol/K",
    "U_0_ATOM": "eV",
    "U_ATOM": "eV",
    "H_ATOM": "eV",
    "G_ATOM": "eV",
    "A": "GHz",
    "B": "GHz",
    "C": "GHz",
}
"""QM9 targets as `openjmp.io.qm9` yields them (PyG's / JMP's units)."""

MATBENCH_UNITS: dict[str, str] = {
    "exfoliation_en": "meV/atom",
    "last phdos peak": "cm^-1",
    "n": "",
    "log10(G_VRH)": "log10(GPa)",
    "log10(K_VRH)": "log10(GPa)",
    "e_form": "eV/atom",
    "gap pbe": "eV",
}
"""MatBench v0.1 targets in their native units (perovskites' e_form is eV/unit cell)."""


def target_unit(fmt: str | None, target: str, dataset: str = "") -> str:
    """Unit of target ``target`` read in format ``fmt`` ("" when the reader does not know)."""
    if target == "energy":
        return "eV"
    if fmt == "qm9":
        return QM9_UNITS.get(target, "")
    if fmt == "matbench":
        if target == "e_form" and "perovskites" in dataset:
            return "eV/unit cell"
        return MATBENCH_UNITS.get(target, "")
    if fmt == "qmof" and target == "bandgap":
        return "eV"
    if fmt == "spice" and target == "formation_energy":
        return "eV"
    return ""
