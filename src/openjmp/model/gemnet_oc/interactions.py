"""Triplet, quadruplet and pair (atom-atom) interactions of GemNet-OC.

Same parameters and the same mathematics as the authors' ``layers/interaction_block.py`` and
``layers/efficient.py``, evaluated without zero-padded (edges, max neighbours, ·) tensors: each
aggregation is a `gather_outer_sum`. The quadruplet sum is factorised through the output
triplets c->a<-b, because the ``legendre_outer`` basis is a product of a factor of the output
triplet (cos φ_cab) and a factor of the quadruplet (dihedral θ_cabd):

    sum_q sph[q, (s1, s2)] x[q] = sum_{t in out(e)} Y(φ_t)[s1] * (sum_{q in t} Y(θ_q)[s2] x[q])

so nothing of size (num_quadruplets, ·) beyond the 7-wide basis is ever held.
"""

from __future__ import annotations

from torch import Tensor, nn

from openjmp.graph.scatter import segment_sum
from openjmp.model.gemnet_oc import fused
from openjmp.model.gemnet_oc.bases import QuadBases, TripletBases
from openjmp.model.gemnet_oc.efficient import EfficientInteractionBilinear
from openjmp.model.gemnet_oc.graph_inputs import Quadruplets, Triplets
from openjmp.model.gemnet_oc.layers import _UNFUSABLE, INV_SQRT_2, Dense, ScaleFactor
from openjmp.model.gemnet_oc.segment import PaddedBasis, SegmentPlan


def _input_scale(dense_in: Dense, mlp_rbf: Dense, down: Dense) -> float | None:
    """The activation factor for `fused.act_mul_down`, None when the layers do not fit it."""
    scale = dense_in.fused_scale()
    ok = (
        scale not in (_UNFUSABLE, None)
        and down.fused_scale() == scale
        and mlp_rbf.fused_scale() is None
    )
    return scale if ok else None  # type: ignore[return-value]


def symmetric_up(up_ca: Dense, up_ac: Dense, x: Tensor, id_swap: Tensor) -> Tensor:
    """(up_ca(x) + up_ac(x)[id_swap]) / sqrt 2: the symmetric message of edge c->a and its
    reverse (`fused.sym_up` where the fused kernels are active)."""
    scale = up_ca.fused_scale()
    if fused.active() and scale not in (_UNFUSABLE, None) and up_ac.fused_scale() == scale:
        w_ca, w_ac = up_ca.linear.weight, up_ac.linear.weight
        return fused.sym_up(x, w_ca, w_ac, id_swap, scale)  # type: ignore[arg-type]
    x_ca = up_ca(x)
    x_ac = up_ac(x).index_select(0, id_swap)
    return x_ca.add_(x_ac).mul_(INV_SQRT_2)


class TripletInteraction(nn.Module):
    """Message passing over triplets: input embeddings (edges or atoms) -> output edges or atoms.

    ``symmetric_mp``: the result for edge c->a is (up_ca(x)[c->a] + up_ac(x)[a->c]) / sqrt(2).
    """

    def __init__(
        self,
        emb_size_in: int,
        emb_size_out: int,
        emb_size_trip_in: int,
        emb_size_trip_out: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        symmetric_mp: bool = True,
        swap_output: bool = True,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.symmetric_mp = symmetric_mp
        self.swap_output = swap_output
        self.dense_ba = Dense(emb_size_in, emb_size_in, activation=activation)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_in)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = EfficientInteractionBilinear(
            emb_size_trip_in, emb_size_cbf, emb_size_trip_out
        )
        self.scale_cbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_in, emb_size_trip_in, activation=activation)
        self.up_projection_ca = Dense(emb_size_trip_out, emb_size_out, activation=activation)
        if symmetric_mp:
            self.up_projection_ac = Dense(emb_size_trip_out, emb_size_out, activation=activation)

    def forward(
        self,
        m: Tensor,
        bases: TripletBases,
        idx: Triplets,
        id_swap: Tensor,
        n_out: int,
        *,
        expand_idx: Tensor | None = None,
        agg2_idx: Tensor | None = None,
        agg2_size: int | None = None,
    ) -> Tensor:
        """m (M, emb_in) -> (n_out or agg2_size, emb_out).

        expand_idx: (E_src,) gathers the input rows first (atom -> a2ee2a edge for a2e).
        agg2_idx: (n_out,) second aggregation of the output edges onto ``agg2_size`` atoms (e2a).
        """
        fast = fused.active()
        scale_in = _input_scale(self.dense_ba, self.mlp_rbf, self.down_projection) if fast else None
        if scale_in is not None:
            x_ba = fused.act_mul_down(
                m, self.dense_ba.linear.weight, bases.rad, self.mlp_rbf.linear.weight,
                self.scale_rbf.factor(), self.down_projection.linear.weight, scale_in,
                idx=expand_idx,
            )  # fmt: skip
        else:
            x_ba = self.dense_ba(m)
            if expand_idx is not None:
                x_ba = x_ba.index_select(0, expand_idx)
            x_ba = self.scale_rbf(x_ba * self.mlp_rbf(bases.rad), ref=x_ba, inplace=True)
            x_ba = self.down_projection(x_ba)  # (E_src, trip_in)

        if fast and agg2_idx is None:
            w_bil = self.mlp_cbf.bilinear.linear.weight
            assert bases.rad_w_ordered is not None
            x = bases.plan.aggregate_bilinear(bases.cir, x_ba, bases.rad_w_ordered, w_bil)
        else:
            agg = bases.plan.aggregate(bases.cir, x_ba)  # (n_out, S, trip_in)
            agg = bases.rad_w @ agg  # (n_out, emb_cbf, trip_in)
            if agg2_idx is not None:
                assert agg2_size is not None
                agg = segment_sum(agg, agg2_idx, agg2_size)
            x = self.mlp_cbf(agg)
        x = self.scale_cbf_sum(x, ref=lambda: x_ba.index_select(0, idx.in_))

        if self.symmetric_mp:
            return symmetric_up(self.up_projection_ca, self.up_projection_ac, x, id_swap)
        if self.swap_output:
            x = x.index_select(0, id_swap)
        return self.up_projection_ca(x)


