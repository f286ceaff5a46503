"""OC20 / OC22 LMDB reader on small LMDBs written in the published layout (datasets.md §1, §2, §11).

Fixtures: EMT-labelled Cu(111)+O frames (tags 0/1/2, bottom layer fixed) pickled as PyG-1.x
``Data`` by the torch-free test writer into ``data.%04d.lmdb`` chunks. Checked: every field
round-trips (Z as float32/uint8/int64, tags, fixed, unconstrained forces), both naming schemes,
the ``length`` key and its absence, chunk order, OC20 reference energies, the OC22 flag and
``y_relaxed`` fallback, IS2RE entries, random access across chunks and after pickling (worker
processes), and a clear `DataError` for each kind of broken file.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from openjmp.errors import DataError
from openjmp.io import detect_format, read_records
from openjmp.io.ocp_lmdb import OCPLmdb

from helpers.writers import (
    dumps_pyg1,
    emt_label,
    ocp_fields,
    slab_frames,
    work_ratio,
    write_lmdb,
    write_ocp_dir,
)


@pytest.fixture(scope="module")
def frames():
    return slab_frames(5)


def test_oc20_fields_round_trip(tmp_path, frames) -> None:
    entries = [ocp_fields(a, sid=100 + i, fid=i) for i, a in enumerate(frames)]
    write_ocp_dir(tmp_path / "train", entries, chunk=2)
    assert detect_format(tmp_path / "train") == "ocp_lmdb"
    recs = list(read_records(tmp_path / "train"))
    assert len(recs) == 5
    assert [r.index for r in recs] == [0, 1, 2, 3, 4]  # position over the directory's chunks
    assert [r.source.rsplit("/", 1)[1] for r in recs] == ["data.0000.lmdb"] * 2 + [
        "data.0001.lmdb"
    ] * 2 + ["data.0002.lmdb"]
    for a, r in zip(frames, recs):
        e, f = emt_label(a)
        assert r.dataset == "oc20" and r.pbc.all()
        assert r.energy == pytest.approx(e, abs=1e-12)
        np.testing.assert_allclose(r.forces, f, atol=1e-6)  # float32 storage
        np.testing.assert_allclose(r.positions, a.positions, atol=1e-6)
        np.testing.assert_allclose(r.cell, a.cell.array, atol=1e-6)
        assert r.tags.tolist() == [0] * 4 + [1] * 8 + [2]
        assert r.fixed.tolist() == [True] * 4 + [False] * 9
        assert np.abs(r.forces[:4]).sum() > 0  # forces on fixed atoms are not zeroed
    assert work_ratio(recs) == pytest.approx(1.0, abs=0.02)


@pytest.mark.parametrize("z_dtype", [np.float32, np.uint8, np.int64])
@pytest.mark.parametrize("naming", ["y", "energy"])
def test_z_dtypes_and_naming_schemes(tmp_path, frames, z_dtype, naming) -> None:
    write_ocp_dir(
        tmp_path, [ocp_fields(frames[0], naming=naming, z_dtype=z_dtype)], length_key=False
    )
    (rec,) = read_records(tmp_path)
    assert rec.atomic_numbers.tolist() == frames[0].numbers.tolist()
    assert rec.energy == pytest.approx(emt_label(frames[0])[0])
    assert rec.forces is not None


def test_reference_energies_make_total_energies(tmp_path, frames) -> None:
    ads = [ocp_fields(a, sid=7, energy=-1.5 + i) for i, a in enumerate(frames[:2])]
    write_ocp_dir(tmp_path / "db", ads)
    ref = tmp_path / "oc20_ref.pkl"
    ref.write_bytes(pickle.dumps({"random7": -100.25}))
    recs = list(read_records(tmp_path / "db", ref_energies=ref))
    assert [r.energy for r in recs] == [-101.75, -100.75]
    assert [r.targets["adsorption_energy"] for r in recs] == [-1.5, -0.5]
    with pytest.raises(DataError, match="no reference energy for system random7"):
        list(read_records(tmp_path / "db", ref_energies={"random8": 0.0}))


def test_oc22_flag_and_y_relaxed_fallback(tmp_path, frames) -> None:
    a = ocp_fields(frames[0], oc22=True, energy=-300.0)
    b = ocp_fields(frames[1], oc22=True)
    del b["y"]
    b["y_relaxed"] = -301.5
    write_ocp_dir(tmp_path, [a, b])
    recs = list(read_records(tmp_path))
    assert [r.dataset for r in recs] == ["oc22", "oc22"]
    assert [r.energy for r in recs] == [-300.0, -301.5]


def test_is2re_entries(tmp_path, frames) -> None:
    d = ocp_fields(frames[0])
    for k in ("y", "force"):
        del d[k]
    d.update(y_init=-3.0, y_relaxed=-3.7, pos_relaxed=d["pos"] + 0.1)
    write_ocp_dir(tmp_path, [d])
    (rec,) = read_records(tmp_path)
    assert rec.energy == -3.0 and rec.targets == {"y_relaxed": -3.7} and rec.forces is None


def test_random_access_and_pickling(tmp_path, frames) -> None:
    write_ocp_dir(tmp_path, [ocp_fields(a, fid=i) for i, a in enumerate(frames)], chunk=2)
    db = OCPLmdb(tmp_path)
    assert len(db) == 5 and db.locate(3)[1] == 1
    clone = pickle.loads(pickle.dumps(db))  # what a DataLoader worker receives
    r = clone.record(4)
    np.testing.assert_allclose(r.positions, frames[4].positions, atol=1e-6)
    assert db.fields(2)["fid"] == 2


def _with_length(path, n: int):
    """Add a ``length`` key saying ``n`` to an LMDB file."""
    import lmdb

    env = lmdb.open(str(path), subdir=False, map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"length", pickle.dumps(n))
    env.close()
    return path


def test_broken_files_name_file_record_and_problem(tmp_path, frames) -> None:
    good = dumps_pyg1(ocp_fields(frames[0]))
    f = write_lmdb(tmp_path / "a" / "data.0000.lmdb", [good, b"\x80\x04garbage"])
    with pytest.raises(DataError, match=r"data.0000.lmdb, record 1: cannot unpickle the entry"):
        list(read_records(f))
    # 'length' says 3 entries, only 2 exist
    g = _with_length(
        write_lmdb(tmp_path / "b" / "data.0000.lmdb", [good, good], length_key=False), 3
    )
    with pytest.raises(DataError, match="record 2: key '2' missing"):
        list(read_records(g))
    bad = ocp_fields(frames[0])
    bad["natoms"] = 99
    write_ocp_dir(tmp_path / "c", [bad])
    with pytest.raises(DataError, match="record 0: natoms=99 but 13 atomic numbers"):
        list(read_records(tmp_path / "c"))
    bad = ocp_fields(frames[0])
    bad["force"] = bad["force"][:5]
    write_ocp_dir(tmp_path / "d", [bad])
    with pytest.raises(DataError, match=r"force has shape \(5, 3\), expected \(13, 3\)"):
        list(read_records(tmp_path / "d"))
    (tmp_path / "e.lmdb").write_bytes(b"not an lmdb at all" * 100)
    with pytest.raises(DataError, match="e.lmdb: not an LMDB file"):
        list(read_records(tmp_path / "e.lmdb"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: the directory is empty"):
        read_records(tmp_path / "empty", "ocp_lmdb")
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="no \\*.lmdb files"):
        read_records(tmp_path / "empty", "ocp_lmdb")


def test_on_error_collects_and_continues(tmp_path, frames) -> None:
    good = dumps_pyg1(ocp_fields(frames[0]))
    write_lmdb(tmp_path / "data.0000.lmdb", [good, b"junk", good])
    problems: list[DataError] = []
    recs = list(read_records(tmp_path, on_error=problems.append))
    assert len(recs) == 2 and len(problems) == 1 and problems[0].index == 1


def test_counts_and_corruption_are_named(tmp_path, frames) -> None:
    """Internal counts of an LMDB directory: indices are global over the chunks (errors name
    the file, the global record and the file's own key); an entry past ``length`` (records
    that would be silently dropped) and a truncated file (which would kill the process with
    SIGBUS inside LMDB) are `DataError`s."""
    good = dumps_pyg1(ocp_fields(frames[0]))
    write_lmdb(tmp_path / "d" / "data.0000.lmdb", [good, good])
    write_lmdb(tmp_path / "d" / "data.0001.lmdb", [good, b"junk"])
    with pytest.raises(DataError, match=r"data.0001.lmdb, record 3: .* at key '1'"):
        list(read_records(tmp_path / "d"))
    f = _with_length(
        write_lmdb(tmp_path / "x" / "data.0000.lmdb", [good, good, good], length_key=False), 2
    )
    with pytest.raises(DataError, match="'length' says 2 entries but key '2' exists too"):
        list(read_records(f))
    f = write_lmdb(tmp_path / "t" / "data.0000.lmdb", [good] * 8)
    f.write_bytes(f.read_bytes()[: 3 * 4096])
    with pytest.raises(DataError, match="data.0000.lmdb: LMDB file is truncated"):
        list(read_records(f))
    # a damaged node in a tree page (found by the fuzzer: LMDB's lookup crashed with SIGSEGV)
    f = write_lmdb(tmp_path / "n" / "data.0000.lmdb", [good] * 3)
    raw = bytearray(f.read_bytes())
    root = int.from_bytes(raw[4096 + 128 : 4096 + 136], "little")  # meta page 1: main root
    node = int.from_bytes(raw[root * 4096 + 18 : root * 4096 + 20], "little")  # second node
    raw[root * 4096 + node + 2 : root * 4096 + node + 4] = (0x4000).to_bytes(2, "little")
    f.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=rf"corrupt LMDB file: page {root}, node 1: \d+ bytes in"):
        list(read_records(f))


def test_dataset_from_flag_path_or_option(tmp_path, frames) -> None:
    """OC22 entries written without the ``oc22`` flag are named from the path, with a warning;
    ``dataset=`` decides when given."""
    from openjmp.io.ocp_lmdb import DatasetGuessWarning

    plain = [ocp_fields(a, naming="energy") for a in frames[:2]]
    write_ocp_dir(tmp_path / "oc22" / "s2ef-total" / "train", plain)
    with pytest.warns(DatasetGuessWarning, match="labelled 'oc22' from the path"):
        recs = list(read_records(tmp_path / "oc22" / "s2ef-total" / "train"))
    assert {r.dataset for r in recs} == {"oc22"}
    recs = list(read_records(tmp_path / "oc22" / "s2ef-total" / "train", dataset="oc20"))
    assert {r.dataset for r in recs} == {"oc20"}
    write_ocp_dir(tmp_path / "mine" / "train", plain)
    assert {r.dataset for r in read_records(tmp_path / "mine" / "train")} == {"oc20"}
