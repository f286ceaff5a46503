"""Train/val/test splits as the JMP authors make them, reproducible and saved beside the data.

A split set is ``{split name: {part: indices}}``: one split called ``"default"`` for most
datasets, ``"fold_0".."fold_4"`` for MatBench. Indices are positions in the reader's (and the
cache's) record order, int64, kept in the authors' order (not sorted).

The authors shuffle with ``idx = np.arange(n); np.random.RandomState(seed).shuffle(idx)`` and cut
consecutive slices (``src/jmp/datasets/finetune/*.py``); so does :func:`shuffled`:

* rMD17: train 950, val 50, test the rest (seed 42); JMP ignores the official index files
  (``rmd17/splits/index_{train,test}_0k.csv``, available with the option ``official=k``).
* MD22: ``train_size`` per molecule (`MD22_TRAIN_SIZES`), val = int(0.05 train_size) carved
  out of it, test the rest.
* QM9: val 10,000, test 10,000, train the rest (110,831 of 130,831).
* SPICE, QMOF (and user data): train int(0.8 n), test int(0.1 n), val the remainder, in the
  order [train | val | test].
* MatBench: per official fold, the fold's train ids (in the folds file's order) shuffled into
  90 % train / 10 % val; test = the fold's test ids.
* Transition-1x: the file's own train/val/test groups (the first part of each record index).
* ANI-1x: by formula (no formula in two parts), formulas with < 4 atoms left out, seeded; test
  then val take whole formulas until each holds at least 10 % of the conformers (495,600 of
  4,956,005), the rest is train. (The authors' shuffle was unseeded; theirs cannot be redone.)
* OC20 / OC22: published already split by directory; every record is ``train``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from openjmp.errors import DataError
from openjmp.io.paths import atomic_write_bytes

__all__ = [
    "MD22_TRAIN_SIZES",
    "Splits",
    "ani1x_split",
    "fixed_parts",
    "fraction_split",
    "group_split",
    "kfold_ids",
    "load_splits",
    "make_splits",
    "matbench_split",
    "md22_split",
    "qm9_split",
    "rmd17_official_split",
    "rmd17_split",
    "save_splits",
    "shuffled",
]

Splits = dict[str, dict[str, np.ndarray]]
"""split name -> part name ("train", "val", "test") -> (k,) int64 record positions."""

MD22_TRAIN_SIZES: dict[str, int] = {
    "Ac-Ala3-NHMe": 6000,
    "DHA": 8000,
    "stachyose": 8000,
    "AT-AT": 3000,
    "AT-AT-CG-CG": 2000,
    "buckyball-catcher": 600,
    "double-walled_nanotube": 800,
}
"""Training frames per MD22 molecule (the MD22 paper's sizes, as JMP uses)."""

MATBENCH_FOLD_SEED = 18012019


def shuffled(n: int, seed: int = 42) -> np.ndarray:
    """``arange(n)`` shuffled by ``np.random.RandomState(seed)``, exactly as the authors do."""
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    return idx


def _cut(order: np.ndarray, sizes: Sequence[tuple[str, int]]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for name, size in sizes:
        out[name] = order[start : start + size].astype(np.int64)
        start += size
    return out


def _need(n: int, needed: int, what: str) -> None:
    if n < needed:
        raise DataError(
            None,
            None,
            f"{what} needs at least {needed} records, the data has {n}; give smaller part sizes "
            "(split options, e.g. --split-option val=5) or use --dataset user (seeded 80/10/10)",
        )


def rmd17_split(
    n: int, *, seed: int = 42, train: int = 950, val: int = 50
) -> dict[str, np.ndarray]:
    """JMP's rMD17 split: shuffled, first ``train`` train, next ``val`` val, the rest test."""
    _need(n, train + val, "the rMD17 split")
    return _cut(shuffled(n, seed), [("train", train), ("val", val), ("test", n - train - val)])


def rmd17_official_split(split_dir: str | Path, k: int) -> dict[str, np.ndarray]:
    """rMD17's own split ``k`` (1..5): ``index_train_0k.csv`` / ``index_test_0k.csv``, one index
    a line (the field's standard 1,000 train frames; JMP does not use these)."""
    out = {}
    for part in ("train", "test"):
        f = Path(split_dir) / f"index_{part}_{int(k):02d}.csv"
        try:
            out[part] = np.loadtxt(f, dtype=np.int64, ndmin=1)
        except (OSError, ValueError) as exc:
            raise DataError(f, None, f"unreadable rMD17 split file ({exc})") from None
    return out


def md22_split(n: int, train_size: int, *, seed: int = 42, val_fraction: float = 0.05):
    """JMP's MD22 split: ``val = int(val_fraction * train_size)`` carved out of ``train_size``."""
    _need(n, train_size, "the MD22 split")
    val = int(train_size * val_fraction)
    sizes = [("train", train_size - val), ("val", val), ("test", n - train_size)]
    return _cut(shuffled(n, seed), sizes)


def qm9_split(n: int, *, seed: int = 42, val: int = 10_000, test: int = 10_000):
    """JMP's QM9 split: val ``val``, test ``test``, train the rest, from one shuffle."""
    _need(n, val + test, "the QM9 split")
    return _cut(shuffled(n, seed), [("train", n - val - test), ("val", val), ("test", test)])


def fraction_split(n: int, *, seed: int = 42, train: float = 0.8, test: float = 0.1):
    """train ``int(train n)``, test ``int(test n)``, val the rest; order [train | val | test]."""
    n_train, n_test = int(n * train), int(n * test)
    return _cut(
        shuffled(n, seed), [("train", n_train), ("val", n - n_train - n_test), ("test", n_test)]
    )


def group_split(ids: Sequence[Any], groups: Sequence[str] = ("train", "val", "test")):
    """Parts named by the first ``/``-separated field of each id (Transition-1x's groups)."""
    heads = np.array([str(i).split("/", 1)[0] for i in ids])
    out = {g: np.flatnonzero(heads == g).astype(np.int64) for g in groups}
    unknown = sorted(str(h) for h in set(heads.tolist()) - set(groups))
    if unknown:
        raise DataError(
            None, None, f"records from groups {unknown} belong to no part {list(groups)}"
        )
    return out


def ani1x_split(
    ids: Sequence[Any],
    natoms: np.ndarray,
    *,
    seed: int = 42,
    held_out: int | None = None,
    min_atoms: int = 4,
) -> dict[str, np.ndarray]:
    """ANI-1x by formula (first field of ``"<formula>/<conformer>"`` ids); see module doc."""
    formulas = np.array([str(i).split("/", 1)[0] for i in ids])
    natoms = np.asarray(natoms)
    names, inverse = np.unique(formulas, return_inverse=True)
    first = np.zeros(len(names), np.int64)
    first[inverse[::-1]] = np.arange(len(formulas))[::-1]
    keep = natoms[first] >= min_atoms
    counts = np.bincount(inverse, minlength=len(names))
    eligible = np.flatnonzero(keep)
    total = int(counts[eligible].sum())
    target = int(0.1 * total) if held_out is None else int(held_out)
    order = eligible[shuffled(len(eligible), seed)]
    part_of = np.full(len(names), -1)  # -1 dropped, 0 train, 1 val, 2 test
    part_of[order] = 0
    pos = 0
    for part in (2, 1):  # test first, then val, as the authors' first held-out set
        taken = 0
        while taken < target and pos < len(order):
            part_of[order[pos]] = part
            taken += counts[order[pos]]
            pos += 1
    per_record = part_of[inverse]
    return {
        "train": np.flatnonzero(per_record == 0),
        "val": np.flatnonzero(per_record == 1),
        "test": np.flatnonzero(per_record == 2),
    }


def kfold_ids(
    ids: Sequence[str], *, labels: np.ndarray | None = None, seed: int = MATBENCH_FOLD_SEED
):
    """MatBench's folds when no folds file is at hand: KFold(5, shuffle, 18012019), stratified
    for classification (boolean ``labels``)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    ids = list(ids)
    if len(ids) < 5:
        raise DataError(
            None, None, f"MatBench's 5 folds need at least 5 records, the data has {len(ids)}"
        )
    if labels is not None and np.asarray(labels).dtype == np.bool_:
        gen = StratifiedKFold(5, shuffle=True, random_state=seed).split(ids, labels)
    else:
        gen = KFold(5, shuffle=True, random_state=seed).split(ids)
    return {
        f"fold_{k}": {"train": [ids[i] for i in tr], "test": [ids[i] for i in te]}
        for k, (tr, te) in enumerate(gen)
    }


def matbench_split(
    ids: Sequence[Any],
    folds: Mapping[str, Mapping[str, Sequence[str]]],
    *,
    seed: int = 42,
    train_fraction: float = 0.9,
) -> Splits:
    """Per fold: the fold's train ids shuffled into train/val (90/10), test = its test ids."""
    where = {str(i): k for k, i in enumerate(ids)}
    out: Splits = {}
    for name, fold in folds.items():
        missing = [i for part in ("train", "test") for i in fold[part] if i not in where]
        if missing:
            raise DataError(
                None, name, f"fold lists {len(missing)} ids not in the data, e.g. {missing[:3]}"
            )
        train_val = np.array([where[i] for i in fold["train"]], dtype=np.int64)
        order = shuffled(len(train_val), seed)
        n_train = int(len(train_val) * train_fraction)
        out[name] = {
            "train": train_val[order[:n_train]],
            "val": train_val[order[n_train:]],
            "test": np.array([where[i] for i in fold["test"]], dtype=np.int64),
        }
    return out


def make_splits(
    dataset: str,
    ids: Sequence[Any],
    natoms: np.ndarray,
    *,
    seed: int = 42,
    source: str | Path | None = None,
    labels: np.ndarray | None = None,
    **options: Any,
) -> Splits:
    """The authors' split set for ``dataset`` (a name as readers set ``record.dataset``).

    ``source`` is the original file (MD22's molecule name, MatBench's folds file beside it);
    ``labels`` the MatBench target (stratified folds for booleans when generating folds);
    ``options`` go to the split function (e.g. ``train=``/``val=`` for small rMD17 files,
    ``train_size=`` for MD22, ``held_out=`` for ANI-1x, ``folds=`` a MatBench folds file).
    """
    n = len(ids)
    family = "matbench" if dataset.startswith("matbench") else dataset
    if family == "rmd17":
        if "official" in options:  # rmd17/splits/ beside rmd17/npz_data/
            split_dir = (
                Path(source).resolve().parent.parent / "splits" if source else Path("splits")
            )
            return {"default": rmd17_official_split(split_dir, options["official"])}
        return {"default": rmd17_split(n, seed=seed, **options)}
    if family == "md22":
        if "train_size" not in options:
            from openjmp.io.md_npz import molecule_name

            mol = molecule_name(source) if source is not None else ""
            if mol not in MD22_TRAIN_SIZES:
                raise DataError(source, None, f"unknown MD22 molecule {mol!r}; pass train_size")
            options["train_size"] = MD22_TRAIN_SIZES[mol]
        return {"default": md22_split(n, seed=seed, **options)}
    if family == "qm9":
        return {"default": qm9_split(n, seed=seed, **options)}
    if family in ("spice", "qmof", "user"):
        return {"default": fraction_split(n, seed=seed, **options)}
    if family == "transition1x":
        return {"default": group_split(ids)}
    if family == "ani1x":
        return {"default": ani1x_split(ids, natoms, seed=seed, **options)}
    if family in ("oc20", "oc22"):
        return {"default": {"train": np.arange(n, dtype=np.int64)}}
    if family == "matbench":
        return {
            **matbench_split(ids, _matbench_folds(dataset, ids, source, labels, options), seed=seed)
        }
    return {"default": fraction_split(n, seed=seed, **options)}


def fixed_parts(dataset: str, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """Parts of ``dataset``'s split that a benchmark fixes (not to be changed after the split):
    MatBench's official test folds, Transition-1x's own groups, rMD17's official index files."""
    family = "matbench" if dataset.startswith("matbench") else dataset
    if family == "matbench":
        return ("test",)
    if family == "transition1x":
        return ("train", "val", "test")
    if family == "rmd17" and "official" in (options or {}):
        return ("train", "test")
    return ()


def _matbench_folds(task, ids, source, labels, options):
    from openjmp.io.matbench import VALIDATION_FILE, read_folds

    folds_file = options.pop("folds", None)
    if folds_file is None and source is not None:
        cand = Path(source).parent / VALIDATION_FILE
        folds_file = cand if cand.is_file() else None
    if folds_file is not None:
        return read_folds(folds_file, task)
    return kfold_ids([str(i) for i in ids], labels=labels)


def save_splits(path: str | Path, splits: Splits) -> None:
    """Write ``splits`` to an ``.npz`` (keys ``"<split>/<part>"``) atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        **{f"{name}/{part}": idx for name, parts in splits.items() for part, idx in parts.items()},
    )
    atomic_write_bytes(path, buf.getvalue())


def load_splits(path: str | Path) -> Splits:
    """Read a split set written by :func:`save_splits`."""
    out: Splits = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                name, _, part = key.rpartition("/")
                out.setdefault(name, {})[part] = npz[key]
    except (OSError, ValueError) as exc:
        raise DataError(path, None, f"unreadable splits file ({exc})") from None
    return out
