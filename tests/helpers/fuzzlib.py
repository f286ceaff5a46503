"""Reader fuzzer: mutated native files for every openjmp reader, and what the readers made of them.

Each *target* (one per dataset format, plus ASE files) writes a small valid file set in its
dataset's real layout (the writers of ``tests/io/writers.py``), then mutates it with one of:

* structure-aware changes in the format's own terms: missing and extra keys, datasets or JSON
  fields, wrong dtypes (strings, bools, floats for integers), shape and length mismatches
  (arrays one row short or long, transposed, flattened, scalars), special values (NaN, inf,
  negative and huge numbers), wrong counts (atom-count lines, ``length`` keys, ``natoms``);
* text changes (lines deleted, duplicated, swapped; tokens replaced) for text formats;
* byte changes on the written file (truncation, bit flips, overwritten, deleted or inserted
  spans).

The contract checked (`run_input`): reading the input with `openjmp.io.read_records` (fail
fast, as training reads) and with `openjmp.data.check.check_path` (collect every problem, as
``openjmp data check``) either succeeds or raises `openjmp.errors.DataError` naming a file of
the input. Anything else (another exception, a DataError naming no file, or a read running past
the time limit) is a finding. Everything is seeded: input ``k`` of target ``t`` with seed ``s``
is the same file on every run, so a finding is reproduced by its (target, seed, k).

Used by ``tests/fuzz/test_fuzz_readers.py`` (a bounded run per target) and by
``tests/fuzz/fuzz_readers.py`` (a long run: ``--minutes 10 --reader NAME``).
"""

from __future__ import annotations

import bz2
import contextlib
import copy
import gzip
import io
import json
import lzma
import pickle
import shutil
import signal
import sqlite3
import tarfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# ------------------------------------------------------------------------------------------
# Random values and mutations of values, mappings, JSON trees, text and bytes

_TOKENS = ["nan", "inf", "-inf", "-1", "0", "1e999", "abc", "", "3.5", "H", "Xx", "C",
           "99999999999999999999", "-0", "1*^-3", "0x10", "True", "None", ","]  # fmt: skip
_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int8, np.uint8, np.bool_]


def random_array(rng: np.random.Generator, like: Any = None) -> np.ndarray:
    """An array of a random dtype and shape, often close to ``like``'s shape."""
    if like is not None and np.ndim(like) > 0 and rng.random() < 0.6:
        shape = list(np.shape(like))
        ax = int(rng.integers(len(shape)))
        shape[ax] = max(0, shape[ax] + int(rng.choice([-1, 1, -shape[ax], 2])))
    else:
        shape = [int(rng.integers(0, 5)) for _ in range(int(rng.integers(0, 4)))]
    kind = rng.random()
    if kind < 0.15:
        return np.full(shape, "ab", dtype="<U2")
    if kind < 0.2:
        return np.full(shape, b"x", dtype="S1")
    dtype = _DTYPES[int(rng.integers(len(_DTYPES)))]
    vals = rng.normal(scale=5.0, size=shape)
    return vals.astype(dtype) if dtype is not np.bool_ else vals > 0


def mutate_array(a: Any, rng: np.random.Generator) -> Any:
    """A broken variant of array ``a``: wrong dtype, shape or length, special values, etc."""
    arr = np.asarray(a)
    op = int(rng.integers(10))
    if op == 0 and arr.ndim:  # one row short / long along a random axis
        ax = int(rng.integers(arr.ndim))
        if rng.random() < 0.5 and arr.shape[ax] > 0:
            return np.delete(arr, -1, axis=ax)
        return np.concatenate([arr, np.take(arr, [0] if arr.shape[ax] else [], axis=ax)], axis=ax)
    if op == 1:  # another dtype
        if arr.dtype.kind in "US" or rng.random() < 0.3:
            return arr.astype("<U8") if arr.dtype.kind != "U" else arr.astype("S8")
        dtype = _DTYPES[int(rng.integers(len(_DTYPES)))]
        try:
            with np.errstate(all="ignore"):
                return arr.astype(dtype)
        except (ValueError, TypeError):  # text that does not parse as numbers
            return random_array(rng, arr)
    if op == 2 and arr.size:  # special values
        out = arr.astype(np.float64) if arr.dtype.kind in "biuf" else arr.copy()
        if out.dtype.kind == "f":
            flat = out.reshape(-1)
            flat[int(rng.integers(flat.size))] = rng.choice(
                [np.nan, np.inf, -1.0, 0.0, 1e30, -1e30]
            )
            return out.astype(arr.dtype) if arr.dtype.kind == "f" else out
        return out
    if op == 3:  # flattened / extra axis / transposed
        choice = int(rng.integers(3))
        if choice == 0:
            return arr.reshape(-1)
        if choice == 1:
            return arr[None]
        return arr.T
    if op == 4:  # empty
        return arr[:0] if arr.ndim else np.zeros(0, arr.dtype)
    if op == 5:  # a python scalar or string instead
        return [None, 0, -1, 2.5, "x", True, float("nan")][int(rng.integers(7))]
    if op == 6 and arr.size and arr.dtype.kind in "iuf":  # integer-like values changed
        out = arr.copy()
        flat = out.reshape(-1)
        value = rng.choice([0, -1, 119, 255, 1000])
        with np.errstate(all="ignore"):
            flat[int(rng.integers(flat.size))] = np.array(value).astype(out.dtype)  # wraps
        return out
    if op == 7:  # huge or scaled values
        with np.errstate(all="ignore"):
            return (
                (arr * rng.choice([1e6, -1.0, 0.0])).astype(arr.dtype)
                if arr.dtype.kind in "iuf"
                else arr
            )
    return random_array(rng, arr)


