"""QM9 in its original form: ``dsgdb9nsd_NNNNNN.xyz`` files (a tarball, a directory or one file).

Per-molecule file (datasets.md §5), tab separated:

1. ``na``
2. ``gdb idx A B C mu alpha homo lumo gap r2 zpve U0 U H G Cv`` (GHz, D, a0³, Ha, a0², Ha,
   cal/mol/K)
3. ``na`` lines ``element x y z q`` (Å, Mulliken charge e)
4. frequencies, SMILES, InChI (ignored)

Numbers may use Mathematica exponents (``2.1997*^-6``). Molecules listed in
``uncharacterized.txt`` (found beside the source, or given) are left out, and the rest come in
numeric order: this is the 130,831-molecule order of PyG's ``qm9_v3.pt`` on which JMP's
RandomState(42) split is defined.

Targets, named and in the units JMP trains them in (PyG's conversion, Hartree = 27.211386246
eV as in PyG's QM9): ``mu`` D, ``alpha`` a0³, ``eps_HOMO``, ``eps_LUMO``, ``delta_eps`` eV,
``R_2_Abs`` a0², ``ZPVE``, ``U_0``, ``U``, ``H``, ``G`` eV, ``c_v`` cal/mol/K,
``U_0_ATOM``, ``U_ATOM``, ``H_ATOM``, ``G_ATOM`` eV (the energy minus the B3LYP free-atom
energies of ``atomref.txt``; built-in table when no file is found) and ``A``, ``B``, ``C`` GHz.
Records carry no energy or forces; index = the 1-based gdb number; dataset ``"qm9"``.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.records import AtomsRecord

__all__ = [
    "ATOMREF_HARTREE",
    "TARGETS",
    "parse_xyz",
    "read",
    "read_atomref",
    "read_uncharacterized",
]

PYG_HARTREE_TO_EV = 27.211386246
"""Hartree in eV as PyG's QM9 converts (``HAR2EV``)."""

TARGETS: tuple[str, ...] = tuple(
    "mu alpha eps_HOMO eps_LUMO delta_eps R_2_Abs ZPVE U_0 U H G c_v "
    "U_0_ATOM U_ATOM H_ATOM G_ATOM A B C".split()
)
"""Target names in PyG / JMP column order."""

ATOMREF_HARTREE: dict[int, tuple[float, float, float, float]] = {
    1: (-0.500273, -0.498857, -0.497912, -0.510927),
    6: (-37.846772, -37.845355, -37.844411, -37.861317),
    7: (-54.583861, -54.582445, -54.581501, -54.598897),
    8: (-75.064579, -75.063162, -75.062219, -75.079532),
    9: (-99.718730, -99.717314, -99.716370, -99.733544),
}
"""Free-atom B3LYP/6-31G(2df,p) energies U0, U, H, G in Ha (QM9's ``atomref.txt``)."""

_SYMBOLS = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
_NAME = re.compile(r"dsgdb9nsd_(\d+)\.xyz$")


def _num(token: str) -> float:
    return float(token.replace("*^", "e"))


