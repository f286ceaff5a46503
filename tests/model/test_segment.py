"""SegmentPlan aggregation against a brute-force loop, including empty rows, unsorted output
indices, chunk boundaries and gradients (float64, exact up to summation order: 1e-12)."""

from __future__ import annotations

import torch

from openjmp.model.gemnet_oc.segment import SegmentPlan, gather_outer_sum


def brute(y, x, idx_x, idx_out, n_out):  # noqa: ANN001, ANN201
    out = torch.zeros(n_out, y.shape[1], x.shape[1], dtype=torch.float64)
    for p in range(y.shape[0]):
        xi = x[p] if idx_x is None else x[idx_x[p]]
        out[idx_out[p]] += torch.outer(y[p], xi)
    return out


def test_matches_brute_force_with_tiny_chunks() -> None:
    g = torch.Generator().manual_seed(0)
    n_out, m, p = 9, 6, 40
    idx_out = torch.randint(0, n_out - 2, (p,), generator=g)  # last two rows get no pair
    idx_x = torch.randint(0, m, (p,), generator=g)
    y = torch.randn(p, 3, dtype=torch.float64, generator=g)
    x = torch.randn(m, 4, dtype=torch.float64, generator=g)
    plan = SegmentPlan.build(idx_out, n_out, idx_x, chunk_pairs=7)  # unsorted, many chunks
    assert len(plan.rows) > 2
    got = plan.aggregate(plan.pad_basis(y), x)
    torch.testing.assert_close(got, brute(y, x, idx_x, idx_out, n_out), rtol=0, atol=1e-12)
    assert torch.all(got[-2:] == 0)


def test_identity_input_rows_and_no_pairs() -> None:
    y = torch.randn(5, 2, dtype=torch.float64)
    x = torch.randn(5, 3, dtype=torch.float64)
    idx_out = torch.tensor([0, 0, 2, 2, 2])
    torch.testing.assert_close(
        gather_outer_sum(y, x, None, idx_out, 4), brute(y, x, None, idx_out, 4)
    )
    empty = gather_outer_sum(y[:0], x, torch.zeros(0, dtype=torch.long), idx_out[:0], 3)
    assert empty.shape == (3, 2, 3) and torch.all(empty == 0)


def test_gradients_flow_to_basis_and_features() -> None:
    g = torch.Generator().manual_seed(1)
    idx_out = torch.sort(torch.randint(0, 4, (12,), generator=g)).values
    idx_x = torch.randint(0, 5, (12,), generator=g)
    y = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: gather_outer_sum(a, b, idx_x, idx_out, 4), (y, x))


def test_second_derivatives_for_gradient_force_training() -> None:
    g = torch.Generator().manual_seed(2)
    idx_out = torch.randint(0, 3, (9,), generator=g)
    idx_x = torch.randint(0, 4, (9,), generator=g)
    y = torch.randn(9, 2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(
        lambda a, b: gather_outer_sum(a, b, idx_x, idx_out, 3), (y, x)
    )
