"""Unit conversion constants to openjmp's internal units (eV, Å, eV/Å).

Only readers in :mod:`openjmp.io` import this module: units are converted in the reader and
nowhere else. Values follow CODATA 2014 as used by ASE (``ase.units``), except where a dataset's
own authors used another constant (documented next to it).
"""

from __future__ import annotations

from ase import units as _u

HARTREE_TO_EV: float = float(_u.Hartree)
"""1 Hartree in eV (ASE, CODATA 2014): 27.211386..."""

BOHR_TO_ANGSTROM: float = float(_u.Bohr)
"""1 bohr in Å (ASE, CODATA 2014): 0.529177..."""

KCAL_PER_MOL_TO_EV: float = 1.0 / 23.061
"""1 kcal/mol in eV as the JMP authors convert rMD17 and MD22 (division by 23.061)."""

HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM
"""1 Hartree/bohr in eV/Å."""
