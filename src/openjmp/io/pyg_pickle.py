"""Read pickled torch_geometric ``Data`` objects without torch_geometric (and without torch).

OC20/OC22 LMDB values are ``pickle.dumps(Data)``: a plain ``pickle.loads`` would import
torch_geometric and torch and run whatever globals the bytes name. This module unpickles them
with an allow list instead:

* any ``torch_geometric.*`` class becomes an attribute bag (`PygObject`), for PyG 1.x pickles
  (attributes directly in ``__dict__``) and 2.x (``_store._mapping``);
* tensors (``torch._utils._rebuild_tensor_v2`` / ``_v3`` over ``torch.storage._load_from_bytes``)
  are rebuilt as numpy arrays by parsing torch's serialisation (the legacy stream and the zip
  format) ourselves; storages of numpy-representable dtypes only;
* numpy arrays and scalars, ``collections.OrderedDict``, ``torch.Size`` (a tuple) are allowed;
* every other global is refused with `pickle.UnpicklingError`, so no foreign code runs.
"""

from __future__ import annotations

import collections
import copyreg
import io
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # pragma: no cover - numpy 1.26
    from numpy.core.multiarray import _reconstruct as _np_reconstruct
    from numpy.core.multiarray import scalar as _np_scalar

__all__ = ["PygObject", "loads_pyg", "safe_loads"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype(np.float64),
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
    "ComplexFloatStorage": np.dtype(np.complex64),
    "ComplexDoubleStorage": np.dtype(np.complex128),
}
_TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype(np.float64),
    "double": np.dtype(np.float64),
    "float32": np.dtype(np.float32),
    "float": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "half": np.dtype(np.float16),
    "int64": np.dtype(np.int64),
    "long": np.dtype(np.int64),
    "int32": np.dtype(np.int32),
    "int": np.dtype(np.int32),
    "int16": np.dtype(np.int16),
    "short": np.dtype(np.int16),
    "int8": np.dtype(np.int8),
    "uint8": np.dtype(np.uint8),
    "bool": np.dtype(np.bool_),
    "complex64": np.dtype(np.complex64),
    "complex128": np.dtype(np.complex128),
}


class PygObject:
    """Stand-in for any torch_geometric class: keeps the pickled state as attributes."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            state = {**(state[0] or {}), **state[1]}  # (dict state, slots state)
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"unexpected state for a PyG object: {type(state)}")
        self.__dict__.update(state)

    def fields(self) -> dict[str, Any]:
        """The data attributes: ``_store._mapping`` (PyG 2.x) or the public ``__dict__`` (1.x)."""
        store = self.__dict__.get("_store")
        if store is not None:
            mapping = getattr(store, "__dict__", {}).get("_mapping", {})
        else:
            mapping = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        return {k: v for k, v in dict(mapping).items() if v is not None}


_PYG_CLASSES: dict[str, type] = {}


def _pyg_class(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _PYG_CLASSES:
        _PYG_CLASSES[key] = type(name, (PygObject,), {"__module__": "openjmp.io.pyg_pickle"})
    return _PYG_CLASSES[key]


class _StorageType:
    """What ``torch.FloatStorage`` etc. unpickle to: just the element dtype."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


