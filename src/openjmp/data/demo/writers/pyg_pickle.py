"""Pickle a dict of fields as a PyG-1.x ``torch_geometric.data.Data``, without torch or PyG.

This reproduces what the published OC20/OC22 LMDBs hold (datasets.md section 11, appendix D):
``copyreg._reconstructor(torch_geometric.data.data.Data, object, None)`` with the attribute
dict as its state, every numpy array as a tensor
``torch._utils._rebuild_tensor_v2(torch.storage._load_from_bytes(<legacy torch.save stream>),
0, shape, stride, False, OrderedDict())``, and python scalars as themselves. The stream loads
with real torch + torch_geometric as well as with an allow-listed torch-free unpickler.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
from typing import Any

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_STORAGE_CLASS = {
    np.dtype(np.float32): "FloatStorage",
    np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage",
    np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage",
    np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage",
    np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage",
}


class _Global:
    """Pickles as ``GLOBAL module name`` without importing the module."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce functions to be callable
        raise TypeError(f"{self.module}.{self.name} is a pickling placeholder")


class _Reduce:
    """Pickles as ``fn(*args)`` (then ``__setstate__(state)`` when a state is given)."""

    def __init__(self, fn: _Global, args: tuple[Any, ...], state: Any = None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self) -> tuple[Any, ...]:
        if self.state is None:
            return (self.fn, self.args)
        return (self.fn, self.args, self.state)


class _Pickler(pickle._Pickler):  # the pure-Python pickler, so that save() can be intercepted
    def save(self, obj: Any, save_persistent_id: bool = True) -> None:
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
            return
        super().save(obj, save_persistent_id)


def _legacy_storage_bytes(flat: np.ndarray) -> bytes:
    """A one-storage legacy (non-zip) ``torch.save`` stream holding ``flat`` (1-D)."""
    out = io.BytesIO()
    sys_info = {
        "protocol_version": _LEGACY_PROTOCOL,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    for header in (_LEGACY_MAGIC, _LEGACY_PROTOCOL, sys_info):
        pickle.dump(header, out, protocol=2)
    marker = object()
    storage_type = _Global("torch", _STORAGE_CLASS[flat.dtype])

    class _StoragePickler(_Pickler):
        def persistent_id(self, obj: Any) -> Any:
            # torch >= 2.x unpacks a 6-tuple: (tag, type, key, location, numel, view_metadata)
            if obj is marker:
                return ("storage", storage_type, "0", "cpu", int(flat.size), None)
            return None

    _StoragePickler(out, protocol=2).dump(marker)
    pickle.dump(["0"], out, protocol=2)
    out.write(struct.pack("<q", int(flat.size)))
    out.write(flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes())
    return out.getvalue()


def _tensor(a: np.ndarray) -> _Reduce:
    a = np.array(a, order="C", copy=None)  # (not ascontiguousarray: it makes 0-d arrays 1-d)
    if a.dtype not in _STORAGE_CLASS:
        raise TypeError(f"no torch storage type for numpy dtype {a.dtype}")
    storage = _Reduce(
        _Global("torch.storage", "_load_from_bytes"), (_legacy_storage_bytes(a.reshape(-1)),)
    )
    stride = tuple(s // a.itemsize for s in a.strides) if a.ndim else ()
    return _Reduce(
        _Global("torch._utils", "_rebuild_tensor_v2"),
        (storage, 0, tuple(a.shape), stride, False, collections.OrderedDict()),
    )


def dumps_pyg1_data(fields: dict[str, Any]) -> bytes:
    """Pickle ``fields`` as a PyG-1.x ``Data``; numpy arrays become torch tensors of their dtype.

    Values must be numpy arrays or plain python scalars (int, float, bool, str).
    """
    state: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, np.ndarray):
            state[key] = _tensor(value)
        elif isinstance(value, (bool, int, float, str)):
            state[key] = value
        else:
            raise TypeError(f"field {key!r}: unsupported type {type(value).__name__}")
    data_cls = _Global("torch_geometric.data.data", "Data")
    obj = _Reduce(
        _Global("copyreg", "_reconstructor"), (data_cls, _Global("builtins", "object"), None), state
    )
    out = io.BytesIO()
    _Pickler(out, protocol=4).dump(obj)
    return out.getvalue()
