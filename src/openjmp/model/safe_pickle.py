"""Read checkpoints without running pickled code and without the authors' ``jmp`` package.

`safe_torch_load` opens a ``torch.save`` file with `torch.load` and a restricted unpickler
(``pickle_module``): only an allow-list of globals is ever imported (tensor and storage
rebuilders, plain containers, dtypes). Classes from the authors' package (modules ``jmp.*``) and
from a few configuration libraries become inert `PickledObject` records that only store what
the pickle gives them; they never run code of their own. Anything else (``exec``, ``eval``,
``os.system``, ``subprocess``, arbitrary classes, ...) raises `UnsafePickleError` before it is
called.
"""

from __future__ import annotations

import collections
import io
import pickle
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list."""


class PickledObject:
    """Inert stand-in for an instance of a class we do not import.

    ``cls_path`` is "module.QualName"; ``args``/``kwargs`` what the pickle passed to the class;
    ``state`` what it passed to ``__setstate__`` (a pydantic model's state holds its fields under
    ``"__dict__"``; see `fields`).
    """

    cls_path: str = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

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


class PickledEnumValue(PickledObject):
    """Inert stand-in for ``SomeClass(value)`` calls (e.g. enums) on a non-imported class."""


_RECORD_MODULE_PREFIXES: tuple[str, ...] = (
    "jmp.",  # the authors' package: configs, loop state
    "openjmp.",  # our own config objects in our training checkpoints
    "lightning.",  # Lightning's hyper-parameter containers and callback states
    "pytorch_lightning.",
    "pydantic.",
    "__main__",  # objects pickled from a script
)
"""Modules whose classes become inert records instead of being imported."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it (latin-1 only)."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode(encoding)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "int"): int,
    ("builtins", "float"): float,
    ("builtins", "complex"): complex,
    ("builtins", "bool"): bool,
    ("builtins", "str"): str,
    ("builtins", "bytes"): bytes,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "slice"): slice,
    ("builtins", "range"): range,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): getattr(torch._utils, "_rebuild_tensor_v3", None),
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): getattr(
        torch._utils, "_rebuild_parameter_with_state", None
    ),
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("pathlib", "PosixPath"): Path,
    ("pathlib", "WindowsPath"): Path,
    ("pathlib", "PurePosixPath"): Path,
    ("pathlib", "Path"): Path,
}
for _dt in (
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "bool",
    "complex64",
    "complex128",
):
    _SAFE_GLOBALS[("torch", _dt)] = getattr(torch, _dt)
# numpy scalars, dtypes and arrays (data constructors only, as in torch's weights_only list)
_np_multiarray = getattr(np, "_core", getattr(np, "core", None)).multiarray
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_mod, "scalar")] = _np_multiarray.scalar
    _SAFE_GLOBALS[(_mod, "_reconstruct")] = _np_multiarray._reconstruct
_SAFE_GLOBALS[("numpy", "dtype")] = np.dtype
_SAFE_GLOBALS[("_codecs", "encode")] = _latin1_encode
_SAFE_GLOBALS[("numpy", "ndarray")] = np.ndarray
_SAFE_GLOBALS = {k: v for k, v in _SAFE_GLOBALS.items() if v is not None}

_COMPAT = {"__builtin__": "builtins", "copy_reg": "copyreg"}


def _record_class(module: str, name: str) -> type:
    cls = type(name, (PickledObject,), {"cls_path": f"{module}.{name}"})
    return cls


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose ``find_class`` consults the allow-list (module docstring)."""

    _record_cache: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102
        module = _COMPAT.get(module, module)
        key = (module, name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]
        if module == "numpy.dtypes" and name.endswith("DType"):
            return getattr(np.dtypes, name)
        if module.startswith(_RECORD_MODULE_PREFIXES) or module in ("jmp",):
            if key not in self._record_cache:
                self._record_cache[key] = _record_class(module, name)
            return self._record_cache[key]
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: not on openjmp's allow-list "
            "(a checkpoint must not run code when it is read)"
        )


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


def _loads(data: bytes, **kwargs: Any) -> Any:
    return RestrictedUnpickler(io.BytesIO(data), **kwargs).load()


restricted_pickle = types.ModuleType("openjmp_restricted_pickle")
"""Module for ``torch.load(..., pickle_module=restricted_pickle)``: pickle with the allow-list."""
restricted_pickle.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
restricted_pickle.UnpicklingError = pickle.UnpicklingError  # type: ignore[attr-defined]
restricted_pickle.load = _load  # type: ignore[attr-defined]
restricted_pickle.loads = _loads  # type: ignore[attr-defined]


def safe_torch_load(path: str | Path, map_location: Any = "cpu", *, mmap: bool = False) -> Any:
    """`torch.load` of ``path`` through `RestrictedUnpickler` (see the module docstring).

    ``mmap``: memory-map the tensor data instead of reading it (zip-format files only), so that
    unused entries (optimizer moments) are never read. Raises the underlying error
    (`UnsafePickleError`, zip/EOF errors); callers wrap it.
    """
    return torch.load(
        str(path),
        map_location=map_location,
        pickle_module=restricted_pickle,
        weights_only=False,  # the restriction is ours: RestrictedUnpickler.find_class
        mmap=mmap,
    )


__all__ = [
    "PickledObject",
    "RestrictedUnpickler",
    "UnsafePickleError",
    "restricted_pickle",
    "safe_torch_load",
]
