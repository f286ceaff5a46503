"""Segment reductions over a leading dimension, in pure torch (``index_add_`` / ``scatter_reduce_``).

``src`` is (E, ...) and ``index`` (E,) int64 with values in ``[0, dim_size)``; the result is
(dim_size, ...). ``index`` need not be sorted. Empty segments give 0 for every reduction.
All three are differentiable with respect to ``src`` (`segment_sum` to any order).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(src: Tensor, index: Tensor) -> None:
    if index.dim() != 1 or index.shape[0] != src.shape[0]:
        raise ValueError(
            f"index must be 1-D with one entry per row of src: got index {tuple(index.shape)}, "
            f"src {tuple(src.shape)}"
        )


class _SegmentSum(torch.autograd.Function):
    """``index_add_`` into zeros, keeping only ``index`` for backward: autograd's own
    ``index_add`` keeps ``src`` too (for its shape), a whole (E, ...) tensor per call (in
    GemNet-OC's edge-to-atom aggregations, 50-60 MB per interaction block at JMP-S size)."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, dim_size: int) -> Tensor:  # noqa: ANN001
        ctx.save_for_backward(index)
        return src.new_zeros((dim_size, *src.shape[1:])).index_add_(0, index, src)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple:  # noqa: ANN001
        (index,) = ctx.saved_tensors
        return grad.index_select(0, index), None, None  # differentiable: any order


def segment_sum(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Sum of the rows of ``src`` (E, ...) per segment: (dim_size, ...)."""
    _check(src, index)
    if torch.is_grad_enabled() and src.requires_grad:
        return _SegmentSum.apply(src, index, dim_size)
    return src.new_zeros((dim_size, *src.shape[1:])).index_add_(0, index, src)


def segment_count(index: Tensor, dim_size: int) -> Tensor:
    """Number of rows per segment: (dim_size,) int64."""
    return torch.bincount(index, minlength=dim_size)


def segment_mean(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Mean of the rows of ``src`` (E, ...) per segment: (dim_size, ...); empty segments give 0."""
    total = segment_sum(src, index, dim_size)
    count = segment_count(index, dim_size).clamp(min=1).to(total.dtype)
    return total / count.view(-1, *([1] * (src.dim() - 1)))


def segment_max(src: Tensor, index: Tensor, dim_size: int) -> Tensor:
    """Element-wise maximum of the rows of ``src`` (E, ...) per segment: (dim_size, ...); empty give 0.

    The gradient flows to the maximal entries (split evenly between equal maxima).
    """
    _check(src, index)
    out = src.new_zeros((dim_size, *src.shape[1:]))
    idx = index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)
    return out.scatter_reduce(0, idx, src, reduce="amax", include_self=False)
