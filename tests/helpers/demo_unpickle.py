"""A torch-free, allow-listed reader of pickled PyG ``Data`` (test helper, datasets.md §11).

Written independently of openjmp's readers so that the demo's LMDB writer is checked against
the format itself: PyG classes become an attribute bag, tensors are rebuilt from the legacy
``torch.save`` storage stream with numpy, and any other global is refused.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import struct
from typing import Any

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "HalfStorage": np.float16,
}


class Bag:
    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(DTYPES[name])


class _Storage:
    def __init__(self, dtype: np.dtype) -> None:
        self.dtype, self.array = dtype, None


def load_from_bytes(b: bytes) -> _Storage:
    f = io.BytesIO(b)
    assert pickle.load(f) == MAGIC
    assert pickle.load(f) == 1001
    info = pickle.load(f)
    assert info["little_endian"] is True
    storages: dict[str, _Storage] = {}

    class U(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module == "torch" and name in DTYPES:
                return _StorageType(name)
            raise pickle.UnpicklingError(f"refusing {module}.{name} inside a storage")

        def persistent_load(self, pid: Any) -> Any:
            tag, stype, key, location, numel, view = pid  # the 6-tuple torch expects
            assert tag == "storage" and location == "cpu" and view is None
            return storages.setdefault(key, _Storage(stype.dtype))

    obj = U(f).load()
    for key in pickle.load(f):
        s = storages[key]
        (n,) = struct.unpack("<q", f.read(8))
        s.array = np.frombuffer(f.read(n * s.dtype.itemsize), s.dtype.newbyteorder("<")).copy()
    assert f.read() == b"", "trailing bytes after the storage stream"
    return obj


def rebuild_tensor(
    storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any
) -> np.ndarray:
    a = storage.array
    if len(size) == 0:
        return a[offset].copy()
    strides = tuple(s * a.itemsize for s in stride)
    return np.lib.stride_tricks.as_strided(a[offset:], tuple(size), strides).copy()


ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch.storage", "_load_from_bytes"): load_from_bytes,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("builtins", "object"): object,
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch_geometric.data.data" and name == "Data":
            return Bag
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def loads_pyg(b: bytes) -> dict[str, Any]:
    """The attribute dict of a pickled PyG-1.x ``Data`` (tensors as numpy arrays)."""
    obj = _Unpickler(io.BytesIO(b)).load()
    assert isinstance(obj, Bag), f"expected a Data object, got {type(obj).__name__}"
    return dict(obj.__dict__)