def mutate_mapping(d: dict[str, Any], rng: np.random.Generator, value_mutator=mutate_array) -> dict:
    """``d`` with a key removed, added, renamed or swapped, or one value mutated."""
    d = dict(d)
    keys = list(d)
    op = int(rng.integers(6))
    if op == 0 and keys:
        del d[keys[int(rng.integers(len(keys)))]]
    elif op == 1:
        d[f"extra_{int(rng.integers(100))}"] = random_array(rng)
    elif op == 2 and keys:
        k = keys[int(rng.integers(len(keys)))]
        d[k + "_renamed"] = d.pop(k)
    elif op == 3 and len(keys) > 1:
        a, b = rng.choice(len(keys), 2, replace=False)
        d[keys[a]], d[keys[b]] = d[keys[b]], d[keys[a]]
    elif keys:
        k = keys[int(rng.integers(len(keys)))]
        d[k] = value_mutator(d[k], rng)
    return d


def random_json(rng: np.random.Generator, depth: int = 0) -> Any:
    choice = int(rng.integers(11 if depth < 2 else 8))
    return [None, True, False, 0, -1, 1e308, 2.5, "x", "Fe2+", "", [], {}][choice] if choice < 8 \
        else ([random_json(rng, depth + 1) for _ in range(int(rng.integers(4)))]
              if choice < 10 else {"a": random_json(rng, depth + 1)})  # fmt: skip


def _json_paths(obj: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:6]):  # the first entries suffice; keeps the walk short
            yield from _json_paths(v, (*path, i))


def mutate_json(obj: Any, rng: np.random.Generator) -> Any:
    """A deep copy of a JSON tree with one node deleted, replaced, duplicated or its list cut."""
    obj = copy.deepcopy(obj)
    paths = list(_json_paths(obj))
    path = paths[int(rng.integers(len(paths)))]
    if not path:
        return random_json(rng)
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    node = parent[last]
    op = int(rng.integers(6))
    if op == 0:  # delete
        del parent[last]
    elif op == 1:  # replace by another type
        parent[last] = random_json(rng)
    elif op == 2 and isinstance(node, list) and node:  # a list cut or lengthened
        parent[last] = node[:-1] if rng.random() < 0.5 else [*node, node[0]]
    elif op == 3 and isinstance(node, int | float) and not isinstance(node, bool):
        parent[last] = float(rng.choice([np.nan, np.inf, -node, node * 1e6, 0]))
        if not np.isfinite(parent[last]):
            parent[last] = str(parent[last])  # JSON has no NaN; as strings
    elif op == 4 and isinstance(parent, list):  # duplicate an entry
        parent.insert(int(last), copy.deepcopy(node))
    else:
        parent[last] = random_json(rng)
    return obj


