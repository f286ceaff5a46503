"""He-orthogonal initialisation: zero mean and variance 1/fan_in, exact by construction up to the
1e-6 added to the variance before standardising (relative effect ~1e-3 for these sizes)."""

from __future__ import annotations

import torch

from openjmp.model.gemnet_oc.init import he_orthogonal_


def test_two_dimensional() -> None:
    w = he_orthogonal_(torch.empty(64, 32, dtype=torch.float64))
    torch.testing.assert_close(w.mean(1), torch.zeros(64, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        w.var(1), torch.full((64,), 1 / 32, dtype=torch.float64), atol=0, rtol=1e-3
    )


def test_basis_weight_fan_in_is_radial_times_spherical() -> None:
    w = he_orthogonal_(torch.empty(16, 7, 5, dtype=torch.float64))
    torch.testing.assert_close(
        w.var((0, 1)), torch.full((5,), 1 / (16 * 7), dtype=torch.float64), atol=0, rtol=1e-3
    )


def test_meta_tensors_are_left_alone() -> None:
    assert he_orthogonal_(torch.empty(3, 3, device="meta")).is_meta
