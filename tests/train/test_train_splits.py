"""`split_indices`: the SplitConfig rule (seeded shuffle, [train | val | test], rest, groups)."""

from __future__ import annotations

import numpy as np
import pytest

from openjmp.config.common import SplitConfig
from openjmp.errors import ConfigError
from openjmp.train.splits import split_indices


def test_fractions_cut_one_seeded_shuffle_in_order() -> None:
    ids = list(range(20))
    parts = split_indices(SplitConfig(fractions=(0.5, None, 0.25), seed=7), ids)
    order = np.arange(20)
    np.random.RandomState(7).shuffle(order)  # the authors' shuffle
    assert parts["train"].tolist() == order[:10].tolist()
    assert parts["val"].tolist() == order[10:15].tolist()
    assert parts["test"].tolist() == order[15:].tolist()


def test_counts_leave_the_rest_out_and_too_many_is_an_error() -> None:
    parts = split_indices(SplitConfig(counts=(3, 2, 1)), list(range(10)))
    assert [len(parts[p]) for p in ("train", "val", "test")] == [3, 2, 1]
    assert len(set(np.concatenate(list(parts.values())).tolist())) == 6
    with pytest.raises(ConfigError, match="asks for 12 records but there are 10"):
        split_indices(SplitConfig(counts=(10, 2, None)), list(range(10)), source="f.h5")


def test_group_by_formula_keeps_formulas_whole() -> None:
    ids = [f"F{g}/{k}" for g in range(12) for k in range(g % 4 + 1)]
    parts = split_indices(SplitConfig(fractions=(None, 0.2, 0.2), seed=1, group_by="formula"), ids)
    owner: dict[str, str] = {}
    for part, idx in parts.items():
        for i in idx:
            assert owner.setdefault(ids[i].split("/")[0], part) == part
    n = len(ids)
    assert len(parts["val"]) >= int(0.2 * n) and len(parts["test"]) >= int(0.2 * n)
    assert sum(len(v) for v in parts.values()) == n  # train took the rest
    again = split_indices(SplitConfig(fractions=(None, 0.2, 0.2), seed=1, group_by="formula"), ids)
    assert all(np.array_equal(parts[p], again[p]) for p in parts)