def mutate_text(text: str, rng: np.random.Generator) -> str:
    """Line and token changes: delete, duplicate, swap or insert lines, replace a token,
    change a count line, cut the text."""
    lines = text.split("\n")
    op = int(rng.integers(8))
    i = int(rng.integers(len(lines)))
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[int(rng.integers(len(lines)))])
    elif op == 2 and len(lines) > 1:
        j = int(rng.integers(len(lines)))
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:  # replace a token
        tok = lines[i].split()
        if tok:
            tok[int(rng.integers(len(tok)))] = str(rng.choice(_TOKENS))
            lines[i] = "\t".join(tok)
    elif op == 4:  # a count line: change the first integer found near the top
        for k in range(min(len(lines), 4)):
            s = lines[k].strip()
            if s.isdigit():
                lines[k] = str(max(0, int(s) + int(rng.choice([-2, -1, 1, 2, 1000]))))
                break
        else:
            lines.insert(0, str(int(rng.integers(0, 10))))
    elif op == 5:  # cut the text
        return text[: int(rng.integers(len(text) + 1))]
    elif op == 6:  # an inserted line of random tokens
        lines.insert(i, " ".join(str(rng.choice(_TOKENS)) for _ in range(int(rng.integers(1, 6)))))
    else:  # a truncated line
        lines[i] = lines[i][: int(rng.integers(len(lines[i]) + 1))]
    return "\n".join(lines)


def mutate_bytes(data: bytes, rng: np.random.Generator) -> bytes:
    """Truncated, bit-flipped, overwritten, shortened or lengthened bytes."""
    b = bytearray(data)
    n = len(b)
    op = int(rng.integers(6))
    if n == 0:
        return bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    if op == 0:
        return bytes(b[: int(rng.integers(n))])
    if op == 1:  # a few bit flips
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(n))
            b[k] ^= 1 << int(rng.integers(8))
        return bytes(b)
    start = int(rng.integers(n))
    span = int(rng.integers(1, 65))
    if op == 2:
        b[start : start + span] = rng.integers(
            0, 256, len(b[start : start + span]), dtype=np.uint8
        ).tobytes()
    elif op == 3:
        del b[start : start + span]
    elif op == 4:
        b[start:start] = rng.integers(0, 256, span, dtype=np.uint8).tobytes()
    else:
        b[start:start] = b[start : start + span]  # a duplicated span
    return bytes(b)


def corrupt_file(path: Path, rng: np.random.Generator) -> None:
    path.write_bytes(mutate_bytes(path.read_bytes(), rng))


# ------------------------------------------------------------------------------------------
# Seed content (small structures with EMT labels, written in each dataset's layout)


def _writers():
    from helpers import writers

    return writers


_CACHE: dict[str, Any] = {}


def _cached(name: str, make: Callable[[], Any]) -> Any:
    if name not in _CACHE:
        _CACHE[name] = make()
    return copy.deepcopy(_CACHE[name])


def _slab_entries(oc22: bool) -> list[dict[str, Any]]:
    w = _writers()
    frames = w.slab_frames(3)
    naming = "energy" if oc22 else "y"
    return [
        w.ocp_fields(a, sid=10 + i, fid=i, naming=naming, oc22=oc22) for i, a in enumerate(frames)
    ]


def _mol_frames(n: int = 3, name: str = "H2O"):
    return _writers().molecule_frames(name, n)


# ------------------------------------------------------------------------------------------
# Targets


@dataclass
class Target:
    """One reader under test: ``make(rng, dir)`` writes a (mutated) input and returns
    (path to read, format name)."""

    name: str
    make: Callable[[np.random.Generator, Path], tuple[Path, str]]


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _maybe_corrupt(paths: list[Path], rng: np.random.Generator, p: float) -> None:
    if paths and rng.random() < p:
        corrupt_file(paths[int(rng.integers(len(paths)))], rng)


# --- OC20 / OC22 LMDB


