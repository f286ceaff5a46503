"""Basis embeddings and the "efficient bilinear" layer of GemNet-OC (authors' parameter layout).

``BasisEmbedding.weight`` is stored (num_radial, num_spherical, emb) but, as in the authors'
forward pass, read as (num_radial, emb * num_spherical) so that
rad_W[e, i, s] = sum_r rad[e, r] * W.view(R, emb, S)[r, i, s]  (erratum 1 of the design notes).
The bilinear layer flattens its (interm, in) input with index ``interm_idx * in + in_idx``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from openjmp.model.gemnet_oc import fused
from openjmp.model.gemnet_oc.init import he_orthogonal_
from openjmp.model.gemnet_oc.layers import Dense


class BasisEmbedding(nn.Module):
    """Projection of a raw radial basis, optionally paired with an angular basis.

    Without ``num_spherical``: weight (emb_size_interm, num_radial), (E, R) -> (E, emb).
    With it: weight (num_radial, num_spherical, emb_size_interm), (E, R) -> (E, emb, S).
    """

    def __init__(
        self, num_radial: int, emb_size_interm: int, num_spherical: int | None = None
    ) -> None:
        super().__init__()
        self.num_radial = num_radial
        self.num_spherical = num_spherical
        shape = (
            (emb_size_interm, num_radial)
            if num_spherical is None
            else (num_radial, num_spherical, emb_size_interm)
        )
        self.weight = nn.Parameter(torch.empty(shape))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        he_orthogonal_(self.weight)

    def forward(self, rad: Tensor) -> Tensor:
        if self.num_spherical is None:
            return fused.dense(rad, self.weight, None) if fused.active() else rad @ self.weight.T
        w = self.weight.reshape(self.weight.shape[0], -1)
        y = fused.dense(rad, w.t(), None) if fused.active() else rad @ w
        return y.reshape(rad.shape[0], y.shape[1] // self.num_spherical, self.num_spherical)


class EfficientInteractionBilinear(nn.Module):
    """Dense(in * interm -> out) applied to an aggregated (n, interm, in) tensor."""

    def __init__(self, emb_size_in: int, emb_size_interm: int, emb_size_out: int) -> None:
        super().__init__()
        self.emb_size_in = emb_size_in
        self.emb_size_interm = emb_size_interm
        self.emb_size_out = emb_size_out
        self.bilinear = Dense(emb_size_in * emb_size_interm, emb_size_out, activation=None)

    def forward(self, agg: Tensor) -> Tensor:
        """(n, interm, in) -> (n, out)."""
        return self.bilinear(agg.reshape(agg.shape[0], -1))
