"""JMPCalculator and the public predict/load_model calls, with ASE's optimiser and MD.

The model is the tiny random float64 model of the physics suite (energy head scaled so that
forces are ~0.2 eV/Å): BFGS must converge on the model's own surface (gradient forces make it a
consistent potential), lowering the energy and the largest force; velocity Verlet must conserve
the total energy to ~1e-4 relative over a few steps. ``predict`` must not depend on how the
structures are batched, and ``openjmp predict`` must write every structure's energy and forces.
"""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.build import molecule
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

import openjmp
from openjmp.cli.main import main
from openjmp.errors import ConfigError
from openjmp.graph.spec import GraphSpec
from openjmp.model.checkpoint import save_model
from openjmp.model.outputs import OutputTransform

from helpers.physics_models import physics_model


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    m = physics_model()
    with torch.no_grad():
        m.heads["t_energy"].mlp[-1].weight.mul_(300.0)
    # a model trained in eV: identity transforms; no graph recorded (tests pass graph=)
    m.set_head_info("t_energy", output=OutputTransform.energy(1.0))
    m.set_head_info("t_forces", output=OutputTransform.forces(1.0))
    return m


def water() -> ase.Atoms:
    a = molecule("H2O")
    a.positions += np.random.default_rng(0).normal(scale=0.1, size=a.positions.shape)
    return a


def test_bfgs_relaxation_converges(model) -> None:  # noqa: ANN001
    atoms = water()
    atoms.calc = openjmp.JMPCalculator(model, graph="ani1x", head="t", forces="gradient")
    e0, f0 = atoms.get_potential_energy(), np.abs(atoms.get_forces()).max()
    assert atoms.get_potential_energy() == atoms.calc.results["free_energy"]
    assert BFGS(atoms, logfile=None).run(fmax=0.01, steps=100)
    assert atoms.get_potential_energy() < e0 - 1e-3
    assert np.abs(atoms.get_forces()).max() < min(0.01, f0 / 10)


def test_velocity_verlet_conserves_energy(model) -> None:  # noqa: ANN001
    atoms = water()
    atoms.calc = openjmp.JMPCalculator(model, graph="ani1x", head="t", forces="gradient")
    atoms.set_momenta(np.random.default_rng(1).normal(scale=0.5, size=(3, 3)))
    e_start = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=0.2 * units.fs, logfile=None).run(10)
    assert abs(atoms.get_total_energy() - e_start) < 1e-4 * abs(e_start) + 1e-5


def test_direct_forces_by_default_when_the_model_has_them(model) -> None:  # noqa: ANN001
    atoms = water()
    atoms.calc = openjmp.JMPCalculator(model, graph="ani1x", head="t")
    direct = openjmp.predict(model, atoms, graph="ani1x", head="t", forces="direct")
    np.testing.assert_array_equal(atoms.get_forces(), direct.forces[0])
    assert direct.force_head == "t_forces"
    with pytest.raises(ConfigError, match="unknown head"):
        openjmp.JMPCalculator(model, head="nope")


def test_predict_is_independent_of_batching(model) -> None:  # noqa: ANN001
    frames = [water(), molecule("CH4"), molecule("NH3"), water()]
    one = openjmp.predict(model, frames, graph="ani1x", forces="gradient", max_atoms_per_batch=1)
    all_ = openjmp.predict(model, frames, graph="ani1x", forces="gradient", max_atoms_per_batch=100)
    np.testing.assert_allclose(one.energies, all_.energies, rtol=1e-12)
    for a, b, c, d in zip(one.forces, all_.forces, one.embeddings, all_.embeddings):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(c, d, rtol=1e-10, atol=1e-12)
    assert [f.shape for f in one.forces] == [(len(a), 3) for a in frames]
    assert one.embeddings[0].shape == (3, 16)


