"""Transition-1x HDF5 (``Transition1x.h5``): NEB images of ~10k reactions, already in eV.

Layout (datasets.md §4): ``/<split>/<formula>/<rxnNNNN>/`` with ``atomic_numbers`` (N,),
``positions`` (C, N, 3) Å, ``wB97x_6-31G(d).energy`` (C,) eV and ``wB97x_6-31G(d).forces``
(C, N, 3) eV/Å, plus one-frame ``reactant``/``product``/``transition_state`` subgroups that JMP
does not use (neither do we). ``<split>`` is ``data`` (everything) or the authors' ``train``,
``val`` and ``test`` groups (hard links into ``data``).

Records: eV and eV/Å as stored (no Hartree factor), no cell, tags 2, index
``"<split>/<formula>/<rxn>/<image>"`` (the split group is what :mod:`openjmp.data.splits` reads
back), dataset ``"transition1x"``. ``split=None`` reads ``train``, ``val`` and ``test`` in that
order (or ``data`` when the file has no split groups).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io._h5 import check_frames, is_group, member, names, numeric, open_h5
from openjmp.records import AtomsRecord

__all__ = ["LEVEL", "SPLIT_GROUPS", "read"]

LEVEL = "wB97x_6-31G(d)"
SPLIT_GROUPS = ("train", "val", "test")


def read(
    path: str | Path,
    *,
    split: str | None = None,
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Images of one split group (``train``/``val``/``test``/``data``), or of all three."""
    if split is not None and split not in (*SPLIT_GROUPS, "data"):
        raise DataError(path, None, f"unknown split {split!r}; use train, val, test or data")
    return _iterate(existing(path), split, validate, on_error)


def _iterate(path: Path, split: str | None, validate: bool, on_error: OnError):
    e_key, f_key = f"{LEVEL}.energy", f"{LEVEL}.forces"
    with open_h5(path) as f:
        top = names(f, path, None)
        if split is not None:
            splits = [split]
        else:
            splits = [s for s in SPLIT_GROUPS if s in top] or (["data"] if "data" in top else [])
        missing = [s for s in splits if not is_group(member(f, s, path, s))]
        if not splits or missing:
            raise DataError(
                path,
                None,
                f"no {missing or 'train/val/test or data'} group (found {sorted(top)})",
            )
        for s in splits:
            sgroup = member(f, s, path, s)
            for formula in names(sgroup, path, s):
                fgroup = member(sgroup, formula, path, f"{s}/{formula}")
                if not is_group(fgroup):
                    report(DataError(path, f"{s}/{formula}", "not a formula group"), on_error)
                    continue
                try:
                    reactions = names(fgroup, path, f"{s}/{formula}")
                except DataError as err:
                    report(err, on_error)
                    continue
                for rxn in reactions:
                    where = f"{s}/{formula}/{rxn}"
                    yield from _reaction(path, where, fgroup, rxn, e_key, f_key, validate, on_error)


def _reaction(
    path: Path,
    where: str,
    fgroup,
    rxn: str,
    e_key: str,
    f_key: str,
    validate: bool,
    on_error: OnError,
) -> Iterator[AtomsRecord]:
    try:
        group = member(fgroup, rxn, path, where)
        if not is_group(group):
            raise DataError(path, where, "not a reaction group")
        z = numeric(group, "atomic_numbers", path, where, kind="z").reshape(-1)
        pos = numeric(group, "positions", path, where)
        energy = numeric(group, e_key, path, where)
        forces = numeric(group, f_key, path, where)
        n = check_frames(path, where, len(z), {"positions": pos, f_key: forces}, {e_key: energy})
    except DataError as err:
        report(err, on_error)
        return
    for i in range(n):
        rec = AtomsRecord(
            atomic_numbers=z,
            positions=pos[i],
            energy=float(energy[i]),
            forces=forces[i],
            source=str(path),
            index=f"{where}/{i}",
            dataset="transition1x",
        )
        rec = finish(rec, validate=validate, on_error=on_error)
        if rec is not None:
            yield rec
