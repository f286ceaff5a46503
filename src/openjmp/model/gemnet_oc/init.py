"""He-orthogonal initialisation, the authors' scheme for GemNet-OC weights when trained from scratch."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def he_orthogonal_(weight: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Fill ``weight`` in place: a random (semi-)orthogonal matrix, standardised to zero mean
    and unit variance over fan-in, then scaled by ``fan_in ** -0.5``.

    2-D weights (out, in) have fan-in ``in``; 3-D basis weights (num_radial, num_spherical, emb)
    have fan-in ``num_radial * num_spherical`` and are standardised over the first two axes.
    """
    if weight.is_meta:
        return weight
    w = torch.empty_like(weight)
    torch.nn.init.orthogonal_(w, generator=generator)  # 3-D: orthogonal over (dim 0, rest)
    if weight.dim() == 3:
        fan_in = weight.shape[0] * weight.shape[1]
        dims: tuple[int, ...] | int = (0, 1)
    else:
        fan_in = weight.shape[1]
        dims = 1
    var, mean = torch.var_mean(w, dim=dims, unbiased=True, keepdim=True)
    w = (w - mean) / (var + 1e-6) ** 0.5
    weight.copy_(w * fan_in**-0.5)
    return weight
