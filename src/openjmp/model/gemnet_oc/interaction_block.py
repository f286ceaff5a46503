"""One GemNet-OC interaction block: all five interactions, then the edge and atom updates."""

from __future__ import annotations

import math

from torch import Tensor, nn

from openjmp.model.gemnet_oc import checkpointing
from openjmp.model.gemnet_oc.bases import BasesOutput, EdgeEmbedding
from openjmp.model.gemnet_oc.config import GemNetOCConfig
from openjmp.model.gemnet_oc.graph_inputs import GemNetGraph
from openjmp.model.gemnet_oc.interactions import (
    PairInteraction,
    QuadrupletInteraction,
    TripletInteraction,
)
from openjmp.model.gemnet_oc.layers import INV_SQRT_2, Dense, ResidualLayer
from openjmp.model.gemnet_oc.output_blocks import AtomUpdateBlock, run_sequence

_INV_SQRT_4 = 1 / math.sqrt(4.0)  # skip + e2e + quadruplet + a2e messages
_INV_SQRT_3 = 1 / math.sqrt(3.0)  # atom + e2a + a2a messages


class InteractionBlock(nn.Module):
    """(h (N, emb_atom), m (E, emb_edge)) -> updated (h, m); authors' attribute names."""

    def __init__(self, config: GemNetOCConfig) -> None:
        super().__init__()
        c = config
        act = c.activation
        e, a = c.emb_size_edge, c.emb_size_atom
        self.dense_ca = Dense(e, e, activation=act)
        self.trip_interaction = TripletInteraction(
            e, e, c.emb_size_trip_in, c.emb_size_trip_out, c.emb_size_rbf, c.emb_size_cbf,
            symmetric_mp=True, swap_output=True, activation=act,
        )  # fmt: skip
        self.quad_interaction = QuadrupletInteraction(
            e, c.emb_size_quad_in, c.emb_size_quad_out, c.emb_size_rbf, c.emb_size_cbf,
            c.emb_size_sbf, symmetric_mp=True, activation=act,
        )  # fmt: skip
        self.atom_edge_interaction = TripletInteraction(
            a, e, c.emb_size_trip_in, c.emb_size_trip_out, c.emb_size_rbf, c.emb_size_cbf,
            symmetric_mp=True, swap_output=True, activation=act,
        )  # fmt: skip
        self.edge_atom_interaction = TripletInteraction(
            e, a, c.emb_size_trip_in, c.emb_size_trip_out, c.emb_size_rbf, c.emb_size_cbf,
            symmetric_mp=False, swap_output=False, activation=act,
        )  # fmt: skip
        self.atom_interaction = PairInteraction(
            a, c.emb_size_aint_in, c.emb_size_aint_out, c.emb_size_rbf, activation=act
        )
        self.layers_before_skip = nn.ModuleList(
            [ResidualLayer(e, activation=act) for _ in range(c.num_before_skip)]
        )
        self.layers_after_skip = nn.ModuleList(
            [ResidualLayer(e, activation=act) for _ in range(c.num_after_skip)]
        )
        self.atom_emb_layers = nn.ModuleList(
            [ResidualLayer(a, activation=act) for _ in range(c.num_atom_emb_layers)]
        )
        self.atom_update = AtomUpdateBlock(a, e, c.emb_size_rbf, c.num_atom, act)
        self.concat_layer = EdgeEmbedding(a, e, e, activation=act)
        self.residual_m = nn.ModuleList(
            [ResidualLayer(e, activation=act) for _ in range(c.num_concat)]
        )

    # The block runs as three stages so that activation checkpointing (backbone.forward) can
    # recompute them one at a time in backward. In-place additions only ever write into fresh
    # activation outputs that autograd does not keep (ScaledSiLU keeps its input).

    def interactions(
        self, h: Tensor, m: Tensor, bases: BasesOutput, g: GemNetGraph
    ) -> tuple[Tensor, Tensor]:
        """All five interactions, merged: (x (E, emb_edge) edge messages, h (N, emb_atom))."""
        num_atoms, num_edges = h.shape[0], m.shape[0]
        with checkpointing.recompute_matmuls():  # one (E, emb_edge) product less to keep
            x_skip = self.dense_ca(m)
        x_e2e = self.trip_interaction(m, bases.e2e, g.trip_e2e, g.id_swap, num_edges)
        x_qint = self.quad_interaction(m, bases.qint, g.quad, g.id_swap)
        x_a2e = self.atom_edge_interaction(
            h, bases.a2e, g.trip_a2e, g.id_swap, num_edges, expand_idx=g.a2ee2a.edge_index[0]
        )
        h_e2a = self.edge_atom_interaction(
            m, bases.e2a, g.trip_e2a, g.id_swap, g.a2ee2a.num_edges,
            agg2_idx=g.a2ee2a.edge_index[1], agg2_size=num_atoms,
        )  # fmt: skip
        h_a2a = self.atom_interaction(h, bases.a2a_rad, bases.a2a_plan, g.a2a.edge_index)
        x = x_skip.add_(x_e2e).add_(x_qint).add_(x_a2e).mul_(_INV_SQRT_4)
        h = h_e2a.add_(h).add_(h_a2a).mul_(_INV_SQRT_3)
        return x, h

    def edge_update(self, m: Tensor, x: Tensor) -> Tensor:
        """Residual layers around the skip connection: (E, emb_edge) -> (E, emb_edge)."""
        x = run_sequence(self.layers_before_skip, x)
        return run_sequence(self.layers_after_skip, (m + x).mul_(INV_SQRT_2))

    def atom_edge_update(
        self, h: Tensor, m: Tensor, bases: BasesOutput, g: GemNetGraph
    ) -> tuple[Tensor, Tensor]:
        """Atom update from the edges, then edges from their atoms: updated (h, m)."""
        main_index = g.main.edge_index
        h = run_sequence(self.atom_emb_layers, h)
        h = self.atom_update(h, m, bases.rbf_h, main_index[1]).add_(h).mul_(INV_SQRT_2)
        z = self.concat_layer.pre_activation(h, m, main_index)
        m2 = run_sequence(self.residual_m, z, activation=self.concat_layer.dense.activation)
        return h, m2.add_(m).mul_(INV_SQRT_2)

    def forward(
        self, h: Tensor, m: Tensor, bases: BasesOutput, g: GemNetGraph
    ) -> tuple[Tensor, Tensor]:
        x, h = self.interactions(h, m, bases, g)
        m = self.edge_update(m, x)
        return self.atom_edge_update(h, m, bases, g)
