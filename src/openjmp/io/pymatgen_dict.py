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


def _coords(value: Any, source: object, index: object, what: str) -> np.ndarray:
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(source, index, f"{what} are not three numbers: {value!r:.60}") from None
    if v.shape != (3,):
        raise DataError(source, index, f"{what} have shape {v.shape}, expected (3,)")
    return v


XYZ_TOLERANCE = 1e-3
"""Å: a site's stored Cartesian ``xyz`` and ``abc @ matrix`` may differ by this much (pymatgen
writes one from the other; more means the dict was edited inconsistently)."""


def parse_structure(
    d: Any, source: object, index: object, *, coords: Literal["abc", "xyz"] = "abc"
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(Z (N,), positions (N, 3) Å, cell (3, 3) Å, pbc (3,)) from a structure dict.

    Checks the dict's internal consistency: a 3x3 lattice, three pbc flags, one fully occupied
    species per site, three coordinates, and (where a site has both) ``xyz`` = ``abc @ matrix``.
    """
    if not isinstance(d, dict) or "lattice" not in d or "sites" not in d:
        raise DataError(
            source, index, "structure is not a pymatgen Structure dict (no lattice/sites)"
        )
    lattice = d["lattice"]
    if not isinstance(lattice, dict) or "matrix" not in lattice:
        raise DataError(source, index, "lattice is not a dict with a 'matrix'")
    try:
        cell = np.asarray(lattice["matrix"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(source, index, f"unreadable lattice matrix ({exc})") from None
    if cell.shape != (3, 3):
        raise DataError(source, index, f"lattice matrix has shape {cell.shape}, expected (3, 3)")
    pbc_raw = lattice.get("pbc", (True, True, True))
    if (
        not isinstance(pbc_raw, list | tuple)
        or len(pbc_raw) != 3
        or not all(isinstance(p, bool | int) for p in pbc_raw)
    ):
        raise DataError(source, index, f"lattice pbc must be three booleans, got {pbc_raw!r:.60}")
    pbc = np.asarray(pbc_raw, dtype=bool)
    sites = d["sites"]
    if not isinstance(sites, list) or not sites:
        raise DataError(source, index, "structure has no sites")
    z = np.zeros(len(sites), np.int64)
    pos = np.zeros((len(sites), 3))
    for i, site in enumerate(sites):
        species = site.get("species") if isinstance(site, dict) else None
        if not isinstance(species, list) or not species:
            raise DataError(source, index, f"site {i} has no species list")
        if not all(isinstance(sp, dict) for sp in species):
            raise DataError(source, index, f"site {i}: species entries must be dicts")
        try:
            occu = sum(float(sp.get("occu", 1.0)) for sp in species)
        except (TypeError, ValueError):
            raise DataError(source, index, f"site {i}: occupancy is not a number") from None
        if len(species) != 1 or abs(occu - 1.0) > 1e-6:
            raise DataError(
                source,
                index,
                f"site {i} is partially occupied ({species}); only ordered structures",
            )
        z[i] = element_number(species[0].get("element"), source, index)
        have = [k for k in ("abc", "xyz") if k in site]
        if not have:
            raise DataError(source, index, f"site {i} has neither abc nor xyz coordinates")
        got = {k: _coords(site[k], source, index, f"site {i} {k} coordinates") for k in have}
        cart = {"xyz": got.get("xyz"), "abc": got["abc"] @ cell if "abc" in got else None}
        if len(got) == 2 and np.abs(cart["abc"] - cart["xyz"]).max() > XYZ_TOLERANCE:
            raise DataError(
                source,
                index,
                f"site {i}: xyz {got['xyz'].tolist()} disagrees with abc @ lattice matrix "
                f"{cart['abc'].round(4).tolist()}",
            )
        key = coords if coords in got else have[0]
        pos[i] = cart[key]
    return z, pos, cell, pbc
