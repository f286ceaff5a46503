"""QM9 ``dsgdb9nsd.xyz.tar.bz2``: one ``dsgdb9nsd_NNNNNN.xyz`` per molecule (datasets.md section 5).

Each file: atom count; ``gdb <idx>`` and the 15 properties (tab-separated, QM9's units:
GHz, Debye, bohr³, Hartree, bohr², Hartree, cal/mol/K); one line per atom with symbol,
x y z in Å and the Mulliken charge; the harmonic frequencies (cm⁻¹); SMILES; InChI.
A property the generator does not compute is written as ``nan``; so is an empty frequency list
written as an empty line. No ``uncharacterized.txt`` is written: every generated molecule is
characterised (readers treat a missing list as "skip none"). ``atomref.txt`` holds the free-atom
energies of the same level of theory as the molecules (QM9's table layout: element, ZPVE, U0,
U, H, G in Hartree, Cv in cal/mol/K), so that atomisation energies come out consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from openjmp.data.demo.writers.files import write_tar_bz2

PROPERTIES = (
    "A",
    "B",
    "C",
    "mu",
    "alpha",
    "homo",
    "lumo",
    "gap",
    "r2",
    "zpve",
    "U0",
    "U",
    "H",
    "G",
    "Cv",
)
"""The 15 header properties, in file order."""

TARBALL = "dsgdb9nsd.xyz.tar.bz2"
ATOMREF = "atomref.txt"


@dataclass(frozen=True)
class QM9Molecule:
    """One molecule: Z (N,), positions (N, 3) Å, Mulliken charges (N,) e, properties by name."""

    atomic_numbers: np.ndarray
    positions: np.ndarray
    charges: np.ndarray
    properties: dict[str, float]
    smiles: str
    inchi: str


def _num(x: float) -> str:
    return "nan" if not math.isfinite(x) else f"{x:.10g}"


def format_molecule(index: int, mol: QM9Molecule) -> str:
    """The text of ``dsgdb9nsd_<index>.xyz`` (index is 1-based, as in QM9's file names)."""
    props = "\t".join(_num(float(mol.properties.get(k, math.nan))) for k in PROPERTIES)
    lines = [str(len(mol.atomic_numbers)), f"gdb {index}\t{props}\t"]
    for z, (x, y, zz), q in zip(mol.atomic_numbers, mol.positions, mol.charges, strict=True):
        lines.append(f"{chemical_symbols[int(z)]}\t{x:.10f}\t{y:.10f}\t{zz:.10f}\t{q:.9f}")
    lines.append("")  # no harmonic frequencies computed
    lines.append(f"{mol.smiles}\t{mol.smiles}")
    lines.append(f"{mol.inchi}\t{mol.inchi}")
    return "\n".join(lines) + "\n"


def write_qm9(
    directory: Path, molecules: Sequence[QM9Molecule], atom_energies: dict[int, float]
) -> list[Path]:
    """Write the tarball of ``dsgdb9nsd_<i>.xyz`` files (i from 1) and ``atomref.txt``.

    ``atom_energies``: free-atom energy (Hartree) per Z for H, C, N, O, F.
    """
    members = [
        (f"dsgdb9nsd_{i:06d}.xyz", format_molecule(i, m).encode("ascii"))
        for i, m in enumerate(molecules, start=1)
    ]
    tar = directory / TARBALL
    write_tar_bz2(tar, members)
    lines = [
        "   Element   ZPVE (Ha)   U (0 K)   U (298.15 K)   H (298.15 K)   G (298.15 K)   CV",
        "   (free atoms at the level of theory of the molecules; no thermal corrections)",
    ]
    for z in sorted(atom_energies):
        e = f"{atom_energies[z]:.9f}"
        lines.append(f"   {chemical_symbols[z]}\t0.000000\t{e}\t{e}\t{e}\t{e}\t2.981")
    ref = directory / ATOMREF
    ref.write_text("\n".join(lines) + "\n", encoding="ascii")
    return [tar, ref]
