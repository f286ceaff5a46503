"""ANI-1x HDF5 (``ani1x-release.h5``): one group per molecular formula, energies in Hartree.

Layout (datasets.md §3): top-level group per formula (isomers share a group), with
``atomic_numbers`` (N,) uint8, ``coordinates`` (C, N, 3) Å, ``<level>.energy`` (C,) Ha and
``<level>.forces`` (C, N, 3) Ha/Å (forces, not gradients), plus sparse keys such as
``ccsd(t)_cbs.energy`` that are NaN where not computed. The default level is ``wb97x_dz``
(ωB97x/6-31G(d)), the one JMP pre-trains on.

Records: energy and forces at ``level`` in eV and eV/Å (× Hartree, as JMP), no cell, tags 2,
index ``"<formula>/<conformer>"``, dataset ``"ani1x"``. A conformer whose energy or any force
component at ``level`` is NaN is *reported* (`DataError` naming file, formula and conformer),
never used; JMP itself fails on such a file. ``extra`` names further per-conformer energy keys
(Ha) to keep as targets in eV; where one is NaN the target is simply absent for that record.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io._h5 import check_frames, is_group, member, names, numeric, open_h5
from openjmp.records import AtomsRecord
from openjmp.units import HARTREE_TO_EV

__all__ = ["read"]


def read(
    path: str | Path,
    *,
    level: str = "wb97x_dz",
    extra: Sequence[str] = (),
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Conformers of an ANI-1x file, group by group in the file's order (see module doc)."""
    return _iterate(existing(path), level, tuple(extra), validate, on_error)


def _iterate(
    path: Path, level: str, extra: tuple[str, ...], validate: bool, on_error: OnError
) -> Iterator[AtomsRecord]:
    e_key, f_key = f"{level}.energy", f"{level}.forces"
    with open_h5(path) as f:
        for formula in names(f, path, None):
            try:
                group = member(f, formula, path, formula)
                if not is_group(group):
                    raise DataError(path, formula, "top-level item is not a formula group")
                z = numeric(group, "atomic_numbers", path, formula, kind="z")
                coords = numeric(group, "coordinates", path, formula)
                energy = numeric(group, e_key, path, formula)
                forces = numeric(group, f_key, path, formula)
                extras = {k: numeric(group, k, path, formula) for k in extra}
                if z.ndim != 1:
                    raise DataError(
                        path, formula, f"atomic_numbers has shape {z.shape}, expected (N,)"
                    )
                n_conf = check_frames(
                    path,
                    formula,
                    len(z),
                    {"coordinates": coords, f_key: forces},
                    {e_key: energy, **extras},
                )
            except DataError as err:
                report(err, on_error)
                continue
            energy_ev = energy * HARTREE_TO_EV
            forces_ev = forces * HARTREE_TO_EV
            for i in range(n_conf):
                where = f"{formula}/{i}"
                missing = [
                    k
                    for k, ok in (
                        (e_key, np.isfinite(energy[i])),
                        (f_key, np.isfinite(forces[i]).all()),
                    )
                    if not ok
                ]
                if missing:
                    problem = f"{' and '.join(missing)} missing (NaN) at the chosen level of theory {level!r}"
                    report(DataError(path, where, problem), on_error)
                    continue
                targets = {
                    k: float(v[i]) * HARTREE_TO_EV for k, v in extras.items() if np.isfinite(v[i])
                }
                rec = AtomsRecord(
                    atomic_numbers=z,
                    positions=coords[i],
                    energy=float(energy_ev[i]),
                    forces=forces_ev[i],
                    targets=targets,
                    source=str(path),
                    index=where,
                    dataset="ani1x",
                )
                rec = finish(rec, validate=validate, on_error=on_error)
                if rec is not None:
                    yield rec
