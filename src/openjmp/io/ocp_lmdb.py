"""OC20 / OC22 LMDBs of pickled PyG ``Data`` (S2EF and IS2RE), read without torch_geometric.

Layout (datasets.md §1, §2, §11; jmp-reference.md §4.1): a file ``*.lmdb`` or a directory of
``*.lmdb`` chunks (each ``subdir=False``), keys ASCII ``"0".."n-1"`` plus an optional
``b"length"`` (pickled int; else ``env.stat()["entries"]``). Values are pickled PyG ``Data``
with, per structure of N atoms:

* ``pos`` (N, 3) Å; ``cell`` (1, 3, 3) Å; ``atomic_numbers`` (N,) float32, uint8 or int64;
  ``tags`` (N,) 0/1/2; ``fixed`` (N,) 0/1 (float or int); ``natoms`` int;
* S2EF: energy ``y`` (ocp <= 2023) or ``energy`` (fairchem), eV; forces ``force`` or
  ``forces`` (N, 3) eV/Å. OC20's ``y`` is the adsorption energy; OC22's is the total energy.
  Entries with only ``y_relaxed`` use it as the energy (as JMP does for OC22).
* IS2RE: ``y_init`` (energy of the initial structure, taken as the record's energy) and
  ``y_relaxed`` (kept as the target ``"y_relaxed"``), eV.
* ``sid``, ``fid``, ``edge_index``, ``cell_offsets``, ``distances``, ``oc22``: read, not used
  (``oc22`` names the dataset). Extra float scalars become targets (e.g. JMP's fine-tune LMDBs).

``ref_energies`` (OC20's ``oc20_ref.pkl``: ``{"random<sid>": E_ref}``) turns OC20 adsorption
energies into total energies: ``energy = y + E_ref[sid]``; ``y`` is then kept as the target
``"adsorption_energy"``. Positions are used as stored (never unwrapped). Units are stored as
eV, Å, eV/Å and are not converted.
"""

from __future__ import annotations

import bisect
import json
import os
import struct
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.io._common import (
    OnError,
    array,
    atomic_numbers,
    existing,
    finish,
    integer,
    report,
    scalar,
)
from openjmp.io.safe_pickle import loads_pyg, safe_loads
from openjmp.records import AtomsRecord

__all__ = ["OCPLmdb", "load_ref_energies", "read", "record_from_fields"]

_IGNORED = {
    "sid",
    "fid",
    "natoms",
    "oc22",
    "id",
    "edge_index",
    "cell_offsets",
    "distances",
    "pos_relaxed",
    "nads",
    "task_idx",
    "absolute_idx",
}


def lmdb_files(path: Path) -> list[Path]:
    """The ``*.lmdb`` files of ``path`` (itself if it is one), in sorted order."""
    if path.is_file():
        return [path]
    files = sorted(p for p in path.glob("*.lmdb") if p.is_file())
    if not files:
        raise DataError(path, None, "no *.lmdb files in this directory")
    return files


_MAGIC = 0xBEEFC0DE
_INVALID_PAGE = (1 << 64) - 1


