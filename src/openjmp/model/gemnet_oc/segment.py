"""Gather-multiply-aggregate, the one sparse primitive of the GemNet-OC interactions.

    out[o, s, d] = sum over p with idx_out[p] == o of  y[p, s] * x[idx_x[p], d]

The authors evaluate this by scattering the gathered rows into a zero-padded
(outputs, max neighbours, features) tensor and multiplying with a padded basis; here it is a
chunked ``index_add_`` of outer products, which never materialises the padded tensors nor the
full (P, S, D) product. Plain differentiable torch ops, so gradients of any order flow to
``y`` and ``x``; autograd keeps only index slices and views of ``y`` (and the gathered rows of
``x`` when ``y`` needs a gradient).
"""

from __future__ import annotations

import torch
from torch import Tensor

# Elements of one (rows, S, D) product chunk: 2^21 (8 MiB in float32) stays cache friendly.
CHUNK_ELEMENTS = 1 << 21


def gather_outer_sum(
    y: Tensor,
    x: Tensor,
    idx_x: Tensor | None,
    idx_out: Tensor,
    n_out: int,
    *,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> Tensor:
    """Sum of outer products ``y[p] ⊗ x[idx_x[p]]`` into rows ``idx_out[p]``.

    Args:
        y: (P, S) per-pair weights (e.g. an angular basis).
        x: (M, D) features; rows are picked by ``idx_x`` (or used in order if it is None, M = P).
        idx_x: (P,) int64 rows of ``x``, or None.
        idx_out: (P,) int64 output rows in [0, n_out).
        n_out: number of output rows.

    Returns:
        (n_out, S, D) in the promoted dtype of ``y`` and ``x``.
    """
    num_pairs, s = y.shape
    d = x.shape[1]
    out = torch.zeros(n_out, s, d, dtype=torch.promote_types(y.dtype, x.dtype), device=x.device)
    if num_pairs == 0:
        return out
    step = max(1, chunk_elements // max(1, s * d))
    for start in range(0, num_pairs, step):
        stop = min(start + step, num_pairs)
        xs = x[start:stop] if idx_x is None else x.index_select(0, idx_x[start:stop])
        prod = y[start:stop, :, None] * xs[:, None, :]
        out.index_add_(0, idx_out[start:stop], prod)
    return out
