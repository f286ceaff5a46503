"""Every demo set read back by openjmp's data-layer readers, with the data check on.

`openjmp.io.read_records` must load each set with no reported problem (validation on,
problems collected through ``on_error`` so that all of them would show at once), give as many
records as the manifest counts, and convert each native unit back to eV and eV/Å: the
converted labels are compared with the same structure recomputed here. Tolerances: EMT 1e-6
eV; xTB 1e-5 eV (SCF restarts). rMD17 files are written with CODATA kcal/mol (ASE) and the
reader divides by 23.061 as JMP does: 2.2e-5 relative apart, i.e. ~7 meV on ethanol's total
energy, so the expected value applies the reader's factor explicitly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openjmp.errors import DataError
from openjmp.io import detect_format, read_records
from openjmp.records import AtomsRecord

SOURCES = {
    # set name: (path inside the set, format, manifest count to compare, reader options)
    "oc20_like": [
        ("s2ef/train", "ocp_lmdb", "train", {}),
        ("s2ef/val_id", "ocp_lmdb", "val_id", {}),
    ],
    "oc22_like": [
        ("s2ef-total/train", "ocp_lmdb", "train", {}),
        ("s2ef-total/val_id", "ocp_lmdb", "val_id", {}),
    ],
    "ani1x_like": [("ani1x-release.h5", "ani1x", "structures", {})],
    "transition1x_like": [
        ("transition1x.h5", "transition1x", "train", {"split": "train"}),
        ("transition1x.h5", "transition1x", "val", {"split": "val"}),
        ("transition1x.h5", "transition1x", "test", {"split": "test"}),
        ("transition1x.h5", "transition1x", "structures", {"split": "data"}),
    ],
    "qm9_like": [("dsgdb9nsd.xyz.tar.bz2", "qm9", "structures", {})],
    "rmd17_like": [("rmd17/npz_data/rmd17_ethanol.npz", "md_npz", "structures", {})],
    "matbench_like": [("matbench_mp_e_form.json.gz", "matbench", "structures", {})],
}
CASES = [(name, *src) for name, srcs in SOURCES.items() for src in srcs]


def read_all(path: Path, fmt: str, **opts) -> list[AtomsRecord]:
    problems: list[DataError] = []
    records = list(read_records(path, fmt, on_error=problems.append, **opts))
    assert problems == [], f"data check reported: {[str(p) for p in problems[:5]]}"
    return records


@pytest.mark.parametrize(("name", "rel", "fmt", "count", "opts"), CASES)
def test_readers_load_every_set_without_problems(
    demo_corpus: Path, demo_manifest: dict, name: str, rel: str, fmt: str, count: str, opts: dict
) -> None:
    path = demo_corpus / name / rel
    assert detect_format(path) == fmt
    records = read_all(path, fmt, **opts)
    assert len(records) == demo_manifest["sets"][name]["counts"][count]


def test_oc20_total_energy_through_the_reference_file(demo_corpus: Path) -> None:
    from ase.calculators.emt import EMT

    root = demo_corpus / "oc20_like"
    recs = read_all(root / "s2ef" / "train", "ocp_lmdb", ref_energies=root / "oc20_ref.pkl")
    for rec in recs[:: max(1, len(recs) // 3)]:
        atoms = rec.to_ase()
        atoms.set_constraint()
        atoms.calc = EMT()
        assert rec.energy == pytest.approx(atoms.get_potential_energy(), abs=1e-6)
        assert rec.energy - rec.targets["adsorption_energy"] != 0.0
        np.testing.assert_array_equal(rec.fixed, rec.tags == 0)
        assert rec.pbc.all()


def test_molecular_readers_convert_to_ev(demo_corpus: Path) -> None:
    """ANI-1x (Hartree), Transition-1x (eV) and rMD17 (kcal/mol) all come back in eV."""
    from ase import Atoms
    from ase.units import kcal, mol

    from openjmp.data.demo.xtb import xtb_single_point

    jmp_kcal = (1 / 23.061) / (kcal / mol)  # reader's kcal/mol factor over the writer's
    checks = [
        (read_all(demo_corpus / "ani1x_like" / "ani1x-release.h5", "ani1x")[0], 1.0),
        (read_all(demo_corpus / "transition1x_like" / "transition1x.h5", "transition1x")[0], 1.0),
        (
            read_all(
                demo_corpus / "rmd17_like" / "rmd17" / "npz_data" / "rmd17_ethanol.npz", "md_npz"
            )[0],
            jmp_kcal,
        ),
    ]
    for rec, factor in checks:
        p = xtb_single_point(Atoms(numbers=rec.atomic_numbers, positions=rec.positions))
        assert rec.energy == pytest.approx(p.energy * factor, abs=1e-5), rec.dataset
        np.testing.assert_allclose(rec.forces, p.forces * factor, atol=1e-4)


def test_fine_tuning_targets_come_back(demo_corpus: Path) -> None:
    qm9 = read_all(demo_corpus / "qm9_like" / "dsgdb9nsd.xyz.tar.bz2", "qm9")
    gaps = np.array([r.targets["delta_eps"] for r in qm9])  # eV after the reader
    assert np.all((gaps > 1.0) & (gaps < 25.0)) and np.ptp(gaps) > 0.5
    # atomisation energies use the xTB free-atom table shipped beside the tarball: negative
    assert all(r.targets["U_0_ATOM"] < 0 for r in qm9)
    mb = read_all(demo_corpus / "matbench_like" / "matbench_mp_e_form.json.gz", "matbench")
    e_form = np.array([r.targets["e_form"] for r in mb])
    assert np.all(np.abs(e_form) < 1.0) and np.ptp(e_form) > 0.01  # eV/atom
    assert all(r.pbc.all() and r.energy is None for r in mb)