class _Storage:
    """A flat storage: raw elements as a 1-d numpy array (filled after the object is read)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _TorchDtype:
    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


def _storage_type(module: str, name: str) -> Any:
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageType(_STORAGE_DTYPES[name])
    if module == "torch" and name == "UntypedStorage":
        return _StorageType(np.dtype(np.uint8))
    raise pickle.UnpicklingError(f"refusing global {module}.{name} in a torch storage")


def _storage_from_pid(pid: tuple, storages: dict[str, _Storage]) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
    stype, key = pid[1], str(pid[2])
    if not isinstance(stype, _StorageType):
        raise pickle.UnpicklingError("persistent id names no known storage type")
    if key not in storages:
        storages[key] = _Storage(stype.dtype)
    return storages[key]


def _load_legacy_storage(buf: bytes) -> Any:
    """Parse a legacy (non-zip) ``torch.save`` stream; return the object it holds."""
    f = io.BytesIO(buf)
    if pickle.load(f) != _LEGACY_MAGIC or pickle.load(f) != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("not a torch legacy serialisation stream")
    info = pickle.load(f)
    little = bool(info.get("little_endian", True)) if isinstance(info, dict) else True
    storages: dict[str, _Storage] = {}

    class _Inner(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _storage_type(module, name)

        def persistent_load(self, pid: Any) -> Any:
            return _storage_from_pid(pid, storages)

    obj = _Inner(f).load()
    keys = pickle.load(f)
    for key in keys:
        st = storages.get(str(key))
        if st is None:
            raise pickle.UnpicklingError(f"storage {key!r} listed but never referenced")
        (numel,) = struct.unpack("<q" if little else ">q", f.read(8))
        nbytes = numel * st.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes or numel < 0:
            raise pickle.UnpicklingError("truncated tensor data in pickled storage")
        st.array = np.frombuffer(raw, st.dtype.newbyteorder("<" if little else ">")).copy()
    return obj


def _load_zip_storage(buf: bytes) -> Any:
    """Parse a zip-format ``torch.save`` archive (``data.pkl`` + ``data/<key>`` files)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(buf))
    except zipfile.BadZipFile as exc:
        raise pickle.UnpicklingError(f"bad torch zip archive: {exc}") from None
    names = zf.namelist()
    pkl = next((n for n in names if n.endswith("data.pkl")), None)
    if pkl is None:
        raise pickle.UnpicklingError("torch zip archive without data.pkl")
    prefix = pkl[: -len("data.pkl")]
    storages: dict[str, _Storage] = {}

    class _Inner(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _storage_type(module, name)

        def persistent_load(self, pid: Any) -> Any:
            st = _storage_from_pid(pid, storages)
            if st.array is None:
                raw = zf.read(f"{prefix}data/{pid[2]}")
                st.array = np.frombuffer(raw, st.dtype.newbyteorder("<")).copy()
            return st

    return _Inner(io.BytesIO(zf.read(pkl))).load()


def _load_from_bytes(buf: bytes) -> Any:
    if buf[:2] == b"PK":
        return _load_zip_storage(buf)
    return _load_legacy_storage(buf)


def _rebuild_tensor(
    storage: Any,
    offset: int,
    size: tuple,
    stride: tuple,
    requires_grad: bool = False,
    hooks: Any = None,
    *rest: Any,
) -> np.ndarray:
    dtype = next((r.dtype for r in rest if isinstance(r, _TorchDtype)), None)
    if not isinstance(storage, _Storage) or storage.array is None:
        raise pickle.UnpicklingError("tensor without readable storage")
    flat = storage.array
    if dtype is not None and dtype != flat.dtype:  # untyped byte storage (rebuild v3)
        flat = flat.view(dtype)
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) == 0:
        return np.array(flat[int(offset)])
    if any(s == 0 for s in size):
        return np.zeros(size, flat.dtype)
    last = int(offset) + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= flat.size:
        raise pickle.UnpicklingError("tensor view reaches outside its storage")
    view = np.lib.stride_tricks.as_strided(
        flat[int(offset) :], size, tuple(s * flat.itemsize for s in stride)
    )
    return view.copy()


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *_) -> Any:
    return _rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, dtype)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if new_type is not _TENSOR_TYPE:
        raise pickle.UnpicklingError("refusing a tensor subclass")
    return func(*args)


def _rebuild_parameter(data: Any, requires_grad: bool, hooks: Any, *_: Any) -> Any:
    return data


_TENSOR_TYPE = object()


def _codecs_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Protocol-2 pickles spell bytes as ``_codecs.encode(str, "latin1")``; nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than latin1 bytes")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Size"): tuple,
    ("_codecs", "encode"): _codecs_encode,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.multiarray", "scalar"): _np_scalar,
    ("numpy._core.multiarray", "scalar"): _np_scalar,
}


def _find_class(module: str, name: str) -> Any:
    if module == "torch_geometric" or module.startswith("torch_geometric."):
        return _pyg_class(module, name)
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module == "torch" and name in _TORCH_DTYPES:
        return _TorchDtype(_TORCH_DTYPES[name])
    return _refuse(module, name)


def _refuse(module: str, name: str) -> Any:
    raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (not allow-listed)")


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed outside torch storages")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with the allow list; tensors come back as numpy arrays."""
    return _SafeUnpickler(io.BytesIO(data)).load()


def loads_pyg(data: bytes) -> dict[str, Any]:
    """The attributes of a pickled PyG ``Data`` (or of a pickled plain dict), tensors as numpy.

    Raises `pickle.UnpicklingError` (or another `Exception` for corrupt bytes) on anything else;
    callers wrap it into a `DataError` naming the file and key.
    """
    obj = safe_loads(data)
    if isinstance(obj, PygObject):
        return obj.fields()
    if isinstance(obj, dict):
        return dict(obj)
    raise pickle.UnpicklingError(f"expected a PyG Data object, found {type(obj).__name__}")
