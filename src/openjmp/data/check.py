"""``openjmp data check``: a summary of a data source and every problem in it, all in one pass.

Per record (each reported with file, record and reason, and all of them, not the first):
wrong shapes, unknown elements, NaN/inf positions or labels, a periodic axis without a cell
vector, overlapping atoms, force magnitudes beyond ``max_force`` (a sign of kcal/mol or
Hartree/bohr left unconverted), reader errors (malformed groups, entries, missing levels of
theory). Against the graph a model would build (the dataset's JMP cutoff, 12 Å for user data,
or ``cutoff``): a graph estimated above the edge limit (atoms crowded into too small a cell,
:mod:`openjmp.graph.size`), a structure without any pair of atoms within the cutoff (a lone
atom: training stops on it), one without any atom that has two neighbours (a diatomic: no
triplets, pair information only: a warning), and isolated atoms (no neighbour within the
cutoff: a warning, they get no messages and their forces are always 0). Across
records: labels that some records have and others lack, duplicated structures, forces whose
typical size is implausible for eV/Å, and forces inconsistent with the energy differences
along trajectories (consecutive frames of one system: ΔE should equal
−½(F₁+F₂)·Δx; the fitted ratio exposes a flipped gradient sign or mismatched units).

Errors make the check fail (non-zero exit); warnings (duplicates, single large forces, isolated
atoms) do not. Readers normally stop at the first bad record (training and conversion fail
fast); the check passes ``on_error`` so that they report each bad record and go on, and a
problem that stops a reader altogether (a corrupt file) is listed after what was read before it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase.data import chemical_symbols

from openjmp.data.duplicates import duplicate_groups, keep_together, structure_key
from openjmp.errors import DataError
from openjmp.graph.size import check_graph_size, neighbour_counts
from openjmp.graph.spec import GRAPH_SETTINGS
from openjmp.records import AtomsRecord
from openjmp.validate import (
    DEFAULT_MIN_DISTANCE,
    check_cell,
    check_distances,
    check_shapes,
    check_values,
    coordinates_usable,
)

__all__ = ["CheckReport", "Problem", "check_path", "check_records"]

MAX_FORCE = 50.0
"""|F| (eV/Å) above which one atom's force is reported as implausible."""
DEFAULT_CUTOFF = 12.0
"""Å: graph cutoff of the checks for records of no JMP data set (JMP's OC20/OC22/MatBench)."""
MAX_TYPICAL_FORCE = 10.0
"""Median per-structure force RMS (eV/Å) above which the forces are taken to be in wrong units."""
_MAX_STEP = 0.2  # Å: largest atomic displacement between frames used for the ΔE vs F·Δx test
_MIN_PAIRS = 5


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is "error" or "warning"."""

    severity: str
    source: str | None
    index: Any
    message: str

    def __str__(self) -> str:
        where = self.source or "<in memory>"
        rec = "" if self.index is None else f", record {self.index}"
        return f"{self.severity}: {where}{rec}: {self.message}"


@dataclass
class CheckReport:
    """Summary figures and the list of problems found."""

    n_records: int = 0
    datasets: Counter = field(default_factory=Counter)
    elements: Counter = field(default_factory=Counter)  # Z -> structures containing it
    natoms: list[int] = field(default_factory=list)
    n_periodic: int = 0
    labels: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, dict[str, int]] | None = None
    energy_force_ratio: float | None = None
    graph_cutoffs: Counter = field(default_factory=Counter)  # cutoff (Å) -> records checked
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, limit: int | None = None) -> str:
        """Human-readable summary followed by the problems (at most ``limit`` when given)."""
        lines = [f"records: {self.n_records}"]
        if self.datasets:
            lines.append(
                "datasets: "
                + ", ".join(f"{k or 'unnamed (user data)'} ({v})" for k, v in self.datasets.items())
            )
        if self.elements:
            els = ", ".join(
                f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else z} ({n})"
                for z, n in sorted(self.elements.items())
            )
            lines.append(f"elements (structures containing them): {els}")
        if self.natoms:
            a = np.asarray(self.natoms)
            lines.append(f"atoms per structure: min {a.min()}, mean {a.mean():.2f}, max {a.max()}")
            lines.append(f"periodic structures: {self.n_periodic}")
        for name, r in self.labels.items():
            lines.append(f"{name}: {r}")
        if self.graph_cutoffs:
            cuts = ", ".join(f"{c:g} Å ({n})" for c, n in sorted(self.graph_cutoffs.items()))
            lines.append(f"graph checked at cutoff: {cuts}")
        if self.energy_force_ratio is not None:
            lines.append(
                f"ΔE / (−F·Δx) along trajectories: {self.energy_force_ratio:.4f} (1 is consistent)"
            )
        if self.splits:
            for name, parts in self.splits.items():
                lines.append(f"split {name}: " + ", ".join(f"{p} {n}" for p, n in parts.items()))
        n_err, n_warn = len(self.errors), len(self.problems) - len(self.errors)
        lines.append(f"problems: {n_err} errors, {n_warn} warnings")
        shown = self.problems if limit is None else self.problems[:limit]
        lines += [str(p) for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


class _Range:
    def __init__(self) -> None:
        self.n, self.lo, self.hi, self.s = 0, np.inf, -np.inf, 0.0

    def add(self, v: float) -> None:
        if np.isfinite(v):
            self.n += 1
            self.lo, self.hi, self.s = min(self.lo, v), max(self.hi, v), self.s + v

    def __str__(self) -> str:
        if not self.n:
            return "none"
        return f"{self.n} values in [{self.lo:.6g}, {self.hi:.6g}], mean {self.s / self.n:.6g}"


def check_records(
    records: Iterable[AtomsRecord],
    *,
    reader_problems: list[DataError] | None = None,
    min_distance: float = DEFAULT_MIN_DISTANCE,
    max_force: float = MAX_FORCE,
    cutoff: float | None = None,
    max_edges: int | None = None,
) -> CheckReport:
    """Check every record and the set as a whole; see the module doc for what is checked.

    ``reader_problems`` is a list the reader fills (through ``on_error``) while ``records`` is
    consumed; its entries are reported as errors too. ``cutoff`` (Å): the graph cutoff of the
    graph checks (None: each record's dataset's JMP setting, else `DEFAULT_CUTOFF`);
    ``max_edges``: the edge limit (None: the process default of openjmp.graph.size).
    """
    rep = CheckReport()
    ranges = {k: _Range() for k in ("energy (eV)", "energy per atom (eV)", "max |F| (eV/Å)")}
    target_ranges: dict[str, _Range] = {}
    where: list[tuple[str | None, Any]] = []  # (source, index) of every record
    has_label: dict[str, list[bool]] = {"energy": [], "forces": []}
    target_sets: list[int] = []  # per record, an id into `kinds`
    kinds: dict[frozenset, int] = {}
    seen: dict[bytes, tuple[str | None, Any]] = {}
    force_rms: list[float] = []
    pairs: list[tuple[float, float]] = []
    prev: AtomsRecord | None = None

    def add(sev: str, rec: AtomsRecord, msg: str) -> None:
        rep.problems.append(Problem(sev, rec.source, rec.index, msg))

    for rec in records:
        rep.n_records += 1
        rep.datasets[rec.dataset] += 1
        where.append((rec.source, rec.index))
        passed = {}
        for check in (check_shapes, check_values, check_cell):
            try:
                check(rec)
                passed[check] = True
            except DataError as err:
                add("error", rec, err.problem)
                passed[check] = False
        shapes_ok = passed[check_shapes]
        geometry_ok = shapes_ok and passed[check_cell] and coordinates_usable(rec)
        if geometry_ok:
            try:
                check_distances(rec, min_distance)
            except DataError as err:
                add("error", rec, err.problem)
            else:
                rep.graph_cutoffs[_check_graph(rec, cutoff, max_edges, add)] += 1
        rep.natoms.append(rec.natoms)
        rep.n_periodic += bool(rec.pbc.any())
        for z in set(rec.atomic_numbers.tolist()):
            rep.elements[z] += 1
        has_label["energy"].append(rec.energy is not None)
        has_label["forces"].append(rec.forces is not None)
        target_sets.append(kinds.setdefault(frozenset(rec.targets), len(kinds)))
        if rec.energy is not None and np.isfinite(rec.energy):
            ranges["energy (eV)"].add(rec.energy)
            ranges["energy per atom (eV)"].add(rec.energy / max(rec.natoms, 1))
        if shapes_ok and rec.forces is not None and np.all(np.isfinite(rec.forces)):
            norms = np.linalg.norm(rec.forces, axis=1)
            ranges["max |F| (eV/Å)"].add(float(norms.max()))
            force_rms.append(float(np.sqrt(np.mean(rec.forces**2))))
            if norms.max() > max_force:
                i = int(np.argmax(norms))
                add(
                    "warning",
                    rec,
                    f"|F| = {norms[i]:.1f} eV/Å on atom {i} is implausible in eV/Å "
                    "(unconverted kcal/mol or Hartree/bohr?)",
                )
        for name, value in rec.targets.items():
            arr = np.asarray(value)
            if arr.dtype.kind in "iuf" and arr.size == 1:
                target_ranges.setdefault(name, _Range()).add(float(arr.reshape(())))
        if shapes_ok:
            key = structure_key(rec)
            if key in seen:
                src, idx = seen[key]
                add("warning", rec, f"duplicate of {src}, record {idx}")
            else:
                seen[key] = (rec.source, rec.index)
            pair = _trajectory_pair(prev, rec)
            if pair is not None:
                pairs.append(pair)
            prev = rec
    for err in reader_problems or []:
        rep.problems.append(Problem("error", err.source, err.index, err.problem))

    for label, flags in has_label.items():
        n_have = sum(flags)
        if 0 < n_have < len(flags):
            for (src, idx), ok in zip(where, flags):
                if not ok:
                    rep.problems.append(
                        Problem(
                            "error", src, idx, f"missing {label} label ({n_have} records have one)"
                        )
                    )
    all_targets = frozenset().union(*kinds) if kinds else frozenset()
    lacking = {k: sorted(all_targets - names) for names, k in kinds.items()}
    for (src, idx), k in zip(where, target_sets):
        for name in lacking[k]:
            rep.problems.append(
                Problem("error", src, idx, f"missing target {name!r} that other records have")
            )
    _check_force_scale(rep, force_rms)
    _check_trajectories(rep, pairs)
    rep.labels = {k: str(v) for k, v in ranges.items()}
    rep.labels |= {f"target {k}": str(v) for k, v in target_ranges.items()}
    return rep


def _graph_setting(dataset: str, cutoff: float | None) -> tuple[float, bool]:
    """(cutoff Å, use the record's periodicity) of the graph a model would build."""
    family = "matbench" if dataset.startswith("matbench") else dataset
    spec = GRAPH_SETTINGS.get(family)
    if spec is None:
        return (DEFAULT_CUTOFF if cutoff is None else cutoff), True
    return (spec.cutoff if cutoff is None else cutoff), spec.pbc


def _check_graph(rec: AtomsRecord, cutoff: float | None, max_edges: int | None, add) -> float:
    """The graph checks of the module doc on one (valid) record; returns the cutoff used."""
    rc, periodic = _graph_setting(rec.dataset, cutoff)
    pbc = rec.pbc if periodic else np.zeros(3, dtype=bool)
    try:
        check_graph_size(rec.positions, rec.cell, pbc, rc, max_edges=max_edges)
    except DataError as err:
        add("error", rec, err.problem)
        return rc
    counts = neighbour_counts(rec.positions, rec.cell, pbc, rc)
    kind = "periodic" if pbc.any() else "not periodic"
    if counts.max(initial=0) == 0:
        add(
            "error",
            rec,
            f"no pair of atoms within the {rc:g} Å graph cutoff ({rec.natoms} "
            f"atom{'s' if rec.natoms != 1 else ''}, {kind}): GemNet-OC needs at "
            "least one edge, and training stops on this structure",
        )
        return rc
    if counts.max() < 2:
        add(
            "warning",
            rec,
            f"no atom has two neighbours within the {rc:g} Å graph cutoff "
            "(a diatomic, or atoms far apart): GemNet-OC's triplet and "
            "quadruplet interactions are empty for it, the model sees pair "
            "information only",
        )
    isolated = np.flatnonzero(counts == 0)
    if len(isolated):
        shown = ", ".join(str(i) for i in isolated[:8]) + (", ..." if len(isolated) > 8 else "")
        add(
            "warning",
            rec,
            f"{len(isolated)} isolated atom(s) ({shown}): no neighbour within "
            f"the {rc:g} Å graph cutoff; they get no messages and their forces "
            "are always 0",
        )
    return rc


def _trajectory_pair(prev: AtomsRecord | None, rec: AtomsRecord) -> tuple[float, float] | None:
    """(ΔE, −½(F₁+F₂)·Δx) for consecutive close frames of one system, else None."""
    if prev is None or prev.source != rec.source or prev.natoms != rec.natoms:
        return None
    if prev.energy is None or rec.energy is None or prev.forces is None or rec.forces is None:
        return None
    if not np.array_equal(prev.atomic_numbers, rec.atomic_numbers) or not np.allclose(
        prev.cell, rec.cell
    ):
        return None
    if prev.forces.shape != rec.forces.shape or prev.positions.shape != rec.positions.shape:
        return None
    dx = rec.positions - prev.positions
    if rec.pbc.any() and abs(np.linalg.det(rec.cell)) > 1e-9:  # undo wrapping across the cell
        frac = np.linalg.solve(rec.cell.T, dx.T).T
        frac -= np.round(frac) * rec.pbc
        dx = frac @ rec.cell
    step = np.linalg.norm(dx, axis=1).max()
    if not 1e-6 < step < _MAX_STEP:
        return None
    predicted = float(-0.5 * np.sum((prev.forces + rec.forces) * dx))
    de = rec.energy - prev.energy
    if not (np.isfinite(predicted) and np.isfinite(de)):
        return None
    return de, predicted


def _check_trajectories(rep: CheckReport, pairs: list[tuple[float, float]]) -> None:
    if len(pairs) < _MIN_PAIRS:
        return
    de, w = np.asarray(pairs).T
    if np.sum(w * w) == 0 or np.std(de) == 0 or np.std(w) == 0:
        return
    ratio = float(np.sum(de * w) / np.sum(w * w))
    corr = float(np.corrcoef(de, w)[0, 1])
    rep.energy_force_ratio = ratio
    if corr < -0.8:
        rep.problems.append(
            Problem(
                "error",
                None,
                None,
                f"forces have the wrong sign: along {len(pairs)} trajectory steps the energy "
                f"changes by {ratio:.3f} × (−F·Δx) (gradients stored as forces?)",
            )
        )
    elif corr > 0.8 and not 0.8 < ratio < 1.25:
        rep.problems.append(
            Problem(
                "error",
                None,
                None,
                f"energies and forces disagree in units: along {len(pairs)} trajectory steps "
                f"ΔE = {ratio:.4g} × (−F·Δx) (27.2: Hartree vs eV; 0.0434: kcal/mol; "
                "1.89 or 0.529: bohr vs Å)",
            )
        )


def _check_force_scale(rep: CheckReport, force_rms: list[float]) -> None:
    if len(force_rms) >= 3:
        med = float(np.median(force_rms))
        if med > MAX_TYPICAL_FORCE:
            rep.problems.append(
                Problem(
                    "error",
                    None,
                    None,
                    f"typical force RMS is {med:.1f} eV/Å, far beyond eV/Å data "
                    "(forces in kcal/mol/Å or Hartree/bohr?)",
                )
            )


def check_path(
    path: str | Path,
    fmt: str | None = None,
    *,
    cutoff: float | None = None,
    max_edges: int | None = None,
    **options: Any,
) -> CheckReport:
    """Check a source file/directory in any supported format, or a record cache.

    For a cache, the saved splits are summarised; for a source, the split ``openjmp data
    convert`` would make (identical structures kept in one part). ``cutoff`` / ``max_edges``: as `check_records`; other
    options go to the reader. A problem that stops the reader (a corrupt or empty file) is
    reported in the returned report, after everything read before it.
    """
    from openjmp.data.cache import RecordStore
    from openjmp.data.splits import fixed_parts, load_splits, make_splits

    path = Path(path)
    graph = {"cutoff": cutoff, "max_edges": max_edges}
    if fmt == "cache" or (fmt is None and (path / "manifest.json").is_file()):
        store = RecordStore(path)
        rep = check_records(store, **graph)
        if (path / "splits.npz").is_file():
            rep.splits = _sizes(load_splits(path / "splits.npz"))
        return rep

    from openjmp.io import read_records

    problems: list[DataError] = []
    captured: list[tuple[Any, int, str, Any]] = []
    keys: list[bytes] = []
    stopped: list[DataError] = []

    def watched() -> Iterable[AtomsRecord]:
        try:
            for r in read_records(path, fmt, validate=False, on_error=problems.append, **options):
                captured.append((r.index, r.natoms, r.dataset, _label(r)))
                keys.append(structure_key(r))
                yield r
        except DataError as err:  # the reader cannot go on: report it after the rest
            stopped.append(err)

    rep = check_records(watched(), reader_problems=problems, **graph)
    for err in stopped:
        problem = f"reading stopped here: {err.problem}" if captured else err.problem
        rep.problems.append(Problem("error", err.source or str(path), err.index, problem))
    datasets = {d for _, _, d, _ in captured}
    for k, p in enumerate(rep.problems):
        if p.source is None:
            rep.problems[k] = Problem(p.severity, str(path), p.index, p.message)
    if len(datasets) == 1 and captured and not stopped:
        ds = datasets.pop() or "user"
        try:
            labels = np.array([c[3] for c in captured]) if ds.startswith("matbench") else None
            splits = make_splits(
                ds,
                [c[0] for c in captured],
                np.array([c[1] for c in captured]),
                source=path,
                labels=labels,
            )
            # as data convert makes it: identical structures kept in one part
            splits, _ = keep_together(splits, duplicate_groups(keys), fixed=fixed_parts(ds, {}))
            rep.splits = _sizes(splits)
        except DataError as err:
            rep.problems.append(
                Problem("warning", str(path), None, f"cannot make the default split: {err.problem}")
            )
    return rep


def _label(rec: AtomsRecord) -> Any:
    return next(iter(rec.targets.values()), 0.0)


def _sizes(splits: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, int]]:
    return {name: {p: len(idx) for p, idx in parts.items()} for name, parts in splits.items()}
