"""Unpickle without running pickled code: one allow-list for LMDB entries and checkpoints.

A plain ``pickle.loads`` imports and calls whatever globals the bytes name. Every pickle openjmp
reads goes through `_AllowListUnpickler` instead, whose ``find_class`` hands out only:

* plain data constructors: builtins containers and scalars, ``collections.OrderedDict`` /
  ``defaultdict``, ``pathlib`` paths, numpy arrays, scalars and dtypes, ``_codecs.encode`` as
  protocol-2 pickles spell bytes (latin-1 only);
* tensor rebuilders (``torch._utils._rebuild_tensor_v2`` / ``_v3``, ``torch.Size``, dtypes),
  which differ by reader (below);
* inert records (`PickledObject`) for classes of ``torch_geometric``, the authors' ``jmp``
  package, openjmp itself, Lightning, pydantic and ``__main__``: they keep what the pickle gives
  them (arguments, state, items) and never run code of their own.

Anything else (``os.system``, ``builtins.eval``, arbitrary classes, ...) raises
`UnsafePickleError` before it is called. The two readers:

* `loads_pyg` / `safe_loads`: OC20/OC22 LMDB values, ``pickle.dumps`` of a torch_geometric
  ``Data``. Tensors come back as numpy arrays: the storages (``torch.storage._load_from_bytes``,
  the legacy stream and the zip format) are parsed here, so neither torch_geometric nor torch
  runs on the bytes, and this path does not import torch. PyG 1.x (attributes in ``__dict__``)
  and 2.x (``_store._mapping``) layouts both read.
* `safe_torch_load`: ``torch.load`` of a checkpoint with `restricted_pickle` as its
  ``pickle_module``: torch reads the tensor data, our ``find_class`` decides every global.
"""

from __future__ import annotations

import collections
import copyreg
import functools
import io
import pickle
import struct
import types
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PickledObject",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "loads_pyg",
    "restricted_pickle",
    "safe_loads",
    "safe_torch_load",
]


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list."""


class PickledObject:
    """Inert stand-in for an instance of a class we do not import.

    ``cls_path`` is "module.QualName"; ``args``/``kwargs`` what the pickle passed to the class;
    ``state`` what it passed to ``__setstate__`` (a pydantic model's state holds its fields under
    ``"__dict__"``; see `fields`).
    """

    cls_path: str = "?"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = types.MappingProxyType({})
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # dict / list subclasses are rebuilt by item assignment and appends
    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)

    def fields(self) -> dict[str, Any]:
        """Best-effort attribute dict: pydantic ``__dict__`` state, a plain dict state, or
        the (state, slots) pair of ``__reduce_ex__``."""
        st = self.state
        if isinstance(st, tuple) and len(st) == 2:
            merged: dict[str, Any] = {}
            for part in st:
                if isinstance(part, dict):
                    merged.update(part)
            st = merged
        if isinstance(st, dict):
            inner = st.get("__dict__")
            if isinstance(inner, dict):
                out = dict(inner)
                extra = st.get("__pydantic_extra__")
                if isinstance(extra, dict):
                    out.update(extra)
                return out
            return {k: v for k, v in st.items() if not k.startswith("__pydantic")}
        return {}

    def __getitem__(self, key: str) -> Any:
        return self.fields()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields().get(key, default)

    def __repr__(self) -> str:
        return f"<pickled {self.cls_path}>"


_RECORD_MODULE_PREFIXES: tuple[str, ...] = (
    "torch_geometric.",  # PyG Data / storages in OC20 and OC22 LMDBs
    "jmp.",  # the authors' package: configs, loop state
    "openjmp.",  # our own config objects in our training checkpoints
    "lightning.",  # Lightning's hyper-parameter containers and callback states
    "pytorch_lightning.",
    "pydantic.",
    "__main__",  # objects pickled from a script
)
"""Modules whose classes become inert records instead of being imported."""

_RECORD_CLASSES: dict[tuple[str, str], type[PickledObject]] = {}


def _record_class(module: str, name: str) -> type[PickledObject]:
    key = (module, name)
    if key not in _RECORD_CLASSES:
        _RECORD_CLASSES[key] = type(name, (PickledObject,), {"cls_path": f"{module}.{name}"})
    return _RECORD_CLASSES[key]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it (latin-1 only)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("refusing _codecs.encode other than latin-1 bytes")
    return text.encode("latin1")


_np_multiarray = getattr(np, "_core", getattr(np, "core", None)).multiarray

_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_BUILTIN_TYPES = (set, frozenset, dict, list, tuple, int, float, complex, bool, str, bytes)
_PATHS = ("PosixPath", "WindowsPath", "PurePosixPath", "Path")

_DATA_GLOBALS: dict[tuple[str, str], Any] = {
    **{("builtins", t.__name__): t for t in (*_BUILTIN_TYPES, bytearray, slice, range, object)},
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    ("_codecs", "encode"): _latin1_encode,
    **{("pathlib", name): Path for name in _PATHS},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    **{(m, "scalar"): _np_multiarray.scalar for m in _NUMPY_MULTIARRAY},
    **{(m, "_reconstruct"): _np_multiarray._reconstruct for m in _NUMPY_MULTIARRAY},
}
"""Data constructors both readers accept (no code of consequence runs through them)."""

_COMPAT = {"__builtin__": "builtins", "copy_reg": "copyreg"}

_TORCH_DTYPE_NAMES: dict[str, str] = {
    **{n: n for n in ("float64", "float32", "float16", "int64", "int32", "int16", "int8")},
    **{n: n for n in ("uint8", "bool", "complex64", "complex128")},
    **{"double": "float64", "float": "float32", "half": "float16"},
    **{"long": "int64", "int": "int32", "short": "int16"},
}
"""torch dtype attribute -> numpy dtype name."""


class _AllowListUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose ``find_class`` consults the allow-list (module docstring);
    ``tensor_globals`` says how tensors are rebuilt."""

    def tensor_globals(self) -> Mapping[tuple[str, str], Any]:
        raise NotImplementedError

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        module = _COMPAT.get(module, module)
        key = (module, name)
        tensors = self.tensor_globals()
        if key in tensors:
            return tensors[key]
        if key in _DATA_GLOBALS:
            return _DATA_GLOBALS[key]
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        if module.startswith(_RECORD_MODULE_PREFIXES) or module in ("jmp", "torch_geometric"):
            return _record_class(module, name)
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: not on openjmp's allow-list "
            "(reading a file must not run code)"
        )


