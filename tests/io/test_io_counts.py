"""Each format's internal counts and lengths are checked, and a mismatch is named (file,
record, problem): pandas-split JSON whose ``index`` and ``data`` disagree, pymatgen sites whose
Cartesian and fractional coordinates disagree, text where numbers belong in npz and HDF5
files, a corrupt HDF5 group. (QM9 atom counts and LMDB ``length`` keys: in the QM9 and LMDB
tests; every reader under random damage: tests/fuzz.)"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from openjmp.errors import DataError
from openjmp.io import read_records

from helpers.writers import (
    bulk_structures,
    molecule_frames,
    structure_dict,
    write_ani1x,
    write_matbench,
    write_md22,
    write_qmof,
    write_spice,
)


def test_matbench_index_length_and_site_coordinates(tmp_path) -> None:
    path = write_matbench(
        tmp_path / "matbench_jdft2d.json", bulk_structures(3), [1.0, 2.0, 3.0], "y"
    )
    doc = json.loads(path.read_text())
    doc["index"] = [0, 1]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="'index' has 2 entries for 3 rows of 'data'"):
        read_records(path)
    doc["index"] = [0, 1, 2]
    doc["data"][1][0]["sites"][2]["xyz"][0] += 0.5
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"record mb-jdft2d-2: site 2: xyz .* disagrees with abc"):
        list(read_records(path))


def test_qmof_site_species_must_be_dicts(tmp_path) -> None:
    root = write_qmof(tmp_path / "qmof", bulk_structures(2), [1.0, 2.0])
    structs = json.loads((root / "qmof_structure_data.json").read_text())
    structs[1]["structure"]["sites"][0]["species"] = ["Cu"]
    (root / "qmof_structure_data.json").write_text(json.dumps(structs))
    with pytest.raises(DataError, match="record qmof-00001: site 0: species entries must be dicts"):
        list(read_records(root))
    assert structure_dict(bulk_structures(1)[0])["lattice"]["pbc"] == [True, True, True]


def test_npz_arrays_must_be_numeric(tmp_path) -> None:
    path = write_md22(tmp_path / "md22_w.npz", molecule_frames("H2O", 3))
    d = dict(np.load(path))
    d["E"] = np.array(["a", "b", "c"])
    np.savez(path, **d)
    with pytest.raises(DataError, match="md22_w.npz: E must be numeric, got dtype <U1"):
        read_records(path)
    d["E"], d["e_unit"] = np.zeros(3), np.array(["eV", "eV"])
    np.savez(path, **d)
    with pytest.raises(DataError, match=r"e_unit must be one string"):
        read_records(path)


def test_hdf5_text_datasets_and_bad_units_are_named(tmp_path) -> None:
    path = write_ani1x(tmp_path / "ani.h5", {"H2O": molecule_frames("H2O", 2)})
    with h5py.File(path, "a") as f:
        del f["H2O/atomic_numbers"]
        f["H2O/atomic_numbers"] = np.array([b"O", b"H", b"H"])
    with pytest.raises(
        DataError, match="ani.h5, record H2O: dataset 'atomic_numbers' must be numeric"
    ):
        list(read_records(path, "ani1x"))
    path = write_spice(tmp_path / "spice.h5", {"m": molecule_frames("H2O", 2)})
    with h5py.File(path, "a") as f:
        f["m/conformations"].attrs["units"] = np.array([1.0, 2.0])
    with pytest.raises(
        DataError, match="record m: units attribute of 'conformations' is not a string"
    ):
        list(read_records(path, "spice"))