def _make_lmdb(oc22: bool) -> Callable[[np.random.Generator, Path], tuple[Path, str]]:
    def make(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
        w = _writers()
        entries = _cached(f"slabs{oc22}", lambda: _slab_entries(oc22))
        mode = _pick(rng, {"fields": 5, "pickle": 2, "length": 1, "keys": 1, "file": 2})
        values = [w.dumps_pyg1(e) for e in entries]
        k = int(rng.integers(len(values)))
        if mode == "fields":
            for _ in range(int(rng.integers(1, 3))):
                entries[k] = mutate_mapping(entries[k], rng, _mutate_field)
            values[k] = _dumps_loose(w, entries[k])
        elif mode == "pickle":
            values[k] = mutate_bytes(values[k], rng)
        root = d / ("oc22" if oc22 else "oc20") / "s2ef"
        root.mkdir(parents=True)
        chunks = [values[:2], values[2:]]
        files = []
        for c, part in enumerate(chunks):
            path = root / f"data.{c:04d}.lmdb"
            length: Any = len(part)
            extra: dict[bytes, bytes] = {}
            if mode == "length" and c == 0:
                length = [len(part) + int(rng.choice([-1, 1, 5])), -1, "2", 2.0, None][
                    int(rng.integers(5))
                ]
            if mode == "keys" and c == 0:
                if rng.random() < 0.5:
                    part = part[:1]  # 'length' says 2, key "1" missing
                    length = 2
                else:
                    extra[b"2"] = values[0]  # an entry beyond 'length'
            _write_lmdb(path, part, length, extra)
            files.append(path)
        if mode == "file":
            corrupt_file(files[int(rng.integers(len(files)))], rng)
        return root, "ocp_lmdb"

    return make


def _mutate_field(v: Any, rng: np.random.Generator) -> Any:
    if isinstance(v, int | float) and not isinstance(v, bool) and rng.random() < 0.5:
        return [np.float64(np.nan), -1, 10**6, "x", None, np.array([1.0, 2.0]), 0.5][
            int(rng.integers(7))
        ]
    return mutate_array(v, rng)


def _dumps_loose(w, fields: dict[str, Any]) -> bytes:
    """Pickle fields as a PyG Data; values the torch-like tensor pickler cannot write (strings,
    None, lists) are pickled as plain python objects."""
    clean = {}
    for k, v in fields.items():
        if isinstance(v, np.ndarray) and v.dtype.kind not in "biuf":
            v = v.tolist()
        if isinstance(v, np.ndarray) and v.dtype == np.float16:
            v = v.astype(np.float32)
        if isinstance(v, np.ndarray) and v.dtype == np.int8:
            v = v.astype(np.int32)
        clean[k] = v
    return w.dumps_pyg1(clean)


def _write_lmdb(path: Path, values: list[bytes], length: Any, extra: dict[bytes, bytes]) -> None:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 24, subdir=False, meminit=False)
    with env.begin(write=True) as txn:
        if length is not ...:
            txn.put(b"length", pickle.dumps(length))
        for i, v in enumerate(values):
            txn.put(str(i).encode(), v)
        for k, v in extra.items():
            txn.put(k, v)
    env.close()
    lock = Path(str(path) + "-lock")
    if lock.exists():
        lock.unlink()


# --- OC20 raw extxyz shards