@pytest.mark.parametrize("suffix", [".npz", ".extxyz"])
def test_predict_command(model, tmp_path: Path, suffix: str) -> None:  # noqa: ANN001
    ckpt = save_model(model, tmp_path / "model.pt")
    structures = tmp_path / "in.extxyz"
    frames = [water(), molecule("CH4")]
    ase.io.write(structures, frames)
    out = tmp_path / f"out{suffix}"
    args = ["predict", str(ckpt), str(structures), "-o", str(out), "--graph", "ani1x"]
    assert main([*args, "--dtype", "float64", "--forces", "gradient"]) == 0
    frames = ase.io.read(structures, index=":")  # as written (positions rounded by the format)
    ref = openjmp.predict(
        openjmp.load_model(ckpt, dtype=torch.float64), frames, graph="ani1x", forces="gradient"
    )
    if suffix == ".npz":
        data = np.load(out)
        np.testing.assert_allclose(data["energies"], ref.energies, rtol=1e-12)
        np.testing.assert_allclose(
            data["forces"], np.concatenate(ref.forces), rtol=1e-10, atol=1e-12
        )
        assert data["natoms"].tolist() == [3, 5]
    else:
        back = ase.io.read(out, index=":")
        assert [a.get_potential_energy() for a in back] == pytest.approx(
            ref.energies.tolist(), rel=1e-10
        )
        np.testing.assert_allclose(
            back[1].get_forces(), ref.forces[1], rtol=0, atol=1e-7
        )  # 8 decimals


