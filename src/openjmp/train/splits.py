"""A `SplitConfig` (counts or fractions, optional grouping) -> train / val / test record positions.

The config's rule, written once here so pre-training and fine-tuning cut sources the same way:

* Records are shuffled with ``np.random.RandomState(seed).shuffle(np.arange(n))`` (the authors'
  shuffle, `openjmp.data.splits.shuffled`) and cut into consecutive parts ``[train | val | test]``.
* Sizes are ``counts`` or ``fractions`` (``int(f * n)``, rounding down as the authors' SPICE /
  QMOF / MatBench splits); one entry may be None, meaning "the rest".
* ``group_by: formula`` keeps every group (the first ``/``-separated field of each record's
  index, e.g. ANI-1x ``"C2H6O/17"``) inside one part. Groups are shuffled by the seed and handed
  out whole, test first, then val, then train (as the authors' first ANI-1x held-out set), each
  part taking groups until it holds at least its size; the part given as None takes what is left.
* With every size given, records beyond their sum are left out.

Positions index the source's records in reading order (int64, in the shuffled order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from openjmp.config.common import SplitConfig
from openjmp.data.splits import shuffled
from openjmp.errors import ConfigError

PARTS: tuple[str, str, str] = ("train", "val", "test")


def part_sizes(split: SplitConfig, n: int) -> list[int | None]:
    """Requested records per part (train, val, test); None for "the rest"."""
    if split.counts is not None:
        sizes: list[int | None] = [None if c is None else int(c) for c in split.counts]
    else:
        assert split.fractions is not None  # SplitConfig guarantees one of them
        sizes = [None if f is None else int(f * n) for f in split.fractions]
    return sizes


def split_indices(
    split: SplitConfig, ids: Sequence[Any], *, source: object = None
) -> dict[str, np.ndarray]:
    """{"train", "val", "test"}: (k,) int64 record positions for ``split`` over records ``ids``.

    Raises ConfigError (naming ``source``) when the counts ask for more records than there are.
    """
    n = len(ids)
    sizes = part_sizes(split, n)
    fixed = sum(s for s in sizes if s is not None)
    if fixed > n:
        raise ConfigError(f"{source}: the split asks for {fixed} records but there are {n}")
    if split.group_by is None:
        return _cut(shuffled(n, split.seed), sizes)
    return _grouped(split.seed, ids, sizes)


def _cut(order: np.ndarray, sizes: list[int | None]) -> dict[str, np.ndarray]:
    n = len(order)
    rest = n - sum(s for s in sizes if s is not None)
    resolved = [rest if s is None else s for s in sizes]
    out, start = {}, 0
    for part, size in zip(PARTS, resolved):
        out[part] = order[start : start + size].astype(np.int64)
        start += size
    return out


def _grouped(seed: int, ids: Sequence[Any], sizes: list[int | None]) -> dict[str, np.ndarray]:
    keys = np.array([str(i).split("/", 1)[0] for i in ids])
    names, inverse = np.unique(keys, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(names))
    order = shuffled(len(names), seed)
    part_of = np.full(len(names), -1, dtype=np.int64)
    pos = 0
    for part in (2, 1, 0):  # test, val, train: whole groups until each holds its size
        target = sizes[part]
        if target is None:
            continue
        taken = 0
        while taken < target and pos < len(order):
            part_of[order[pos]] = part
            taken += int(counts[order[pos]])
            pos += 1
    rest = [k for k, s in enumerate(sizes) if s is None]
    if rest:
        part_of[order[pos:]] = rest[0]
    per_record = part_of[inverse]
    return {part: np.flatnonzero(per_record == k).astype(np.int64) for k, part in enumerate(PARTS)}
