"""Records -> GemNet-OC graphs and batches (pure torch plus vesin).

Pipeline: `graph_spec` (per-dataset settings) -> `build_graph_sample` (one record: a2a, main,
a2ee2a, qint edges) -> `collate` (a `Batch`) -> `build_indices` (symmetric main graph, id_swap,
triplets, quadruplets) and `edge_vectors` (differentiable distances and unit vectors).
Conventions (edge direction, offsets, ordering) are written once in :mod:`openjmp.graph.batch`.
"""

from openjmp.graph.batch import GRAPH_NAMES, Batch, EdgeSet, GraphSample
from openjmp.graph.collate import collate
from openjmp.graph.gemnet import build_graph_sample
from openjmp.graph.geometry import edge_vectors
from openjmp.graph.indices import GemNetIndices, build_indices
from openjmp.graph.spec import GRAPH_SETTINGS, GraphSpec, graph_spec, max_neighbors_from_base

__all__ = [
    "GRAPH_NAMES",
    "GRAPH_SETTINGS",
    "Batch",
    "EdgeSet",
    "GemNetIndices",
    "GraphSample",
    "GraphSpec",
    "build_graph_sample",
    "build_indices",
    "collate",
    "edge_vectors",
    "graph_spec",
    "max_neighbors_from_base",
]
