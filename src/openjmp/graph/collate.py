"""Many `GraphSample`s -> one `Batch`: concatenate atoms, offset edge indices, stack per-structure data."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from openjmp.graph.batch import Batch, EdgeSet, GraphSample


def _stack_optional(values: list[Tensor | None], cat: bool) -> Tensor | None:
    if any(v is None for v in values):
        return None
    vals = [v for v in values if v is not None]
    return torch.cat(vals) if cat else torch.stack(vals)


def collate(samples: Sequence[GraphSample]) -> Batch:
    """Collate samples into one disconnected graph.

    Atom-level tensors are concatenated; each sample's edge indices are shifted by the number
    of atoms before it (offsets stay as they are, they are per-structure images). ``cell``
    becomes (B, 3, 3), ``energy`` (B,), ``stress`` (B, 6): each None if any sample lacks it;
    ``forces`` likewise (N, 3). A target enters ``targets`` (stacked to (B, ...)) only if
    every sample has it. All samples must have the same graphs and floating dtype.
    """
    if len(samples) == 0:
        raise ValueError("cannot collate an empty list of samples")
    names = tuple(samples[0].edges)
    for i, s in enumerate(samples):
        if tuple(s.edges) != names:
            raise ValueError(
                f"sample {i} has graphs {tuple(s.edges)}, sample 0 has {names}: cannot collate"
            )
    natoms = torch.tensor([s.natoms for s in samples], dtype=torch.long)
    shift = torch.cumsum(natoms, 0) - natoms
    edges: dict[str, EdgeSet] = {}
    for name in names:
        idx = [s.edges[name].index + shift[i] for i, s in enumerate(samples)]
        off = [s.edges[name].cell_offset for s in samples]
        edges[name] = EdgeSet(index=torch.cat(idx, dim=1), cell_offset=torch.cat(off))
    common = set(samples[0].targets)
    for s in samples[1:]:
        common &= set(s.targets)
    targets = {k: torch.stack([s.targets[k] for s in samples]) for k in sorted(common)}
    return Batch(
        atomic_numbers=torch.cat([s.atomic_numbers for s in samples]),
        pos=torch.cat([s.pos for s in samples]),
        cell=torch.stack([s.cell for s in samples]),
        batch=torch.repeat_interleave(torch.arange(len(samples)), natoms),
        natoms=natoms,
        tags=torch.cat([s.tags for s in samples]),
        fixed=torch.cat([s.fixed for s in samples]),
        edges=edges,
        energy=_stack_optional([s.energy for s in samples], cat=False),
        forces=_stack_optional([s.forces for s in samples], cat=True),
        targets=targets,
        datasets=tuple(s.dataset for s in samples),
        stress=_stack_optional([s.stress for s in samples], cat=False),
    )