def _oc20_extxyz(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
    def seed_texts() -> tuple[str, str]:
        w = _writers()
        tmp = Path(_tmpdir()) / "oc20x"
        frames = w.slab_frames(3)
        w.write_oc20_shard(tmp, 0, frames, [1.0, 2.0, 3.0], [7, 7, 8])
        with lzma.open(tmp / "0.extxyz.xz", "rt") as fh:
            xyz = fh.read()
        with lzma.open(tmp / "0.txt.xz", "rt") as fh:
            txt = fh.read()
        shutil.rmtree(tmp)
        return xyz, txt

    xyz, txt = _cached("oc20x", seed_texts)
    mode = _pick(rng, {"xyz": 5, "txt": 2, "file": 2, "missing": 0.3})
    if mode == "xyz":
        for _ in range(int(rng.integers(1, 3))):
            xyz = mutate_text(xyz, rng)
    elif mode == "txt":
        txt = mutate_text(txt, rng)
    root = d / "s2ef"
    root.mkdir()
    files = [root / "0.extxyz.xz", root / "0.txt.xz"]
    with lzma.open(files[0], "wt") as fh:
        fh.write(xyz)
    if mode != "missing":
        with lzma.open(files[1], "wt") as fh:
            fh.write(txt)
    if mode == "file":
        corrupt_file(files[int(rng.integers(2))], rng)
    return root, "oc20_extxyz"


_TMP: list[str] = []


def _tmpdir() -> str:
    import tempfile

    if not _TMP:
        import atexit

        _TMP.append(tempfile.mkdtemp(prefix="openjmp-fuzz-seed-"))
        atexit.register(shutil.rmtree, _TMP[0], True)
    return _TMP[0]


# --- HDF5: ANI-1x, Transition-1x, SPICE


def _h5_tree(path: Path) -> dict[str, Any]:
    """The file as {name: array | subtree} with attributes under "@attrs" (hard links become
    copies)."""
    import h5py

    def walk(g) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in g.items():
            out[k] = walk(v) if isinstance(v, h5py.Group) else v[()]
            if isinstance(v, h5py.Dataset) and len(v.attrs):
                out[f"@attrs:{k}"] = {a: v.attrs[a] for a in v.attrs}
        return out

    with h5py.File(path, "r") as f:
        return walk(f)


def _write_h5(path: Path, tree: dict[str, Any]) -> None:
    import h5py

    def put(g, t: dict[str, Any]) -> None:
        for k, v in t.items():
            if k.startswith("@attrs:"):
                continue
            if isinstance(v, dict):
                put(g.create_group(k), v)
                continue
            arr = v
            if isinstance(v, str) or (isinstance(v, np.ndarray) and v.dtype.kind == "U"):
                arr = np.asarray(v).astype("S")
            elif v is None:
                arr = np.zeros(0)
            elif isinstance(v, list):
                arr = np.asarray(v, dtype=float) if v else np.zeros(0)
            g[k] = arr
            for a, av in t.get(f"@attrs:{k}", {}).items():
                g[k].attrs[a] = av

    with h5py.File(path, "w") as f:
        put(f, tree)


def _mutate_tree(tree: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Mutate a node at a random depth of an HDF5 tree (mapping mutations, values as arrays);
    sometimes a units attribute or a group replaced by a dataset."""
    tree = copy.deepcopy(tree)
    groups = [tree]

    def collect(t):
        for k, v in t.items():
            if isinstance(v, dict) and not k.startswith("@attrs:"):
                groups.append(v)
                collect(v)

    collect(tree)
    g = groups[int(rng.integers(len(groups)))]
    attrs = [k for k in g if k.startswith("@attrs:")]
    if attrs and rng.random() < 0.15:
        a = g[attrs[int(rng.integers(len(attrs)))]]
        for name in a:
            a[name] = str(rng.choice(["furlong", "bohr", "hartree/angstrom", "", "ev", "kcal/mol"]))
        return tree
    if rng.random() < 0.1:
        keys = [k for k in g if not k.startswith("@attrs:")]
        if keys:
            g[keys[int(rng.integers(len(keys)))]] = random_array(rng)
            return tree
    plain = {k: v for k, v in g.items() if not k.startswith("@attrs:")}
    new = mutate_mapping(plain, rng, _mutate_h5_value)
    for k in list(g):
        if not k.startswith("@attrs:"):
            del g[k]
    g.update(new)
    return tree


def _mutate_h5_value(v: Any, rng: np.random.Generator) -> Any:
    if isinstance(v, dict):
        return random_array(rng)
    out = mutate_array(v, rng)
    return np.asarray(out) if out is not None else np.zeros(0)


def _make_h5(kind: str) -> Callable[[np.random.Generator, Path], tuple[Path, str]]:
    def seed_tree() -> dict[str, Any]:
        w = _writers()
        path = Path(_tmpdir()) / f"{kind}.h5"
        if kind == "ani1x":
            w.write_ani1x(path, {"C2H6O": _mol_frames(3, "CH3CH2OH"), "H2O": _mol_frames(2)})
        elif kind == "transition1x":
            frames = _mol_frames(3)
            w.write_t1x(path, {"H2O": {"rxn0001": frames, "rxn0002": frames[:2]}},
                        {"train": [("H2O", "rxn0001")], "val": [("H2O", "rxn0002")],
                         "test": [("H2O", "rxn0002")]})  # fmt: skip
        else:
            w.write_spice(path, {"mol1": _mol_frames(3), "mol2": _mol_frames(2, "CH4")})
        return _h5_tree(path)

    def make(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
        tree = _cached(kind, seed_tree)
        mode = _pick(rng, {"tree": 6, "file": 2})
        if mode == "tree":
            for _ in range(int(rng.integers(1, 3))):
                tree = _mutate_tree(tree, rng)
        path = d / f"{kind}.h5"
        _write_h5(path, tree)
        if mode == "file":
            corrupt_file(path, rng)
        return path, kind

    return make


# --- QM9


def _qm9(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
    from ase.build import molecule

    def seed() -> dict[int, str]:
        w = _writers()
        return {1: w.qm9_text(1, molecule("CH4")), 2: w.qm9_text(2, molecule("NH3"), mathematica=True),
                3: w.qm9_text(3, molecule("H2O"))}  # fmt: skip

    texts = _cached("qm9", seed)
    mode = _pick(rng, {"text": 6, "tar": 1.5, "lists": 1, "file": 1})
    if mode in ("text", "tar"):
        k = int(rng.integers(1, 4))
        for _ in range(int(rng.integers(1, 3))):
            texts[k] = mutate_text(texts[k], rng)
    root = d / "qm9"
    root.mkdir()
    if mode == "lists":
        (root / "atomref.txt").write_text(mutate_text(_ATOMREF, rng))
        (root / "uncharacterized.txt").write_text(mutate_text(_UNCHAR, rng))
    if mode in ("tar", "file") or rng.random() < 0.3:
        path = root / "dsgdb9nsd.xyz.tar"
        with tarfile.open(path, "w") as tar:
            for idx, text in texts.items():
                data = text.encode("utf-8", "surrogateescape")
                info = tarfile.TarInfo(f"dsgdb9nsd_{idx:06d}.xyz")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        if mode == "file":
            corrupt_file(path, rng)
        if rng.random() < 0.3:
            comp = root / "dsgdb9nsd.xyz.tar.bz2"
            comp.write_bytes(bz2.compress(path.read_bytes()))
            path.unlink()
            path = comp
        return path, "qm9"
    for idx, text in texts.items():
        (root / f"dsgdb9nsd_{idx:06d}.xyz").write_text(text)
    if mode == "file":
        corrupt_file(root / "dsgdb9nsd_000002.xyz", rng)
    return root, "qm9"


_ATOMREF = """   Element   ZPVE   U (0 K)   U (298.15 K)   H (298.15 K)   G (298.15 K)   CV
   H     0.000000     -0.500273     -0.498857     -0.497912     -0.510927       2.981
   C     0.000000    -37.846772    -37.845355    -37.844411    -37.861317       2.981
   N     0.000000    -54.583861    -54.582445    -54.581501    -54.598897       2.981
   O     0.000000    -75.064579    -75.063162    -75.062219    -75.079532       2.981
   F     0.000000    -99.718730    -99.717314    -99.716370    -99.733544       2.981
"""
_UNCHAR = "header\n\n   Index   SMILES\n       3  O  O  0.1  0.2\n ----\n"


# --- rMD17 / MD22 npz


def _make_npz(kind: str) -> Callable[[np.random.Generator, Path], tuple[Path, str]]:
    def seed() -> dict[str, np.ndarray]:
        w = _writers()
        path = Path(_tmpdir()) / f"{kind}_x.npz"
        (w.write_rmd17 if kind == "rmd17" else w.write_md22)(path, _mol_frames(4, "CH3CH2OH"))
        with np.load(path) as z:
            return {k: z[k] for k in z.files}

    def make(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
        data = _cached(kind, seed)
        mode = _pick(rng, {"arrays": 6, "file": 2})
        if mode == "arrays":
            for _ in range(int(rng.integers(1, 3))):
                data = mutate_mapping(data, rng, _npz_value)
        path = d / f"{kind}_aspirin.npz"
        arrays = {k: np.asarray(v) for k, v in data.items()}
        try:
            (np.savez_compressed if rng.random() < 0.3 else np.savez)(path, **arrays)
        except ValueError:  # object arrays: np.savez pickles them (the reader refuses pickles)
            np.savez(path, **{k: np.asarray(v, dtype=object) for k, v in arrays.items()})
        if mode == "file":
            corrupt_file(path, rng)
        return path, "md_npz"

    return make


def _npz_value(v: Any, rng: np.random.Generator) -> Any:
    out = mutate_array(v, rng)
    return np.asarray(out, dtype=object) if out is None else out


# --- MatBench and QMOF (JSON)


def _matbench(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
    def seed() -> dict[str, Any]:
        w = _writers()
        structs = w.bulk_structures(3)
        return {"index": [0, 1, 2], "columns": ["structure", "exfoliation_en"],
                "data": [[w.structure_dict(a), float(i) + 0.5] for i, a in enumerate(structs)]}  # fmt: skip

    doc = _cached("matbench", seed)
    mode = _pick(rng, {"json": 6, "text": 1.5, "file": 1.5})
    if mode == "json":
        for _ in range(int(rng.integers(1, 3))):
            doc = mutate_json(doc, rng)
    text = json.dumps(doc)
    if mode == "text":
        text = mutate_text(text.replace(", ", ",\n"), rng)
    path = d / ("matbench_jdft2d.json.gz" if rng.random() < 0.3 else "matbench_jdft2d.json")
    raw = text.encode("utf-8", "surrogateescape")
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)
    if mode == "file":
        corrupt_file(path, rng)
    return path, "matbench"


def _qmof(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
    def seed() -> tuple[list, list]:
        w = _writers()
        root = Path(_tmpdir()) / "qmof"
        w.write_qmof(root, w.bulk_structures(3), [1.0, 2.0, 0.5])
        return (json.loads((root / "qmof.json").read_text()),
                json.loads((root / "qmof_structure_data.json").read_text()))  # fmt: skip

    props, structs = _cached("qmof", seed)
    mode = _pick(rng, {"json": 6, "text": 1.5, "file": 1.5})
    if mode == "json":
        for _ in range(int(rng.integers(1, 3))):
            if rng.random() < 0.4:
                props = mutate_json(props, rng)
            else:
                structs = mutate_json(structs, rng)
    root = d / "qmof_database"
    root.mkdir()
    texts = [json.dumps(props), json.dumps(structs, indent=1)]
    if mode == "text":
        k = int(rng.integers(2))
        texts[k] = mutate_text(texts[k], rng)
    files = [root / "qmof.json", root / "qmof_structure_data.json"]
    for f, t in zip(files, texts):
        f.write_bytes(t.encode("utf-8", "surrogateescape"))
    if mode == "file":
        corrupt_file(files[int(rng.integers(2))], rng)
    return root, "qmof"


# --- ASE files: extxyz, traj, ASE database


def _ase(rng: np.random.Generator, d: Path) -> tuple[Path, str]:
    w = _writers()

    def seed_frames():
        from ase.calculators.singlepoint import SinglePointCalculator

        out = []
        for a in [*w.slab_frames(2), *_mol_frames(2)]:
            e, f = w.emt_label(a)
            b = a.copy()
            b.calc = SinglePointCalculator(b, energy=e, forces=f)
            b.info["gap"] = 1.5
            out.append(b)
        return out

    import ase.io

    frames = _cached("ase", seed_frames)
    kind = _pick(rng, {"extxyz": 5, "xyz": 1, "traj": 2, "db": 2})
    if kind in ("extxyz", "xyz"):
        buf = io.StringIO()
        ase.io.write(buf, frames, format="extxyz" if kind == "extxyz" else "xyz")
        text = buf.getvalue()
        corrupt = rng.random() < 0.2
        if not corrupt:
            for _ in range(int(rng.integers(1, 3))):
                text = mutate_text(text, rng)
        path = d / f"structures.{kind}"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        if corrupt:
            corrupt_file(path, rng)
        return path, "ase"
    if kind == "traj":
        path = d / "relax.traj"
        ase.io.write(path, frames)
        corrupt_file(path, rng)
        return path, "ase"
    path = d / "structures.db"
    import ase.db

    with ase.db.connect(str(path), append=False) as db:
        for a in frames:
            db.write(a, gap=1.5)
    if rng.random() < 0.5:
        _mutate_sqlite(path, rng)
    else:
        corrupt_file(path, rng)
    return path, "ase"


_DB_COLUMNS = ["numbers", "positions", "cell", "pbc", "natoms", "energy", "forces", "tags",
               "key_value_pairs", "constraints", "stress", "fmax", "calculator"]  # fmt: skip


def _mutate_sqlite(path: Path, rng: np.random.Generator) -> None:
    """Change one column of one row of an ASE database: a blob of the wrong length or dtype,
    a count that disagrees with the arrays, text where numbers belong."""
    col = str(rng.choice(_DB_COLUMNS))
    value = rng.choice(
        [
            np.zeros(
                int(rng.integers(0, 20)), dtype=rng.choice(["<f8", "<i4", "<i8", "u1"])
            ).tobytes(),
            int(rng.integers(-3, 50)),
            "garbage",
            None,
            2.5,
            "{not json",
            '{"a": [1, 2]}',
        ]
    )
    with contextlib.closing(sqlite3.connect(path)) as con:
        try:
            con.execute(
                f"UPDATE systems SET {col} = ? WHERE id = ?", (value, int(rng.integers(1, 5)))
            )
            con.commit()
        except sqlite3.Error:
            pass


TARGETS: dict[str, Target] = {
    "oc20_lmdb": Target("oc20_lmdb", _make_lmdb(oc22=False)),
    "oc22_lmdb": Target("oc22_lmdb", _make_lmdb(oc22=True)),
    "oc20_extxyz": Target("oc20_extxyz", _oc20_extxyz),
    "ani1x": Target("ani1x", _make_h5("ani1x")),
    "transition1x": Target("transition1x", _make_h5("transition1x")),
    "spice": Target("spice", _make_h5("spice")),
    "qm9": Target("qm9", _qm9),
    "rmd17": Target("rmd17", _make_npz("rmd17")),
    "md22": Target("md22", _make_npz("md22")),
    "matbench": Target("matbench", _matbench),
    "qmof": Target("qmof", _qmof),
    "ase": Target("ase", _ase),
}
"""Every reader under test, by name (the ten dataset formats, OC20/OC22 LMDB apart, and ASE)."""


# ------------------------------------------------------------------------------------------
# Running inputs


class _Timeout(BaseException):
    """Raised by the alarm inside a read that ran too long (a BaseException, so that readers'
    ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float):
    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    """What one way of reading one input gave: ``kind`` is "ok", "data_error" or a finding
    ("unnamed_data_error", "other", "hang"); ``detail`` the message or traceback."""

    kind: str
    detail: str = ""
    records: int = 0


def _classify(fn: Callable[[], int], root: Path, limit: float) -> Outcome:
    from openjmp.errors import DataError

    try:
        with _time_limit(limit):
            n = fn()
        return Outcome("ok", records=n)
    except _Timeout:
        return Outcome("hang", f"no result within {limit} s")
    except DataError as err:
        src = err.source or ""
        if not src or not (src.startswith(str(root)) or str(root).startswith(src)):
            return Outcome("unnamed_data_error", f"{type(err).__name__}: {err}")
        return Outcome("data_error", str(err))
    except Exception:  # noqa: BLE001 - any other exception is the finding
        return Outcome("other", traceback.format_exc(limit=-6))


def run_input(path: Path, fmt: str, root: Path, limit: float = 20.0) -> dict[str, Outcome]:
    """Read one input strictly (``read``) and as ``openjmp data check`` does (``check``)."""
    import warnings

    from openjmp.data.check import check_path
    from openjmp.io import read_records

    def strict() -> int:
        return sum(1 for _ in read_records(path, fmt))

    def check() -> int:
        return check_path(path, fmt).n_records

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"read": _classify(strict, root, limit), "check": _classify(check, root, limit)}


@dataclass
class Campaign:
    """Counts of one target's run: inputs tried, and outcomes per way of reading."""

    target: str
    seed: int
    inputs: int = 0
    counts: Counter = field(default_factory=Counter)
    findings: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"target": self.target, "seed": self.seed, "inputs": self.inputs,
                "seconds": round(self.seconds, 1), "counts": dict(sorted(self.counts.items())),
                "findings": len(self.findings)}  # fmt: skip