# ------------------------------------------------------------------------- checkpoints (torch)


@functools.cache
def _torch_globals() -> dict[tuple[str, str], Any]:
    import torch

    rebuilders = ["_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"]
    rebuilders += ["_rebuild_parameter", "_rebuild_parameter_with_state"]
    table: dict[tuple[str, str], Any] = {
        ("torch._utils", n): getattr(torch._utils, n)
        for n in rebuilders
        if hasattr(torch._utils, n)
    }
    table[("torch", "Size")] = torch.Size
    table[("torch", "device")] = torch.device
    table[("torch.nn.parameter", "Parameter")] = torch.nn.Parameter
    for dt in {*_TORCH_DTYPE_NAMES.values(), "bfloat16"}:
        table[("torch", dt)] = getattr(torch, dt)
    return table


class RestrictedUnpickler(_AllowListUnpickler):
    """The unpickler `torch.load` uses through `restricted_pickle`: torch's own tensors."""

    def tensor_globals(self) -> Mapping[tuple[str, str], Any]:
        return _torch_globals()


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


def _loads(data: bytes, **kwargs: Any) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


restricted_pickle = types.ModuleType("openjmp_restricted_pickle")
"""Module for ``torch.load(..., pickle_module=restricted_pickle)``: pickle with the allow-list."""
restricted_pickle.__dict__.update(
    Unpickler=RestrictedUnpickler, UnpicklingError=pickle.UnpicklingError, load=_load, loads=_loads
)


def safe_torch_load(path: str | Path, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """`torch.load` of ``path`` through `RestrictedUnpickler` (see the module docstring).

    ``mmap``: memory-map the tensor data instead of reading it (zip-format files only), so that
    unused entries (optimizer moments) are never read. Raises the underlying error
    (`UnsafePickleError`, zip/EOF errors); callers wrap it.
    """
    import torch

    return torch.load(
        str(path),
        map_location=map_location,
        pickle_module=restricted_pickle,
        weights_only=False,  # the restriction is ours: RestrictedUnpickler.find_class
        mmap=mmap,
    )


# ------------------------------------------------------------------- LMDB entries (no torch)

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}
"""torch storage class -> numpy dtype name of its elements."""


