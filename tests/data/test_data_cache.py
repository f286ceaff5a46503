"""The record cache: exact round trips, random access, optional labels, atomic writes, workers.

Every field of every record must come back equal (float64) or within float32 rounding
(``precision="float32"``); labels present on only some records (forces, stress, targets) must
come back only where they were; the destination must never hold a partial cache (a writer that
fails half-way leaves nothing; an existing cache is only replaced on request); a pickled store
(what a DataLoader worker gets) and forked DataLoader workers must read the same records.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from ase.build import molecule

from openjmp.data.cache import RecordStore
from openjmp.data.cache_writer import StoreWriter, write_store
from openjmp.errors import DataError
from openjmp.records import AtomsRecord


def _records(n: int = 7) -> list[AtomsRecord]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        a = molecule(["H2O", "CH4", "NH3"][i % 3])
        k = len(a)
        out.append(
            AtomsRecord(
                atomic_numbers=a.numbers,
                positions=a.positions + rng.normal(size=(k, 3)) * 0.01,
                cell=np.eye(3) * (10 + i) if i % 2 else np.zeros((3, 3)),
                pbc=bool(i % 2),
                tags=np.arange(k) % 3,
                fixed=np.arange(k) == 0,
                energy=None if i == 2 else -10.0 * i - 0.123456789012,
                forces=None if i in (0, 4) else rng.normal(size=(k, 3)),
                stress=rng.normal(size=6) if i == 3 else None,
                targets={
                    "gap": 0.5 * i,
                    "metal": i % 2 == 0,
                    **({"dipole": rng.normal(size=3)} if i > 1 else {}),
                },
                source=f"file{i % 2}.xyz",
                index=i if i % 3 else f"key-{i}",
                dataset="demo" if i < 5 else "other",
            )
        )
    return out


def _same(a: AtomsRecord, b: AtomsRecord, atol: float = 0.0) -> None:
    np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
    np.testing.assert_allclose(a.positions, b.positions, atol=atol, rtol=0)
    np.testing.assert_array_equal(a.cell, b.cell)
    np.testing.assert_array_equal(a.pbc, b.pbc)
    np.testing.assert_array_equal(a.tags, b.tags)
    np.testing.assert_array_equal(a.fixed, b.fixed)
    assert a.energy == b.energy
    for f in ("forces", "stress"):
        x, y = getattr(a, f), getattr(b, f)
        assert (x is None) == (y is None), f
        if x is not None:
            np.testing.assert_allclose(x, y, atol=atol, rtol=0)
    assert set(a.targets) == set(b.targets)
    for k in a.targets:
        np.testing.assert_array_equal(a.targets[k], b.targets[k])
        assert type(a.targets[k]) is type(b.targets[k]) or isinstance(a.targets[k], np.ndarray)
    assert (a.source, a.index, a.dataset) == (b.source, b.index, b.dataset)


def test_round_trip_exact(tmp_path) -> None:
    recs = _records()
    store = write_store(recs, tmp_path / "cache")
    assert len(store) == len(recs)
    assert store.natoms.tolist() == [r.natoms for r in recs]
    assert store.ids == [r.index for r in recs]
    for i in [3, 0, 6, 2, 5, 1, 4, -1]:
        _same(recs[i], store[i])
    assert type(store[1].targets["metal"]) is bool and store[0].targets["gap"] == 0.0
    with pytest.raises(IndexError):
        store[7]


def test_float32_precision(tmp_path) -> None:
    recs = _records()
    store = write_store(recs, tmp_path / "c32", precision="float32")
    for a, b in zip(recs, store):
        _same(a, b, atol=5e-6)
        assert b.energy == a.energy  # energies always float64


def test_atomic_write_and_overwrite(tmp_path) -> None:
    dest = tmp_path / "cache"
    recs = _records()

    def failing():
        yield from recs[:3]
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        write_store(failing(), dest)
    assert not dest.exists() and list(tmp_path.iterdir()) == []  # no partial cache, no temp dir
    write_store(recs[:2], dest)
    with pytest.raises(DataError, match="destination exists"):
        write_store(recs, dest)
    assert len(RecordStore(dest)) == 2
    write_store(recs, dest, overwrite=True)
    assert len(RecordStore(dest)) == 7 and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
    with StoreWriter(tmp_path / "c2") as w:
        w.add(recs[0])
        w.finish()
        assert not (tmp_path / "c2").exists()  # only committed caches appear
    assert not (tmp_path / "c2").exists()


def test_inconsistent_targets_and_bad_paths(tmp_path) -> None:
    recs = _records(3)
    bad = recs[2].replace(targets={"gap": np.ones(2)})
    with pytest.raises(
        DataError, match="target 'gap' is float64 \\(2,\\) here but float64 \\(\\) before"
    ):
        write_store([recs[0], bad], tmp_path / "x")
    with pytest.raises(DataError, match="not an openjmp record cache"):
        RecordStore(tmp_path)


class _Indexed(torch.utils.data.Dataset):
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, i: int):
        r = self.store[i]
        return i, float(r.positions.sum()), r.index


def test_pickled_store_and_dataloader_workers(tmp_path) -> None:
    recs = _records()
    store = write_store(recs, tmp_path / "cache")
    store[0]  # memmaps open in this process before the workers start
    clone = pickle.loads(pickle.dumps(store))
    _same(recs[5], clone[5])
    loader = torch.utils.data.DataLoader(
        _Indexed(store), batch_size=None, num_workers=2, multiprocessing_context="fork"
    )
    got = sorted(loader, key=lambda t: t[0])
    assert [g[2] for g in got] == [r.index for r in recs]
    np.testing.assert_allclose([g[1] for g in got], [r.positions.sum() for r in recs])


_KILL_SCRIPT = """
import sys, time
import numpy as np
from openjmp.data.cache_writer import StoreWriter
from openjmp.records import AtomsRecord
w = StoreWriter(sys.argv[1])
for i in range(50):
    w.add(AtomsRecord(atomic_numbers=[1, 1], positions=np.eye(2, 3) * (i + 1), energy=float(i)))
w.finish()
print("ready", flush=True)
time.sleep(60)
w.commit()
"""


def test_sigkill_leaves_no_cache(tmp_path) -> None:
    import subprocess
    import sys

    dest = tmp_path / "cache"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(dest)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready"  # everything written, not yet committed
    finally:
        proc.kill()
        proc.wait()
    assert not dest.exists()
    with pytest.raises(DataError, match="not an openjmp record cache"):
        RecordStore(dest)
    assert len(write_store(_records(2), dest)) == 2  # a later conversion is not disturbed