def test_predict_command_reports_bad_input(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = str(tmp_path / "o.npz")
    assert main(["predict", str(tmp_path / "none.ckpt"), str(tmp_path / "x.xyz"), "-o", out]) == 2
    assert "x.xyz: file not found" in capsys.readouterr().err
    ase.io.write(tmp_path / "x.xyz", water())
    assert main(["predict", str(tmp_path / "none.ckpt"), str(tmp_path / "x.xyz"), "-o", out]) == 2
    assert "none.ckpt: no such checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


def test_model_uses_its_own_graph_and_cli_overrides(model, tmp_path: Path) -> None:  # noqa: ANN001
    from openjmp.graph.spec import graph_spec

    own = physics_model()
    own.set_head_info("t_energy", output=OutputTransform.energy(2.0), graph=graph_spec("ani1x"))
    structures = tmp_path / "in.extxyz"
    ase.io.write(structures, [water(), molecule("CH4")])
    frames = ase.io.read(structures, ":")  # as written (positions rounded by the format)
    default = openjmp.predict(own, frames, forces="gradient")
    explicit = openjmp.predict(own, frames, graph="ani1x", forces="gradient")
    np.testing.assert_array_equal(default.energies, explicit.energies)
    assert default.graph == graph_spec("ani1x")
    with pytest.raises(ConfigError, match="does not say which graph"):
        openjmp.predict(model, frames)  # the fixture records no graph
    ckpt = save_model(own, tmp_path / "own.pt")
    out = tmp_path / "o.npz"
    args = ["predict", str(ckpt), str(structures), "-o", str(out), "--dtype", "float64"]
    assert main([*args, "--forces", "gradient", "--no-progress"]) == 0
    np.testing.assert_allclose(np.load(out)["energies"], default.energies, rtol=1e-10)
    assert main([*args, "--cutoff", "3.0", "--max-neighbors", "4", "--forces", "gradient"]) == 0
    short = openjmp.predict(
        own,
        frames,
        graph=GraphSpec.from_base(3.0, 4, pbc=False, dummy_cell=True),
        forces="none",
    )
    np.testing.assert_allclose(np.load(out)["energies"], short.energies, rtol=1e-10)
    assert not np.allclose(short.energies, default.energies)


def test_predict_command_checks_output_before_work(model, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    ckpt = save_model(model, tmp_path / "model.pt")
    structures = tmp_path / "in.extxyz"
    ase.io.write(structures, [water()])
    assert main(["predict", str(ckpt), str(structures), "-o", str(tmp_path / "out.foo")]) == 2
    assert "unknown output format '.foo'" in capsys.readouterr().err


def test_predict_command_refuses_a_read_only_directory(
    model, tmp_path: Path, capsys, readonly_dir
) -> None:  # noqa: ANN001,E501
    ckpt = save_model(model, tmp_path / "model.pt")
    structures = tmp_path / "in.extxyz"
    ase.io.write(structures, [water()])
    assert main(["predict", str(ckpt), str(structures), "-o", str(readonly_dir / "o.npz")]) == 2
    assert "output directory is not writable" in capsys.readouterr().err


def test_predict_command_writes_stress_and_units(tmp_path: Path) -> None:
    from ase.build import bulk

    own = physics_model()
    own.set_head_info(
        "t_energy", output=OutputTransform.energy(5.0), graph=GraphSpec.from_base(4.0, 60, pbc=True)
    )
    ckpt = save_model(own, tmp_path / "own.pt")
    cells = [bulk("Cu", "fcc", a=3.6) * (2, 1, 1), bulk("Ni", "fcc", a=3.5, cubic=True)]
    for c in cells:
        c.rattle(0.02, seed=3)
    ase.io.write(tmp_path / "cells.extxyz", cells)
    out = tmp_path / "cells_out.extxyz"
    cmd = ["predict", str(ckpt), str(tmp_path / "cells.extxyz"), "-o", str(out), "--stress"]
    assert main([*cmd, "--forces", "gradient", "--dtype", "float64", "--no-progress"]) == 0
    ref = openjmp.predict(
        own, ase.io.read(tmp_path / "cells.extxyz", ":"), stress=True, forces="gradient"
    )
    back = ase.io.read(out, ":")
    np.testing.assert_allclose(back[1].get_stress(), ref.stress[1], rtol=1e-8, atol=1e-10)
    assert ref.units["stress"] == "eV/Å^3"


def test_overlapping_atoms_and_unseen_elements(model) -> None:  # noqa: ANN001
    atoms = water()
    atoms.positions[2] = atoms.positions[1]
    with pytest.raises(openjmp.DataError, match="overlapping atoms: atoms 1 and 2"):
        openjmp.predict(model, atoms, graph="ani1x", forces="gradient")
    atoms.calc = openjmp.JMPCalculator(model, graph="ani1x", forces="gradient")
    with pytest.raises(openjmp.DataError, match="overlapping atoms"):
        atoms.get_forces()
    known = physics_model()
    known.set_head_info("t_energy", output=OutputTransform.energy(1.0), elements=(1, 8))
    with pytest.warns(
        UserWarning,
        match="structure 1: element.* C never seen in training by head 't_energy' \\(trained on H, O\\)",
    ):
        openjmp.predict(known, [water(), molecule("CH4")], graph="ani1x", forces="gradient")
    with pytest.raises(openjmp.DataError, match="record 0.*C never seen"):
        openjmp.predict(
            known, molecule("CH4"), graph="ani1x", forces="gradient", unknown_elements="error"
        )


@pytest.mark.parametrize("command", ["predict", "evaluate", "finetune", "validate"])
def test_commands_refuse_an_output_they_cannot_write(
    model, tmp_path: Path, capsys, command
) -> None:  # noqa: ANN001
    """An output path under a regular file cannot be created, for root too: every command
    that writes says so before it starts (no OSError traceback after the work)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ckpt = save_model(model, tmp_path / "model.pt")
    ase.io.write(tmp_path / "in.extxyz", [water()])
    dest = blocker / "out"
    args = {
        "predict": ["predict", str(ckpt), str(tmp_path / "in.extxyz"), "-o", str(dest / "o.npz")],
        "evaluate": ["evaluate", str(ckpt), "--out", str(dest)],
        "finetune": ["finetune", "user-energy-forces", "--set", f"data.train.path={tmp_path / 'in.extxyz'}",
                     "--set", "model.checkpoint=null", "--out", str(dest)],
        "validate": ["validate", str(ckpt), str(tmp_path / "in.extxyz"), "--out", str(dest)],
    }[command]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a_file is a file, not a directory" in err, err


def test_pretraining_refuses_an_output_it_cannot_write(tmp_path: Path) -> None:
    from openjmp.train.pretrain import run_pretrain

    from helpers.tiny_data import tiny_config, write_tiny_data

    write_tiny_data(tmp_path / "data")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(openjmp.DataError, match="a_file is a file, not a directory"):
        run_pretrain(tiny_config(tmp_path / "data"), out_dir=tmp_path / "a_file" / "run")