def check_lmdb_file(path: Path) -> int:
    """Check an LMDB file's header against its size; return the size in bytes.

    LMDB trusts its file: a truncated or corrupt one makes reads touch memory past the end of
    the mapped file, which kills the process (SIGBUS) instead of raising. The two meta pages say
    how many pages the data uses (``last_pg``) and where the root is; a file shorter than that,
    or a root past it, is reported as a `DataError` before LMDB sees it.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(256)
            size = os.fstat(fh.fileno()).st_size
            best = None
            if len(head) >= 152 and struct.unpack_from("<I", head, 16)[0] == _MAGIC:
                psize = struct.unpack_from("<I", head, 40)[0]
                if psize >= 512 and psize & (psize - 1) == 0:
                    for page in (0, 1):
                        fh.seek(page * psize)
                        meta = fh.read(152)
                        if len(meta) < 152 or struct.unpack_from("<I", meta, 16)[0] != _MAGIC:
                            continue
                        root, last, txnid = struct.unpack_from("<QQQ", meta, 128)
                        if best is None or txnid > best[2]:
                            best = (root, last, txnid, psize)
    except OSError as exc:
        raise DataError(path, None, f"cannot read ({exc.strerror})") from None
    if best is None:
        raise DataError(path, None, "not an LMDB file (no valid LMDB header)")
    root, last, _, psize = best
    if (last + 1) * psize > size:
        raise DataError(
            path,
            None,
            f"LMDB file is truncated: its header says {(last + 1) * psize} bytes "
            f"({last + 1} pages of {psize}), the file holds {size}",
        )
    if root != _INVALID_PAGE and root > last:
        raise DataError(
            path, None, f"corrupt LMDB header: root page {root} past the last page {last}"
        )
    if root != _INVALID_PAGE:
        _check_tree(path, psize, root, last)
    return size


_P_BRANCH, _P_LEAF, _P_OVERFLOW = 0x01, 0x02, 0x04
_F_BIGDATA = 0x01
_HDR = 16  # page header: pgno u64, pad u16, flags u16, lower u16, upper u16 (or pages u32)


def _check_tree(path: Path, psize: int, root: int, last: int) -> None:
    """Walk the main B-tree of an LMDB file and check every page LMDB would follow.

    LMDB's C code trusts the pages: a flipped byte in a node offset, a key size or a child page
    number makes a lookup read outside the page or the file and kill the process (SIGSEGV,
    SIGBUS). This checks what a lookup uses, in Python, before LMDB sees the file: each page's
    own number and type, its key table bounds, every node inside its page, child and overflow
    page numbers within the file, overflow runs long enough for their data. It reads only the
    tree pages and the first header of each overflow run (milliseconds for the published
    files).
    """
    import mmap

    def bad(problem: str) -> DataError:
        return DataError(path, None, f"corrupt LMDB file: {problem}")

    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        seen: set[int] = set()
        todo = [root]
        while todo:
            pg = todo.pop()
            if pg in seen:
                raise bad(f"page {pg} is reached twice in the tree")
            seen.add(pg)
            base = pg * psize
            pgno, _, flags, lower, upper = struct.unpack_from("<QHHHH", mm, base)
            if pgno != pg or flags & (_P_BRANCH | _P_LEAF) in (0, _P_BRANCH | _P_LEAF):
                raise bad(f"page {pg} is not a tree page (number {pgno}, flags {flags:#x})")
            if not _HDR <= lower <= upper <= psize or (lower - _HDR) % 2:
                raise bad(f"page {pg} has a broken key table (lower {lower}, upper {upper})")
            for k in range((lower - _HDR) // 2):
                (ptr,) = struct.unpack_from("<H", mm, base + _HDR + 2 * k)
                if not upper <= ptr <= psize - 8:
                    raise bad(f"page {pg}, node {k} lies outside its page (offset {ptr})")
                lo, hi, nflags, ksize = struct.unpack_from("<HHHH", mm, base + ptr)
                end = ptr + 8 + ksize
                if flags & _P_BRANCH:
                    child = lo | hi << 16 | nflags << 32
                    if end > psize or not 2 <= child <= last:
                        raise bad(f"page {pg}, node {k}: child page {child} or key outside")
                    todo.append(child)
                    continue
                dsize = lo | hi << 16
                if nflags & ~_F_BIGDATA:
                    raise bad(f"page {pg}, node {k}: flags {nflags:#x} (no sub-databases here)")
                if not nflags & _F_BIGDATA:
                    if end + dsize > psize:
                        raise bad(f"page {pg}, node {k}: {dsize} data bytes run past the page")
                    continue
                if end + 8 > psize:
                    raise bad(f"page {pg}, node {k}: overflow reference runs past the page")
                (ov,) = struct.unpack_from("<Q", mm, base + end)
                if not 2 <= ov <= last:
                    raise bad(f"page {pg}, node {k}: overflow page {ov} outside the file")
                ono, _, oflags, pages = struct.unpack_from("<QHHI", mm, ov * psize)
                if ono != ov or not oflags & _P_OVERFLOW or pages < 1 or ov + pages - 1 > last:
                    raise bad(f"page {pg}, node {k}: broken overflow page {ov}")
                if dsize > pages * psize - _HDR:
                    raise bad(f"page {pg}, node {k}: {dsize} bytes in {pages} overflow pages")


_OPEN: dict[str, tuple[int, Any]] = {}
"""Open environments by file, with the process that opened them (LMDB allows one per process)."""


def open_env(path: Path) -> Any:
    """This process's read-only environment of ``path``, opened on first use.

    An environment inherited through ``fork`` (DataLoader workers) is closed in the child and
    opened afresh: LMDB handles must not cross processes, and py-lmdb refuses a second open.
    """
    import lmdb

    key, pid = str(path.resolve()), os.getpid()
    held = _OPEN.get(key)
    if held is not None and held[0] == pid:
        return held[1]
    if held is not None:
        held[1].close()
    size = check_lmdb_file(path)
    try:
        env = lmdb.open(
            key,
            subdir=False,
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            max_readers=256,
            # map no more than the file: a corrupt page number then fails with an LMDB error
            # instead of touching memory past the end of the file (SIGBUS)
            map_size=max(size, 1 << 12),
        )
    except lmdb.Error as exc:
        raise DataError(path, None, f"not a readable LMDB file: {exc}") from None
    _OPEN[key] = (pid, env)
    return env


def close_env(path: Path) -> None:
    """Close this process's environment of ``path`` if one is open."""
    held = _OPEN.get(str(path.resolve()))
    if held is not None and held[0] == os.getpid():
        held[1].close()
        del _OPEN[str(path.resolve())]


