"""Is a trained model safe as a potential? The physics checks of ``openjmp validate``.

Each check returns a `Check`: a value, the threshold it is held to, and ``pass`` or ``warn``
(``skip`` when it does not apply, with the reason). The thresholds are stated with every line;
they are the level at which a relaxation or an MD run goes visibly wrong, not an accuracy target.

* ``forces``: the forces the calculator returns against central finite differences of its
  energy (h = 1e-3 Å, float64 copy of the model). Direct-force heads are not the gradient of
  any energy: they warn, and MD should use ``forces="gradient"``.
* ``stress`` (periodic structures): the autograd stress against finite differences of strain.
* ``nve``: velocity Verlet from a Maxwell-Boltzmann start (300 K, 0.5 fs): the drift of the
  total energy (slope of a linear fit), meV/atom/ps. A conservative, smooth potential drifts
  by far less than 1 meV/atom/ps at this step.
* ``eos`` (periodic bulk): energies of a bulk cell scaled isotropically by ±8 % in volume, a
  Birch-Murnaghan fit: its minimum must lie inside the scan and the bulk modulus be positive.
* ``dimer X-Y``: the energy of an isolated pair from 0.5 Å to the graph cutoff (relative to the
  far end): repulsive at short range (E(0.5 Å) above every energy beyond the minimum), smooth
  (no jump between points 0.02 Å apart larger than 0.5 eV beyond 1 Å) and with at most one
  minimum (no spurious well).

Without structures the checks build their own with ASE from the elements the model saw in
training (saved with its heads): a small molecule made of them, a bulk crystal of one of them
when the model's graph is periodic, and every element pair (at most ``max_pairs``). Nothing is
downloaded.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from openjmp import plots
from openjmp.errors import ConfigError
from openjmp.io.paths import check_writable_dir

if TYPE_CHECKING:
    from openjmp.api import ForceMode

Status = Literal["pass", "warn", "skip"]

FD_STEP = 1e-3
"""Å, central-difference step of the force check (float64: truncation ~h² ≪ the threshold)."""
DIMER_STEP = 0.02
"""Å between the points of a dimer curve (the smoothness criterion compares neighbours)."""
MOLECULES = ("CH3CH2OH", "CH3COOH", "C6H6", "H2CO", "H2O", "CH4", "NH3", "CO2", "HCN", "H2")
"""Candidate default molecules (ase.build.molecule names), first whose elements the model knows."""


@dataclass
class Check:
    """One line of the report: ``value`` in ``unit`` against ``threshold`` (a sentence)."""

    name: str
    status: Status
    value: float | None
    unit: str
    threshold: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        value = "-" if self.value is None else f"{self.value:.4g}"
        return f"{self.name:<22} {self.status:<5} {value:>10} {self.unit:<12} {self.threshold}" + (
            f"  ({self.detail})" if self.detail else ""
        )


# ----------------------------------------------------------------------- pure criteria
def drift_per_atom_ps(times_fs: np.ndarray, energies: np.ndarray, natoms: int) -> float:
    """Slope of a least-squares line through the total energies, meV/atom/ps."""
    slope = np.polyfit(np.asarray(times_fs) / 1000.0, np.asarray(energies), 1)[0]  # eV/ps
    return float(slope * 1000.0 / natoms)


def dimer_verdict(r: np.ndarray, energy: np.ndarray) -> tuple[Status, str]:
    """pass/warn and why, for a dimer curve E(r) (r ascending, Å; E eV) (module docstring)."""
    r, e = np.asarray(r, float), np.asarray(energy, float)
    problems = []
    i_min = int(np.argmin(e))
    if i_min == 0 or e[0] <= e[i_min + 1 :].max(initial=e[i_min]):
        problems.append("not repulsive at short range")
    far = r > 1.0
    jumps = np.abs(np.diff(e))[far[1:]]
    if jumps.size and jumps.max() > 0.5:
        problems.append(f"a jump of {jumps.max():.2f} eV")
    d = np.diff(e)
    sign = np.sign(np.where(np.abs(d) < 1e-4, 0.0, d))
    nz = sign[sign != 0]
    minima = int(np.sum((nz[:-1] < 0) & (nz[1:] > 0)))
    if minima > 1:
        problems.append(f"{minima} minima")
    return ("warn", ", ".join(problems)) if problems else ("pass", "")


# ---------------------------------------------------------------------- structures
def default_structures(elements: Sequence[int], periodic: bool, seed: int = 0) -> list[Any]:
    """A molecule of the known elements and, for a periodic model, a rattled bulk crystal."""
    from ase.build import bulk, molecule
    from ase.data import chemical_symbols, reference_states

    known = set(int(z) for z in elements)
    out = []
    for name in MOLECULES:
        mol = molecule(name)
        if set(mol.numbers.tolist()) <= known:
            mol.rattle(0.02, seed=seed)
            out.append(mol)
            break
    if periodic:
        for z in sorted(known):
            state = reference_states[z] if z < len(reference_states) else None
            if state and state.get("symmetry") in ("fcc", "bcc", "hcp", "diamond", "sc"):
                crystal = bulk(chemical_symbols[z]) * (2, 2, 2)
                crystal.rattle(0.02, seed=seed)
                out.append(crystal)
                break
    return out


# --------------------------------------------------------------------------- checks
def check_forces(calc64: Any, atoms: Any, label: str, rng: np.random.Generator) -> Check:
    a = atoms.copy()
    a.calc = calc64
    forces = a.get_forces()
    idx = rng.choice(len(a), size=min(3, len(a)), replace=False)
    worst = 0.0
    for i in idx:
        for k in range(3):
            e = []
            for s in (1, -1):
                b = a.copy()
                b.positions[i, k] += s * FD_STEP
                b.calc = calc64
                e.append(b.get_potential_energy())
            fd = -(e[0] - e[1]) / (2 * FD_STEP)
            worst = max(worst, abs(fd - forces[i, k]))
    limit = max(1e-3, 1e-3 * float(np.abs(forces).max()))
    status: Status = "pass" if worst <= limit else "warn"
    detail = ""
    if status == "warn" and calc64.predictor.direct_head is not None:
        detail = "direct-force head: not the energy's gradient; use forces='gradient' for MD"
    return Check(f"forces {label}", status, worst, "eV/Å", f"max |F - F_fd| <= {limit:.3g}", detail)


def check_stress(calc64: Any, atoms: Any, label: str) -> Check:
    from ase.calculators.fd import calculate_numerical_stress

    a = atoms.copy()
    a.calc = calc64
    stress = a.get_stress()
    err = float(np.abs(stress - calculate_numerical_stress(a, eps=1e-5)).max())
    limit = max(1e-5, 1e-3 * float(np.abs(stress).max()))
    status: Status = "pass" if err <= limit else "warn"
    return Check(f"stress {label}", status, err, "eV/Å^3", f"max |σ - σ_fd| <= {limit:.3g}")


def check_nve(calc: Any, atoms: Any, steps: int, out: Path | None, seed: int) -> Check:
    from ase import units
    from ase.md import velocitydistribution as vd
    from ase.md.verlet import VelocityVerlet

    a = atoms.copy()
    a.calc = calc
    # thermalize_momenta is the newer name of MaxwellBoltzmannDistribution (ase >= 3.26)
    thermalize = getattr(vd, "thermalize_momenta", None) or vd.MaxwellBoltzmannDistribution
    thermalize(a, temperature_K=300, rng=np.random.default_rng(seed))
    vd.Stationary(a)
    dt = 0.5
    dyn = VelocityVerlet(a, timestep=dt * units.fs, logfile=None)
    times, energies = [0.0], [a.get_total_energy()]
    for step in range(1, steps + 1):
        dyn.run(1)
        times.append(step * dt)
        energies.append(a.get_total_energy())
    t, e = np.array(times), np.array(energies)
    if not np.isfinite(e).all():
        return Check("nve drift", "warn", None, "meV/atom/ps", "< 1", "the run blew up")
    drift = drift_per_atom_ps(t, e, len(a))
    if out is not None:
        _plot(
            out / "nve.png",
            [(t, (e - e[0]) * 1000 / len(a), "total energy")],
            "time (fs)",
            "E - E(0) (meV/atom)",
            "NVE, 300 K start, 0.5 fs",
        )
    status: Status = "pass" if abs(drift) < 1.0 else "warn"
    spread = float((e.max() - e.min()) * 1000 / len(a))
    return Check(
        "nve drift",
        status,
        drift,
        "meV/atom/ps",
        "|drift| < 1",
        f"{steps} steps of {dt} fs, {len(a)} atoms, spread {spread:.3g} meV/atom",
        {"time_fs": t.tolist(), "total_energy": e.tolist()},
    )


def check_eos(calc: Any, atoms: Any, out: Path | None) -> Check:
    from ase.eos import EquationOfState
    from ase.units import GPa

    volumes, energies = [], []
    cell0 = atoms.get_cell()
    for s in np.linspace(0.92, 1.08, 9) ** (1 / 3):
        a = atoms.copy()
        a.set_cell(cell0 * s, scale_atoms=True)
        a.calc = calc
        volumes.append(a.get_volume())
        energies.append(a.get_potential_energy())
    v, e = np.array(volumes), np.array(energies)
    if out is not None:
        _plot(
            out / "eos.png",
            [(v, e, "model")],
            "volume (Å^3)",
            "energy (eV)",
            f"equation of state, {atoms.get_chemical_formula()}",
            marker="o",
        )
    try:
        v0, _, b = EquationOfState(v, e, eos="birchmurnaghan").fit()
    except (RuntimeError, ValueError) as exc:
        return Check(
            "eos bulk modulus", "warn", None, "GPa", "a minimum inside ±8 %", f"fit failed: {exc}"
        )
    inside = v.min() < v0 < v.max()
    status: Status = "pass" if inside and b > 0 else "warn"
    detail = f"V0 {v0:.4g} Å^3 of {v.min():.4g}-{v.max():.4g}" + (
        "" if inside else ", outside the scan"
    )
    return Check(
        "eos bulk modulus",
        status,
        float(b / GPa),
        "GPa",
        "B > 0, V0 inside ±8 %",
        detail,
        {"volume": v.tolist(), "energy": e.tolist()},
    )


def dimer_curves(
    predictor: Any, elements: Sequence[int], cutoff: float, max_pairs: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """E(r) - E(r_max) of every element pair (at most ``max_pairs``), r from 0.5 Å to the
    cutoff in steps of `DIMER_STEP`, all points of a pair in batches (energies only)."""
    from ase import Atoms
    from ase.data import chemical_symbols

    pairs = list(itertools.combinations_with_replacement(sorted(elements), 2))[:max_pairs]
    r = np.arange(0.5, cutoff - 0.05, DIMER_STEP)
    curves = {}
    for z1, z2 in pairs:
        frames = [Atoms(numbers=[z1, z2], positions=[[0, 0, 0], [0, 0, d]]) for d in r]
        e = predictor(frames).energies
        curves[f"{chemical_symbols[z1]}-{chemical_symbols[z2]}"] = (r, e - e[-1])
    return curves


def _plot(
    path: Path,
    series: list[tuple[Any, Any, str]],
    xlabel: str,
    ylabel: str,
    title: str,
    marker: str | None = None,
) -> None:
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for x, y, label in series:
        ax.plot(x, y, label=label, marker=marker)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if len(series) > 1:
        ax.legend(fontsize=7)
    plots.save_figure(fig, path)


# ---------------------------------------------------------------------------- driver
def run_checks(
    model: Any,
    structures: Sequence[Any] | None = None,
    *,
    head: str | None = None,
    graph: Any = None,
    forces: ForceMode = "auto",
    nve_steps: int = 200,
    max_pairs: int = 6,
    out_dir: str | Path | None = None,
    seed: int = 0,
) -> list[Check]:
    """Every check (module docstring) on ``model`` (a `JMPModel`); figures into ``out_dir``."""
    import copy

    import torch

    from openjmp.api import Predictor
    from openjmp.calculator import JMPCalculator

    out = None if out_dir is None else check_writable_dir(out_dir, "report directory")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    calc = JMPCalculator(model, head=head, graph=graph, forces=forces)
    model64 = copy.deepcopy(model).to(torch.float64)
    calc64 = JMPCalculator(model64, head=head, graph=graph, forces=forces)
    spec = calc.predictor.graph
    elements = calc.predictor.elements
    if structures is None:
        if elements is None:
            raise ConfigError(
                "the model does not record the elements it was trained on: give STRUCTURES"
            )
        structures = default_structures(elements, spec.pbc, seed)
    structures = list(structures)
    if not structures:
        raise ConfigError("no structures to check")
    if elements is None:
        elements = sorted({int(z) for a in structures for z in a.numbers})
    rng = np.random.default_rng(seed)
    checks: list[Check] = []
    for i, atoms in enumerate(structures[:3]):
        label = f"{i}:{atoms.get_chemical_formula()}"
        checks.append(check_forces(calc64, atoms, label, rng))
        if atoms.pbc.any() and spec.pbc:
            checks.append(check_stress(calc64, atoms, label))
    periodic = [a for a in structures if a.pbc.all() and spec.pbc]
    if not periodic:
        checks.append(
            Check(
                "stress / eos",
                "skip",
                None,
                "",
                "periodic bulk",
                "no periodic structure (or a non-periodic graph)",
            )
        )
    else:
        checks.append(check_eos(calc, periodic[0], out))
    target = periodic[0] if periodic else structures[0]
    checks.append(check_nve(calc, target, nve_steps, out, seed))
    energies = Predictor(model, head=head, graph=spec, forces="none", unknown_elements="ignore")
    curves = dimer_curves(energies, elements, spec.cutoff, max_pairs)
    for name, (r, e) in curves.items():
        status, why = dimer_verdict(r, e)
        e_min = float(e.min())
        checks.append(
            Check(
                f"dimer {name}",
                status,
                float(r[int(np.argmin(e))]),
                "Å (min)",
                "repulsive, smooth, one minimum",
                why or f"well depth {-e_min:.3g} eV",
                {"r": r.tolist(), "energy": e.tolist()},
            )
        )
    if out is not None and curves:
        _plot(
            out / "dimers.png",
            [(r, e, n) for n, (r, e) in curves.items()],
            "distance (Å)",
            "E - E(cutoff) (eV)",
            "dimer curves",
        )
        report = {"graph": spec.to_dict(), "checks": [asdict(c) for c in checks]}
        (out / "report.json").write_text(json.dumps(report, indent=1))
    return checks
