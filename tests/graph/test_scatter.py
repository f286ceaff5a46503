"""Segment reductions against Python loops; empty segments give 0; gradients flow to ``src``."""

from __future__ import annotations

import torch

from openjmp.graph.ragged import gather_segments, inner_index, ragged_arange
from openjmp.graph.scatter import segment_count, segment_max, segment_mean, segment_sum


def _data():
    g = torch.Generator().manual_seed(0)
    src = torch.randn(20, 4, dtype=torch.float64, generator=g)
    index = torch.randint(0, 6, (20,), generator=g)
    index[index == 3] = 4  # segment 3 empty
    return src, index


def test_reductions_match_loops() -> None:
    src, index = _data()
    s, m, x = segment_sum(src, index, 7), segment_mean(src, index, 7), segment_max(src, index, 7)
    assert s.shape == m.shape == x.shape == (7, 4)
    for k in range(7):
        rows = src[index == k]
        if len(rows) == 0:
            assert not s[k].any() and not m[k].any() and not x[k].any()
            continue
        assert torch.allclose(s[k], rows.sum(0))
        assert torch.allclose(m[k], rows.mean(0))
        assert torch.equal(x[k], rows.max(0).values)
    assert segment_count(index, 7).tolist() == [int((index == k).sum()) for k in range(7)]
    vec = torch.arange(5.0)
    assert segment_sum(vec, torch.tensor([1, 1, 0, 2, 1]), 3).tolist() == [2.0, 5.0, 3.0]


def test_gradients() -> None:
    src, index = _data()
    src.requires_grad_(True)
    (segment_sum(src, index, 7).sum() + segment_mean(src, index, 7).sum()).backward()
    counts = torch.bincount(index, minlength=7).double()
    assert torch.allclose(src.grad, (1 + 1 / counts[index])[:, None].expand_as(src))
    src.grad = None
    segment_max(src, index, 7).sum().backward()
    assert torch.equal(
        src.grad.sum(0), torch.full((4,), float(len(index.unique())), dtype=torch.float64)
    )


def test_ragged_helpers() -> None:
    assert ragged_arange(torch.tensor([1, 4, 0, 2])).tolist() == [0, 0, 1, 2, 3, 0, 1]
    assert inner_index(torch.tensor([0, 0, 0, 1, 1, 1, 1, 3, 3]), 4).tolist() == [
        0,
        1,
        2,
        0,
        1,
        2,
        3,
        0,
        1,
    ]
    owner, item = gather_segments(torch.tensor([5, 0, 2]), torch.tensor([2, 0, 3]))
    assert owner.tolist() == [0, 0, 2, 2, 2] and item.tolist() == [5, 6, 2, 3, 4]


def test_segment_sum_keeps_only_the_index_and_has_second_derivatives() -> None:
    """Autograd's own index_add keeps the whole source for backward; segment_sum keeps the
    index alone, and its gradient is differentiable again (gradient-force training)."""
    src, index = _data()
    src.requires_grad_(True)
    kept: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        segment_sum(src * 1.0, index, 7)
    assert kept == [tuple(index.shape)]
    assert torch.autograd.gradcheck(lambda s: segment_sum(s, index, 7), (src,))
    assert torch.autograd.gradgradcheck(lambda s: segment_sum(s.pow(2), index, 7), (src,))
