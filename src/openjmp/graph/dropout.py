"""Edge dropout on the a2a (interaction) graph, pre-training's training split only.

The authors call ``torch_geometric.utils.dropout_edge(edge_index, p)``: every directed edge is
kept independently when a uniform draw is ``>= p`` (so the two directions of a pair are dropped
independently). The same rule here, drawn from an explicit ``torch.Generator`` so a seed makes
it reproducible.
"""

from __future__ import annotations

import torch
from torch import Tensor


def dropout_mask(num_edges: int, p: float, generator: torch.Generator | None = None) -> Tensor:
    """(num_edges,) bool keep-mask: each entry True with probability ``1 - p``.

    ``generator`` (CPU) makes the draw deterministic; None uses torch's global generator.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"edge dropout probability must be in [0, 1), got {p}")
    if p == 0.0:
        return torch.ones(num_edges, dtype=torch.bool)
    return torch.rand(num_edges, generator=generator, dtype=torch.float64) >= p
