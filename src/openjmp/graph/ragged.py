"""Index helpers for ragged (segmented) integer arrays, vectorised in torch.

Used by graph construction and the GemNet-OC index builders: all inputs are 1-D int64.
"""

from __future__ import annotations

import torch
from torch import Tensor


def exclusive_cumsum(counts: Tensor) -> Tensor:
    """(n,) -> (n,) start offset of every segment: ``[0, c0, c0+c1, ...]`` (last total dropped)."""
    return torch.cumsum(counts, 0) - counts


def ragged_arange(sizes: Tensor, total: int | None = None) -> Tensor:
    """Concatenated ranges: sizes [1, 4, 0, 2] -> [0, 0, 1, 2, 3, 0, 1]. (sum(sizes),) int64.

    ``total`` (= ``sizes.sum()``) may be given to save a computation.
    """
    if total is None:
        total = int(sizes.sum())
    rep = torch.repeat_interleave(exclusive_cumsum(sizes), sizes, output_size=total)
    return torch.arange(total, device=sizes.device, dtype=torch.long) - rep


def inner_index(sorted_index: Tensor, dim_size: int) -> Tensor:
    """Position of every element within its run of equal values (``sorted_index`` must be sorted).

    [0 0 0 1 1 1 1 2 2] -> [0 1 2 0 1 2 3 0 1]. The authors' ``get_inner_idx``.
    """
    counts = torch.bincount(sorted_index, minlength=dim_size)
    return ragged_arange(counts, total=int(sorted_index.shape[0]))


def segment_ranges(
    first: Tensor, sizes: Tensor, total: int | None = None, skip: Tensor | None = None
) -> Tensor:
    """Concatenated runs of consecutive integers, one run per segment.

    Segment ``i`` lists ``sizes[i]`` values counting up from ``first[i]``; with ``skip``, the
    value ``first[i] + skip[i]`` is left out (the run then counts ``sizes[i] + 1`` values minus
    that one; ``skip[i] >= sizes[i]`` skips nothing). Built as one cumulative sum of unit steps
    with per-segment corrections, so the cost is two passes over the (sum(sizes),) output.
    """
    if total is None:
        total = int(sizes.sum())
    pos = exclusive_cumsum(sizes)
    delta = first - pos  # value = position + delta inside segment i (before skips)
    step = torch.ones(total + 1, dtype=torch.long, device=sizes.device)
    step[0] = 0
    jump = delta.clone()
    jump[1:] -= delta[:-1]
    if skip is None:
        step.index_add_(0, pos, jump)
    else:
        inside = skip < sizes
        at = torch.cat([pos, (pos + skip)[inside], (pos + sizes)[inside]])
        one = torch.ones(int(inside.sum()), dtype=torch.long, device=sizes.device)
        step.index_add_(0, at, torch.cat([jump, one, -one]))
    return torch.cumsum(step[:-1], 0)


def gather_segments(
    starts: Tensor, sizes: Tensor, skip: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """For segment ``i`` of ``sizes[i]`` consecutive items beginning at ``starts[i]``, list them all.

    Returns ``(owner, item)``, both (sum(sizes),) int64: ``owner`` is the segment number ``i``
    (non-decreasing), ``item`` runs over ``starts[i], ..., starts[i] + sizes[i] - 1`` (leaving
    out ``starts[i] + skip[i]`` if ``skip`` is given, see `segment_ranges`).
    """
    total = int(sizes.sum())
    owner = torch.repeat_interleave(
        torch.arange(sizes.shape[0], device=sizes.device), sizes, output_size=total
    )
    return owner, segment_ranges(starts, sizes, total, skip)
