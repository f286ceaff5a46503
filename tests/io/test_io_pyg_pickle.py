"""The torch-free PyG unpickler: exact arrays from real torch pickles, and nothing else runs.

OC20/OC22 LMDB values are pickles of torch_geometric ``Data`` holding torch tensors. Here real
torch (installed for the model) makes such pickles, with stand-in ``torch_geometric`` classes
registered under the real module names (PyG itself is never installed); the reader must give
back the same numbers, dtypes and shapes as torch, for PyG-1.x and 2.x layouts, views and both
torch storage serialisations. The test writer's torch-free pickles must load in real torch too,
so the fixtures of the other tests are faithful. Malicious pickles must be refused unexecuted.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from openjmp.io.safe_pickle import loads_pyg, safe_loads

from helpers.writers import _Global, _Pickler, _Reduce, dumps_pyg1


@pytest.fixture
def fake_pyg(monkeypatch):
    """Register minimal ``torch_geometric.data.data.Data`` / ``storage.GlobalStorage`` classes."""
    pkg = types.ModuleType("torch_geometric")
    data = types.ModuleType("torch_geometric.data")
    dmod = types.ModuleType("torch_geometric.data.data")
    smod = types.ModuleType("torch_geometric.data.storage")
    Data = type("Data", (), {"__module__": "torch_geometric.data.data"})
    GlobalStorage = type("GlobalStorage", (), {"__module__": "torch_geometric.data.storage"})
    dmod.Data, smod.GlobalStorage = Data, GlobalStorage
    for name, mod in [
        ("torch_geometric", pkg),
        ("torch_geometric.data", data),
        ("torch_geometric.data.data", dmod),
        ("torch_geometric.data.storage", smod),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(Data=Data, GlobalStorage=GlobalStorage)


def _tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=g, dtype=torch.float64)
    return {
        "pos": torch.randn(5, 3, generator=g),  # float32
        "tags": torch.tensor([0, 1, 2, 2, 1]),  # int64
        "atomic_numbers": torch.tensor([29, 29, 8, 1, 6], dtype=torch.uint8),
        "fixed": torch.tensor([True, False, False, True, False]),
        "view": base[1:5:2, ::2],  # non-contiguous view into a bigger storage
        "scalar": torch.tensor(3.5),
        "ints": torch.tensor([1, 2], dtype=torch.int32),
        "y": -1.25,
        "sid": 17,
    }


def _compare(fields: dict, expected: dict) -> None:
    assert set(fields) == set(expected)
    for k, v in expected.items():
        if isinstance(v, torch.Tensor):
            got = fields[k]
            assert isinstance(got, np.ndarray), k
            assert got.dtype == v.numpy().dtype and got.shape == tuple(v.shape), k
            np.testing.assert_array_equal(got, v.numpy())
        else:
            assert fields[k] == v


def test_reads_pyg1_pickles_made_by_real_torch(fake_pyg) -> None:
    d = fake_pyg.Data()
    d.__dict__.update(_tensors())
    _compare(loads_pyg(pickle.dumps(d, protocol=4)), _tensors())
    _compare(loads_pyg(pickle.dumps(d, protocol=2)), _tensors())


def test_reads_pyg2_pickles_made_by_real_torch(fake_pyg) -> None:
    d, store = fake_pyg.Data(), fake_pyg.GlobalStorage()
    store.__dict__.update(_mapping=dict(_tensors(), edge_attr=None), _parent=d)
    d.__dict__.update(_store=store, _edge_attr_cls=fake_pyg.GlobalStorage)
    fields = loads_pyg(pickle.dumps(d))
    _compare(fields, _tensors())  # None attributes dropped


def test_zip_format_storage(fake_pyg) -> None:
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    buf = io.BytesIO()
    with pytest.warns(UserWarning):  # TypedStorage is deprecated in torch, still readable
        torch.save(t.storage(), buf)
    assert buf.getvalue()[:2] == b"PK"
    storage = _Reduce(_Global("torch.storage", "_load_from_bytes"), (buf.getvalue(),))
    tensor = _Reduce(
        _Global("torch._utils", "_rebuild_tensor_v2"), (storage, 1, (2, 2), (3, 1), False, None)
    )
    out = io.BytesIO()
    _Pickler(out, protocol=4).dump({"x": tensor})
    np.testing.assert_array_equal(loads_pyg(out.getvalue())["x"], [[1, 2], [4, 5]])


def test_torch_free_writer_matches_real_torch(fake_pyg) -> None:
    fields = {
        "pos": np.arange(12, dtype=np.float32).reshape(4, 3),
        "tags": np.array([0, 1, 2, 2]),
        "fixed": np.array([1, 0, 0, 1], np.int32),
        "y": 2.5,
        "natoms": 4,
    }
    raw = dumps_pyg1(fields)
    ours = loads_pyg(raw)
    theirs = pickle.loads(raw)  # real torch, stand-in PyG class
    assert type(theirs).__name__ == "Data"
    for k, v in fields.items():
        np.testing.assert_array_equal(ours[k], v)
        got = theirs.__dict__[k]
        if isinstance(v, np.ndarray):
            assert isinstance(got, torch.Tensor) and got.numpy().dtype == v.dtype
            np.testing.assert_array_equal(got.numpy(), v)
        else:
            assert got == v


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_foreign_globals_without_running_them(tmp_path) -> None:
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system|not allow-listed"):
        loads_pyg(pickle.dumps({"pos": _Evil(str(marker))}))
    assert not marker.exists()
    # The same payload hidden inside a tensor's storage stream.
    inner = pickle.dumps(_Evil(str(marker)), protocol=2)
    stream = io.BytesIO()
    for item in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(item, stream, protocol=2)
    stream.write(inner)
    storage = _Reduce(_Global("torch.storage", "_load_from_bytes"), (stream.getvalue(),))
    out = io.BytesIO()
    _Pickler(out, protocol=4).dump({"pos": storage})
    with pytest.raises(pickle.UnpicklingError):
        loads_pyg(out.getvalue())
    assert not marker.exists()


def test_rejects_non_data_payloads() -> None:
    with pytest.raises(pickle.UnpicklingError, match="expected a PyG Data"):
        loads_pyg(pickle.dumps([1, 2, 3]))
    assert safe_loads(pickle.dumps({"a": 1.5})) == {"a": 1.5}
