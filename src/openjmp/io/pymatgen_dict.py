"""Parse a pymatgen ``Structure.as_dict()`` without pymatgen (MatBench and QMOF store these).

A structure dict has ``lattice.matrix`` (3x3 Å, rows are lattice vectors), optionally
``lattice.pbc``, and ``sites``: each with ``species`` (a list of ``{"element", "occu"}``,
element possibly with an oxidation suffix such as ``"Fe2+"``), fractional ``abc`` and Cartesian
``xyz`` (Å). pymatgen rebuilds Cartesian positions as ``abc @ matrix``; that is the default
here. ``coords="xyz"`` takes the stored Cartesian ones instead (JMP's QMOF path).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np
from ase.data import atomic_numbers as _ASE_Z

from openjmp.errors import DataError

__all__ = ["element_number", "parse_structure"]

_ELEMENT = re.compile(r"^([A-Z][a-z]?)")


def element_number(symbol: Any, source: object, index: object) -> int:
    """Atomic number of ``"Fe"``, ``"Fe2+"``, ``"O2-"``; `DataError` for anything else."""
    m = _ELEMENT.match(str(symbol))
    if m is None or m.group(1) not in _ASE_Z or _ASE_Z[m.group(1)] == 0:
        raise DataError(source, index, f"unknown element {symbol!r}")
    return int(_ASE_Z[m.group(1)])


def parse_structure(
    d: Any, source: object, index: object, *, coords: Literal["abc", "xyz"] = "abc"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Z (N,), positions (N, 3) Å, cell (3, 3) Å, pbc (3,)) from a structure dict."""
    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        raise DataError(
            source, index, "structure is not a pymatgen Structure dict (no lattice/sites)"
        )
    lattice = d["lattice"]
    try:
        cell = np.asarray(lattice["matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(source, index, f"unreadable lattice matrix ({exc!r})") from None
    if cell.shape != (3, 3):
        raise DataError(source, index, f"lattice matrix has shape {cell.shape}, expected (3, 3)")
    pbc = np.asarray(lattice.get("pbc", (True, True, True)), dtype=bool).reshape(-1)
    if pbc.shape != (3,):
        raise DataError(source, index, f"lattice pbc has shape {pbc.shape}, expected (3,)")
    sites = d["sites"]
    if not isinstance(sites, list) or not sites:
        raise DataError(source, index, "structure has no sites")
    z = np.zeros(len(sites), np.int64)
    pos = np.zeros((len(sites), 3))
    for i, site in enumerate(sites):
        species = site.get("species") if isinstance(site, dict) else None
        if not species:
            raise DataError(source, index, f"site {i} has no species")
        occu = sum(float(s.get("occu", 1.0)) for s in species)
        if len(species) != 1 or abs(occu - 1.0) > 1e-6:
            raise DataError(
                source,
                index,
                f"site {i} is partially occupied ({species}); only ordered structures",
            )
        z[i] = element_number(species[0].get("element"), source, index)
        key = coords if coords in site else ("xyz" if coords == "abc" else "abc")
        if key not in site:
            raise DataError(source, index, f"site {i} has neither abc nor xyz coordinates")
        try:
            v = np.asarray(site[key], dtype=np.float64).reshape(3)
        except (TypeError, ValueError):
            raise DataError(source, index, f"site {i} has bad {key} coordinates") from None
        pos[i] = v @ cell if key == "abc" else v
    return z, pos, cell, pbc
