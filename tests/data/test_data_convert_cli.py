"""``openjmp data convert | check | make-demo`` end to end on small native files.

Conversion must produce a cache whose records equal the reader's, the dataset's split saved
beside it (``splits.npz``, the authors' indices) and statistics of the training part
(``statistics.json``); ``check`` must exit 0 on clean data and 1 with the problem printed
otherwise; ``make-demo`` must hand its arguments to ``openjmp.data.demo.make_demo``.
"""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

from openjmp.cli.main import main
from openjmp.data.cache import RecordStore
from openjmp.data.splits import load_splits, rmd17_split
from openjmp.io import read_records
from openjmp.io.matbench import mbids

from helpers.writers import (
    bulk_structures,
    molecule_frames,
    write_matbench,
    write_matbench_folds,
    write_rmd17,
    write_t1x,
)


def test_convert_rmd17_with_split_and_statistics(tmp_path, capsys) -> None:
    src = write_rmd17(tmp_path / "rmd17_ethanol.npz", molecule_frames("CH3CH2OH", 30))
    dest = tmp_path / "cache"
    rc = main(
        [
            "data",
            "convert",
            str(src),
            str(dest),
            "--split-option",
            "train=20",
            "--split-option",
            "val=4",
        ]
    )
    assert rc == 0 and "wrote 30 records" in capsys.readouterr().out
    store = RecordStore(dest)
    for a, b in zip(read_records(src), store):
        np.testing.assert_array_equal(a.positions, b.positions)
        assert a.energy == b.energy and a.index == b.index
    splits = load_splits(dest / "splits.npz")
    expected = rmd17_split(30, train=20, val=4)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(splits["default"][part], expected[part])
    stats = json.loads((dest / "statistics.json").read_text())
    s = stats["splits"]["default"]
    assert stats["dataset"] == "rmd17" and s["part"] == "train" and s["n_structures"] == 20
    train_e = np.array([store[int(i)].energy for i in expected["train"]])
    assert s["energy"]["mean"] == pytest.approx(train_e.mean())
    assert store.manifest["dataset"] == "rmd17" and store.manifest["metadata"]["format"] == "md_npz"
    assert main(["data", "check", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "records: 30" in out and "split default: train 20, val 4, test 6" in out


def test_convert_transition1x_and_matbench(tmp_path) -> None:
    eth, wat = molecule_frames("CH3CH2OH", 3), molecule_frames("H2O", 2)
    src = write_t1x(tmp_path / "T1x.h5", {"C2H6O": {"rxn0001": eth}, "H2O": {"rxn0002": wat}},
                    {"train": [("C2H6O", "rxn0001")], "val": [("H2O", "rxn0002")], "test": []})  # fmt: skip
    assert main(["data", "convert", str(src), str(tmp_path / "t1x")]) == 0
    split = load_splits(tmp_path / "t1x" / "splits.npz")["default"]
    assert (
        split["train"].tolist() == [0, 1, 2]
        and split["val"].tolist() == [3, 4]
        and len(split["test"]) == 0
    )

    task = "matbench_log_kvrh"
    structs = bulk_structures(20)
    mb = write_matbench(
        tmp_path / f"{task}.json.gz", structs, [0.1 * i for i in range(20)], "log10(K_VRH)"
    )
    write_matbench_folds(tmp_path / "matbench_v0.1_validation.json", task, mbids(task, 20))
    assert main(["data", "convert", str(mb), str(tmp_path / "mb"), "--float32"]) == 0
    splits = load_splits(tmp_path / "mb" / "splits.npz")
    assert sorted(splits) == [f"fold_{k}" for k in range(5)]
    assert all(
        len(p["train"]) + len(p["val"]) == 16 and len(p["test"]) == 4 for p in splits.values()
    )
    stats = json.loads((tmp_path / "mb" / "statistics.json").read_text())
    assert stats["splits"]["fold_0"]["targets"]["log10(K_VRH)"]["count"] == len(
        splits["fold_0"]["train"]
    )


def test_convert_errors_and_overwrite(tmp_path, capsys) -> None:
    src = write_rmd17(tmp_path / "rmd17_ethanol.npz", molecule_frames("CH3CH2OH", 5))
    assert main(["data", "convert", str(src), str(tmp_path / "c")]) == 2  # 5 frames < 950 + 50
    err = capsys.readouterr().err
    assert "rmd17_ethanol.npz: the rMD17 split needs at least 1000 records, the data has 5" in err
    assert not (tmp_path / "c").exists()
    assert main(["data", "convert", str(src), str(tmp_path / "c"), "--dataset", "user"]) == 0
    assert main(["data", "convert", str(src), str(tmp_path / "c"), "--dataset", "user"]) == 2
    assert "destination exists" in capsys.readouterr().err
    assert (
        main(["data", "convert", str(src), str(tmp_path / "c"), "--dataset", "user", "--overwrite"])
        == 0
    )


def test_check_exit_status(tmp_path, capsys) -> None:
    frames = molecule_frames("CH3CH2OH", 10)
    src = write_rmd17(tmp_path / "rmd17_ethanol.npz", frames)
    assert main(["data", "check", str(src)]) == 0
    d = dict(np.load(src))
    d["forces"] = -d["forces"]  # gradients stored as forces
    d["coords"][2, 1] = d["coords"][2, 0]  # two atoms on top of each other
    np.savez(src, **d)
    assert main(["data", "check", str(src)]) == 1
    out = capsys.readouterr().out
    assert "rmd17_ethanol.npz, record 2: overlapping atoms: atoms 0 and 1" in out
    assert "forces have the wrong sign" in out


def test_make_demo_calls_the_generator(tmp_path, monkeypatch, capsys) -> None:
    calls = []
    fake = types.ModuleType("openjmp.data.demo")

    def make_demo(out, scale=1.0, seed=0, progress=True):
        calls.append((out, scale, seed, progress))
        return out

    fake.make_demo = make_demo
    monkeypatch.setitem(sys.modules, "openjmp.data.demo", fake)
    monkeypatch.setattr("openjmp.progress.in_ci", lambda: False)  # bars on outside CI
    assert main(["data", "make-demo", str(tmp_path / "demo"), "--scale", "0.1", "--seed", "3"]) == 0
    assert main(["data", "make-demo", str(tmp_path / "d2"), "--no-progress"]) == 0
    assert calls == [(tmp_path / "demo", 0.1, 3, True), (tmp_path / "d2", 1.0, 0, False)]
    assert "demo corpus written to" in capsys.readouterr().out


def test_convert_keeps_identical_structures_in_one_part(tmp_path, capsys) -> None:
    """Copies of a structure end in the part of their first copy (no test structure is also a
    training structure); without copies the split is exactly the authors' seeded one."""
    import ase.io
    from ase.calculators.singlepoint import SinglePointCalculator

    from openjmp.data.splits import fraction_split

    from helpers.writers import emt_label

    frames = []
    for a in molecule_frames("CH3CH2OH", 30, seed=5):
        e, f = emt_label(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        frames.append(a)
    ase.io.write(tmp_path / "clean.extxyz", frames)
    assert main(["data", "convert", str(tmp_path / "clean.extxyz"), str(tmp_path / "c1")]) == 0
    assert "duplicates" not in capsys.readouterr().out
    clean = load_splits(tmp_path / "c1" / "splits.npz")["default"]
    for part, idx in fraction_split(30, seed=42).items():
        np.testing.assert_array_equal(clean[part], idx)
    # copies of frame 10 (x2) and 3 appended at the end: 33 records. The seeded split of 33
    # records puts 10 in test, 30 and 31 in train, 3 in train and 32 in val: both groups span parts
    dup = frames + [frames[10], frames[10], frames[3]]
    ase.io.write(tmp_path / "dup.extxyz", dup)
    assert main(["data", "convert", str(tmp_path / "dup.extxyz"), str(tmp_path / "c2")]) == 0
    out = capsys.readouterr().out
    assert "duplicates: 5 records are copies in 2 groups of identical structures" in out
    assert {p: len(i) for p, i in fraction_split(33, seed=42).items()} == {
        "train": 26,
        "val": 4,
        "test": 3,
    }
    parts = load_splits(tmp_path / "c2" / "splits.npz")["default"]
    where = {int(i): p for p, idx in parts.items() for i in idx}
    assert sorted(where) == list(range(33))  # every record in exactly one part
    assert where[10] == where[30] == where[31] == "test" and where[3] == where[32] == "train"
    assert "3 moved so that each group lies in one part" in out
    meta = RecordStore(tmp_path / "c2").manifest["metadata"]["duplicates"]
    assert meta["groups"] == 2 and meta["records"] == 5
    # data check previews the same split
    from openjmp.data.check import check_path

    sizes = {p: len(idx) for p, idx in parts.items()}
    assert check_path(tmp_path / "dup.extxyz").splits == {"default": sizes}


def test_keep_together_leaves_fixed_parts_alone() -> None:
    from openjmp.data.duplicates import keep_together

    splits = {
        "fold_0": {"train": np.array([0, 1, 2]), "val": np.array([3]), "test": np.array([4, 5])}
    }
    groups = [np.array([1, 3]), np.array([2, 5])]  # train+val: moved; train+test: fixed
    out, rep = keep_together(splits, groups, fixed=("test",))
    np.testing.assert_array_equal(out["fold_0"]["train"], [0, 1, 2, 3])
    assert out["fold_0"]["val"].size == 0
    np.testing.assert_array_equal(out["fold_0"]["test"], [4, 5])
    assert (rep.moved, rep.across_fixed) == (1, 1) and "1 groups span parts" in rep.describe()
