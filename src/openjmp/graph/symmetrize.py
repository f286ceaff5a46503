"""Symmetrise the main graph and pair every edge with its reverse (the authors' ``symmetrize_edges``).

Rule (authors: ``models/gemnet/backbone.py symmetrize_edges``): keep the directed edges with
``source < target``, plus the edges from an atom to its own image whose offset is
lexicographically negative (x < 0, or x == 0 and y < 0, or x == y == 0 and z < 0); then add the
reverse of every kept edge (source and target swapped, offset negated). An edge present in only
one direction with ``source > target`` is dropped; one with ``source < target`` gains its
reverse. The result contains every edge together with its reverse, once.

Order here: sorted by ``(target, source, offset)`` (the authors interleave per structure; the
order changes nothing but the summation order inside the model).
"""

from __future__ import annotations

import torch
from torch import Tensor

from openjmp.graph.batch import EdgeSet
from openjmp.graph.select import offset_code


def lexicographically_negative(offset: Tensor) -> Tensor:
    """(E,) bool: offset (E, 3) < 0 lexicographically (x first, then y, then z)."""
    x, y, z = offset[:, 0], offset[:, 1], offset[:, 2]
    return (x < 0) | ((x == 0) & (y < 0)) | ((x == 0) & (y == 0) & (z < 0))


def symmetrize_edges(edges: EdgeSet, num_atoms: int) -> tuple[EdgeSet, Tensor]:
    """Symmetric version of ``edges`` and ``id_swap``.

    Args:
        edges: directed edges (batch-global indices), any order. num_atoms: atoms in the batch.

    Returns:
        ``(sym, id_swap)``: ``sym`` sorted by (target, source, offset); ``id_swap`` (E,) int64
        with ``sym`` edge ``id_swap[e]`` the reverse of edge ``e`` (same atoms swapped, offset
        negated, same distance); ``id_swap[id_swap] == arange(E)``.
    """
    s, t = edges.index[0], edges.index[1]
    off = edges.cell_offset
    keep = (s < t) | ((s == t) & lexicographically_negative(off))
    ds, dt, do = s[keep], t[keep], off[keep]
    m = int(ds.shape[0])
    src = torch.cat([ds, dt])
    tgt = torch.cat([dt, ds])
    offset = torch.cat([do, -do])
    code, size = offset_code(offset)
    if num_atoms * num_atoms * size >= 2**62:
        raise ValueError(
            f"too many atoms ({num_atoms}) and images for the int64 edge key: split the batch"
        )
    perm = torch.argsort((tgt * num_atoms + src) * size + code)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(perm.shape[0], device=perm.device)
    # Before sorting, edge i and edge (i + m) mod 2m are each other's reverse.
    id_swap = inv[(perm + m) % max(2 * m, 1)]
    sym = EdgeSet(index=torch.stack([src[perm], tgt[perm]]), cell_offset=offset[perm])
    return sym, id_swap
