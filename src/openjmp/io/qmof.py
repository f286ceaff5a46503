"""QMOF database (``qmof_database/``: ``qmof.json`` + ``qmof_structure_data.json``).

Layout (datasets.md §10): two parallel JSON lists. ``qmof.json`` holds per-MOF properties
(``qmof_id``, ``outputs.pbe.bandgap`` eV, ``outputs.pbe.energy_total`` eV, ...);
``qmof_structure_data.json`` holds ``{"qmof_id", "structure": <pymatgen Structure dict>}``. Both
are streamed (the structure file is several GB) and paired by position, as JMP does, with each
pair's ``qmof_id`` checked to agree (JMP's split is by list position, so only v14 reproduces it).

Records: Z from ``species[0].element`` (labels such as ``"Zn1"`` are not elements), positions
from the stored Cartesian ``xyz`` (JMP's choice) and cell from ``lattice.matrix``, Å, periodic;
energy = ``outputs.pbe.energy_total`` eV when present; target ``bandgap`` eV (JMP's ``y``);
index = ``qmof_id``; dataset ``"qmof"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io.json_stream import iter_json_array
from openjmp.io.pymatgen_dict import parse_structure
from openjmp.records import AtomsRecord

__all__ = ["files", "read"]

PROPERTIES = "qmof.json"
STRUCTURES = "qmof_structure_data.json"
_END = object()


def files(path: str | Path) -> tuple[Path, Path]:
    """(properties, structures) files of a QMOF directory, or of ``qmof.json`` given directly."""
    p = existing(path)
    base = p if p.is_dir() else p.parent
    props, structs = base / PROPERTIES, base / STRUCTURES
    for f in (props, structs):
        if not f.is_file():
            raise DataError(
                f, None, "QMOF file not found (need qmof.json and qmof_structure_data.json)"
            )
    return props, structs


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def read(
    path: str | Path, *, validate: bool = True, on_error: OnError = None
) -> Iterator[AtomsRecord]:
    """QMOF structures with their PBE band gap and total energy, in list order."""
    props, structs = files(path)
    return _iterate(props, structs, validate, on_error)


def _iterate(props: Path, structs: Path, validate: bool, on_error: OnError):
    p_iter, s_iter = iter_json_array(props), iter_json_array(structs)
    i = 0
    while True:
        p, s = next(p_iter, _END), next(s_iter, _END)
        if p is _END and s is _END:
            return
        if p is _END or s is _END:
            short = props if p is _END else structs
            raise DataError(
                short, i, f"{short.name} ends at entry {i}; the two lists must be equally long"
            )
        qid = _get(p, "qmof_id")
        try:
            if qid is None or _get(s, "qmof_id") != qid:
                raise DataError(
                    structs,
                    i,
                    f"qmof_id {_get(s, 'qmof_id')!r} does not match {qid!r} in {props.name}",
                )
            z, pos, cell, pbc = parse_structure(_get(s, "structure"), structs, qid, coords="xyz")
            gap, energy = (
                _get(p, "outputs", "pbe", "bandgap"),
                _get(p, "outputs", "pbe", "energy_total"),
            )
            if not isinstance(gap, int | float) or isinstance(gap, bool):
                raise DataError(props, qid, f"outputs.pbe.bandgap is not a number: {gap!r:.40}")
        except DataError as err:
            report(err, on_error)
            i += 1
            continue
        rec = AtomsRecord(
            atomic_numbers=z,
            positions=pos,
            cell=cell,
            pbc=pbc,
            energy=float(energy) if isinstance(energy, int | float) else None,
            targets={"bandgap": float(gap)},
            source=str(structs),
            index=str(qid),
            dataset="qmof",
        )
        i += 1
        rec = finish(rec, validate=validate, on_error=on_error)
        if rec is not None:
            yield rec