def parse_xyz(
    text: str,
    source: str,
    atomref: dict[int, tuple[float, ...]] | None = None,
) -> tuple[int, np.ndarray, np.ndarray, dict[str, float]]:
    """Parse one QM9 file: (gdb index, Z (N,), positions (N, 3) Å, targets in JMP units)."""
    atomref = ATOMREF_HARTREE if atomref is None else atomref
    lines = text.splitlines()
    try:
        na = int(lines[0].strip())
    except (IndexError, ValueError):
        raise DataError(source, None, "first line must be the atom count") from None
    head = lines[1].split() if len(lines) > 1 else []
    if len(head) < 17 or head[0] != "gdb":
        raise DataError(
            source, None, f"line 2 must be 'gdb idx' + 15 properties, got {len(head)} fields"
        )
    try:
        idx = int(head[1])
        A, B, C, mu, alpha, homo, lumo, gap, r2, zpve, u0, u, h, g, cv = map(_num, head[2:17])
    except ValueError as exc:
        raise DataError(source, None, f"bad number in the property line: {exc}") from None
    if len(lines) < 2 + na:
        raise DataError(source, idx, f"file ends after {len(lines) - 2} of {na} atom lines")
    if na < 1:
        raise DataError(source, idx, f"atom count on line 1 is {na}; a molecule has at least 1")
    z, pos = np.zeros(na, np.int64), np.zeros((na, 3))
    for i, line in enumerate(lines[2 : 2 + na]):
        tok = line.split()
        if len(tok) != 5 or tok[0] not in _SYMBOLS:
            raise DataError(
                source, idx, f"atom line {i + 3} is not 'element x y z q': {line!r:.60}"
            )
        z[i] = _SYMBOLS[tok[0]]
        try:
            pos[i] = [_num(t) for t in tok[1:4]]
            _num(tok[4])
        except ValueError as exc:
            raise DataError(source, idx, f"bad number on atom line {i + 3}: {exc}") from None
    _check_tail(lines[2 + na :], na, source, idx)
    ev = PYG_HARTREE_TO_EV
    refs = np.zeros(4)
    for zi in z:
        if int(zi) not in atomref:
            raise DataError(source, idx, f"no free-atom reference for element Z={int(zi)}")
        refs += np.asarray(atomref[int(zi)][:4])
    targets = {
        "mu": mu,
        "alpha": alpha,
        "eps_HOMO": homo * ev,
        "eps_LUMO": lumo * ev,
        "delta_eps": gap * ev,
        "R_2_Abs": r2,
        "ZPVE": zpve * ev,
        "U_0": u0 * ev,
        "U": u * ev,
        "H": h * ev,
        "G": g * ev,
        "c_v": cv,
        "U_0_ATOM": (u0 - refs[0]) * ev,
        "U_ATOM": (u - refs[1]) * ev,
        "H_ATOM": (h - refs[2]) * ev,
        "G_ATOM": (g - refs[3]) * ev,
        "A": A,
        "B": B,
        "C": C,
    }
    return idx, z, pos, targets


def _is_atom_line(line: str) -> bool:
    tok = line.split()
    return len(tok) >= 4 and tok[0] in _SYMBOLS


def _check_tail(rest: list[str], na: int, source: str, idx: int) -> None:
    """The three lines after the atoms: frequencies (3na-6, or 3na-5 if linear; an empty line
    when not computed, as in the demo corpus), SMILES, InChI.

    Catches an atom count lower than the coordinate lines that follow (which would otherwise
    be read as a smaller molecule carrying the whole one's properties).
    """
    extra = 0
    while extra < len(rest) and _is_atom_line(rest[extra]):
        extra += 1
    if extra:
        raise DataError(
            source,
            idx,
            f"atom count on line 1 is {na} but {na + extra} atom lines follow "
            f"(lines 3-{na + extra + 2})",
        )
    while rest and not rest[-1].strip():
        rest = rest[:-1]
    if len(rest) != 3:
        raise DataError(
            source,
            idx,
            f"expected 3 lines after the {na} atom lines (frequencies, SMILES, InChI), "
            f"found {len(rest)}",
        )
    freqs = rest[0].split()
    try:
        for t in freqs:
            _num(t)
    except ValueError:
        raise DataError(
            source, idx, f"line {na + 3} must hold the vibrational frequencies: {rest[0]!r:.60}"
        ) from None
    allowed = {0, 3 * na - 6, 3 * na - 5} if na > 2 else {0, 1, 3 * na - 5}
    if len(freqs) not in allowed:
        raise DataError(
            source,
            idx,
            f"line {na + 3} holds {len(freqs)} frequencies; {na} atoms have "
            f"{' or '.join(str(k) for k in sorted(allowed))}",
        )


def read_uncharacterized(path: str | Path) -> set[int]:
    """1-based indices listed in QM9's ``uncharacterized.txt`` (lines whose first field is an int)."""
    p = existing(path)
    out = set()
    for line in _read(p).splitlines():
        tok = line.split()
        if len(tok) >= 2 and tok[0].isdigit():
            out.add(int(tok[0]))
    if not out:
        raise DataError(p, None, "no molecule indices found in the uncharacterized list")
    return out


