"""SPICE HDF5 (``SPICE-<ver>.hdf5`` and JMP's ``dipeptides.h5`` / ``solvated_amino_acids.h5``).

Layout (datasets.md §8): one group per molecule with ``atomic_numbers`` (N,) int16,
``conformations`` (M, N, 3) bohr, ``dft_total_energy`` (M,) Ha, ``dft_total_gradient``
(M, N, 3) Ha/bohr and ``formation_energy`` (M,) Ha, each with a ``units`` attribute (honoured;
the values above are assumed where it is absent), plus ``smiles``/``subset`` strings.

SPICE stores the energy **gradient**; forces are its negative (JMP PR #2). Records: positions
Å, energy = ``dft_total_energy`` eV, forces = −gradient eV/Å, target ``formation_energy`` eV
(what JMP trains on), no cell, tags 2, index ``"<molecule>__<conformer>"`` (JMP's sid),
dataset ``"spice"``. Groups are read in the file's (name) order, as JMP flattens them.

Conversion constants are JMP's (``src/jmp/modules/transforms/units.py``): Ha = 1/0.0367493 eV,
bohr = 0.529177 Å; they differ from CODATA by < 2e-5 relative.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io._h5 import check_frames, is_group, member, names, numeric, open_h5, unit_attr
from openjmp.records import AtomsRecord

__all__ = ["read"]

JMP_HARTREE_TO_EV = 1.0 / 0.0367493
JMP_BOHR_TO_ANGSTROM = 0.529177

_LENGTH = {"bohr": JMP_BOHR_TO_ANGSTROM, "angstrom": 1.0, "ang": 1.0, "a": 1.0}
_ENERGY = {"hartree": JMP_HARTREE_TO_EV, "ha": JMP_HARTREE_TO_EV, "ev": 1.0}


def _factor(table: dict[str, float], unit: str | None, default: str, path, where, name) -> float:
    unit = default if unit is None else unit
    if unit not in table:
        raise DataError(
            path, where, f"{name} has unsupported units {unit!r} (know {sorted(table)})"
        )
    return table[unit]


def _gradient_factor(unit: str | None, path, where) -> float:
    unit = "hartree/bohr" if unit is None else unit.replace(" ", "")
    if "/" not in unit:
        raise DataError(path, where, f"dft_total_gradient has unsupported units {unit!r}")
    e, length = unit.split("/", 1)
    e_f = _factor(_ENERGY, e, "hartree", path, where, "dft_total_gradient")
    l_f = _factor(_LENGTH, length, "bohr", path, where, "dft_total_gradient")
    return e_f / l_f


def read(
    path: str | Path, *, validate: bool = True, on_error: OnError = None
) -> Iterator[AtomsRecord]:
    """Conformers of a SPICE file, molecule by molecule (see module doc)."""
    return _iterate(existing(path), validate, on_error)


def _iterate(path: Path, validate: bool, on_error: OnError) -> Iterator[AtomsRecord]:
    with open_h5(path) as f:
        for mol in names(f, path, None):
            try:
                group = member(f, mol, path, mol)
                if not is_group(group):
                    raise DataError(path, mol, "top-level item is not a molecule group")
                z = numeric(group, "atomic_numbers", path, mol, kind="z").reshape(-1)
                pos = numeric(group, "conformations", path, mol)
                energy = numeric(group, "dft_total_energy", path, mol)
                grad = numeric(group, "dft_total_gradient", path, mol)
                per_frame = {"dft_total_energy": energy}
                if member(group, "formation_energy", path, mol) is not None:
                    per_frame["formation_energy"] = numeric(group, "formation_energy", path, mol)
                n = check_frames(
                    path, mol, len(z), {"conformations": pos, "dft_total_gradient": grad}, per_frame
                )

                def units(name: str, group=group, mol=mol) -> str | None:
                    return unit_attr(group, name, path, mol)

                length = _factor(
                    _LENGTH, units("conformations"), "bohr", path, mol, "conformations"
                )
                e_f = _factor(
                    _ENERGY, units("dft_total_energy"), "hartree", path, mol, "dft_total_energy"
                )
                f_f = _factor(
                    _ENERGY, units("formation_energy"), "hartree", path, mol, "formation_energy"
                )
                g_f = _gradient_factor(units("dft_total_gradient"), path, mol)
            except DataError as err:
                report(err, on_error)
                continue
            forces = -grad * g_f  # F = -dE/dx
            for i in range(n):
                targets = {}
                if "formation_energy" in per_frame:
                    targets["formation_energy"] = float(per_frame["formation_energy"][i]) * f_f
                rec = AtomsRecord(
                    atomic_numbers=z,
                    positions=pos[i] * length,
                    energy=float(energy[i]) * e_f,
                    forces=forces[i],
                    targets=targets,
                    source=str(path),
                    index=f"{mol}__{i}",
                    dataset="spice",
                )
                rec = finish(rec, validate=validate, on_error=on_error)
                if rec is not None:
                    yield rec