class OCPLmdb:
    """Random access to a directory of OCP LMDB chunks; environments open lazily per process.

    ``len(db)`` is the total entry count; ``db.fields(i)`` the raw attribute dict of entry
    ``i``; ``db.locate(i)`` the (file, key) it lives at. Safe to pickle into DataLoader workers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = existing(path, "LMDB file or directory")
        self.files = lmdb_files(self.path)
        lengths = [self._length(i) for i in range(len(self.files))]
        self.cumulative: list[int] = np.cumsum(lengths).tolist()

    def __len__(self) -> int:
        return self.cumulative[-1] if self.cumulative else 0

    def _env(self, i: int) -> Any:
        return open_env(self.files[i])

    def _length(self, i: int) -> int:
        import lmdb

        env, file = self._env(i), self.files[i]
        try:
            with env.begin() as txn:
                raw = txn.get(b"length")
                entries = int(env.stat()["entries"])
                if raw is None:
                    return entries
                try:
                    n = safe_loads(raw)
                except Exception as exc:  # noqa: BLE001 - corrupt bytes raise many kinds
                    raise DataError(file, "length", f"unreadable 'length' entry: {exc}") from None
                if isinstance(n, np.ndarray) and n.size == 1:
                    n = n.item()
                if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
                    raise DataError(file, "length", f"'length' is not a count: {n!r:.60}")
                n = int(n)
                # more entries than 'length' + itself: records past the count would be dropped
                if entries > n + 1 and txn.get(str(n).encode("ascii")) is not None:
                    raise DataError(
                        file,
                        "length",
                        f"'length' says {n} entries but key '{n}' exists too ({entries - 1} "
                        "entries besides 'length'): the count is wrong",
                    )
                return n
        except lmdb.Error as exc:
            raise DataError(file, None, f"corrupt LMDB file: {exc}") from None

    def locate(self, idx: int) -> tuple[Path, int]:
        """(file, key within it) of global entry ``idx``."""
        if not 0 <= idx < len(self):
            raise IndexError(f"index {idx} out of range for {len(self)} entries")
        db = bisect.bisect_right(self.cumulative, idx)
        return self.files[db], idx - (self.cumulative[db - 1] if db else 0)

    def fields(self, idx: int) -> dict[str, Any]:
        """The unpickled attributes of entry ``idx`` (tensors as numpy arrays).

        Errors name the file and the global record number ``idx``, with the file's own key.
        """
        import lmdb

        file, key = self.locate(idx)
        env = self._env(self.files.index(file))
        try:
            with env.begin() as txn:
                raw = txn.get(str(key).encode("ascii"))
                raw = None if raw is None else bytes(raw)
        except lmdb.Error as exc:
            raise DataError(file, idx, f"corrupt LMDB file at key '{key}': {exc}") from None
        if raw is None:
            raise DataError(
                file, idx, f"key '{key}' missing from the LMDB (its 'length' says it exists)"
            )
        try:
            return loads_pyg(raw)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - pickle, struct, EOF ... on corrupt bytes
            raise DataError(file, idx, f"cannot unpickle the entry at key '{key}': {exc}") from None

    def record(self, idx: int, **opts: Any) -> AtomsRecord:
        """Entry ``idx`` as an `AtomsRecord` (options as for :func:`record_from_fields`); its
        index is ``idx``, the position over all files of the directory."""
        file, _ = self.locate(idx)
        return record_from_fields(self.fields(idx), source=str(file), index=idx, **opts)

    def close(self) -> None:
        """Close this process's environments of these files."""
        for f in self.files:
            close_env(f)