class _Storage:
    """A flat storage: raw elements as a 1-d numpy array (filled after the object is read)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _NumpyDtype:
    """What ``torch.FloatStorage`` or ``torch.float32`` unpickles to: the numpy element dtype."""

    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(name)


def _storage_type(module: str, name: str) -> Any:
    if module == "torch" and name in _STORAGE_DTYPES:
        return _NumpyDtype(_STORAGE_DTYPES[name])
    raise UnsafePickleError(f"refusing global {module}.{name} in a torch storage")


def _storage_from_pid(pid: Any, storages: dict[str, _Storage]) -> _Storage:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
    stype, key = pid[1], str(pid[2])
    if not isinstance(stype, _NumpyDtype):
        raise pickle.UnpicklingError("persistent id names no known storage type")
    if key not in storages:
        storages[key] = _Storage(stype.dtype)
    return storages[key]


class _StorageUnpickler(pickle.Unpickler):
    """Reads the object of a torch serialisation stream: storage types and persistent ids only."""

    def __init__(self, file: Any, storages: dict[str, _Storage], zf: Any = None, prefix: str = ""):
        super().__init__(file)
        self.storages, self.zf, self.prefix = storages, zf, prefix

    def find_class(self, module: str, name: str) -> Any:
        return _storage_type(module, name)

    def persistent_load(self, pid: Any) -> Any:
        st = _storage_from_pid(pid, self.storages)
        if self.zf is not None and st.array is None:  # zip format: data/<key> per storage
            raw = self.zf.read(f"{self.prefix}data/{pid[2]}")
            st.array = np.frombuffer(raw, st.dtype.newbyteorder("<")).copy()
        return st


def _load_legacy_storage(buf: bytes) -> Any:
    """Parse a legacy (non-zip) ``torch.save`` stream; return the object it holds."""
    f = io.BytesIO(buf)
    if pickle.load(f) != _LEGACY_MAGIC or pickle.load(f) != _LEGACY_PROTOCOL:
        raise pickle.UnpicklingError("not a torch legacy serialisation stream")
    info = pickle.load(f)
    little = bool(info.get("little_endian", True)) if isinstance(info, dict) else True
    storages: dict[str, _Storage] = {}
    obj = _StorageUnpickler(f, storages).load()
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
    pkl = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
    if pkl is None:
        raise pickle.UnpicklingError("torch zip archive without data.pkl")
    prefix = pkl[: -len("data.pkl")]
    return _StorageUnpickler(io.BytesIO(zf.read(pkl)), {}, zf, prefix).load()


def _load_from_bytes(buf: bytes) -> Any:
    if buf[:2] == b"PK":
        return _load_zip_storage(buf)
    return _load_legacy_storage(buf)


def _rebuild_tensor(
    storage: Any, offset: int, size: tuple, stride: tuple, *rest: Any
) -> np.ndarray:
    """A tensor as a numpy array; ``rest``: requires_grad, hooks (v2), dtype (v3)."""
    dtype = next((r.dtype for r in rest if isinstance(r, _NumpyDtype)), None)
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


_TENSOR_TYPE = object()


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if new_type is not _TENSOR_TYPE:
        raise UnsafePickleError("refusing a tensor subclass")
    return func(*args)


def _rebuild_parameter(data: Any, requires_grad: bool, hooks: Any, *_: Any) -> Any:
    return data


_NUMPY_TENSOR_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("torch", "Size"): tuple,
    **{("torch", name): _NumpyDtype(np_name) for name, np_name in _TORCH_DTYPE_NAMES.items()},
}


class _NumpyUnpickler(_AllowListUnpickler):
    """Tensors rebuilt as numpy arrays from the storages in the pickle (no torch)."""

    def tensor_globals(self) -> Mapping[tuple[str, str], Any]:
        return _NUMPY_TENSOR_GLOBALS

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed outside torch storages")


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` with the allow list; tensors come back as numpy arrays."""
    return _NumpyUnpickler(io.BytesIO(data)).load()


def loads_pyg(data: bytes) -> dict[str, Any]:
    """The attributes of a pickled PyG ``Data`` (or of a pickled plain dict), tensors as numpy;
    attributes that are None are left out.

    Raises `pickle.UnpicklingError` (or another `Exception` for corrupt bytes) on anything else;
    callers wrap it into a `DataError` naming the file and key.
    """
    obj = safe_loads(data)
    if isinstance(obj, dict):
        return dict(obj)
    if not (isinstance(obj, PickledObject) and obj.cls_path.startswith("torch_geometric")):
        raise pickle.UnpicklingError(f"expected a PyG Data object, found {type(obj).__name__}")
    if not isinstance(obj.state, dict | tuple):
        raise pickle.UnpicklingError(f"unexpected state for a PyG object: {type(obj.state)}")
    attrs = obj.fields()
    store = attrs.get("_store")
    if isinstance(store, PickledObject):  # PyG 2.x: Data._store._mapping
        mapping = dict(store.fields().get("_mapping", {}))
    else:  # PyG 1.x: the public attributes
        mapping = {k: v for k, v in attrs.items() if not k.startswith("_")}
    return {k: v for k, v in mapping.items() if v is not None}
