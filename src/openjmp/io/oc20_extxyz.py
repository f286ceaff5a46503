"""OC20 S2EF raw shards: ``K.extxyz.xz`` frames with their ``K.txt.xz`` reference energies.

Layout (datasets.md §1): each shard holds up to 5,000 extxyz frames (``energy`` eV, ``forces``
eV/Å, ``tags``, ``move_mask`` where ``F`` = fixed) and, line for line, ``random<sid>,
frame<fid>,<reference energy eV>``. The S2EF target is the adsorption energy
``energy - reference``.

Records: ``energy`` is the frame's total DFT energy (``energy="total"``, the default, for
linear referencing as JMP's "full" normalisation) or the adsorption energy
(``energy="adsorption"``, what OCP's LMDBs store as ``y``); the other one is kept as the target
``"adsorption_energy"`` or ``"total_energy"``. Forces are the unconstrained ones. Index = the
frame's position in its shard; dataset ``"oc20"``. A directory reads every shard in numeric order.
"""

from __future__ import annotations

import io
import lzma
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io.ase_files import record_from_atoms, scan_xyz_counts
from openjmp.records import AtomsRecord

__all__ = ["read", "read_references", "shards"]

_LINE = re.compile(r"^random(\d+),frame(\d+),(\S+)$")


def shards(path: str | Path) -> list[Path]:
    """``K.extxyz.xz`` files of a directory in numeric order (or ``path`` itself)."""
    p = existing(path)
    if p.is_file():
        return [p]
    found = [q for q in p.glob("*.extxyz*") if q.name.split(".")[0].isdigit()]
    if not found:
        raise DataError(p, None, "no K.extxyz(.xz) shards in this directory")
    return sorted(found, key=lambda q: int(q.name.split(".")[0]))


def _companion(shard: Path) -> Path:
    stem = shard.name.split(".")[0]
    for name in (f"{stem}.txt.xz", f"{stem}.txt"):
        if (shard.parent / name).is_file():
            return shard.parent / name
    raise DataError(shard, None, f"missing its reference-energy file {stem}.txt.xz")


def read_references(path: Path) -> list[tuple[int, int, float]]:
    """(sid, fid, reference energy eV) per line of a ``K.txt(.xz)`` file."""
    opener = lzma.open if path.suffix == ".xz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            lines = [ln.strip() for ln in fh if ln.strip()]
    except (OSError, lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
        raise DataError(path, None, f"cannot read ({exc})") from None
    out = []
    for i, ln in enumerate(lines):
        m = _LINE.match(ln)
        if m is None:
            raise DataError(path, i, f"expected 'random<sid>,frame<fid>,<energy>', got {ln!r:.60}")
        try:
            out.append((int(m.group(1)), int(m.group(2)), float(m.group(3))))
        except ValueError:
            raise DataError(path, i, f"bad reference energy {m.group(3)!r}") from None
    return out


def read(
    path: str | Path,
    *,
    energy: Literal["total", "adsorption"] = "total",
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Frames of one shard or of a directory of shards (see module doc)."""
    if energy not in ("total", "adsorption"):
        raise DataError(path, None, f"energy must be 'total' or 'adsorption', not {energy!r}")
    return _iterate(shards(path), energy, validate, on_error)


def _iterate(files: list[Path], energy: str, validate: bool, on_error: OnError):
    import ase.io

    for shard in files:
        refs = read_references(_companion(shard))
        opener = lzma.open if shard.suffix == ".xz" else open
        try:
            with opener(shard, "rt", encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, lzma.LZMAError, EOFError, UnicodeDecodeError) as exc:
            raise DataError(shard, None, f"cannot read ({exc})") from None
        scan = scan_xyz_counts(io.StringIO(text), shard)
        if scan.error is not None:  # read the well-formed frames before the problem
            text = "".join(text.splitlines(keepends=True)[: scan.lines])
        try:
            frames = ase.io.read(io.StringIO(text), index=":", format="extxyz") if text else []
        except Exception as exc:  # noqa: BLE001 - ASE raises many kinds on malformed frames
            raise DataError(shard, None, f"cannot read the extxyz frames ({exc})") from None
        if scan.error is not None:
            refs = refs[: len(frames)]
        elif len(frames) != len(refs):
            raise DataError(shard, None, f"{len(frames)} frames but {len(refs)} reference lines")
        for i, (atoms, (_sid, _fid, ref)) in enumerate(zip(frames, refs)):
            try:
                rec = record_from_atoms(atoms, source=str(shard), index=i, dataset="oc20")
                if rec.energy is None:
                    raise DataError(shard, i, "frame has no energy")
                total, ads = rec.energy, rec.energy - ref
                targets = {k: v for k, v in rec.targets.items() if k != "free_energy"}
                if energy == "total":
                    rec = rec.replace(energy=total, targets={**targets, "adsorption_energy": ads})
                else:
                    rec = rec.replace(energy=ads, targets={**targets, "total_energy": total})
            except DataError as err:
                report(err, on_error)
                continue
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                problem = f"unusable values in the frame ({type(exc).__name__}: {exc})"
                report(DataError(shard, i, problem), on_error)
                continue
            rec = finish(rec, validate=validate, on_error=on_error)
            if rec is not None:
                yield rec
        if scan.error is not None:
            raise scan.error