def load_ref_energies(path: str | Path) -> dict[str, float]:
    """OC20 per-system reference energies ``{"random<sid>": eV}`` from ``.pkl`` or ``.json``."""
    p = existing(path, "reference-energy file")
    try:
        raw = json.loads(p.read_text()) if p.suffix == ".json" else safe_loads(p.read_bytes())
    except Exception as exc:
        raise DataError(p, None, f"cannot read reference energies: {exc}") from None
    if not isinstance(raw, Mapping):
        raise DataError(p, None, f"expected a mapping sid -> energy, found {type(raw).__name__}")
    return {str(k): float(np.asarray(v).reshape(())) for k, v in raw.items()}


def _first(fields: Mapping[str, Any], *names: str) -> tuple[str | None, Any]:
    for n in names:
        if n in fields and fields[n] is not None:
            return n, fields[n]
    return None, None


def record_from_fields(
    fields: Mapping[str, Any],
    *,
    source: str,
    index: int | str,
    dataset: str | None = None,
    ref_energies: Mapping[str, float] | None = None,
    default_dataset: str = "oc20",
) -> AtomsRecord:
    """Build an `AtomsRecord` from the attributes of one OCP ``Data`` entry (see module doc).

    The dataset name is ``dataset`` when given, else "oc22" for entries with the ``oc22`` flag,
    else ``default_dataset``.
    """
    if "atomic_numbers" not in fields or "pos" not in fields:
        missing = [k for k in ("atomic_numbers", "pos") if k not in fields]
        raise DataError(source, index, f"entry lacks {missing}; keys are {sorted(fields)}")
    z = atomic_numbers(fields["atomic_numbers"], source, index)
    n = len(z)
    pos = array(fields["pos"], (n, 3), source, index, "pos")
    cell, pbc = np.zeros((3, 3)), np.zeros(3, bool)
    if fields.get("cell") is not None:
        c = np.asarray(fields["cell"])
        cell = array(c.reshape(3, 3) if c.size == 9 else c, (3, 3), source, index, "cell")
        pbc = np.full(3, bool(np.any(cell)))
    if fields.get("pbc") is not None:
        pbc = array(np.asarray(fields["pbc"]).reshape(-1), (3,), source, index, "pbc") != 0
    if "natoms" in fields and scalar(fields["natoms"], source, index, "natoms") != n:
        raise DataError(source, index, f"natoms={fields['natoms']!r:.40} but {n} atomic numbers")
    tags = fixed = None
    if fields.get("tags") is not None:
        tags = array(np.asarray(fields["tags"]).reshape(-1), (n,), source, index, "tags")
    if fields.get("fixed") is not None:
        fixed = array(np.asarray(fields["fixed"]).reshape(-1), (n,), source, index, "fixed") != 0

    targets: dict[str, Any] = {}
    if "y_init" in fields:  # IS2RE
        key, energy_raw = "y_init", fields["y_init"]
    else:
        key, energy_raw = _first(fields, "energy", "y", "y_relaxed")
    energy = None if key is None else scalar(energy_raw, source, index, key)
    if "y_init" in fields and fields.get("y_relaxed") is not None:
        targets["y_relaxed"] = scalar(fields["y_relaxed"], source, index, "y_relaxed")
    fkey, f_raw = _first(fields, "forces", "force")
    forces = None if fkey is None else array(f_raw, (n, 3), source, index, fkey)

    ds_name = dataset or ("oc22" if "oc22" in fields else default_dataset)
    is_oc22 = "oc22" in fields or ds_name.startswith("oc22")
    if ref_energies is not None and energy is not None and not is_oc22:
        if "sid" not in fields:
            raise DataError(source, index, "ref_energies given but the entry has no sid")
        sid = f"random{integer(fields['sid'], source, index, 'sid')}"
        if sid not in ref_energies:
            raise DataError(source, index, f"no reference energy for system {sid}")
        targets["adsorption_energy"] = energy
        energy = energy + ref_energies[sid]

    used = {"atomic_numbers", "pos", "cell", "pbc", "tags", "fixed", "y_init", "y_relaxed"}
    used |= {k for k in (key, fkey) if k}
    for name, value in fields.items():
        if name in used or name in _IGNORED:
            continue
        arr = np.asarray(value) if isinstance(value, np.ndarray | float) else None
        if arr is not None and arr.dtype.kind == "f" and arr.size == 1:
            targets[name] = float(arr.reshape(()))

    return AtomsRecord(
        atomic_numbers=z,
        positions=pos,
        cell=cell,
        pbc=pbc,
        tags=tags,
        fixed=fixed,
        energy=energy,
        forces=forces,
        targets=targets,
        source=source,
        index=index,
        dataset=ds_name,
    )


