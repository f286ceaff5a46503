"""Angular bases of GemNet-OC as used by JMP.

* circular basis: real spherical harmonics with m = 0, Y_l^0(cos φ) = sqrt((2l+1)/4π) P_l(cos φ),
  l = 0..num_spherical-1 (Legendre polynomials by their three-term recurrence);
* spherical basis ``legendre_outer``: the outer product Y^0(cos φ_cab) ⊗ Y^0(cos θ_cabd), flattened
  with index l_φ * num_spherical + l_θ. GemNet-OC never materialises it here: the quadruplet
  interaction consumes the two factors separately (see ``interactions.py``).

The layers also own the radial basis they are paired with, because the checkpoints store its
buffers under ``<layer>.radial_basis.rbf.*``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from openjmp.model.gemnet_oc.radial import RadialBasis


def legendre_ylm0(cos: Tensor, num_spherical: int) -> Tensor:
    """Y_l^0 for l = 0..num_spherical-1: (K,) cosines -> (K, num_spherical)."""
    p_prev = torch.ones_like(cos)
    out = [p_prev]
    if num_spherical > 1:
        p = cos
        out.append(p)
        for ell in range(2, num_spherical):
            p, p_prev = ((2 * ell - 1) * cos * p - (ell - 1) * p_prev) / ell, p
            out.append(p)
    norms = [math.sqrt((2 * ell + 1) / (4 * math.pi)) for ell in range(num_spherical)]
    return torch.stack([n * q for n, q in zip(norms, out)], dim=1)


class CircularBasisLayer(nn.Module):
    """Radial basis of the edge distances and circular basis of the triplet angles."""

    def __init__(self, num_spherical: int, radial_basis: RadialBasis) -> None:
        super().__init__()
        self.num_spherical = num_spherical
        self.radial_basis = radial_basis

    def forward(self, d: Tensor, cos: Tensor, rad: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """d (E,) Å, cos (T,) -> (E, num_radial), (T, num_spherical); ``rad``: this layer's
        radial basis of ``d`` when already computed (by a layer sharing the radial basis)."""
        rad = self.radial_basis(d) if rad is None else rad
        return rad, legendre_ylm0(cos, self.num_spherical)


class SphericalBasisLayer(nn.Module):
    """Radial basis of the edge distances and the two factors of the ``legendre_outer`` basis."""

    def __init__(self, num_spherical: int, radial_basis: RadialBasis) -> None:
        super().__init__()
        self.num_spherical = num_spherical
        self.radial_basis = radial_basis

    def forward(
        self, d: Tensor, cos_phi: Tensor, theta: Tensor, rad: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """d (E,) Å, cos φ_cab (T_out,), dihedral θ_cabd (Q,) -> (E, R), (T_out, S), (Q, S);
        ``rad`` as in `CircularBasisLayer.forward`."""
        return (
            self.radial_basis(d) if rad is None else rad,
            legendre_ylm0(cos_phi, self.num_spherical),
            legendre_ylm0(torch.cos(theta), self.num_spherical),
        )
