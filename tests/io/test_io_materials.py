"""MatBench task files, QMOF JSON lists, OC20 extxyz shards and plain ASE files.

MatBench/QMOF structures are pymatgen dicts parsed without pymatgen: positions must equal the
structure's Cartesian coordinates, matbench ids follow matbench's scheme, oxidation-state
species (``Fe2+``) and QMOF labels like ``Cu1`` must give the element, partial occupancies and
mismatched QMOF lists must be refused. OC20 shards: tags, fixed atoms from ``move_mask``,
unconstrained forces and the adsorption energy from the ``.txt.xz`` references. ASE files:
labels, stress and info-key targets; ``detect_format`` picks each reader from the path.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from openjmp.errors import DataError
from openjmp.io import detect_format, read_records
from openjmp.io.json_stream import iter_json_array
from openjmp.io.matbench import mbids

from helpers.writers import (
    bulk_structures,
    emt_label,
    slab_frames,
    structure_dict,
    write_matbench,
    write_oc20_shard,
    write_qmof,
)


def test_matbench_structures_targets_ids(tmp_path) -> None:
    structs = bulk_structures(12)
    path = write_matbench(
        tmp_path / "matbench_jdft2d.json.gz",
        structs,
        [float(i) for i in range(12)],
        "exfoliation_en",
    )
    assert detect_format(path) == "matbench"
    recs = list(read_records(path))
    assert [r.index for r in recs][:2] == ["mb-jdft2d-01", "mb-jdft2d-02"]
    assert mbids("matbench_mp_e_form", 132752)[0] == "mb-mp-e-form-000001"
    assert mbids("matbench_jdft2d", 636)[-1] == "mb-jdft2d-636"
    for a, r in zip(structs, recs):
        np.testing.assert_allclose(r.positions, a.positions, atol=1e-10)
        np.testing.assert_allclose(r.cell, a.cell.array)
        assert r.pbc.all() and r.dataset == "matbench_jdft2d" and r.energy is None
    assert recs[5].targets == {"exfoliation_en": 5.0}
    flags = write_matbench(
        tmp_path / "matbench_mp_is_metal.json", structs[:2], [True, False], "is_metal"
    )
    assert [r.targets["is_metal"] for r in read_records(flags)] == [True, False]


def test_matbench_bad_rows(tmp_path) -> None:
    structs = bulk_structures(3)
    path = write_matbench(tmp_path / "matbench_x.json", structs, [1.0, 2.0, 3.0], "y")
    doc = json.loads(path.read_text())
    doc["data"][1][0]["sites"][0]["species"] = [
        {"element": "Cu", "occu": 0.5},
        {"element": "Ni", "occu": 0.5},
    ]
    doc["data"][2][0]["sites"][0]["species"][0]["element"] = "Xx"
    path.write_text(json.dumps(doc))
    problems: list[DataError] = []
    recs = list(read_records(path, on_error=problems.append))
    assert len(recs) == 1
    assert "record mb-x-2: site 0 is partially occupied" in str(problems[0])
    assert "record mb-x-3: unknown element 'Xx'" in str(problems[1])
    (tmp_path / "matbench_y.json").write_text("{not json")
    with pytest.raises(DataError, match="matbench_y.json: not a readable JSON file"):
        read_records(tmp_path / "matbench_y.json")


def test_qmof_pairs_by_id_and_uses_species(tmp_path) -> None:
    structs = bulk_structures(3)
    d = write_qmof(tmp_path / "qmof_database", structs, [1.5, 2.5, 3.5])
    assert detect_format(d) == "qmof"
    recs = list(read_records(d))
    assert [r.targets["bandgap"] for r in recs] == [1.5, 2.5, 3.5]
    assert [r.index for r in recs] == ["qmof-00000", "qmof-00001", "qmof-00002"]
    assert recs[1].atomic_numbers.tolist() == structs[1].numbers.tolist()  # labels are "Al1"
    assert recs[0].energy == -40.0
    np.testing.assert_allclose(recs[2].positions, structs[2].positions, atol=1e-10)
    structures = json.loads((d / "qmof_structure_data.json").read_text())
    structures[1]["qmof_id"] = "qmof-zzz"
    (d / "qmof_structure_data.json").write_text(json.dumps(structures))
    with pytest.raises(DataError, match="record 1: qmof_id 'qmof-zzz' does not match 'qmof-00001'"):
        list(read_records(d))
    (d / "qmof_structure_data.json").write_text(json.dumps(structures[:1]))
    with pytest.raises(DataError, match="ends at entry 1; the two lists must be equally long"):
        list(read_records(d))


def test_json_stream_small_chunks(tmp_path) -> None:
    items = [{"a": i, "s": "x" * (i * 50), "v": [1.5, None, True]} for i in range(20)] + [
        123456789,
        None,
    ]
    p = tmp_path / "l.json"
    p.write_text(json.dumps(items, indent=2))
    assert list(iter_json_array(p, chunk=7)) == items
    p.write_text(json.dumps(items)[:-40])
    with pytest.raises(DataError, match="l.json, record \\d+: (invalid JSON|file ends inside)"):
        list(iter_json_array(p, chunk=16))


def test_structure_dict_oxidation_states() -> None:
    from openjmp.io.pymatgen_dict import parse_structure

    a = bulk_structures(1)[0]
    z, pos, cell, pbc = parse_structure(structure_dict(a, oxidation=True), "mem", 0)
    assert z.tolist() == a.numbers.tolist() and pbc.all()


def test_oc20_extxyz_shards(tmp_path) -> None:
    frames = slab_frames(4)
    write_oc20_shard(tmp_path, 0, frames[:2], refs=[-50.0, -50.0], sids=[5, 5])
    write_oc20_shard(tmp_path, 1, frames[2:], refs=[-60.0, -60.0], sids=[6, 6])
    assert detect_format(tmp_path) == "oc20_extxyz"
    recs = list(read_records(tmp_path))
    assert len(recs) == 4 and recs[2].source.endswith("1.extxyz.xz") and recs[2].index == 0
    e, f = emt_label(frames[2])
    assert recs[2].energy == pytest.approx(e)
    assert recs[2].targets["adsorption_energy"] == pytest.approx(e + 60.0)
    np.testing.assert_allclose(recs[2].forces, f, atol=1e-7)
    assert recs[0].fixed.tolist() == [True] * 4 + [False] * 9
    assert recs[0].tags.tolist() == [0] * 4 + [1] * 8 + [2]
    ads = list(read_records(tmp_path / "0.extxyz.xz", energy="adsorption"))
    assert ads[0].energy == pytest.approx(emt_label(frames[0])[0] + 50.0)
    (tmp_path / "1.txt.xz").unlink()
    with pytest.raises(DataError, match="1.extxyz.xz: missing its reference-energy file 1.txt.xz"):
        list(read_records(tmp_path, "oc20_extxyz"))


def test_ase_files_labels_and_targets(tmp_path) -> None:
    import ase.io

    frames = []
    for i, name in enumerate(["H2O", "NH3", "CH4"]):
        a = molecule(name)
        a.center(vacuum=4.0)
        a.pbc = True
        a.calc = EMT()
        e, f, s = a.get_potential_energy(), a.get_forces(), a.get_stress()
        a.calc = SinglePointCalculator(a, energy=e, forces=f, stress=s)
        a.info["gap"] = 1.0 + i
        a.info["REF_energy"] = -float(i)
        frames.append(a)
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames)
    assert detect_format(path) == "ase"
    recs = list(read_records(path, dataset="mine"))
    assert [r.targets["gap"] for r in recs] == [1.0, 2.0, 3.0]
    assert recs[1].stress.shape == (6,) and recs[1].dataset == "mine"
    np.testing.assert_allclose(recs[2].forces, frames[2].calc.results["forces"], atol=1e-7)
    recs = list(read_records(path, energy_key="REF_energy", targets=["gap"]))
    assert [r.energy for r in recs] == [-0.0, -1.0, -2.0] and list(recs[0].targets) == ["gap"]
    with pytest.raises(DataError, match="record 0: target keys \\['band'\\] not in"):
        list(read_records(path, targets=["band"]))
    traj = tmp_path / "t.traj"
    ase.io.write(traj, frames)
    assert len(list(read_records(traj))) == 3
    db = tmp_path / "s.db"
    import ase.db

    with ase.db.connect(db) as con:
        for a in frames:
            con.write(a, u=1.5)
    recs = list(read_records(db))
    assert [r.index for r in recs] == [1, 2, 3] and recs[0].targets["u"] == 1.5
    bad = tmp_path / "bad.extxyz"
    bad.write_text("1\nProperties=species:S:1:pos:R:3\nH 0 0\n")
    with pytest.raises(DataError, match="bad.extxyz, record 0: ASE cannot read this structure"):
        list(read_records(bad))


def test_xyz_atom_counts_must_match_the_atom_lines(tmp_path) -> None:
    """The count line of every (ext)xyz frame is checked against the lines that follow: too few
    lines, too many (read by ASE as a smaller molecule, then an error at the next frame), a huge
    count (ASE loops over it for ever) and data after a blank line (ASE silently stops there).
    The well-formed frames before the problem are still read (``data check`` lists them)."""
    frame = "3\nProperties=species:S:1:pos:R:3\nO 0 0 0\nH 0.96 0 0\nH -0.24 0.93 0\n"
    path = tmp_path / "w.extxyz"
    cases = {
        frame + frame.replace("3\n", "4\n", 1): "record 1: frame 1 says 4 atoms (line 6) but "
        "the file ends after 3 atom lines",
        frame.replace("3\n", "2\n", 1) + frame: "record 0: line 5: expected the atom count of "
        "frame 1, got 'H -0.24 0.93 0' (frame 0 has more atom lines than its count?)",
        frame + "99999999999999999999\n" + frame[2:]: "record 1: frame 1 says 99999999999999999999",
        frame + "\n" + frame: "record 1: line 7: data after the blank line",
    }
    for text, message in cases.items():
        path.write_text(text)
        recs = []
        with pytest.raises(DataError, match=re.escape(message)):
            for r in read_records(path):
                recs.append(r)
        assert len(recs) == (0 if "frame 0 has" in message else 1)


def test_detect_format_refuses_ambiguous(tmp_path) -> None:
    (tmp_path / "notes.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="cannot tell the format of this file"):
        read_records(tmp_path / "notes.bin")
    with pytest.raises(DataError, match="unknown format 'xyz2'"):
        read_records(tmp_path / "notes.bin", "xyz2")
    with pytest.raises(DataError, match="file or directory not found"):
        read_records(tmp_path / "missing.h5")


def test_unknown_reader_option(tmp_path) -> None:
    path = write_matbench(tmp_path / "matbench_t.json", bulk_structures(2), [1.0, 2.0], "y")
    with pytest.raises(
        DataError, match=r"format 'matbench' has no option \['levle'\]; its options: \['task'"
    ):
        read_records(path, levle="x")


def test_more_malformed_files(tmp_path) -> None:
    from openjmp.io.matbench import read_folds
    from openjmp.io.ocp_lmdb import load_ref_energies

    (tmp_path / "v.json").write_text(
        json.dumps({"splits": {"matbench_t": {"fold_0": {"train": []}}}})
    )
    with pytest.raises(
        DataError, match="v.json, record matbench_t/fold_0: fold lacks 'train' or 'test' ids"
    ):
        read_folds(tmp_path / "v.json", "matbench_t")
    (tmp_path / "ref.pkl").write_bytes(b"\x80\x04K\x01.")  # the int 1, not a mapping
    with pytest.raises(DataError, match="ref.pkl: expected a mapping sid -> energy"):
        load_ref_energies(tmp_path / "ref.pkl")
    q = write_qmof(tmp_path / "q", bulk_structures(1), [1.0])
    (q / "qmof_structure_data.json").unlink()
    with pytest.raises(DataError, match="qmof_structure_data.json: QMOF file not found"):
        read_records(q, "qmof")
    import h5py

    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_group("other")
    with pytest.raises(
        DataError, match=r"t.h5: no train/val/test or data group \(found \['other'\]\)"
    ):
        list(read_records(tmp_path / "t.h5", "transition1x"))
    with pytest.raises(
        DataError, match="t.h5: HDF5 file is neither ANI-1x, Transition-1x nor SPICE"
    ):
        read_records(tmp_path / "t.h5")