def dataset_from_path(path: Path) -> str | None:
    """ "oc22" or "oc20" from the nearest component of ``path`` that names one of them, else None
    (``/data/oc22/s2ef-total/train`` -> "oc22")."""
    for part in reversed(Path(path).resolve().parts):
        found = [name for name in ("oc22", "oc20") if name in part.lower()]
        if len(found) == 1:
            return found[0]
    return None


def read(
    path: str | Path,
    *,
    dataset: str | None = None,
    ref_energies: str | Path | Mapping[str, float] | None = None,
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Records of an OCP LMDB file or directory, in key order (file by file).

    Record indices run over the whole directory (0 .. n-1 over the sorted ``*.lmdb`` files, as
    `OCPLmdb` numbers them); each record's source is its file.

    ``dataset`` overrides the name. Otherwise entries with the ``oc22`` flag are "oc22"; the
    others are named from the path ("oc22" when a directory or file name contains "oc22", with
    a warning saying so, as OC22 LMDBs written by other tools may lack the flag), else "oc20".
    ``ref_energies`` is a path or mapping of OC20 reference energies (module docstring).
    """
    db = OCPLmdb(path)
    refs = load_ref_energies(ref_energies) if isinstance(ref_energies, str | Path) else ref_energies
    return _iterate(db, dataset, refs, validate, on_error)


def _iterate(
    db: OCPLmdb, dataset: str | None, refs: Any, validate: bool, on_error: OnError
) -> Iterator[AtomsRecord]:
    hint = dataset_from_path(db.path) if dataset is None else None
    default = hint or "oc20"
    warned = False
    try:
        for i in range(len(db)):
            try:
                fields = db.fields(i)
                file, _ = db.locate(i)
                rec = record_from_fields(
                    fields,
                    source=str(file),
                    index=i,
                    dataset=dataset,
                    ref_energies=refs,
                    default_dataset=default,
                )
            except DataError as err:
                report(err, on_error)
                continue
            if hint == "oc22" and "oc22" not in fields and not warned:
                warnings.warn(
                    f"{db.path}: LMDB entries carry no 'oc22' flag; labelled 'oc22' from the "
                    "path (pass the reader option dataset=oc20 if they are OC20 data)",
                    DatasetGuessWarning,
                    stacklevel=2,
                )
                warned = True
            rec = finish(rec, validate=validate, on_error=on_error)
            if rec is not None:
                yield rec
    finally:
        db.close()


class DatasetGuessWarning(UserWarning):
    """A reader named the dataset of its records from the file path."""


def is_ocp_lmdb(path: Path) -> bool:
    """Whether ``path`` looks like an OCP LMDB (a ``*.lmdb`` file or a directory of them)."""
    if path.is_file():
        return path.suffix == ".lmdb"
    return path.is_dir() and any(path.glob("*.lmdb"))
