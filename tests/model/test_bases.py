"""Basis functions against independent formulas (scipy), and the erratum-1 weight layout.

Tolerances: float64 evaluations of the same functions by different formulas agree to ~1e-14.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import eval_legendre

from openjmp.model.gemnet_oc.efficient import BasisEmbedding
from openjmp.model.gemnet_oc.radial import GaussianBasis, PolynomialEnvelope, RadialBasis
from openjmp.model.gemnet_oc.spherical import legendre_ylm0


def test_circular_basis_is_normalised_legendre() -> None:
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    got = legendre_ylm0(x, 7).numpy()
    for ell in range(7):
        ref = math.sqrt((2 * ell + 1) / (4 * math.pi)) * eval_legendre(ell, x.numpy())
        np.testing.assert_allclose(got[:, ell], ref, rtol=0, atol=1e-14)


def test_envelope_polynomial_p5() -> None:
    env = PolynomialEnvelope(5)
    x = torch.tensor([0.0, 0.3, 0.999999, 1.0, 1.5], dtype=torch.float64)
    ref = 1 - 21 * x**5 + 35 * x**6 - 15 * x**7
    ref[x >= 1] = 0
    torch.testing.assert_close(env(x), ref, rtol=0, atol=1e-14)
    # u'(x) = -105 x^4 (1 - x)^2: value and first two derivatives vanish at the cutoff
    x1 = torch.tensor([0.5, 1.0 - 1e-4], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(env(x1).sum(), x1)
    x1 = x1.detach()
    torch.testing.assert_close(
        g, -105 * x1**4 * (1 - x1) ** 2, rtol=1e-10, atol=1e-13
    )  # cancellation near 1


def test_radial_basis_uses_absolute_12A_cutoff() -> None:
    rb = RadialBasis(128, 12.0).double()
    assert rb.rbf.temps[0].item() == pytest.approx(0.5 / (1 / 127) ** 2)  # 8064.5
    d = torch.tensor([0.0, 6.0, 11.99, 12.0, 13.0], dtype=torch.float64)
    out = rb(d)
    assert out.shape == (5, 128)
    assert torch.all(out[3:] == 0) and torch.all(out[:3].sum(1) > 0)
    # an 8 A graph edge is not switched off by the basis (erratum 6)
    assert rb(torch.tensor([8.0], dtype=torch.float64)).abs().max() > 1e-3


def test_gaussian_centres() -> None:
    g = GaussianBasis(0.0, 1.0, 128)
    torch.testing.assert_close(g.offset, torch.linspace(0, 1, 128))


def test_basis_embedding_reads_weight_as_radial_emb_spherical() -> None:
    """Erratum 1: W stored (R, S, emb) but used as W.view(R, emb, S)."""
    emb = BasisEmbedding(5, 3, 4).double()
    rad = torch.randn(7, 5, dtype=torch.float64)
    w = emb.weight.detach().reshape(5, 3, 4)  # the (R, emb, S) reading of the same memory
    ref = torch.einsum("er,ris->eis", rad, w)
    torch.testing.assert_close(emb(rad), ref)
    # and not the (R, S, emb) reading
    wrong = torch.einsum("er,rsi->eis", rad, emb.weight.detach())
    assert not torch.allclose(emb(rad), wrong)
