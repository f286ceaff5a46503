"""One record -> its four GemNet-OC graphs (`GraphSample`), the authors' per-sample transform.

The algorithm (authors: ``tasks/pretrain/module.py _generate_graphs``, ``utils/goc_graph.py``):

1. **a2a**: all pairs within ``spec.cutoff`` (periodic images along the record's periodic axes
   when ``spec.pbc``), capped to the ``a2a`` nearest neighbours of every target atom.
2. Training only: **edge dropout** on a2a, each edge dropped independently with probability p.
3. **main**, **a2ee2a**, **qint**: the nearest ``k`` of every target among the (kept) a2a edges;
   qint then keeps only edges whose source or target has a tag in ``spec.qint_tags``.

Every graph is ordered by ``(target, distance, source, offset)`` (the tie rule of
:mod:`openjmp.graph.select`), so edges are sorted by target, nearest first. ``main`` is the
directed graph; symmetrisation happens per batch in :mod:`openjmp.graph.indices`.

The non-periodic a2a cap is nearest-first here; the authors' ``torch_cluster.radius_graph`` cap
is not, but with caps of 1000 (3333 for rMD17) it never binds on their data sets.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import torch

from openjmp.errors import DataError
from openjmp.graph.batch import EdgeSet, GraphSample
from openjmp.graph.dropout import dropout_mask
from openjmp.graph.neighbors import candidate_pairs
from openjmp.graph.select import nearest_first_order, rank_within_target, tag_mask
from openjmp.graph.size import check_graph_size
from openjmp.graph.spec import DUMMY_CELL_LENGTH, GraphSpec
from openjmp.records import AtomsRecord
from openjmp.validate import check_cell, check_shapes, check_values


def _targets(record: AtomsRecord, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, value in record.targets.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            out[name] = torch.as_tensor(arr, dtype=dtype)
        elif arr.dtype.kind in "iub":
            out[name] = torch.as_tensor(arr)
    return out


def build_graph_sample(
    record: AtomsRecord,
    spec: GraphSpec,
    *,
    edge_dropout: float = 0.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    backend: Literal["vesin", "torch"] = "vesin",
    max_edges: int | None = None,
) -> GraphSample:
    """Build the four graphs of ``record`` under ``spec`` (see the module docstring).

    Args:
        record: the structure (Å); labels are copied (energy eV, forces eV/Å, stress eV/Å³).
        spec: graph setting, e.g. ``openjmp.graph.spec.graph_spec("oc20")``.
        edge_dropout: probability p of dropping each a2a edge (pre-training, training split
            only). If dropout would leave the structure without any edge, no edge is dropped
            (the authors' code raises there instead).
        generator: random source of the dropout (seeded -> deterministic); None: torch's global.
        dtype: floating dtype of positions, cell and labels.
        backend: candidate-pair search, ``"vesin"`` or ``"torch"`` (:mod:`openjmp.graph.neighbors`).
        max_edges: refuse the structure when its estimated neighbour pairs exceed this (checked
            before the search, :mod:`openjmp.graph.size`); None: ``spec.max_edges``, else the
            process default (``$OPENJMP_MAX_EDGES``, else 3 million).

    Returns:
        `GraphSample` with edges ``main`` (directed, nearest ``k_main``), ``a2a``, ``a2ee2a`` and
        ``qint``, each sorted by target atom, nearest first.

    Raises:
        DataError: bad record (shapes, non-finite values, singular periodic cell), a graph
            estimated above ``max_edges`` (the message gives the estimate and the settings that
            raise the limit), or a structure without any edge within the cutoff (the authors
            raise "An image has no neighbors"; GemNet-OC needs at least one edge).
    """
    if not 0.0 <= edge_dropout < 1.0:
        raise ValueError(f"edge_dropout must be in [0, 1), got {edge_dropout}")
    check_shapes(record)
    check_values(record)
    n = record.natoms
    pbc = record.pbc if spec.pbc else np.zeros(3, dtype=bool)
    if pbc.any():
        check_cell(record)
    limit = max_edges if max_edges is not None else spec.max_edges
    check_graph_size(
        record.positions,
        record.cell,
        pbc,
        spec.cutoff,
        max_edges=limit,
        source=record.source,
        index=record.index,
    )

    pairs = candidate_pairs(record.positions, record.cell, pbc, spec.cutoff, backend=backend)
    order = nearest_first_order(pairs.source, pairs.target, pairs.offset, pairs.distance)
    source, target = pairs.source.take(order), pairs.target.take(order)
    offset = pairs.offset.index_select(0, order)
    k_main, k_aeint, k_qint, k_aint = spec.max_neighbors
    rank = rank_within_target(target, n)
    if source.shape[0] > 0 and int(rank.max()) >= k_aint:
        if not pbc.any():
            warnings.warn(
                f"{record.source or '<in memory>'}, record {record.index}: the a2a cap of {k_aint} "
                "neighbours binds on a non-periodic structure; it is nearest-first here, the "
                "authors' torch_cluster.radius_graph keeps an arbitrary subset",
                stacklevel=2,
            )
        keep = rank < k_aint  # the a2a cap; the ranks of the kept edges do not change
        source, target, offset, rank = source[keep], target[keep], offset[keep], rank[keep]
    if source.shape[0] == 0:
        raise DataError(
            record.source,
            record.index,
            f"no pair of atoms within the {spec.cutoff} Å graph cutoff: GemNet-OC needs at least "
            f"one edge per structure ({n} atom{'s' if n != 1 else ''}, pbc={pbc.tolist()})",
        )
    if edge_dropout > 0.0:
        keep = dropout_mask(source.shape[0], edge_dropout, generator)
        if bool(keep.any()):
            source, target, offset = source[keep], target[keep], offset[keep]
            rank = rank_within_target(target, n)

    tags = torch.from_numpy(np.array(record.tags, dtype=np.int64))
    index = torch.stack([source, target])

    def sub(mask: torch.Tensor) -> EdgeSet:
        return EdgeSet(index=index[:, mask], cell_offset=offset[mask])

    edges = {
        "main": sub(rank < k_main),
        "a2ee2a": sub(rank < k_aeint),
        "qint": sub((rank < k_qint) & tag_mask(tags, source, target, spec.qint_tags)),
        "a2a": EdgeSet(index=index, cell_offset=offset),
    }

    if spec.dummy_cell:
        cell = torch.eye(3, dtype=dtype) * DUMMY_CELL_LENGTH
    elif spec.pbc:
        cell = torch.as_tensor(np.array(record.cell), dtype=dtype)
    else:
        cell = torch.zeros(3, 3, dtype=dtype)

    def lab(a: np.ndarray | float | None) -> torch.Tensor | None:
        return None if a is None else torch.as_tensor(np.array(a), dtype=dtype)

    stress = record.stress
    if stress is not None and np.shape(stress) == (3, 3):
        stress = np.asarray(stress)[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]

    return GraphSample(
        atomic_numbers=torch.from_numpy(np.array(record.atomic_numbers, dtype=np.int64)),
        pos=torch.as_tensor(np.array(record.positions), dtype=dtype),
        cell=cell,
        tags=tags,
        fixed=torch.from_numpy(np.array(record.fixed, dtype=bool)),
        edges=edges,
        energy=lab(record.energy),
        forces=lab(record.forces),
        targets=_targets(record, dtype),
        dataset=record.dataset,
        stress=lab(stress),
    )