def read_atomref(path: str | Path) -> dict[int, tuple[float, float, float, float]]:
    """U0, U, H, G free-atom energies (Ha) per Z from QM9's ``atomref.txt``.

    Rows are ``element ZPVE U0 U H G Cv``; other lines (headers, units) are ignored.
    """
    p = existing(path)
    out = {}
    for line in _read(p).splitlines():
        tok = line.split()
        if len(tok) >= 6 and tok[0] in _SYMBOLS:
            try:
                out[_SYMBOLS[tok[0]]] = tuple(_num(t) for t in tok[2:6])
            except ValueError:
                continue
    if set(out) != set(_SYMBOLS.values()):
        raise DataError(p, None, f"atomref rows for H, C, N, O, F expected; found Z={sorted(out)}")
    return out


def _beside(path: Path, name: str) -> Path | None:
    base = path if path.is_dir() else path.parent
    cand = base / name
    return cand if cand.is_file() else None


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            source, None, f"not a text file ({exc.reason} at byte {exc.start})"
        ) from None


def _read(path: Path) -> str:
    try:
        return _decode(path.read_bytes(), str(path))
    except OSError as exc:
        raise DataError(path, None, f"cannot read ({exc.strerror})") from None


def _texts(path: Path) -> Iterator[tuple[str, str]]:
    """(source name, text) of every ``dsgdb9nsd_*.xyz`` in a tarball, directory or file."""
    if path.is_dir():
        for p in sorted(path.glob("dsgdb9nsd_*.xyz")):
            yield str(p), _read(p)
        return
    if path.suffix == ".xyz":
        yield str(path), _read(path)
        return
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise DataError(path, None, f"not a readable tar archive ({exc})") from None
    with tar:
        try:
            for member in tar:
                if member.isfile() and _NAME.search(member.name):
                    data = tar.extractfile(member)
                    if data is not None:
                        source = f"{path}:{member.name}"
                        yield source, _decode(data.read(), source)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(path, None, f"corrupt tar archive ({exc})") from None


def read(
    path: str | Path,
    *,
    uncharacterized: str | Path | bool | None = None,
    atomref: str | Path | None = None,
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """QM9 molecules in numeric order, without the uncharacterized ones (see module doc).

    ``uncharacterized``: path of the list, ``None`` to look for ``uncharacterized.txt`` beside
    the source, ``False`` to keep every molecule. ``atomref``: path of ``atomref.txt``, or
    ``None`` to use one found beside the source or the built-in table.
    """
    path = existing(path)
    skip: set[int] = set()
    if uncharacterized is None:
        found = _beside(path, "uncharacterized.txt")
        skip = read_uncharacterized(found) if found else set()
    elif uncharacterized is not False and uncharacterized is not True:
        skip = read_uncharacterized(uncharacterized)
    ref_path = atomref if atomref is not None else _beside(path, "atomref.txt")
    refs = read_atomref(ref_path) if ref_path else ATOMREF_HARTREE
    return _iterate(path, skip, refs, validate, on_error)


def _iterate(path: Path, skip: set[int], refs, validate: bool, on_error: OnError):
    parsed: list[tuple[int, str, np.ndarray, np.ndarray, dict[str, float]]] = []
    seen: dict[int, str] = {}
    for source, text in _texts(path):
        try:
            idx, z, pos, targets = parse_xyz(text, source, refs)
        except DataError as err:
            report(err, on_error)
            continue
        m = _NAME.search(source)
        if m and int(m.group(1)) != idx:
            report(DataError(source, idx, f"file name says molecule {int(m.group(1))}"), on_error)
            continue
        if idx in seen:
            report(
                DataError(source, idx, f"molecule {idx} appears twice (also in {seen[idx]})"),
                on_error,
            )
            continue
        seen[idx] = source
        if idx not in skip:
            parsed.append((idx, source, z, pos, targets))
    parsed.sort(key=lambda t: t[0])
    yield from _records(parsed, validate, on_error)


def _records(parsed: Iterable, validate: bool, on_error: OnError) -> Iterator[AtomsRecord]:
    for idx, source, z, pos, targets in parsed:
        rec = AtomsRecord(
            atomic_numbers=z,
            positions=pos,
            targets=targets,
            source=source,
            index=idx,
            dataset="qm9",
        )
        rec = finish(rec, validate=validate, on_error=on_error)
        if rec is not None:
            yield rec
