"""Radial basis of GemNet-OC as used by JMP: Gaussians on d / cutoff times a polynomial envelope.

The cutoff is the *absolute* basis cutoff (12 Å in JMP) for every graph, whatever the graph's own
cutoff: for 7-8 Å graphs the basis is therefore not zero at the graph cutoff.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PolynomialEnvelope(nn.Module):
    """u(x) = 1 + a x^p + b x^(p+1) + c x^(p+2) for x < 1, else 0; smooth to second order at 1.

    a = -(p+1)(p+2)/2, b = p(p+2), c = -p(p+1)/2.
    """

    def __init__(self, exponent: int = 5) -> None:
        super().__init__()
        self.p = int(exponent)
        self.a = -(self.p + 1) * (self.p + 2) / 2
        self.b = self.p * (self.p + 2)
        self.c = -self.p * (self.p + 1) / 2

    def forward(self, d_scaled: Tensor) -> Tensor:
        p = self.p
        env = 1 + self.a * d_scaled**p + self.b * d_scaled ** (p + 1) + self.c * d_scaled ** (p + 2)
        return torch.where(d_scaled < 1, env, torch.zeros_like(d_scaled))


class GaussianBasis(nn.Module):
    """exp(-|temps| (x - offset)^2) with ``num_gaussians`` centres evenly spaced on [start, stop].

    Buffers ``offset`` and ``temps`` (num_gaussians,) are saved in checkpoints (authors' names).
    """

    offset: Tensor
    temps: Tensor

    def __init__(self, start: float = 0.0, stop: float = 1.0, num_gaussians: int = 128) -> None:
        super().__init__()
        offset = torch.linspace(start, stop, num_gaussians)
        self.register_buffer("offset", offset)
        temp = 0.5 / ((stop - start) / (num_gaussians - 1)) ** 2
        self.register_buffer("temps", torch.full_like(offset, temp))

    def forward(self, x: Tensor) -> Tensor:
        """(E,) -> (E, num_gaussians)."""
        diff = x[:, None] - self.offset[None, :]
        return torch.exp(diff.square() * -(self.temps.abs()))


class RadialBasis(nn.Module):
    """envelope(d / cutoff) * gaussians(d / cutoff): distances (E,) Å -> (E, num_radial)."""

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.envelope = PolynomialEnvelope(envelope_exponent)
        self.rbf = GaussianBasis(0.0, 1.0, num_radial)

    def forward(self, d: Tensor) -> Tensor:
        d_scaled = d / self.cutoff
        return self.envelope(d_scaled)[:, None] * self.rbf(d_scaled)
