"""MatBench v0.1 task files (``matbench_<task>.json.gz``) and the official folds, without pymatgen.

Data file (datasets.md §9): matminer's pandas ``orient="split"`` JSON, optionally gzipped:
``{"index": [...], "columns": ["structure", "<target>"], "data": [[<Structure dict>, y], ...]}``.
Record ids are matbench's: ``prefix = task.replace("matbench", "mb").replace("_", "-")`` and
``f"{prefix}-{i + 1:0{floor(log10(n)) + 1}d}"`` over the row order (``mb-jdft2d-001``).

Folds file ``matbench_v0.1_validation.json``: ``{"splits": {"matbench_<task>": {"fold_0":
{"train": [ids], "test": [ids]}, ...}}}`` (KFold(5, shuffle=True, random_state=18012019)).

Records: Z, Cartesian positions (``abc @ matrix``, as pymatgen's ``site.coords`` that JMP uses)
and cell in Å, pbc from the lattice (default periodic), every non-structure column as a target
in the task's native unit (bools stay bools, e.g. ``is_metal``), no energy, index = the mbid,
dataset = the task name (``"matbench_jdft2d"``).
"""

from __future__ import annotations

import gzip
import json
import math
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openjmp.errors import DataError
from openjmp.io._common import OnError, existing, finish, report
from openjmp.io.pymatgen_dict import parse_structure
from openjmp.records import AtomsRecord

__all__ = ["VALIDATION_FILE", "load_json", "mbids", "read", "read_folds", "task_name"]

VALIDATION_FILE = "matbench_v0.1_validation.json"


def task_name(path: str | Path) -> str:
    """``matbench_jdft2d`` from ``.../matbench_jdft2d.json.gz``."""
    name = Path(path).name
    for suffix in (".gz", ".json"):
        name = name.removesuffix(suffix)
    return name


def mbids(task: str, n: int) -> list[str]:
    """matbench's record ids for a task of ``n`` rows, in row order."""
    prefix = task.replace("matbench", "mb").replace("_", "-")
    width = math.floor(math.log10(n)) + 1 if n > 0 else 1
    return [f"{prefix}-{i + 1:0{width}d}" for i in range(n)]


def load_json(path: Path) -> Any:
    """Parse a ``.json`` or ``.json.gz`` file; `DataError` naming it on failure."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (OSError, EOFError, UnicodeDecodeError, ValueError, zlib.error, RecursionError) as exc:
        raise DataError(path, None, f"not a readable JSON file ({exc})") from None


def read(
    path: str | Path,
    *,
    task: str | None = None,
    validate: bool = True,
    on_error: OnError = None,
) -> Iterator[AtomsRecord]:
    """Structures and targets of one MatBench task file, in row order."""
    path = existing(path)
    task = task or task_name(path)
    doc = load_json(path)
    if not isinstance(doc, dict) or not {"columns", "data"} <= set(doc):
        raise DataError(path, None, "expected pandas 'split' JSON with 'columns' and 'data'")
    columns, rows = doc["columns"], doc["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise DataError(path, None, f"'columns' must be a list of names, got {columns!r:.60}")
    if "structure" not in columns or columns.count("structure") > 1:
        raise DataError(path, None, f"need one 'structure' column (columns: {columns})")
    if len(set(columns)) != len(columns):
        raise DataError(path, None, f"column names repeat: {columns}")
    if not isinstance(rows, list):
        raise DataError(path, None, f"'data' must be a list of rows, got {type(rows).__name__}")
    if "index" in doc and (not isinstance(doc["index"], list) or len(doc["index"]) != len(rows)):
        n_index = len(doc["index"]) if isinstance(doc["index"], list) else "no list of"
        raise DataError(path, None, f"'index' has {n_index} entries for {len(rows)} rows of 'data'")
    s_col = columns.index("structure")
    return _iterate(path, task, columns, s_col, rows, validate, on_error)


def _iterate(path, task, columns, s_col, rows, validate, on_error) -> Iterator[AtomsRecord]:
    for mbid, row in zip(mbids(task, len(rows)), rows):
        try:
            if not isinstance(row, list):
                raise DataError(path, mbid, f"row is a {type(row).__name__}, not a list")
            if len(row) != len(columns):
                raise DataError(path, mbid, f"row has {len(row)} values for {len(columns)} columns")
            z, pos, cell, pbc = parse_structure(row[s_col], path, mbid)
            targets = {}
            for j, col in enumerate(columns):
                if j == s_col:
                    continue
                value = row[j]
                if not isinstance(value, bool | int | float):
                    raise DataError(path, mbid, f"target {col!r} is not a number: {value!r:.40}")
                targets[col] = value if isinstance(value, bool) else float(value)
        except DataError as err:
            report(err, on_error)
            continue
        rec = AtomsRecord(
            atomic_numbers=z,
            positions=pos,
            cell=cell,
            pbc=pbc,
            targets=targets,
            source=str(path),
            index=mbid,
            dataset=task,
        )
        rec = finish(rec, validate=validate, on_error=on_error)
        if rec is not None:
            yield rec


def read_folds(path: str | Path, task: str) -> dict[str, dict[str, list[str]]]:
    """``{"fold_0": {"train": [mbid...], "test": [...]}, ...}`` for ``task`` from the folds file."""
    path = existing(path)
    doc = load_json(path)
    try:
        folds = doc["splits"][task]
    except (KeyError, TypeError):
        raise DataError(path, task, "no folds for this task in the validation file") from None
    out = {}
    for name, fold in folds.items():
        if not isinstance(fold, dict) or not {"train", "test"} <= set(fold):
            raise DataError(path, f"{task}/{name}", "fold lacks 'train' or 'test' ids")
        out[name] = {
            "train": [str(i) for i in fold["train"]],
            "test": [str(i) for i in fold["test"]],
        }
    return out