FINDINGS = ("other", "unnamed_data_error", "hang")


def input_rng(seed: int, k: int) -> np.random.Generator:
    """The generator of input ``k`` of a run seeded ``seed`` (reproducible one by one)."""
    return np.random.default_rng([seed, k])


def _warm_up() -> None:
    """Import what the readers and the check import, before any read is timed (an import cut
    by the alarm would leave a half-initialised module behind for every later input)."""
    import ase.db  # noqa: F401
    import ase.io  # noqa: F401
    import h5py  # noqa: F401
    import lmdb  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import torch  # noqa: F401
    import vesin  # noqa: F401

    import openjmp.data.check  # noqa: F401
    import openjmp.data.splits  # noqa: F401
    import openjmp.io  # noqa: F401


def run_campaign(
    target: str,
    *,
    seed: int = 0,
    max_inputs: int | None = None,
    max_seconds: float | None = None,
    workdir: Path,
    keep_findings: Path | None = None,
    limit: float = 20.0,
    start: int = 0,
    before_input: Callable[[int, Campaign], None] | None = None,
) -> Campaign:
    """Try inputs ``start, start+1, ...`` of ``target`` until ``max_inputs`` or ``max_seconds``.

    ``before_input(k, campaign)`` is called before input ``k`` is written (the long runner
    saves the counts so far and ``k``, to name the input that killed a child process)."""
    t = TARGETS[target]
    _warm_up()
    camp = Campaign(target, seed)
    t0 = time.perf_counter()
    k = start
    workdir = Path(workdir).resolve()
    while (max_inputs is None or camp.inputs < max_inputs) and (
        max_seconds is None or time.perf_counter() - t0 < max_seconds
    ):
        if before_input is not None:
            before_input(k, camp)
        d = workdir / f"{target}-{k}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        path, fmt = t.make(input_rng(seed, k), d)
        outcomes = run_input(path, fmt, d, limit)
        camp.inputs += 1
        for way, out in outcomes.items():
            camp.counts[f"{way}:{out.kind}"] += 1
            if out.kind in FINDINGS:
                camp.findings.append(
                    {"input": k, "way": way, "kind": out.kind, "detail": out.detail}
                )
                if keep_findings is not None:
                    dest = keep_findings / f"{target}-seed{seed}-input{k}"
                    if not dest.exists():
                        shutil.copytree(d, dest)
        shutil.rmtree(d, ignore_errors=True)
        k += 1
    camp.seconds = time.perf_counter() - t0
    return camp
