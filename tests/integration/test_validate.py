"""``openjmp validate``: the physics checks of a trained model.

* the criteria as pure functions: a Morse-like dimer curve passes; a curve with a second well,
  one attractive at short range, and one with a jump warn; the NVE drift is the slope of a line
  fitted through the total energies, in meV/atom/ps;
* on the tiny random float64 model (identity transforms, a molecular and a periodic graph):
  gradient forces pass the finite-difference check and direct forces (not any energy's
  gradient) warn and say so; the stress check and the equation of state run on a periodic
  cell; dimer lines and figures are written; default structures come from the elements the
  model records; the command prints one line per check with its threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk, molecule

from openjmp.cli.main import main
from openjmp.errors import ConfigError
from openjmp.graph.spec import GraphSpec, graph_spec
from openjmp.model.checkpoint import save_model
from openjmp.model.outputs import HeadInfo, OutputTransform
from openjmp.potential_check import dimer_verdict, drift_per_atom_ps, run_checks

from helpers.physics_models import physics_model


def test_dimer_criteria() -> None:
    r = np.arange(0.5, 6.0, 0.02)
    morse = (1 - np.exp(-1.5 * (r - 1.2))) ** 2 - 1
    assert dimer_verdict(r, morse) == ("pass", "")
    second_well = morse - 0.3 * np.exp(-((r - 3.0) ** 2) / 0.05)
    assert dimer_verdict(r, second_well)[1] == "2 minima"
    assert "not repulsive" in dimer_verdict(r, -np.exp(-r))[1]
    jump = morse + 0.8 * (r > 2.5)
    assert "a jump of 0.8" in dimer_verdict(r, jump)[1]


def test_drift_is_the_fitted_slope() -> None:
    t = np.arange(0, 100.0, 0.5)  # fs
    e = -50.0 + 2e-3 * t / 1000.0 * 10 + 1e-6 * np.sin(t)  # 2 meV/ps over 10 atoms... per atom 2
    assert drift_per_atom_ps(t, e, 10) == pytest.approx(2.0, rel=1e-3)


def _model(periodic: bool):  # noqa: ANN202
    m = physics_model()
    g = GraphSpec.from_base(4.0, 60, pbc=True) if periodic else graph_spec("ani1x")
    m.set_head_info("t_energy", HeadInfo(OutputTransform.energy(20.0), g, (1, 6, 8, 29)))
    m.set_head_info("t_forces", HeadInfo(OutputTransform.forces(1.0), g, (1, 6, 8, 29)))
    return m


def test_checks_on_a_molecular_model(tmp_path: Path) -> None:
    checks = run_checks(
        _model(False), forces="gradient", nve_steps=10, max_pairs=2, out_dir=tmp_path
    )
    by_name = {c.name.split()[0]: c for c in checks}
    assert by_name["forces"].status == "pass" and by_name["forces"].value < 1e-6
    assert by_name["stress"].status == "skip"  # a molecular graph
    dimers = [c for c in checks if c.name.startswith("dimer")]
    assert [c.name for c in dimers] == ["dimer H-H", "dimer H-C"]
    assert all(c.status in ("pass", "warn") and c.threshold for c in checks if c.status != "skip")
    assert (tmp_path / "dimers.png").stat().st_size > 1000
    assert (tmp_path / "nve.png").is_file()
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["checks"]) == len(checks)
    direct = run_checks(_model(False), forces="direct", nve_steps=2, max_pairs=1)
    f = next(c for c in direct if c.name.startswith("forces"))
    assert f.status == "warn" and "not the energy's gradient" in f.detail


def test_checks_on_a_periodic_model(tmp_path: Path) -> None:
    cell = bulk("Cu", "fcc", a=3.6) * (2, 1, 1)
    cell.rattle(0.02, seed=0)
    checks = run_checks(_model(True), [cell, molecule("CH4")], forces="gradient", nve_steps=4,
                        max_pairs=1, out_dir=tmp_path)  # fmt: skip
    names = [c.name for c in checks]
    assert "stress 0:Cu2" in names and "eos bulk modulus" in names
    stress = next(c for c in checks if c.name == "stress 0:Cu2")
    assert stress.status == "pass", stress.line()
    assert (tmp_path / "eos.png").is_file()


def test_command(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    path = save_model(_model(False), tmp_path / "m.pt")
    args = [
        "validate",
        str(path),
        "--out",
        str(tmp_path / "v"),
        "--nve-steps",
        "3",
        "--max-pairs",
        "1",
    ]
    assert main([*args, "--forces", "gradient"]) == 0
    out = capsys.readouterr().out
    assert "max |F - F_fd| <=" in out and "dimer H-H" in out and "pass or skip" in out
    bare = physics_model()  # records no elements: structures are needed
    bare.set_head_info("t_energy", output=OutputTransform.energy(1.0), graph=graph_spec("ani1x"))
    with pytest.raises(ConfigError, match="give STRUCTURES"):
        run_checks(bare, forces="gradient")