class QuadrupletInteraction(nn.Module):
    """Message passing over quadruplets d->b->a<-c into the main edges (symmetric)."""

    def __init__(
        self,
        emb_size_edge: int,
        emb_size_quad_in: int,
        emb_size_quad_out: int,
        emb_size_rbf: int,
        emb_size_cbf: int,
        emb_size_sbf: int,
        symmetric_mp: bool = True,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.symmetric_mp = symmetric_mp
        self.dense_db = Dense(emb_size_edge, emb_size_edge, activation=activation)
        self.mlp_rbf = Dense(emb_size_rbf, emb_size_edge)
        self.scale_rbf = ScaleFactor()
        self.mlp_cbf = Dense(emb_size_cbf, emb_size_quad_in)
        self.scale_cbf = ScaleFactor()
        self.mlp_sbf = EfficientInteractionBilinear(
            emb_size_quad_in, emb_size_sbf, emb_size_quad_out
        )
        self.scale_sbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_edge, emb_size_quad_in, activation=activation)
        self.up_projection_ca = Dense(emb_size_quad_out, emb_size_edge, activation=activation)
        if symmetric_mp:
            self.up_projection_ac = Dense(emb_size_quad_out, emb_size_edge, activation=activation)

    def forward(self, m: Tensor, bases: QuadBases, idx: Quadruplets, id_swap: Tensor) -> Tensor:
        """m (E, emb_edge) -> (E, emb_edge)."""
        num_edges = m.shape[0]
        fast = fused.active()
        scale_in = _input_scale(self.dense_db, self.mlp_rbf, self.down_projection) if fast else None
        if scale_in is not None:
            x_db = fused.act_mul_down(
                m, self.dense_db.linear.weight, bases.rad, self.mlp_rbf.linear.weight,
                self.scale_rbf.factor(), self.down_projection.linear.weight, scale_in,
            )  # fmt: skip
        else:
            x_db = self.dense_db(m)
            x_db = self.scale_rbf(x_db * self.mlp_rbf(bases.rad), ref=x_db, inplace=True)
            x_db = self.down_projection(x_db)  # (E, quad_in)

        x_db = x_db.index_select(0, idx.triplet_in_in)  # (T_in, quad_in)
        x_db = self.scale_cbf(x_db * self.mlp_cbf(bases.cir), ref=x_db, inplace=True)

        num_trip_out = idx.triplet_out_out.shape[0]
        s = bases.sph_theta.width
        # per output triplet: sum over its quadruplets of Y(θ) ⊗ x -> (T_out, S, quad_in)
        z = bases.plan_trip.aggregate(bases.sph_theta, x_db)
        # per main edge: sum over its output triplets of Y(φ) ⊗ z -> (E, S, S * quad_in),
        # read as (E, S * S, quad_in) (index l_φ * S + l_θ), contracted with the radial part
        if fast:
            w_bil = self.mlp_sbf.bilinear.linear.weight
            assert bases.rad_w_ordered is not None
            z = z.reshape(num_trip_out, s * x_db.shape[1])
            x = bases.plan_edge.aggregate_bilinear(bases.sph_phi, z, bases.rad_w_ordered, w_bil)
        else:
            w = bases.plan_edge.aggregate(bases.sph_phi, z.reshape(num_trip_out, s * x_db.shape[1]))
            w = w.reshape(num_edges, s * s, -1)
            x = self.mlp_sbf(bases.rad_w @ w)  # (E, quad_out)
        x = self.scale_sbf_sum(x, ref=lambda: x_db.index_select(0, idx.trip_in_to_quad))

        if self.symmetric_mp:
            return symmetric_up(self.up_projection_ca, self.up_projection_ac, x, id_swap)
        return self.up_projection_ca(x)


class PairInteraction(nn.Module):
    """Atom-to-atom message passing over the a2a graph: h (N, A) -> (N, A)."""

    def __init__(
        self,
        emb_size_atom: int,
        emb_size_pair_in: int,
        emb_size_pair_out: int,
        emb_size_rbf: int,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        self.bilinear = Dense(emb_size_rbf * emb_size_pair_in, emb_size_pair_out)
        self.scale_rbf_sum = ScaleFactor()
        self.down_projection = Dense(emb_size_atom, emb_size_pair_in, activation=activation)
        self.up_projection = Dense(emb_size_pair_out, emb_size_atom, activation=activation)

    def forward(self, h: Tensor, rad: PaddedBasis, plan: SegmentPlan, edge_index: Tensor) -> Tensor:
        """h (N, A), rad (E_a2a, emb_rbf) laid out for ``plan`` (a2a edges -> targets),
        edge_index (2, E_a2a) -> (N, A)."""
        num_atoms = h.shape[0]
        x_b = self.down_projection(h)  # (N, pair_in)
        agg = plan.aggregate(rad, x_b)
        h_out = self.bilinear(agg.reshape(num_atoms, -1))
        h_out = self.scale_rbf_sum(h_out, ref=lambda: x_b.index_select(0, edge_index[0]))
        return self.up_projection(h_out)
